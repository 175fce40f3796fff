"""Reading results back out of a study: rows per trial, status summaries, best trials."""

from __future__ import annotations

from collections import Counter
import csv
import io
import json
from typing import Any

import optuna
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from hpsearch.errors import shorten
from hpsearch.errors import StorageError
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


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One flat row per trial: number, state, values, params and the main user attributes."""
    multi = len(study.directions) > 1
    rows = []
    for t in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {"number": t.number, "state": t.state.name}
        values = t.values or []
        if multi:
            row.update({f"value_{i}": v for i, v in enumerate(values)})
        else:
            row["value"] = values[0] if values else t.value
        row.update({f"param.{k}": v for k, v in t.params.items()})
        for key in ("test_accuracy", "train_seconds", "param_count", "worker", "fail_reason"):
            row[key] = t.user_attrs.get(key)
        row["duration_s"] = t.duration.total_seconds() if t.duration else None
        rows.append(row)
    return rows


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return list(columns)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def format_rows(rows: list[dict[str, Any]], fmt: str) -> str:
    """Renders rows as ``table``, ``csv`` or ``json``."""
    if fmt == "json":
        return json.dumps(rows, indent=2, default=str)
    columns = _columns(rows)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue().rstrip("\n")
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def best_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The best trial, or the Pareto front of a multi-objective study (empty if none)."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return []
    return study.best_trials if len(study.directions) > 1 else [study.best_trial]


def status(study: optuna.Study) -> dict[str, Any]:
    """Counts by state, the best trial, time spent and the trial rate."""
    trials = study.get_trials(deepcopy=False)
    counts = Counter(t.state.name for t in trials)
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    wall = (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0
    finished = sum(counts[s] for s in ("COMPLETE", "PRUNED", "FAIL"))
    best = best_trials(study)
    return {
        "study": study.study_name,
        "directions": [d.name.lower() for d in study.directions],
        "trials": len(trials),
        "states": {s: counts.get(s, 0) for s in STATES},
        "best": [
            {
                "number": t.number,
                "values": t.values,
                "params": t.params,
                "test_accuracy": t.user_attrs.get("test_accuracy"),
            }
            for t in best
        ],
        "wall_seconds": wall,
        "trials_per_minute": 60.0 * finished / wall if wall > 0 else None,
        "train_seconds": sum(t.user_attrs.get("train_seconds") or 0.0 for t in trials),
    }
