"""Reading results back out of a study: the Python API behind the reading commands.

Everything ``hpsearch studies``, ``status``, ``trials``, ``trial``, ``best``, ``retrain`` and
``delete`` do is a function here that the command line calls and prints, so a notebook can
do the same (see the README's "From Python")::

    from hpsearch.results import open_study, status, best_trials, write_best_config
    study = open_study("quickstart", "sqlite:///hpsearch.db")
    print(status(study)["best"])
"""

from __future__ import annotations

from collections import Counter
import csv
from dataclasses import dataclass
import fnmatch
import io
import json
import math
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial
from optuna.trial import TrialState
import yaml

from hpsearch import internals
from hpsearch.errors import ConfigError
from hpsearch.errors import shorten
from hpsearch.errors import StorageError
from hpsearch.record import base_config
from hpsearch.record import best_first
from hpsearch.record import records
from hpsearch.record import study_summary
from hpsearch.record import TRAIN_SECONDS
from hpsearch.record import TrialRecord
from hpsearch.storage import open_storage
from hpsearch.storage import redact

STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


def open_study(name: str, url: str, read_only: bool = True) -> optuna.Study:
    """Opens an existing study, by default for reading (see :func:`open_storage`).

    Raises:
        StorageError: The storage cannot be opened (a SQLite file that does not exist) or
            holds no such study.
    """
    storage = open_storage(url, read_only=read_only)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError as e:
        names = [repr(s.study_name) for s in optuna.get_all_study_summaries(storage)]
        known = f"; studies there: {', '.join(names)}" if names else "; it holds no study"
        raise StorageError(f"no study {shorten(name)} in {redact(url)}{known}") from e


def study_rows(url: str) -> list[dict[str, Any]]:
    """One row per study in a storage: name, trial count, directions and best values."""
    summaries = optuna.get_all_study_summaries(open_storage(url, read_only=True))
    return [
        {
            "study": s.study_name,
            "trials": s.n_trials,
            "directions": ",".join(d.name.lower() for d in s.directions),
            "best": None if s.best_trial is None else s.best_trial.values,
        }
        for s in summaries
    ]


def trial_rows(
    study: optuna.Study, trials: list[FrozenTrial] | None = None
) -> list[dict[str, Any]]:
    """One flat row per trial: number, state, values, params and the main metrics.

    Args:
        study: The study.
        trials: Only these trials, in this order (default: all, by number).
    """
    multi = len(study.directions) > 1
    rows = []
    for r in records(study, study.get_trials(deepcopy=False) if trials is None else trials):
        row: dict[str, Any] = {"number": r.number, "state": r.state}
        values = r.values or ()
        if multi:
            row.update({f"value_{i}": v for i, v in enumerate(values)})
        else:
            row["value"] = values[0] if values else None
        row.update({f"param.{k}": v for k, v in r.params.items()})
        row.update(
            test_accuracy=r.test_accuracy,
            train_seconds=r.train_seconds,
            param_count=r.param_count,
            worker=r.worker,
            fail_reason=(r.fail_reason or "").splitlines()[0] if r.fail_reason else None,
            duration_s=r.duration_s,
        )
        rows.append(row)
    return rows


SORT_VALUE = "value"  # sorts by the first objective, best first


def sorted_trials(
    study: optuna.Study, sort: str = SORT_VALUE, top: int | None = None
) -> list[FrozenTrial]:
    """The study's trials in the order a table shows them, the first ``top`` only.

    ``value`` sorts the completed trials by the first objective, best first, then the others
    by number; ``number`` by number; any other key is a column of :func:`trial_rows` (such as
    ``param.lr`` or ``duration_s``), ascending, trials without it last. The best ``top`` by
    value are read directly, without loading the rest of a large study.

    Raises:
        ConfigError: ``sort`` names no column.
    """
    if sort == SORT_VALUE and top is not None:
        best = internals.top_trials(study, top)
        if len(best) == top:
            return best
    trials = study.get_trials(deepcopy=False)
    if sort == SORT_VALUE:
        # A pruned trial's value is its last report, not a result: it is not ranked.
        done, rank = TrialState.COMPLETE, best_first(study.directions)
        trials.sort(key=lambda t: (t.state != done, rank(t) if t.state == done else 0))
    elif sort != "number":
        rows = {r["number"]: r for r in trial_rows(study, trials)}
        columns = _columns(list(rows.values()))
        column = resolve_column(sort, columns)
        if column is None:
            known = ", ".join(dict.fromkeys([SORT_VALUE, *columns]))
            raise ConfigError([f"--sort {shorten(sort)}: no such column; columns: {known}"])
        trials.sort(key=lambda t: _sort_key(rows[t.number].get(column)))
    return trials if top is None else trials[:top]


def select_columns(rows: list[dict[str, Any]], columns: str) -> list[dict[str, Any]]:
    """Rows cut to ``columns`` (comma-separated), in that order.

    Raises:
        ConfigError: A column that no row has.
    """
    wanted = [c.strip() for c in columns.split(",") if c.strip()]
    known = _columns(rows)
    resolved = {c: resolve_column(c, known) for c in wanted}  # once, not once per row
    unknown = [c for c, full in resolved.items() if full is None and rows]
    if unknown:
        names = ", ".join(map(shorten, unknown))
        raise ConfigError([f"--columns: no column {names}; columns: {', '.join(known)}"])
    return [{c: r.get(resolved[c] or c) for c in wanted} for r in rows]


TABLE_WIDTH = 120  # characters the default ``trials`` table fits in

# How tables and plot axes shorten long names (always the same way, listed under a table).
ABBREVIATIONS = {
    "activation": "act",
    "optimizer": "optim",
    "weight_decay": "wd",
    "label_smoothing": "smoothing",
    "test_accuracy": "test_acc",
    "train_seconds": "train_s",
    "param_count": "n_params",
}

# The default table's columns in the order they are given room; the rest are listed below it.
_PRIORITY = ("number", "state", "value", "value_*", "param.*", "test_accuracy", "train_seconds")
_FLEXIBLE = "fail_reason"  # cut to the width left, after the columns above
_MIN_FLEXIBLE = 16


def short_name(name: str) -> str:
    """A column's or parameter's name as tables and plot axes show it: no ``param.`` or
    other dotted prefix (``param.hidden_layers.width_1`` is ``width_1``), and the long
    trainer settings abbreviated as :data:`ABBREVIATIONS` says."""
    last = name.rsplit(".", 1)[-1]
    return ABBREVIATIONS.get(last, last)


def short_names(columns: list[str]) -> dict[str, str]:
    """:func:`short_name` of each column, or its full name where two would collide."""
    counts = Counter(short_name(c) for c in columns)
    return {c: short_name(c) if counts[short_name(c)] == 1 else c for c in columns}


def resolve_column(name: str, columns: list[str]) -> str | None:
    """The column ``name`` stands for: itself, or the column it is the short name of."""
    if name in columns:
        return name
    full = [c for c, short in short_names(columns).items() if short == name]
    return full[0] if len(full) == 1 else None


def fit_table(rows: list[dict[str, Any]], width: int = TABLE_WIDTH) -> str:
    """``rows`` as a table at most ``width`` characters wide: the number, state and values,
    then the params, then metrics while they fit, a failure reason cut to the room left;
    short column names (:func:`short_names`), and a note of what was left out."""
    present = [c for c in _columns(rows) if any(r.get(c) not in (None, "") for r in rows)]
    names = short_names(present)
    ordered = [c for pattern in _PRIORITY for c in present if fnmatch.fnmatch(c, pattern)]
    chosen: list[str] = []
    used = -2
    for column in ordered:
        need = max([len(names[column])] + [len(_cell(r.get(column))) for r in rows]) + 2
        if used + need > width:
            break
        chosen.append(column)
        used += need
    room = width - used - 2
    cut = _FLEXIBLE in present and room >= _MIN_FLEXIBLE
    if cut:
        chosen.append(_FLEXIBLE)
    table = [
        {names[c]: _cut(_cell(r.get(c)), room) if c == _FLEXIBLE else r.get(c) for c in chosen}
        for r in rows
    ]
    notes = []
    hidden = [c for c in present if c not in chosen]
    if hidden:
        notes.append(f"not shown: {', '.join(hidden)} (--columns, or --format csv for all)")
    abbreviated = sorted(
        f"{names[c]}={last}" for c in chosen if names[c] != (last := c.rsplit(".", 1)[-1])
    )
    if abbreviated:
        notes.append(f"short names: {', '.join(abbreviated)}")
    return "\n".join([format_rows(table, "table"), *notes])


def _cut(text: str, room: int) -> str:
    return text if len(text) <= room else text[: room - 1] + "…"


def significant(value: Any, digits: int = 4) -> Any:
    """``value`` with its floats, at any depth, rounded to ``digits`` significant digits (as
    tables and status lines show them; csv and json keep full precision)."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}") if math.isfinite(value) else value
    if isinstance(value, dict):
        return {k: significant(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [significant(v, digits) for v in value]
    return value


def _sort_key(value: Any) -> tuple[bool, Any]:
    # None last; numbers and strings apart (a column holds one kind, a categorical may not)
    if value is None:
        return (True, ("", 0.0))
    return (False, ("", float(value)) if isinstance(value, int | float) else (str(value), 0.0))


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return list(columns)


def plain(text: str) -> str:
    """Text from a database, quoted if it holds control characters (a name with a newline
    must not forge a line of output)."""
    return text if text.isprintable() else repr(text)


def _cell(value: Any, exact: bool = False) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if exact else f"{value:.4g}"  # csv: full precision
    return plain(value if isinstance(value, str) else json.dumps(value))


def format_rows(rows: list[dict[str, Any]] | dict[str, Any], fmt: str) -> str:
    """Renders rows (or one record) as ``table``, ``csv`` or ``json``: the one formatter of
    every command."""
    if fmt == "json":
        return json.dumps(json_safe(rows), indent=2, default=str)
    if isinstance(rows, dict):
        rows = [rows]
    columns = _columns(rows)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows([{c: _cell(r.get(c), exact=True) for c in columns} for r in rows])
        return out.getvalue().rstrip("\n")
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as ``null`` (JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def best_trials(study: optuna.Study, top: int = 1) -> list[FrozenTrial]:
    """The best trial (the ``top`` best), or the Pareto set of a multi-objective study, best
    first by its first objective (empty if none).

    The best trials of a single objective are read directly (one ordered query on a
    database), not found among every trial.
    """
    if len(study.directions) == 1:
        return internals.top_trials(study, top)
    rank = best_first(study.directions)
    return sorted(study.best_trials, key=lambda t: (rank(t), t.number))


@dataclass(frozen=True)
class Noise:
    """How far apart the best trials are, measured in the validation set's noise.

    Attributes:
        metric: The objective's metric.
        value: The best trial's value.
        standard_error: Of that value: the spread another draw of as many validation
            images would give (see :meth:`hpsearch.record.TrialRecord.standard_error`).
        val_size: Validation images the value was measured on.
        within: Numbers of the trials (of the best :data:`NOISE_TOP`) within one standard
            error of the best, the best first: more than one means their order is chance.
    """

    metric: str
    value: float
    standard_error: float
    val_size: int | None
    within: tuple[int, ...]


NOISE_TOP = 20  # trials compared with the best


def selection_noise(study: optuna.Study) -> Noise | None:
    """Which of the best trials are within one standard error of the best; ``None`` when it
    cannot be told (several objectives, a metric without one, trials stored without it)."""
    summary = study_summary(study)
    if len(study.directions) != 1 or summary is None or not summary.metrics:
        return None
    top = records(study, internals.top_trials(study, NOISE_TOP))
    if not top or not top[0].values:
        return None
    value = top[0].values[0]
    se = top[0].standard_error(summary.metrics[0], value)
    if se is None:
        return None
    within = tuple(t.number for t in top if t.values and abs(t.values[0] - value) <= se)
    return Noise(summary.metrics[0], value, se, top[0].val_size, within)


def require_best(study: optuna.Study) -> list[FrozenTrial]:
    """:func:`best_trials`, or an error when nothing has completed yet.

    Raises:
        ConfigError: The study has no completed trial.
    """
    trials = best_trials(study)
    if not trials:
        raise ConfigError([f"study {study.study_name!r} has no completed trial yet"])
    return trials


def trial_record(study: optuna.Study, number: int) -> TrialRecord:
    """The stored record of one trial, by number (its traceback included).

    Raises:
        ConfigError: The study has no trial of that number.
    """
    try:
        trial = internals.trial_by_number(study, number)
    except KeyError:
        count = sum(internals.trial_counts(study).states.values())
        raise ConfigError(
            [f"study {study.study_name!r} has no trial {number} (0-{count - 1})"]
        ) from None
    return TrialRecord.from_trial(trial, base_config(study))


def status(study: optuna.Study) -> dict[str, Any]:
    """Counts by state, the best trial, time spent and the trial rate: a few small queries,
    however many trials the study has."""
    counts = internals.trial_counts(study)
    states = counts.states
    first, last = counts.first_start, counts.last_complete
    wall = (last - first).total_seconds() if first and last else 0.0
    finished = counts.finished
    return {
        "study": study.study_name,
        "directions": [d.name.lower() for d in study.directions],
        "trials": sum(states.values()),
        "states": {s: states.get(s, 0) for s in STATES},
        "best": [
            {
                "number": r.number,
                "values": list(r.values or ()),
                "params": dict(r.params),
                "test_accuracy": r.test_accuracy,
            }
            for r in records(study, best_trials(study))
        ],
        "wall_seconds": wall,
        "trials_per_minute": 60.0 * finished / wall if wall > 0 else None,
        "train_seconds": internals.user_attr_sum(study, TRAIN_SECONDS),
    }


def best_config(study: optuna.Study, number: int | None = None) -> dict[str, Any]:
    """The best trial's resolved trainer config, with where it came from: the document
    ``hpsearch train --config`` reads.

    Args:
        study: The study.
        number: This completed trial's config instead; required when the study has several
            objectives and its Pareto set more than one trial.

    Raises:
        ConfigError: The study has no completed trial; ``number`` is not a completed trial;
            or it is needed and missing.
    """
    best = chosen_trial(study, number)
    return {
        "study": study.study_name,
        "trial": best.number,
        "values": list(best.values or ()),
        "config": dict(best.config or {}),
    }


def write_best_config(study: optuna.Study, path: str | Path, number: int | None = None) -> Path:
    """Writes :func:`best_config` as YAML; returns the path."""
    out = Path(path)
    out.write_text(yaml.safe_dump(best_config(study, number), sort_keys=False))
    return out


def chosen_trial(study: optuna.Study, number: int | None = None) -> TrialRecord:
    """The record of the best trial, or of completed trial ``number``.

    Raises:
        ConfigError: No completed trial; ``number`` is not one; or ``number`` is missing
            where a Pareto set of several trials leaves the choice to the user.
    """
    best = require_best(study)
    if number is None:
        if len(best) > 1:
            members = ", ".join(str(t.number) for t in best)
            raise ConfigError(
                [
                    f"study {study.study_name!r}: its Pareto set has {len(best)} trials "
                    f"({members}); choose one with --trial N"
                ]
            )
        return TrialRecord.from_trial(best[0], base_config(study))
    found = trial_record(study, number)
    if found.state != "COMPLETE":
        raise ConfigError(
            [f"study {study.study_name!r}: trial {number} is {found.state}, not COMPLETE"]
        )
    return found


@dataclass(frozen=True)
class Retrained:
    """What :func:`retrain_best` wrote.

    Attributes:
        trial: The number of the retrained trial.
        result: The training result as a dict (``hpsearch.trainer.TrainResult.to_dict``).
        files: The model, its config and the result, in that order.
    """

    trial: int
    result: dict[str, Any]
    files: tuple[Path, ...]


def retrain_best(study: optuna.Study, output: str | Path, number: int | None = None) -> Retrained:
    """Trains the best configuration (or completed trial ``number``'s) on training +
    validation data and saves the model (``model.pt``: self-describing, see
    :func:`hpsearch.load_model`), its config and its result (``config.yaml``,
    ``result.json``) in ``output``.

    Raises:
        ConfigError: As :func:`chosen_trial`.
    """
    # torch only here: reading results must not load it
    from hpsearch.config import make_config
    from hpsearch.predict import MODEL_FILE
    from hpsearch.predict import save_model
    from hpsearch.trainer import fit
    from hpsearch.trainer import load_data
    from hpsearch.trainer import resolve_device

    best = chosen_trial(study, number)
    config = make_config({"val_fraction": 0.0}, make_config(best.config or {}))
    result, model = fit(config)
    data = load_data(config, resolve_device(config.device))  # cached: its preprocessing
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    files = (out / MODEL_FILE, out / "config.yaml", out / "result.json")
    save_model(
        model,
        config.to_dict(),
        data.preprocessing,
        data.num_features,
        data.num_classes,
        files[0],
        metrics={"test_accuracy": result.test_accuracy, "test_loss": result.test_loss},
        origin={"study": study.study_name, "trial": best.number},
    )
    files[1].write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    files[2].write_text(json.dumps(json_safe(result.to_dict()), indent=2))
    return Retrained(best.number, result.to_dict(), files)


def delete_study(study: optuna.Study) -> None:
    """Deletes a study and all its trials from its storage."""
    optuna.delete_study(study_name=study.study_name, storage=internals.storage_of(study))
