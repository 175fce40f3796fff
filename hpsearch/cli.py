"""The ``hpsearch`` command line: ``train``, and the study, worker and report commands.

User errors (:class:`~hpsearch.errors.HPSearchError`) become one message on stderr and exit
status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

from collections.abc import Callable
import json
import logging
import os
from pathlib import Path
import sys
from typing import Any
from typing import TYPE_CHECKING

import click

from hpsearch.errors import BROKEN_EXIT
from hpsearch.errors import ConfigError
from hpsearch.errors import HPSearchError
from hpsearch.errors import INTERRUPTED_EXIT
from hpsearch.errors import OUTAGE_EXIT
from hpsearch.errors import StorageOutage
from hpsearch.errors import USAGE_EXIT

if TYPE_CHECKING:
    import optuna

    from hpsearch.config import TrainConfig
    from hpsearch.studyfile import StudySpec

USAGE_ERROR = USAGE_EXIT
INTERRUPTED = INTERRUPTED_EXIT
ALL_FAILED = 1  # trials ran, and every one of them failed


class _Group(click.Group):
    """Turns user errors (bad input, a file that cannot be written) into short messages and
    exit status 2, and Ctrl-C into exit status 130."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # The reader went away (`hpsearch trials ... | head`): a normal end, not an error.
            # Point stdout at /dev/null so that flushing it at exit raises nothing more.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except (HPSearchError, OSError) as e:
            if ctx.params.get("debug"):
                raise
            message = str(e) if isinstance(e, HPSearchError) else f"{e.filename}: {e.strerror}"
            for line in message.splitlines():
                click.echo(f"error: {line}", err=True)
            sys.exit(OUTAGE_EXIT if isinstance(e, StorageOutage) else USAGE_ERROR)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(INTERRUPTED)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of short messages.")
@click.option("-v", "--verbose", is_flag=True, help="Log every trial's start and end (info).")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    help="Level of the hpsearch logger on stderr [warning; info with -v; debug with --debug].",
)
@click.version_option(package_name="hpsearch")
def main(debug: bool, verbose: bool, log_level: str | None) -> None:
    """hpsearch: hyperparameter search for PyTorch MLPs on Optuna."""
    default = "debug" if debug else "info" if verbose else "warning"
    _configure_logging(getattr(logging, (log_level or default).upper()))


def _configure_logging(level: int) -> None:
    """Log records of the ``hpsearch`` logger go to stderr, with the time and level."""
    logger = logging.getLogger("hpsearch")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%X"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level)


# The command line imports its modules inside each command, so that `--help` and every
# reading command start at once (tests/test_cli.py checks that they never load torch).


def _redact(url: str) -> str:
    from hpsearch.storage import redact

    return redact(url)


def _default_storage() -> str:
    from hpsearch.storage import DEFAULT_STORAGE

    return DEFAULT_STORAGE


def _plain(text: str) -> str:
    from hpsearch.results import plain

    return plain(text)


def _build_config(
    config_file: str | None, assignments: tuple[str, ...], **overrides: Any
) -> TrainConfig:
    from hpsearch.config import load_config_file
    from hpsearch.config import make_config
    from hpsearch.config import parse_assignment

    base = load_config_file(config_file) if config_file else None
    values = dict(parse_assignment(a) for a in assignments)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return make_config(values, base, source="--set" if assignments else None)


@main.command()
@click.option("--dataset", help="digits (default), mnist, fashion-mnist or synthetic.")
@click.option("--data-dir", help="Where mnist / fashion-mnist live [$HPSEARCH_DATA_DIR].")
@click.option("--config", "config_file", type=click.Path(), help="YAML file of config fields.")
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config field, e.g. --set hidden_layers=[256,128].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def train(
    dataset: str | None,
    data_dir: str | None,
    config_file: str | None,
    assignments: tuple[str, ...],
    as_json: bool,
) -> None:
    """Train once and print the final metrics."""
    from hpsearch.trainer import EpochStats
    from hpsearch.trainer import train as run_training

    config = _build_config(config_file, assignments, dataset=dataset, data_dir=data_dir)

    def show(stats: EpochStats) -> None:
        click.echo(
            f"epoch {stats.epoch:>3}/{config.epochs}  train_loss {stats.train_loss:.4f}  "
            f"val_loss {stats.val_loss:.4f}  val_acc {stats.val_accuracy:.2%}  "
            f"{stats.seconds:.2f}s",
            err=True,
        )

    result = run_training(config, on_epoch=show)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    final = result.final
    click.echo(f"outcome        {result.outcome}")
    if final is not None:
        click.echo(f"val_accuracy   {final.val_accuracy:.4f}")
        click.echo(f"val_loss       {final.val_loss:.4f}")
    if result.test_accuracy is not None and result.test_loss is not None:
        click.echo(f"test_accuracy  {result.test_accuracy:.4f}")
        click.echo(f"test_loss      {result.test_loss:.4f}")
    click.echo(f"params         {result.param_count}")
    click.echo(f"train_seconds  {result.train_seconds:.2f}")
    click.echo(f"device         {result.device}")


# --- studies -----------------------------------------------------------------------------

_trials_option = click.option("--trials", type=click.IntRange(min=1), help="Override the budget.")
_storage_option = click.option(
    "--storage", envvar="HPSEARCH_STORAGE", help="Override the storage URL [$HPSEARCH_STORAGE]."
)


def _load_spec(
    path: str, storage: str | None, trials: int | None = None, population: int | None = None
) -> StudySpec:
    import dataclasses

    from hpsearch.studyfile import load_spec

    spec = load_spec(path, storage=_storage_or_file(storage), trials=trials)
    return dataclasses.replace(spec, population=population) if population else spec


_population_option = click.option(
    "--population",
    type=click.IntRange(min=1, max=4096),
    help="Trials a worker trains at once on its device [the study file's, else 1].",
)


def _storage_or_file(storage: str | None) -> str | None:
    """``--storage``, else the URL in ``$HPSEARCH_STORAGE_FILE`` (how a Slurm job gets it
    without it being on a command line or in its script)."""
    if storage is None and os.environ.get("HPSEARCH_STORAGE_FILE"):
        from hpsearch.slurm import read_storage_file

        return read_storage_file(os.environ["HPSEARCH_STORAGE_FILE"])
    return storage


def _resolve(target: str, storage: str | None) -> tuple[str, str]:
    """A study file, or a study name in ``--storage`` (default: the default SQLite file).

    Reading a study needs only the file's name and storage: the rest is not validated (a
    file edited since may still show its study), which also spares these commands loading
    the validation models.
    """
    if target.endswith((".yaml", ".yml")) or Path(target).is_file():
        from hpsearch.yamlfile import study_location

        found = study_location(target)
        if found is None:  # no usable name: the whole file's problems, worded
            spec = _load_spec(target, storage)
            return spec.name, spec.storage
        name, url = found
        return name, _storage_or_file(storage) or url or _default_storage()
    return target, _storage_or_file(storage) or _default_storage()


def _open(target: str, storage: str | None) -> optuna.Study:
    from hpsearch.results import open_study

    return open_study(*_resolve(target, storage))


def _best_line(study: optuna.Study) -> str:
    from hpsearch.results import best_trials

    best = best_trials(study)
    if not best:
        return "best: none yet"
    if len(study.directions) > 1:
        return f"pareto front: {len(best)} trials"
    return f"best: {best[0].value:.4f} (trial {best[0].number})"


def _set_storage_wait(ctx: click.Context, param: click.Parameter, value: float | None) -> None:
    if value is not None:  # through the environment, so that launched workers wait as long
        from hpsearch.storage import OUTAGE_WAIT_ENV

        os.environ[OUTAGE_WAIT_ENV] = str(value)


_storage_wait_option = click.option(
    "--storage-wait",
    type=click.FloatRange(min=0),
    expose_value=False,
    callback=_set_storage_wait,
    help="Seconds to wait out a storage outage before giving up [$HPSEARCH_STORAGE_WAIT, 300].",
)

_max_same_failures_option = click.option(
    "--max-same-failures",
    type=click.IntRange(min=0),
    default=3,  # hpsearch.study.MAX_SAME_FAILURES, not imported: it would load torch
    show_default=True,
    help="Stop a worker after this many trials in a row fail with the same error (0: never).",
)


def _threads_option(default_help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--threads", type=click.IntRange(min=1), help=f"Torch CPU threads [{default_help}]."
    )


@main.command()
@click.argument("study_file", type=click.Path())
@_trials_option
@_storage_option
@_threads_option("torch's default: all cores")
@_population_option
@_max_same_failures_option
@_storage_wait_option
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def run(
    study_file: str,
    trials: int | None,
    storage: str | None,
    threads: int | None,
    population: int | None,
    max_same_failures: int,
    no_progress: bool,
) -> None:
    """Run a study in this process until its budget is reached (resumes if it exists)."""
    from tqdm import tqdm

    from hpsearch.results import best_trials
    from hpsearch.study import finished_count
    from hpsearch.study import preflight
    from hpsearch.study import prepare
    from hpsearch.study import run_worker
    from hpsearch.study import worker_name
    from hpsearch.workers import install_stop_signals
    from hpsearch.workers import set_threads

    spec = _load_spec(study_file, storage, trials, population)
    set_threads(threads)
    preflight(spec)  # before anything is written: a broken environment burns no budget
    store, study, queued = prepare(spec)
    budget = spec.budget()
    done = finished_count(study)
    click.echo(
        f"study {spec.name} in {_redact(spec.storage)}: sampler {spec.sampler}, "
        f"budget {budget}, {queued} trials queued now"
        + (f", population {spec.population}" if spec.population > 1 else ""),
        err=True,
    )
    bar = tqdm(
        total=budget,
        initial=min(done, budget),
        unit="trial",
        disable=no_progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )

    def progress(trial: Any) -> None:
        bar.update(1)
        bar.set_postfix_str(_best_line(study), refresh=True)

    install_stop_signals()  # Ctrl-C: finish the epoch, re-queue the trial; twice: at once
    try:
        stats = run_worker(
            spec,
            store,
            worker=worker_name(),
            on_trial=progress,
            max_same_failures=max_same_failures,
        )
    except KeyboardInterrupt:
        stats = None
    bar.close()
    if stats is None or stats.interrupted:
        click.echo("interrupted: run the same command again to resume", err=True)
        sys.exit(INTERRUPTED)
    click.echo(
        f"done: {stats.completed} completed, {stats.pruned} pruned, {stats.failed} failed "
        f"in this run; {_best_line(study)}"
    )
    _print_best(study, best_trials(study))
    _exit_if_failing(stats, study_file)


def _exit_if_failing(stats: Any, study_file: str) -> None:
    """Exit statuses for a worker that stopped on repeated errors, or whose trials all failed."""
    if stats.broken:
        click.echo(
            f"error: stopped after {stats.failed} failed trials, the last ones all with: "
            f"{stats.broken.splitlines()[0][:300]}",
            err=True,
        )
        click.echo(
            f"error: fix the cause, then `hpsearch retry {study_file}` queues the failed "
            "trials again",
            err=True,
        )
        sys.exit(BROKEN_EXIT)
    if stats.all_failed:
        click.echo(
            f"error: every trial of this run failed; see `hpsearch trials {study_file}`",
            err=True,
        )
        sys.exit(ALL_FAILED)


def _trial_option(text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--trial", "number", type=click.IntRange(min=0), help=text)


def _print_best(study: optuna.Study, trials: list[optuna.trial.FrozenTrial]) -> None:
    from hpsearch.record import records
    from hpsearch.results import significant

    for t in records(study, trials):
        values = ", ".join(f"{v:.4g}" for v in t.values or ())
        test = t.test_accuracy
        click.echo(
            f"  trial {t.number}: values [{values}]"
            + (f"  test_accuracy {test:.4g}" if test is not None else "")
        )
        for key, value in significant(dict(t.params)).items():
            click.echo(f"    {key}: {value}")


def _print_noise(study: optuna.Study) -> None:
    """Says whether the best trial stands out of the validation set's noise."""
    from hpsearch.results import selection_noise

    noise = selection_noise(study)
    if noise is None:
        return
    on = f" on {noise.val_size} validation images" if noise.val_size else ""
    se = f"one standard error ({noise.standard_error:.2g}{on})"
    if len(noise.within) > 1:
        others = ", ".join(str(n) for n in noise.within[1:])
        click.echo(
            f"noise: trials {others} are within {se} of the best {noise.metric} "
            f"{noise.value:.4g}: which of these is best is chance; compare them on more data "
            "(a larger fixed: val_fraction, or the test accuracy above)"
        )
    else:
        click.echo(f"noise: the best is ahead of the next trial by more than {se}")


@main.command()
@click.argument("study_file", type=click.Path())
@_trials_option
@_storage_option
def create(study_file: str, trials: int | None, storage: str | None) -> None:
    """Create the study and queue its budget, without running trials (workers join later)."""
    from hpsearch.study import prepare

    spec = _load_spec(study_file, storage, trials)
    _, _, queued = prepare(spec)
    click.echo(
        f"study {spec.name} in {_redact(spec.storage)}: budget {spec.budget()}, "
        f"{queued} trials queued now"
    )


_format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)


@main.command()
@_storage_option
@_format_option
def studies(storage: str | None, fmt: str) -> None:
    """List the studies in a storage."""
    from hpsearch.results import format_rows
    from hpsearch.results import study_rows

    url = storage or _default_storage()
    rows = study_rows(url)
    if not rows and fmt == "table":
        click.echo(f"no studies in {_redact(url)}")
        return
    click.echo(format_rows(rows, fmt))


@main.command()
@click.argument("study")
@_storage_option
@click.option("--json", "as_json", is_flag=True, help="Print as JSON (same as --format json).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def status(study: str, storage: str | None, as_json: bool, fmt: str) -> None:
    """Counts by state, best trial, time spent and trial rate of STUDY (file or name)."""
    from hpsearch.results import format_rows
    from hpsearch.results import significant
    from hpsearch.results import status as study_status
    from hpsearch.slurm import job_summary

    opened = _open(study, storage)
    info = study_status(opened)
    jobs = job_summary(opened)
    if jobs is not None:
        info["slurm"] = jobs
    if as_json or fmt == "json":
        click.echo(format_rows(info, "json"))
        return
    states = "  ".join(f"{k.lower()} {v}" for k, v in info["states"].items())
    click.echo(f"study       {_plain(info['study'])} ({', '.join(info['directions'])})")
    click.echo(f"trials      {info['trials']}: {states}")
    rate = info["trials_per_minute"]
    click.echo(
        f"time        {info['wall_seconds']:.1f}s wall, {info['train_seconds']:.1f}s "
        f"training" + (f", {rate:.1f} trials/min" if rate else "")
    )
    if jobs is not None:
        tasks = (
            f"{jobs['pending']} pending, {jobs['running']} running, {jobs['done']} done"
            if jobs["pending"] is not None
            else "states unknown (squeue failed)"
        )
        click.echo(
            f"slurm       jobs {', '.join(jobs['job_ids'])}: {jobs['tasks']} tasks, {tasks}"
        )
    best = significant(info["best"])
    if len(best) > 1:
        click.echo(f"best        a Pareto set of {len(best)} trials (`hpsearch best` lists them)")
        best = best[:1]
    for one in best:
        click.echo(
            f"best        trial {one['number']}: {one['values']}  "
            f"test_accuracy {one['test_accuracy']}"
        )
        click.echo(f"params      {json.dumps(one['params'])}")


@main.command()
@click.argument("study")
@_storage_option
@click.option(
    "--top",
    type=click.IntRange(min=1),
    help="The N best trials (single objective), or the first N of the Pareto set.",
)
@_trial_option("With --write-config: this completed trial's config (a Pareto set needs one).")
@click.option(
    "--write-config",
    type=click.Path(),
    help="Write the best trainer config here (YAML that `hpsearch train --config` reads).",
)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "table", "csv", "json"]), default="text"
)
def best(
    study: str,
    storage: str | None,
    top: int | None,
    number: int | None,
    write_config: str | None,
    fmt: str,
) -> None:
    """The best trial of STUDY, with whether it stands out of the validation noise; the
    Pareto set of a multi-objective study, best first by its first objective."""
    from hpsearch.results import best_trials
    from hpsearch.results import format_rows
    from hpsearch.results import require_best
    from hpsearch.results import trial_rows
    from hpsearch.results import write_best_config

    s = _open(study, storage)
    multi = len(s.directions) > 1
    trials = best_trials(s, top or 1)  # a Pareto set whole: --top cuts what is shown
    if not trials:
        require_best(s)  # the one message for a study with no completed trial
    shown = trials[:top] if top else trials
    if fmt == "text":
        if multi:
            more = f"; the first {len(shown)}" if len(shown) < len(trials) else ""
            click.echo(f"Pareto set: {len(trials)} trials{more}, best first by objective 0")
        _print_best(s, shown)
        if not multi:
            _print_noise(s)
    else:
        click.echo(format_rows(trial_rows(s, shown), fmt))
    if write_config:
        click.echo(f"wrote {write_best_config(s, write_config, number)}", err=fmt != "text")


@main.command()
@click.argument("study")
@_storage_option
@_format_option
@click.option(
    "--sort",
    default="value",
    show_default=True,
    help="`value` (the objective, best first), `number`, or a column such as param.lr.",
)
@click.option("--top", type=click.IntRange(min=1), help="Only the first N trials.")
@click.option(
    "--columns", help="Only these columns, comma-separated (e.g. number,value,param.lr)."
)
def trials(
    study: str, storage: str | None, fmt: str, sort: str, top: int | None, columns: str | None
) -> None:
    """The trials of STUDY, best first, with their state, values, params and metrics (a
    failed trial's reason in one line; `hpsearch trial STUDY N` shows its traceback). The
    table fits 120 columns (short names, 4 significant digits); csv and json have all."""
    from hpsearch.results import fit_table
    from hpsearch.results import format_rows
    from hpsearch.results import select_columns
    from hpsearch.results import sorted_trials
    from hpsearch.results import trial_rows

    s = _open(study, storage)
    rows = trial_rows(s, sorted_trials(s, sort, top))
    if columns:
        click.echo(format_rows(select_columns(rows, columns), fmt))
    elif fmt == "table" and rows:
        click.echo(fit_table(rows))  # fits 120 columns; says what it left out
    else:
        click.echo(format_rows(rows, fmt))


@main.command()
@click.argument("study")
@click.argument("number", type=click.IntRange(min=0))
@_storage_option
@click.option("--json", "as_json", is_flag=True, help="Print the whole record as JSON.")
def trial(study: str, number: int, storage: str | None, as_json: bool) -> None:
    """Everything stored of trial NUMBER of STUDY: config, curves, outcome, traceback."""
    import dataclasses

    from hpsearch.results import format_rows
    from hpsearch.results import trial_record

    record = trial_record(_open(study, storage), number)
    doc = dataclasses.asdict(record)
    if as_json:
        click.echo(format_rows(doc, "json"))
        return
    for key in ("number", "state", "values", "outcome", "worker", "device", "host", "threads"):
        click.echo(f"{key:<14} {_plain(str(doc[key]))}")
    for key in ("test_accuracy", "train_seconds", "duration_s", "param_count"):
        click.echo(f"{key:<14} {doc[key]}")
    click.echo(f"params         {json.dumps(doc['params'])}")
    if record.config:
        click.echo(f"config         {json.dumps(doc['config'])}")
    for metric, curve in record.curves.items():
        click.echo(f"{metric:<14} {json.dumps(curve)}")
    if record.fail_reason:
        click.echo(f"fail_reason    {_plain(record.fail_reason.splitlines()[0])}")
    if record.traceback:
        click.echo(record.traceback.rstrip())


@main.command()
@click.argument("study")
@_storage_option
@click.option(
    "--output",
    "-o",
    type=click.Path(),
    default="runs/best",
    show_default=True,
    help="Directory for model.pt, config.yaml and result.json.",
)
@_trial_option("Retrain this completed trial instead (a Pareto set of several needs one).")
def retrain(study: str, storage: str | None, output: str, number: int | None) -> None:
    """Train the best configuration on training + validation data and save the model
    (model.pt: weights, config and preprocessing; `hpsearch predict` and
    `hpsearch.load_model` read it)."""
    from hpsearch.results import retrain_best

    click.echo("retraining on training + validation data", err=True)
    done = retrain_best(_open(study, storage), output, number)
    click.echo(f"trial          {done.trial}")
    click.echo(f"test_accuracy  {done.result['test_accuracy']:.4f}")
    click.echo(f"test_loss      {done.result['test_loss']:.4f}")
    click.echo(f"saved          {', '.join(map(str, done.files))}")


@main.command()
@click.argument("model_dir", type=click.Path())
@click.argument("inputs", type=click.Path())
@_format_option
@click.option("--device", default="cpu", show_default=True, help="Where to run the model.")
def predict(model_dir: str, inputs: str, fmt: str, device: str) -> None:
    """Classify INPUTS with the model `hpsearch retrain` saved in MODEL_DIR: a .npy or .pt
    tensor of examples on the data set's raw scale, or a directory of PNG images."""
    import torch

    from hpsearch.predict import load_model
    from hpsearch.predict import read_inputs
    from hpsearch.results import format_rows

    model = load_model(model_dir, device)
    examples = read_inputs(inputs, model)
    with torch.no_grad():
        probabilities = model(examples.features).softmax(dim=-1).cpu()
    confidence, classes = probabilities.max(dim=-1)
    rows = [
        {"input": name, "class": int(c), "probability": float(p)}
        for name, c, p in zip(examples.names, classes, confidence, strict=True)
    ]
    click.echo(format_rows(rows, fmt))


@main.command()
@click.argument("study")
@_storage_option
def retry(study: str, storage: str | None) -> None:
    """Queue the params of STUDY's failed trials again, so that they count once more.

    For failures whose cause is now fixed (missing data, a full disk, a driver). Each failed
    trial is queued once; run the study (or start workers) to run them.
    """
    from hpsearch.results import open_study
    from hpsearch.study import retry_failed

    name, url = _resolve(study, storage)
    queued = retry_failed(open_study(name, url, read_only=False))
    if not queued:
        click.echo(f"study {name}: no failed trial to retry")
        return
    click.echo(
        f"study {name}: queued {len(queued)} failed trials again "
        f"({', '.join(map(str, queued[:20]))}{', ...' if len(queued) > 20 else ''}); "
        "run the study to run them"
    )


@main.command()
@click.argument("study")
@_storage_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(study: str, storage: str | None, yes: bool) -> None:
    """Delete STUDY and all its trials from the storage."""
    from hpsearch.results import delete_study
    from hpsearch.results import open_study

    name, url = _resolve(study, storage)  # parses a study file once
    s = open_study(name, url)
    if not yes:
        click.confirm(f"delete study {name!r} ({len(s.trials)} trials)?", abort=True)
    delete_study(s)
    click.echo(f"deleted {name} from {_redact(url)}")


@main.command()
@click.option("--output", "-o", type=click.Path(), help="Write it to this file, not stdout.")
def schema(output: str | None) -> None:
    """Print the JSON Schema of study files, for editors that check YAML while you type.

    Save it beside your studies and put this first line in a study file (VS Code's YAML
    extension, and any editor using yaml-language-server, then complete and check keys):

        # yaml-language-server: $schema=study.schema.json
    """
    from hpsearch.studyfile import study_schema

    text = json.dumps(study_schema(), indent=2) + "\n"
    if output is None:
        click.echo(text, nl=False)
        return
    Path(output).write_text(text)
    click.echo(f"wrote {output}", err=True)


# --- worker pools ------------------------------------------------------------------------


@main.command()
@click.argument("study_file", type=click.Path())
@_storage_option
@click.option("--device", help="Device for this worker's trials, e.g. cuda:0 or cpu.")
@click.option("--name", help="Worker name recorded with its trials [host:pid].")
@_threads_option("the launcher's share of the cores, else 1")
@_population_option
@_max_same_failures_option
@_storage_wait_option
def worker(
    study_file: str,
    storage: str | None,
    device: str | None,
    name: str | None,
    threads: int | None,
    population: int | None,
    max_same_failures: int,
) -> None:
    """Join an existing study and run its queued trials (how another host joins)."""
    import dataclasses

    from hpsearch.config import make_config
    from hpsearch.study import load_existing_study
    from hpsearch.study import open_spec_storage
    from hpsearch.study import preflight
    from hpsearch.study import run_worker
    from hpsearch.study import worker_name
    from hpsearch.workers import install_stop_signals
    from hpsearch.workers import set_threads
    from hpsearch.workers import watch_launcher
    from hpsearch.workers import worker_threads

    spec = _load_spec(study_file, storage, population=population)
    if device:
        spec = dataclasses.replace(spec, base=make_config({"device": device}, spec.base))
    me = name or worker_name()
    spec = spec.for_worker(me)
    install_stop_signals()
    watch_launcher()
    set_threads(worker_threads(threads))
    preflight(spec)  # before claiming: a worker that cannot train must not fail trials
    store = open_spec_storage(spec)
    load_existing_study(spec, store)  # fail fast, before any work, if the study does not exist
    click.echo(f"worker {me} joined {spec.name} in {_redact(spec.storage)}")
    try:
        stats = run_worker(
            spec,
            store,
            worker=me,
            on_trial=lambda t: click.echo(f"trial {t.number}: {t.state.name} {t.values or ''}"),
            max_same_failures=max_same_failures,
        )
    except KeyboardInterrupt:
        sys.exit(INTERRUPTED)
    click.echo(
        f"worker {me}: {stats.completed} completed, {stats.pruned} pruned, {stats.failed} failed"
    )
    if stats.interrupted:
        sys.exit(INTERRUPTED)
    _exit_if_failing(stats, study_file)


@main.command()
@click.argument("study_file", type=click.Path())
@_trials_option
@_storage_option
@click.option("--gpus", help="all (default when GPUs are visible), none, or e.g. 0,2,3.")
@click.option("--workers-per-gpu", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--workers",
    "cpu_workers",
    type=click.IntRange(min=1),
    help="CPU workers when no GPU is used [one per core].",
)
@click.option(
    "--max-restarts",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Replacements per worker slot after a crash.",
)
@_population_option
@_max_same_failures_option
@_storage_wait_option
@click.option("--log-dir", type=click.Path(), help="Worker logs [hpsearch-logs/STUDY].")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option(
    "--dashboard",
    "with_dashboard",
    is_flag=True,
    help="Serve optuna-dashboard beside the pool (see `hpsearch dashboard`).",
)
@click.option("--dashboard-port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option(
    "--slurm", is_flag=True, help="Submit the workers to Slurm as one job array (see README)."
)
@click.option("--nodes", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--gpus-per-node", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--partition", help="Slurm partition.")
@click.option("--account", help="Slurm account.")
@click.option("--time", "time_limit", help="Slurm time limit per task, HH:MM:SS.")
@click.option(
    "--slurm-option", multiple=True, metavar="KEY=VALUE", help="More #SBATCH --KEY=VALUE lines."
)
@click.option("--requeue", is_flag=True, help="A task stopped by its time limit requeues.")
@click.option("--detach", is_flag=True, help="Return once the array is submitted.")
@click.option("--cancel-on-exit", is_flag=True, help="Ctrl-C cancels the array, unasked.")
def launch(
    study_file: str,
    trials: int | None,
    storage: str | None,
    gpus: str | None,
    workers_per_gpu: int,
    cpu_workers: int | None,
    max_restarts: int,
    population: int | None,
    max_same_failures: int,
    log_dir: str | None,
    no_progress: bool,
    with_dashboard: bool,
    dashboard_port: int,
    slurm: bool,
    nodes: int,
    gpus_per_node: int,
    partition: str | None,
    account: str | None,
    time_limit: str | None,
    slurm_option: tuple[str, ...],
    requeue: bool,
    detach: bool,
    cancel_on_exit: bool,
) -> None:
    """Start a pool of worker processes that share one study through its storage (here, or
    on a Slurm cluster with --slurm)."""
    import dataclasses

    spec = _load_spec(study_file, storage, trials, population)
    if slurm:
        from hpsearch.slurm import parse_options

        options = parse_options(
            nodes,
            gpus_per_node,
            workers_per_gpu,
            partition,
            account,
            time_limit,
            requeue,
            slurm_option,
        )
        logs = Path(log_dir or Path("hpsearch-logs") / spec.name)
        _launch_slurm(spec, options, logs, detach, cancel_on_exit, no_progress)
        return
    given = [f for f, on in (("--detach", detach), ("--requeue", requeue)) if on]
    if given or cancel_on_exit or nodes != 1 or gpus_per_node or partition or account:
        raise click.UsageError("--nodes, --partition and the like need --slurm")

    import torch
    from tqdm import tqdm

    from hpsearch.config import make_config
    from hpsearch.study import preflight
    from hpsearch.study import prepare
    from hpsearch.workers import plan_slots
    from hpsearch.workers import Pool

    slots = plan_slots(
        gpus, workers_per_gpu, cpu_workers, torch.cuda.device_count(), os.cpu_count() or 1
    )
    # Before anything is written: the data set loads and a batch trains on the workers' kind
    # of device (each worker checks its own device again before it claims a trial).
    preflight(dataclasses.replace(spec, base=make_config({"device": slots[0].device}, spec.base)))
    _, study, queued = prepare(spec)
    logs = Path(log_dir or Path("hpsearch-logs") / spec.name)
    click.echo(
        f"study {spec.name} in {_redact(spec.storage)}: budget {spec.budget()}, "
        f"{queued} trials queued now; {len(slots)} workers "
        f"({', '.join(s.name for s in slots)}); logs in {logs}",
        err=True,
    )
    pool = Pool(spec, study, slots, logs, max_restarts, max_same_failures)
    bar = tqdm(
        total=spec.budget(), unit="trial", disable=no_progress, file=sys.stderr, dynamic_ncols=True
    )

    def tick(p: Pool) -> None:
        bar.n = min(p.finished(), bar.total)
        bar.set_postfix_str(f"{_best_line(study)}; {p.states()}", refresh=True)

    dashboard = _start_dashboard(spec, dashboard_port) if with_dashboard else None
    try:
        result = pool.run(on_tick=None if no_progress else tick)
    finally:
        if dashboard is not None:
            dashboard.terminate()
            dashboard.wait()
    tick(pool)
    bar.close()
    click.echo(f"{result.finished}/{result.budget} trials finished; {_best_line(study)}")
    for line in result.failures:
        click.echo(f"worker failure: {line}", err=True)
    if result.interrupted:
        click.echo("interrupted: every worker stopped; run the same command to resume", err=True)
        sys.exit(INTERRUPTED)
    if result.all_failed:
        click.echo(
            f"error: every trial of this launch failed; see `hpsearch trials {study_file}` "
            "and the worker logs",
            err=True,
        )
        sys.exit(ALL_FAILED)
    if not result.ok:
        click.echo("the budget was not reached: see the worker logs above", err=True)
        sys.exit(1)


def _launch_slurm(
    spec: StudySpec,
    options: Any,
    logs: Path,
    detach: bool,
    cancel_on_exit: bool,
    no_progress: bool,
) -> None:
    """``launch --slurm``: checks, creates or resumes the study, submits the array, then
    follows it as a local launch does (see :mod:`hpsearch.slurm`)."""
    import dataclasses
    import time

    from tqdm import tqdm

    from hpsearch import slurm
    from hpsearch.config import make_config
    from hpsearch.study import finished_count
    from hpsearch.study import preflight
    from hpsearch.study import prepare

    slurm.check_storage(spec.storage, options)
    assert spec.path is not None
    # the data set loads and a batch trains (on this host's CPU: it may have no GPU)
    preflight(dataclasses.replace(spec, base=make_config({"device": "cpu"}, spec.base)))
    _, study, queued = prepare(spec)
    here = logs.resolve()
    secret = slurm.write_storage_file(spec.storage, here / "slurm")
    script = here / "slurm" / f"job-{time.strftime('%Y%m%d-%H%M%S')}.sh"
    script.write_text(
        slurm.job_script(Path(spec.path).resolve(), secret, here, options, spec.name)
    )
    job = slurm.submit(script)
    slurm.record_job(study, job, options.tasks)
    click.echo(
        f"study {spec.name} in {_redact(spec.storage)}: budget {spec.budget()}, {queued} "
        f"trials queued now; Slurm job array {job}: {options.tasks} tasks x "
        f"{options.workers_per_gpu} workers; logs in {logs}\n"
        f"  squeue -j {job}    scancel {job}",
        err=True,
    )
    if detach:
        click.echo(job)
        return
    bar = tqdm(
        total=spec.budget(), unit="trial", disable=no_progress, file=sys.stderr, dynamic_ncols=True
    )
    try:
        while True:
            done = finished_count(study)
            states = slurm.task_states([job])
            bar.n = min(done, bar.total)
            shown = ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items())) or "ended"
            bar.set_postfix_str(f"{_best_line(study)}; tasks: {shown}", refresh=True)
            if done >= spec.budget() or not states:
                break
            time.sleep(2.0)
    except KeyboardInterrupt:
        bar.close()
        if cancel_on_exit or click.confirm(f"\ncancel Slurm job {job}?", default=False, err=True):
            slurm.cancel(job)
            click.echo(f"cancelled job {job}; running trials are queued again", err=True)
        else:
            click.echo(f"job {job} goes on; `hpsearch status {spec.path}` follows it", err=True)
        sys.exit(INTERRUPTED)
    bar.close()
    done = finished_count(study)
    click.echo(f"{done}/{spec.budget()} trials finished; {_best_line(study)}")
    if done < spec.budget():
        click.echo(f"job {job} ended before the budget was reached: see {logs}", err=True)
        sys.exit(1)


def _start_dashboard(spec: StudySpec, port: int) -> Any:
    import os
    import subprocess

    assert spec.path is not None
    cmd = [sys.executable, "-m", "hpsearch", "dashboard", spec.path, "--port", str(port)]
    env = {**os.environ, "HPSEARCH_STORAGE": spec.storage}  # not argv: it may hold a password
    return subprocess.Popen(cmd, env=env)  # prints its own URL


# --- results as pictures -----------------------------------------------------------------


@main.command()
@click.argument("study", required=False)
@_storage_option
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to bind; 0.0.0.0 exposes the dashboard to the network.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="0 picks a free port.",
)
@click.option(
    "--allow-writes",
    is_flag=True,
    help="Let the dashboard change studies when bound beyond 127.0.0.1 (it has no login).",
)
def dashboard(
    study: str | None, storage: str | None, host: str, port: int, allow_writes: bool
) -> None:
    """Serve optuna-dashboard on the storage of STUDY (a study file) or --storage."""
    from hpsearch.dashboard import is_loopback
    from hpsearch.dashboard import make_dashboard
    from hpsearch.dashboard import serve

    url = _resolve(study, storage)[1] if study else storage or _default_storage()
    exposed = not is_loopback(host)
    try:
        server = make_dashboard(url, host, port, allow_writes=True if allow_writes else None)
    except OSError as e:
        raise ConfigError([f"--host/--port: cannot listen on {host}:{port}: {e.strerror}"]) from e
    if exposed:
        mode = "it can change studies (--allow-writes)" if allow_writes else "it is read-only"
        click.echo(
            f"warning: the dashboard listens on {host or 'every interface'}, beyond this "
            f"machine, and has no login: anyone who reaches it can read every study; {mode}",
            err=True,
        )
    serve(
        server,
        on_ready=lambda u: click.echo(
            f"optuna-dashboard on {_redact(url)} at {u} (Ctrl-C to stop)", err=True
        ),
    )
    click.echo("dashboard stopped", err=True)


@main.command()
@click.argument("study")
@_storage_option
@click.option("--output", "-o", type=click.Path(), default="report.html", show_default=True)
def report(study: str, storage: str | None, output: str) -> None:
    """Write a self-contained HTML report of STUDY (file or name): plots that open offline."""
    from hpsearch.report import build_report

    Path(output).write_text(build_report(_open(study, storage)), encoding="utf-8")
    click.echo(f"wrote {output}")
