"""What the command line prints: every table, record and summary goes through here, so the
commands only parse, call and print.

Tables are laid out by :mod:`hpsearch.results.tables` (short names, 4 significant digits,
120 columns; CSV and JSON at full precision); text a study stores (names, reasons) is
printed through :func:`plain`, so it cannot move the cursor or forge a line.
"""

from __future__ import annotations

from collections.abc import Iterable
import dataclasses
import json
import shlex
import sys
from typing import Any
from typing import TYPE_CHECKING

import click

from hpsearch.errors import BROKEN_EXIT
from hpsearch.errors import FAILED_EXIT
from hpsearch.errors import INTERRUPTED_EXIT

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from hpsearch.launch.pool import PoolResult
    from hpsearch.results.compare import Comparison
    from hpsearch.results.repeat import Repeats
    from hpsearch.spec.studyfile import StudySpec
    from hpsearch.study.budget import StopRequest
    from hpsearch.study.drafts import Draft
    from hpsearch.study.lifecycle import Copied
    from hpsearch.study.lifecycle import Plan
    from hpsearch.study.record import TrialRecord
    from hpsearch.study.worker import WorkerStats
    from hpsearch.training.scores import Scores
    from hpsearch.training.trainer import EpochStats
    from hpsearch.training.trainer import TrainResult


def plain(text: str) -> str:
    """Stored text made safe to print (no control characters)."""
    from hpsearch.results.tables import plain as safe

    return safe(text)


def redact(url: str) -> str:
    """A storage URL as messages show it (passwords hidden)."""
    from hpsearch.storage.urls import redact as hide

    return hide(url)


def rows(data: list[dict[str, Any]] | dict[str, Any], fmt: str) -> None:
    """Prints rows (or one record) as a table, CSV or JSON."""
    from hpsearch.results.tables import format_rows

    click.echo(format_rows(data, fmt))


def stream(data: Iterable[dict[str, Any]], columns: list[str], fmt: str) -> None:
    """Prints rows as CSV or JSON as they come (an export of a large study)."""
    from hpsearch.results.tables import stream_rows

    for piece in stream_rows(data, columns, fmt):
        sys.stdout.write(piece)
    if fmt == "json":
        sys.stdout.write("\n")
    sys.stdout.flush()


def table(data: list[dict[str, Any]]) -> None:
    """Prints rows as a table that fits 120 columns, naming the columns it left out."""
    from hpsearch.results.tables import fit_table

    click.echo(fit_table(data))


def best_line(study: optuna.Study) -> str:
    """``best: VALUE (trial N)``, or the size of a Pareto front, for progress lines."""
    from hpsearch.results.reading import best_trials

    best = best_trials(study)
    if not best:
        return "best: none yet"
    if len(study.directions) > 1:
        return f"pareto front: {len(best)} trials"
    return f"best: {best[0].value:.4f} (trial {best[0].number})"


def epoch_line(stats: EpochStats, epochs: int) -> None:
    """One epoch of ``hpsearch train``, on stderr."""
    measured = (
        f"val_rmse {stats.val_rmse:.4g}  val_r2 {stats.val_r2:.4f}"
        if stats.val_rmse == stats.val_rmse  # not NaN: a regression
        else f"val_acc {stats.val_accuracy:.2%}"
    )
    click.echo(
        f"epoch {stats.epoch:>3}/{epochs}  train_loss {stats.train_loss:.4f}  "
        f"val_loss {stats.val_loss:.4f}  {measured}  {stats.seconds:.2f}s",
        err=True,
    )


# a classification's metrics, as `train` and `trial` show them
VAL_CLASSES = ("val_accuracy", "val_balanced_accuracy")
TEST_CLASSES = ("test_accuracy", "test_balanced_accuracy")
_SHORT = {  # short enough for the columns of `train`, `retrain` and `trial`
    "val_balanced_accuracy": "val_bal_acc",
    "val_balanced_accuracy_se": "val_bal_acc_se",
    "test_balanced_accuracy": "test_bal_acc",
}


def shown(metric: str) -> str:
    """A metric's name as a line of ``train``, ``retrain`` or ``trial`` shows it."""
    return _SHORT.get(metric, metric)


def train_result(result: TrainResult) -> None:
    """The final metrics of ``hpsearch train`` (a regression's in the target's units)."""
    final = result.final
    click.echo(f"outcome        {result.outcome}")
    regression = result.task == "regression"
    if final is not None:
        for key in ("val_rmse", "val_mae", "val_r2") if regression else VAL_CLASSES:
            click.echo(f"{shown(key):<15}{getattr(final, key):.4f}")
        click.echo(f"val_loss       {final.val_loss:.4f}")
    tests = ("test_rmse", "test_mae", "test_r2") if regression else TEST_CLASSES
    for key in (*tests, "test_loss"):
        if (value := getattr(result, key)) is not None:
            click.echo(f"{shown(key):<15}{value:.4f}")
    click.echo(f"params         {result.param_count}")
    click.echo(f"train_seconds  {result.train_seconds:.2f}")
    click.echo(f"device         {result.device}")


CONFUSION_CLASSES = 20  # a larger confusion matrix is left to --format json


def scores(result: Scores, fmt: str) -> None:
    """What ``hpsearch evaluate`` prints: the metrics, each class's recall and precision,
    the confusion matrix and the worst answers (as tables); or all of it as JSON."""
    from hpsearch.results.tables import format_rows
    from hpsearch.results.tables import significant

    if fmt == "json":
        click.echo(format_rows(dataclasses.asdict(result), "json"))
        return
    about = result.model
    origin = f": trial {about['trial']} of study {plain(str(about['study']))}"
    click.echo(f"model      {about.get('file', '')}{origin if about['study'] else ''}")
    click.echo(f"data       {plain(result.source)}: {result.examples} examples")
    m = significant(result.metrics)
    if result.task == "regression":
        for key in ("rmse", "mae", "r2"):
            click.echo(f"{key:<11}{m[key]}")
    else:
        click.echo(f"accuracy   {m['accuracy']}  (standard error {m['accuracy_se']})")
        click.echo(f"bal_acc    {m['balanced_accuracy']}")
        click.echo(f"log_loss   {m['log_loss']}")
    if result.recorded and result.test_split:
        metrics = significant(result.recorded).items()
        saved = ", ".join(f"{shown(k)} {v}" for k, v in metrics)
        click.echo(f"recorded   {saved} (when it was saved)")
    if result.classes:
        click.echo("")
        click.echo(format_rows(significant(result.classes), "table"))
    _confusion(result)
    if result.mistakes:
        listed = len(result.mistakes)
        worst = (
            f"the {listed} largest errors:"
            if result.task == "regression"
            else f"{result.wrong} of {result.examples} wrong; the {listed} most confident:"
        )
        click.echo(f"\n{worst}")
        rows = [
            {k: plain(v) if isinstance(v, str) else v for k, v in r.items()}
            for r in result.mistakes
        ]
        click.echo(format_rows(significant(rows), "table"))


def repeats(found: Repeats, fmt: str) -> None:
    """What ``hpsearch repeat`` prints: each trial's value over its seeds, ranked by the
    mean, and where the study's best ranks now."""
    from hpsearch.results.tables import format_rows
    from hpsearch.results.tables import significant

    test = shown(f"test_{found.score}")
    rows: list[dict[str, Any]] = [
        {
            "trial": r.number,
            "stored": r.stored,
            "mean": r.mean,
            "sd": r.sd,
            test: r.test_mean,
            f"{test}_sd": r.test_sd,
            "seeds": list(r.seeds),
            f"{found.metric}_by_seed": list(r.values),
        }
        for r in found.trials
    ]
    if fmt != "table":
        click.echo(format_rows(rows, fmt))
        return
    for row, r in zip(rows, found.trials, strict=True):  # the seeds named once, below
        values = ", ".join("diverged" if v is None else f"{v:.4g}" for v in r.values)
        row[f"{found.metric}_by_seed"] = values
        del row["seeds"]
    click.echo(format_rows(significant(rows), "table"))
    seeds = {r.seeds for r in found.trials}
    over = (
        f"seeds {', '.join(map(str, found.trials[0].seeds))}"
        if len(seeds) == 1
        else f"{len(found.trials[0].seeds)} seeds each (a trial's own, then the next)"
    )
    first = found.trials[0].number
    rank = [r.number for r in found.trials].index(found.best) + 1
    where = (
        f"the study's best, trial {found.best}, stays first"
        if first == found.best
        else f"trial {first} ranks first; the study's best, trial {found.best}, ranks {rank}"
    )
    click.echo(f"ranked by the mean {found.metric} over {over}: {where}")


def _confusion(result: Scores) -> None:
    from hpsearch.results.tables import format_rows

    if not result.confusion:
        return
    if len(result.confusion) > CONFUSION_CLASSES:
        click.echo(f"\nconfusion matrix: {len(result.confusion)} classes; --format json holds it")
        return
    names = [plain(str(c["class"])) for c in result.classes]
    click.echo("\nconfusion matrix: a row per class, a column per answer")
    rows = [
        {"class": name, **dict(zip(names, counts, strict=True))}
        for name, counts in zip(names, result.confusion, strict=True)
    ]
    click.echo(format_rows(rows, "table"))


def best_trials(study: optuna.Study, trials: list[FrozenTrial]) -> None:
    """Each trial's values, test accuracy and params, as ``run`` and ``best`` show them."""
    from hpsearch.results.tables import significant
    from hpsearch.study.record import records
    from hpsearch.study.record import scoring

    score = scoring(study).score
    for t in records(study, trials):
        values = ", ".join(f"{v:.4g}" for v in t.values or ())
        test = t.test_score(score)
        click.echo(
            f"  trial {t.number}: values [{values}]"
            + (f"  test_{score} {test:.4g}" if test is not None else "")
        )
        for key, value in significant(dict(t.params)).items():
            click.echo(f"    {key}: {value}")


def start_with(study: optuna.Study, trials: list[FrozenTrial]) -> None:
    """The trials as a study file's ``start_with:``, one flow mapping a line, values whole."""
    import yaml

    from hpsearch.results.reading import known_points

    numbers = ", ".join(str(t.number) for t in trials)
    click.echo(f"start_with:  # study {study.study_name}, trials {numbers}")
    for point in known_points(study, trials):
        line = yaml.safe_dump(point, default_flow_style=True, sort_keys=False, width=1 << 20)
        click.echo(f"  - {line.strip()}")


def comparison(found: Comparison, fmt: str) -> None:
    """What ``hpsearch compare`` prints: a study a row, best first, then what the rows
    cannot say (the common level, the winner's noise)."""
    from hpsearch.results.compare import notes
    from hpsearch.results.compare import rows as compared_rows
    from hpsearch.results.tables import format_rows
    from hpsearch.results.tables import significant

    data = compared_rows(found)
    if fmt != "table":
        click.echo(format_rows(data, fmt))
        return
    click.echo(format_rows(significant(data), "table"))
    for line in notes(found):
        click.echo(plain(line))


def noise(study: optuna.Study) -> None:
    """Says whether the best trial stands out of the validation set's noise."""
    from hpsearch.results.reading import selection_noise

    found = selection_noise(study)
    if found is None:
        return
    on = f" on {found.val_size} validation {found.examples}" if found.val_size else ""
    se = f"one standard error ({found.standard_error:.2g}{on})"
    if len(found.within) > 1:
        others = ", ".join(str(n) for n in found.within[1:])
        click.echo(
            f"noise: trials {others} are within {se} of the best {found.metric} "
            f"{found.value:.4g}: which of these is best is chance; compare them on more data "
            f"(a larger fixed: val_fraction, or the test_{found.score} above)"
        )
    else:
        click.echo(f"noise: the best is ahead of the next trial by more than {se}")


def edges(trial: FrozenTrial) -> None:
    """Says which of the best trial's parameters lie at an end of their range."""
    from hpsearch.results.reading import range_edges

    for edge in range_edges(trial):
        space = edge.param.split(".")[0]
        click.echo(f"edge: {edge}: better values may lie beyond it (widen space.{space})")


def exit_if_failing(stats: WorkerStats, study_file: str) -> None:
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
        sys.exit(FAILED_EXIT)


def status(info: dict[str, Any]) -> None:
    """``hpsearch status`` as text (see :func:`hpsearch.results.reading.status`)."""
    from hpsearch.results.tables import significant

    states = "  ".join(f"{k.lower()} {v}" for k, v in info["states"].items())
    click.echo(f"study       {plain(info['study'])} ({', '.join(info['directions'])})")
    click.echo(f"trials      {info['trials']}: {states}")
    rate = info["trials_per_minute"]
    click.echo(
        f"time        {info['wall_seconds']:.1f}s wall, {info['train_seconds']:.1f}s "
        f"training" + (f", {rate:.1f} trials/min" if rate else "")
    )
    request = info.get("stop")
    if request is not None:
        running = info["states"].get("RUNNING", 0)
        click.echo(
            f"stopping    {plain(request['reason'])}"
            + (f"; running trials: {running}" if running else "")
            + "; run, launch or create the study to go on"
        )
    if info.get("ended"):
        click.echo(f"ended       {plain(info['ended'])}: {LOOSEN}")
    jobs = info.get("slurm")
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
        tests = "  ".join(f"{k} {v}" for k, v in one.items() if k.startswith("test_"))
        click.echo(f"best        trial {one['number']}: {one['values']}  {tests}")
        click.echo(f"params      {json.dumps(one['params'])}")


def trial_record(record: TrialRecord) -> None:
    """``hpsearch trial`` as text: everything stored of one trial."""
    doc = dataclasses.asdict(record)
    for key in ("number", "state", "values", "outcome", "worker", "device", "host", "threads"):
        click.echo(f"{key:<14} {plain(str(doc[key]))}")
    regression = ("test_r2", "test_rmse", "test_mae")
    tests = regression if any(doc[k] is not None for k in regression) else TEST_CLASSES
    for key in (*tests, "train_seconds", "duration_s", "param_count"):
        click.echo(f"{shown(key):<14} {doc[key]}")
    click.echo(f"params         {json.dumps(doc['params'])}")
    if record.config:
        click.echo(f"config         {json.dumps(doc['config'])}")
    for metric, curve in record.curves.items():
        click.echo(f"{shown(metric):<14} {json.dumps(curve)}")
    if record.fail_reason:
        click.echo(f"fail_reason    {plain(record.fail_reason.splitlines()[0])}")
    if record.traceback:
        click.echo(record.traceback.rstrip())


class Progress:
    """A progress bar of budget trials on stderr, its last words the best trial so far."""

    def __init__(self, total: int, initial: int = 0, hidden: bool = False) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=total,
            initial=min(initial, total),
            unit="trial",
            disable=hidden,
            file=sys.stderr,
            dynamic_ncols=True,
        )

    def show(self, done: int | None, study: optuna.Study, more: str = "") -> None:
        """``done`` budget trials finished (``None``: one more), with the best and ``more``."""
        if done is None:
            self._bar.update(1)
        else:
            self._bar.n = min(done, self._bar.total)
        self._bar.set_postfix_str(best_line(study) + (f"; {more}" if more else ""), refresh=True)

    def close(self) -> None:
        self._bar.close()


def launch_result(result: PoolResult, study: optuna.Study, study_file: str | None) -> None:
    """How a local launch ended, and its exit status when it did not reach its budget."""
    click.echo(f"{result.finished}/{result.budget} trials finished; {best_line(study)}")
    for line in result.failures:
        click.echo(f"worker failure: {line}", err=True)
    if result.interrupted:
        click.echo("interrupted: every worker stopped; run the same command to resume", err=True)
        sys.exit(INTERRUPTED_EXIT)
    if result.all_failed:
        click.echo(
            f"error: every trial of this launch failed; see `hpsearch trials {study_file}` "
            "and the worker logs",
            err=True,
        )
        sys.exit(FAILED_EXIT)
    if not result.ok and result.stopped:
        click.echo(stopped_line(result.stopped, result.budget - result.finished), err=True)
    elif not result.ok and result.timed_out:
        click.echo(timed_out_line(result.budget - result.finished, "launch"), err=True)
    elif not result.ok:
        click.echo("the budget was not reached: see the worker logs above", err=True)
        sys.exit(FAILED_EXIT)


LOOSEN = "loosen it in the study file to go on"


def stopped_line(reason: str, left: int) -> str:
    """What a study that ended before its budget (``budget.target``, ``budget.plateau`` or
    ``hpsearch stop``) says."""
    from hpsearch.study.budget import asked

    queued = f"; {left} trials of the budget left" if left > 0 else ""
    how = "run the same command again to go on" if asked(reason) else LOOSEN
    return f"stopped early: {reason}{queued}: {how}"


def stop_lines(name: str, request: StopRequest, running: int, cancelled: list[str]) -> list[str]:
    """What ``hpsearch stop`` says it asked, and the Slurm jobs whose pending tasks it
    cancelled."""
    if not running:
        now = "no trial is running"
    elif request.now:
        now = f"its running trials ({running}) stop at their next epoch end, queued again"
    else:
        now = f"its running trials ({running}) finish first (`--now`: stop them too)"
    jobs = (
        [f"cancelled the pending tasks of Slurm job {', '.join(cancelled)}"] if cancelled else []
    )
    return [
        f"asked every worker of study {plain(name)!r} to stop: {now}",
        *jobs,
        "workers that join it later stop at once, until `hpsearch run`, `launch` or `create` "
        "starts it again",
    ]


def timed_out_line(left: int, command: str) -> str:
    """What a study that its timeout stopped short of its budget says."""
    return (
        f"the timeout stopped starting trials with {left} of the budget left; {command} again "
        "to go on"
    )


def start_line(spec: StudySpec, queued: int) -> str:
    """A study's first line when it starts: where it is, its sampler and budget, and what
    starting it queued (or took off the queue: see :func:`hpsearch.study.lifecycle.top_up`)."""
    change = (
        f"{-queued} queued trials beyond it taken off the queue"
        if queued < 0
        else f"{queued} trials queued now"
    )
    return (
        f"study {spec.name} in {redact(spec.storage)}: sampler {spec.sampler}, "
        f"budget {spec.budget()}, {change}"
    )


def copied_lines(source: str, url: str, to: str, copied: Copied) -> list[str]:
    """``hpsearch copy``'s summary: what went where, the running trials it queued again, and
    how to resume the copy (see :func:`hpsearch.study.lifecycle.copy_study`)."""
    name = copied.study.study_name
    renamed = f" as {plain(name)}" if name != source else ""
    lines = [
        f"copied study {plain(source)} ({copied.trials} trials) from {redact(url)} to "
        f"{redact(to)}{renamed}"
    ]
    if copied.requeued:
        numbers = ", ".join(map(str, copied.requeued))
        lines.append(
            f"  trials {numbers} were running in the source: failed in the copy and queued "
            "again there (their workers still write to the source)"
        )
    file_name = f" with `name: {plain(name)}`" if renamed else ""
    lines.append(
        f"resume it there: the study file{file_name} and --storage URL (or its `storage:`); "
        "the source is as it was"
    )
    return lines


def drafted_lines(
    path: str, draft: Draft, spec: StudySpec, stored: int | None = None
) -> list[str]:
    """``hpsearch init``'s summary: the data as the study will read it, the ID columns left
    out, what the file declares, a study of its name its storage holds already (``stored``
    trials), and the commands that come next."""
    from hpsearch.study.lifecycle import data_line

    line = data_line(spec)
    lines = [line] if line else []
    if draft.ids:
        named = ", ".join(map(repr, draft.ids))
        counts = "numbers" if len(draft.ids) == 1 else "number"
        lines.append(f"left out {named}: {counts} the rows (each whole number once), an ID")
    goals = ", ".join(f"{o.metric} ({o.direction})" for o in spec.objectives)
    lines += [
        f"wrote {path}: study {spec.name}, TPE over {len(spec.space.params)} params, "
        f"{spec.budget()} trials, median pruning, objective {goals}",
        f"next: hpsearch check {shlex.quote(path)}, then hpsearch run {shlex.quote(path)}",
    ]
    if stored is not None:
        lines.insert(
            -1,
            f"note: {redact(spec.storage)} holds a study {spec.name} already ({stored} trials): "
            "a run resumes it only if this file defines it as it was (check says); --name "
            "starts another",
        )
    return lines


def _points(n: int) -> str:
    return f"{n} start_with point{'s' if n > 1 else ''}"


def check_lines(spec: StudySpec, plan: Plan) -> list[str]:
    """``hpsearch check`` as text: the search, its space, data and storage, and what a start
    would queue there (see :func:`hpsearch.study.lifecycle.plan`)."""
    from hpsearch.study.lifecycle import data_line as line_of

    limits = (
        f"budget {spec.budget()} trials"
        + (f", timeout {spec.timeout:g} s" if spec.timeout else "")
        + (f", target {spec.target:g}" if spec.target is not None else "")
        + (f", plateau {spec.plateau}" if spec.plateau else "")
        + (f", {spec.trial_timeout:g} s a trial" if spec.trial_timeout else "")
        + (f", at most {spec.max_params:,} params" if spec.max_params else "")
    )
    names = [p.name for p in spec.space.params]
    points = f"; {len(spec.points())} points" if spec.is_finite else ""
    data = line_of(spec) or f"data {spec.base.dataset} (built-in)"
    first = f" ({_points(plan.starts)} first)" if plan.starts else ""
    if plan.left:
        first += f"; {_points(plan.left)} not: the budget has no room (--trials raises it)"
    if plan.counts is None:
        stored = (
            f"{redact(spec.storage)}: no study {spec.name} yet; a start creates it and queues "
            f"{plan.change} trials{first}"
        )
    else:
        states = ", ".join(f"{k.lower()} {v}" for k, v in plan.counts.states.items())
        stored = (
            f"{redact(spec.storage)} holds study {spec.name}: "
            f"{sum(plan.counts.states.values())} trials" + (f" ({states})" if states else "")
        )
        if plan.change < 0:
            stored += f"; a start takes {-plan.change} queued trials beyond the budget off"
        else:
            stored += f"; a start queues {plan.change or 'no'} more{first}"
        if plan.request:
            stored += f"; a start withdraws the stop request ({plan.request.reason})"
        if plan.stopped:
            stored += f"; it ends at once: {plan.stopped}"
    under = f" on top of {', then '.join(spec.bases)} (extends:)" if spec.bases else ""
    return [
        *([f"file      {spec.path}{under}"] if under else []),
        f"search    sampler {spec.sampler}, pruner {spec.pruner}, {limits}, "
        f"population {spec.population}",
        f"space     {len(names)} params: {', '.join(names)}{points}",
        f"data      {data.removeprefix('data ')}",
        f"storage   {stored}",
    ]


def data_line(spec: StudySpec, nodes: bool = False) -> None:
    """A user's data set, its task and its split sizes (nothing for a built-in one); with
    ``nodes``, that Slurm's nodes read its files at the same path."""
    from hpsearch.study.lifecycle import data_line as line_of

    line = line_of(spec)
    if line is not None:
        click.echo(line + ("; every node reads it at this path" if nodes else ""), err=True)
