"""Options several commands share, and how a command finds its study: a study file, or a
study name in ``--storage``.

Nothing here imports torch, pydantic or Optuna at import time: ``--help`` and the reading
commands start at once (``tests/cli/test_cli.py`` checks they never load torch).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
import dataclasses
import os
from pathlib import Path
from typing import Any
from typing import TYPE_CHECKING

import click

from hpsearch.cli.app import startup
from hpsearch.errors import ConfigError
from hpsearch.spec.defaults import STORAGE_FILE_ENV

if TYPE_CHECKING:
    import optuna

    from hpsearch.spec.config import TrainConfig
    from hpsearch.spec.studyfile import StudySpec

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

trials_option = click.option("--trials", type=click.IntRange(min=1), help="Override the budget.")
timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds after which a worker starts no new trial, counted from its start; running "
    "ones finish [the file's budget.timeout, else none].",
)
storage_option = click.option(
    "--storage", envvar="HPSEARCH_STORAGE", help="Override the storage URL [$HPSEARCH_STORAGE]."
)
population_option = click.option(
    "--population",
    type=click.IntRange(min=1, max=4096),
    help="Trials a worker trains at once on its device [the study file's, else 1].",
)
precision_option = click.option(
    "--precision",
    type=click.Choice(["fp32", "tf32", "bf16"]),  # spec.choices.PRECISIONS, without pydantic
    help="fp32, tf32 (a CUDA GPU's tensor cores) or bf16 (autocast) [the study file's, "
    "else fp32]; see the README's Speed.",
)
max_same_failures_option = click.option(
    "--max-same-failures",
    type=click.IntRange(min=0),
    default=3,  # hpsearch.study.worker.MAX_SAME_FAILURES, not imported: it would load torch
    show_default=True,
    help="Stop a worker after this many trials in a row fail with the same error (0: never).",
)
format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)


def data_flags(of: str) -> Decorator:
    """``--target``, ``--task``, ``--test`` and ``--drop``: what to learn of the data that
    ``of`` names (``--data`` for ``train``, the argument ``DATA`` for ``init``)."""
    flags = (
        click.option("--target", help=f"The column of {of} to predict (a table)."),
        click.option(
            "--task",
            type=click.Choice(["classification", "regression"]),
            help=f"Of {of} [inferred from the target].",
        ),
        click.option(
            "--test", "test_path", type=click.Path(), help=f"A held-out file of {of}'s layout."
        ),
        click.option(
            "--drop",
            multiple=True,
            metavar="COLUMN[,COLUMN...]",
            help=f"Columns of {of} left out of the inputs (an ID, free text).",
        ),
    )

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for flag in reversed(flags):
            command = flag(command)
        return command

    return decorate


def _set_storage_wait(ctx: click.Context, param: click.Parameter, value: float | None) -> None:
    if value is not None:  # through the environment, so that launched workers wait as long
        from hpsearch.spec.defaults import OUTAGE_WAIT_ENV

        os.environ[OUTAGE_WAIT_ENV] = str(value)


storage_wait_option = click.option(
    "--storage-wait",
    type=click.FloatRange(min=0),
    expose_value=False,
    callback=_set_storage_wait,
    help="Seconds to wait out a storage outage before giving up [$HPSEARCH_STORAGE_WAIT, 300].",
)


def threads_option(default_help: str) -> Decorator:
    """``--threads``, its default described by ``default_help``."""
    return click.option(
        "--threads", type=click.IntRange(min=1), help=f"Torch CPU threads [{default_help}]."
    )


def trial_option(text: str) -> Decorator:
    """``--trial N``, stored as ``number``."""
    return click.option("--trial", "number", type=click.IntRange(min=0), help=text)


def default_storage() -> str:
    """Where studies are stored unless a file or flag says otherwise."""
    from hpsearch.spec.defaults import DEFAULT_STORAGE

    return DEFAULT_STORAGE


def storage_or_file(storage: str | None) -> str | None:
    """``--storage``, else the URL in ``$HPSEARCH_STORAGE_FILE`` (how a Slurm job gets it
    without it being on a command line or in its script)."""
    if storage is None and os.environ.get(STORAGE_FILE_ENV):
        from hpsearch.launch.slurm import read_storage_file

        return read_storage_file(os.environ[STORAGE_FILE_ENV])
    return storage


def with_password(url: str) -> str:
    """The URL a command opens: with the password in ``$HPSEARCH_STORAGE_PASSWORD_FILE`` when
    it names a user and no password (how a container gets it; see the README's Docker)."""
    from hpsearch.storage.urls import with_password_file

    return with_password_file(url)


def load_spec(
    path: str,
    storage: str | None,
    trials: int | None = None,
    population: int | None = None,
    device: str | None = None,
    precision: str | None = None,
    timeout: float | None = None,
) -> StudySpec:
    """The validated study file, with the command line's overrides; a storage URL that no
    storage could open is refused here too, before a command loads torch."""
    from hpsearch.spec.config import make_config
    from hpsearch.spec.studyfile import load_spec as load

    spec = load(path, storage=storage_or_file(storage), trials=trials)
    from hpsearch.storage import check_url  # Optuna, only for a good file

    if population:
        spec = dataclasses.replace(spec, population=population)
    if timeout:
        spec = dataclasses.replace(spec, timeout=timeout)
    overrides = {k: v for k, v in (("device", device), ("precision", precision)) if v}
    if overrides:
        spec = dataclasses.replace(spec, base=make_config(overrides, spec.base))
    check_url(spec.storage)
    return dataclasses.replace(spec, storage=with_password(spec.storage))


def resolve(target: str, storage: str | None) -> tuple[str, str]:
    """A study file, or a study name in ``--storage`` (default: the default SQLite file).

    Reading a study needs only the file's name and storage: the rest is not validated (a
    file edited since may still show its study), which also spares these commands loading
    the validation models.
    """
    if target.endswith((".yaml", ".yml")) or Path(target).is_file():
        from hpsearch.spec.yamlfile import study_location

        found = study_location(target)
        if found is None:  # no usable name: the whole file's problems, worded
            spec = load_spec(target, storage)
            return spec.name, spec.storage
        name, url = found
        return name, storage_url(storage, url)
    return target, storage_url(storage)


def open_targets(targets: Sequence[str], storage: str | None, command: str) -> list[optuna.Study]:
    """The studies a command that reads several names (see :func:`resolve`), opened to read.

    Raises:
        ConfigError: Two of ``targets`` name one study (a file and its study's name, one
            file by two paths).
    """
    from hpsearch.storage.opening import storage_file
    from hpsearch.storage.urls import redact

    named: dict[tuple[str, str], str] = {}
    located = []
    for target in targets:
        name, url = resolve(target, storage)
        file = storage_file(url)
        key = (name, str(file.resolve()) if file else url)
        if key in named:
            raise ConfigError(
                [
                    f"{command}: {named[key]} and {target} are one study "
                    f"({name!r} in {redact(url)}): name each study once"
                ]
            )
        named[key] = target
        located.append((name, url))
    with startup():  # Optuna imported, the studies opened
        from hpsearch.results.reading import open_study

        return [open_study(name, url) for name, url in located]


def storage_url(storage: str | None, file_url: str | None = None) -> str:
    """The storage a command opens: ``--storage``, else ``$HPSEARCH_STORAGE_FILE``'s, else the
    study file's ``file_url``, else the default; with a secret file's password."""
    return with_password(storage_or_file(storage) or file_url or default_storage())


def open_target(target: str, storage: str | None) -> optuna.Study:
    """The study a reading command names (see :func:`resolve`), opened to read."""
    with startup():  # Optuna imported, the study opened
        from hpsearch.results.reading import open_study

        return open_study(*resolve(target, storage))


def build_config(
    config_file: str | None, assignments: tuple[str, ...], **overrides: Any
) -> TrainConfig:
    """A trainer config from ``--config FILE``, ``--set KEY=VALUE`` and named flags."""
    from hpsearch.spec.config import load_config_file
    from hpsearch.spec.config import make_config
    from hpsearch.spec.config import parse_assignment

    base = load_config_file(config_file) if config_file else None
    values = dict(parse_assignment(a) for a in assignments)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return make_config(values, base, source="--set" if assignments else None)


def data_source(
    dataset: str | None,
    path: str | None,
    target: str | None,
    task: str | None,
    test: str | None,
    drop: tuple[str, ...] = (),
    path_flag: str = "--data",
) -> dict[str, Any] | None:
    """``--data PATH --target COLUMN [--task] [--test FILE] [--drop COLUMN]...`` as a data
    source mapping (paths from the working directory), or ``None`` without ``--data``.

    Raises:
        click.UsageError: A data flag without ``--data``, or ``--data`` with ``--dataset``.
        ConfigError: The flags make no data source (a target for a folder of images, a test
            file of another kind), each problem named by its flag (the path's by
            ``path_flag``: ``init`` takes it as its argument ``DATA``).
    """
    if path is None:
        flags = (("--target", target), ("--task", task), ("--test", test), ("--drop", drop))
        given = [f for f, v in flags if v]
        if given:
            raise click.UsageError(f"{', '.join(given)}: only with --data")
        return None
    if dataset is not None:
        raise click.UsageError("--data and --dataset: give one (your data, or a built-in set)")
    source: dict[str, Any] = {
        "path": str(Path(path).expanduser().resolve()),
        "target": target,
        "task": task,
    }
    if test:
        source["test"] = str(Path(test).expanduser().resolve())
    if drop:  # `--drop id,name` as `--drop id --drop name`, like `trials --columns a,b`
        source["drop"] = [c for flag in drop for c in flag.split(",") if c]
    mapping = {k: v for k, v in source.items() if v is not None}
    from hpsearch.spec.config import make_config

    try:
        make_config({"dataset": mapping})
    except ConfigError as e:  # "dataset.target: ..." as "--target: ..."
        raise ConfigError([_as_flag(problem, path_flag) for problem in e.problems]) from e
    return mapping


# the flag of each key of a data source that `--data` builds
_DATA_FLAGS = {
    "dataset.target": "--target",
    "dataset.task": "--task",
    "dataset.test": "--test",
    "dataset.drop": "--drop",
}


def _as_flag(problem: str, path_flag: str) -> str:
    key, _, words = problem.partition(": ")
    flag = path_flag if key == "dataset.path" else _DATA_FLAGS.get(key)
    return f"{flag}: {words}" if flag else f"{path_flag}: {problem}"


def loss_given(config_file: str | None, assignments: tuple[str, ...]) -> bool:
    """Whether ``--config`` or ``--set`` names the loss (else a regression trains with mse)."""
    from hpsearch.spec.yamlfile import read_yaml

    named = {a.partition("=")[0].strip() for a in assignments}
    doc = read_yaml(config_file) if config_file else None
    if isinstance(doc, dict) and isinstance(doc.get("config"), dict):
        doc = doc["config"]
    return "loss" in named or (isinstance(doc, dict) and "loss" in doc)


def cannot_listen(flags: str, host: str, port: int, error: OSError) -> ConfigError:
    """The one line for a dashboard address that cannot be bound, naming the ``flags``."""
    return ConfigError([f"{flags}: cannot listen on {host}:{port}: {error.strerror or error}"])
