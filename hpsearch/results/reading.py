"""Reading results back out of a study: the Python API behind the reading commands.

Everything ``hpsearch studies``, ``status``, ``trials``, ``trial`` and ``best`` do is a
function here that the command line calls and prints, so a notebook can do the same (see the
README's "From Python")::

    from hpsearch.results.reading import open_study, status, best_trials, write_best_config
    study = open_study("quickstart", "sqlite:///hpsearch.db")
    print(status(study)["best"])
"""

from __future__ import annotations

from collections.abc import Collection
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
import math
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial
from optuna.trial import TrialState
import yaml

from hpsearch import files
from hpsearch import storage as db
from hpsearch.errors import ConfigError
from hpsearch.errors import shorten
from hpsearch.errors import StorageError
from hpsearch.launch.slurm import job_summary
from hpsearch.results.tables import columns_of
from hpsearch.results.tables import resolve_column
from hpsearch.results.tables import sort_key
from hpsearch.storage import open_storage
from hpsearch.storage import redact
from hpsearch.storage.states import best_first
from hpsearch.study import budget
from hpsearch.study.record import base_config
from hpsearch.study.record import FAIL_REASON
from hpsearch.study.record import OUTCOME
from hpsearch.study.record import PARAM_COUNT
from hpsearch.study.record import records
from hpsearch.study.record import scoring
from hpsearch.study.record import study_summary
from hpsearch.study.record import TEST_ACCURACY
from hpsearch.study.record import TEST_BALANCED
from hpsearch.study.record import TEST_REGRESSION
from hpsearch.study.record import TRAIN_SECONDS
from hpsearch.study.record import TrialRecord
from hpsearch.study.record import WORKER

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
        names = [repr(s.study_name) for s in storage.get_all_studies()]  # no trials read
        known = f"; studies there: {', '.join(names)}" if names else "; it holds no study"
        raise StorageError(f"no study {shorten(name)} in {redact(url)}{known}") from e


def study_rows(url: str) -> list[dict[str, Any]]:
    """One row per study in a storage: name, trial count, directions and best value (a
    study of one objective), in a few queries however many trials there are."""
    return [
        {
            "study": s.name,
            "trials": s.trials,
            "directions": ",".join(s.directions),
            "best": None if s.best is None else [s.best],
        }
        for s in db.study_overviews(open_storage(url, read_only=True))
    ]


def stored_trials(url: str, name: str) -> int | None:
    """How many trials study ``name`` holds in ``url``, a SQLite or journal file, read only;
    ``None`` where it holds none of that name, or the file is missing or not a storage (a
    server is not asked: this is a note, not a check that may wait on it)."""
    file = db.storage_file(url)
    if file is None or not file.exists():
        return None
    try:
        rows = study_rows(url)
    except StorageError:
        return None
    return next((row["trials"] for row in rows if row["study"] == name), None)


def trial_rows(
    study: optuna.Study, trials: list[FrozenTrial] | None = None
) -> list[dict[str, Any]]:
    """One flat row per trial: number, state, values, params and the main metrics.

    Args:
        study: The study.
        trials: Only these trials, in this order (default: all, by number).
    """
    multi = len(study.directions) > 1
    score = scoring(study).score
    rows = []
    for r in records(study, study.get_trials(deepcopy=False) if trials is None else trials):
        row: dict[str, Any] = {"number": r.number, "state": r.state}
        values = r.values or ()
        if multi:
            row.update({f"value_{i}": v for i, v in enumerate(values)})
        else:
            row["value"] = values[0] if values else None
        row.update({f"param.{k}": v for k, v in r.params.items()})
        row.update(_test_metrics(r, score))
        row.update(
            train_seconds=r.train_seconds,
            param_count=r.param_count,
            worker=r.worker,
            outcome=r.outcome,
            fail_reason=(r.fail_reason or "").splitlines()[0] if r.fail_reason else None,
            duration_s=r.duration_s,
        )  # the columns of METRIC_COLUMNS
        rows.append(row)
    return rows


SORT_VALUE = "value"  # sorts by the first objective, best first


METRIC_COLUMNS = (
    "train_seconds",
    "param_count",
    "worker",
    "outcome",  # why a pruned trial stopped: stopped (the pruner), timed_out, too_large
    "fail_reason",
    "duration_s",
)
# the user attributes a row shows (an export reads only these)
ROW_ATTRS = (
    TEST_ACCURACY,
    *TEST_REGRESSION,
    TEST_BALANCED,
    TRAIN_SECONDS,
    PARAM_COUNT,
    WORKER,
    OUTCOME,
    FAIL_REASON,
)
EXPORT_PAGE = 900  # trials read at once by an export (round trips matter on PostgreSQL)


def trial_columns(study: optuna.Study) -> list[str]:
    """Every column :func:`trial_rows` may give the study's trials, in order, found by
    query (an export's header, before its first row)."""
    n = len(study.directions)
    values = ["value"] if n == 1 else [f"value_{i}" for i in range(n)]
    params = [f"param.{name}" for name in db.param_names(study)]
    tests = TEST_COLUMNS[scoring(study).score]
    return ["number", "state", *values, *params, *tests, *METRIC_COLUMNS]


def stream_trial_rows(
    study: optuna.Study, sort: str = SORT_VALUE, states: Collection[str] = ()
) -> tuple[list[str], Iterator[dict[str, Any]]]:
    """Every trial's row (:func:`trial_rows`) in a table's order (``value`` or ``number``,
    as :func:`sorted_trials`), read a page of trials at a time: an export of a large study
    never holds it whole. Returns the columns first, then the rows as they are read.

    Args:
        study: The study.
        sort: ``value`` or ``number``.
        states: Only trials in these states (names of :data:`STATES`, any case); all if
            empty.
    """
    pages = db.trial_pages(
        study,
        by_value=sort == SORT_VALUE,
        size=EXPORT_PAGE,
        user_keys=ROW_ATTRS,
        states=_states(states),
    )
    return trial_columns(study), (row for page in pages for row in trial_rows(study, page))


def _states(names: Collection[str]) -> tuple[TrialState, ...] | None:
    """The trial states ``names`` name (any case), ``None`` for none named: every state."""
    return tuple(TrialState[n.upper()] for n in names) if names else None


def sorted_trials(
    study: optuna.Study,
    sort: str = SORT_VALUE,
    top: int | None = None,
    states: Collection[str] = (),
) -> list[FrozenTrial]:
    """The study's trials in the order a table shows them, the first ``top`` only (of those
    in ``states``, names of :data:`STATES` in any case, when any are named).

    ``value`` sorts the completed trials by the first objective, best first, then the others
    by number; ``number`` by number; any other key is a column of :func:`trial_rows` (such as
    ``param.lr`` or ``duration_s``), ascending, trials without it last. The best ``top`` by
    value are read directly, without loading the rest of a large study.

    Raises:
        ConfigError: ``sort`` names no column.
    """
    kept = _states(states)
    if sort == SORT_VALUE and top is not None and kept in (None, (TrialState.COMPLETE,)):
        best = db.top_trials(study, top)
        if len(best) == top:
            return best
    trials = study.get_trials(deepcopy=False, states=kept)
    if sort == SORT_VALUE:
        # A pruned trial's value is its last report, not a result: it is not ranked.
        done, rank = TrialState.COMPLETE, best_first(study.directions)
        trials.sort(key=lambda t: (t.state != done, rank(t) if t.state == done else 0))
    elif sort != "number":
        rows = {r["number"]: r for r in trial_rows(study, trials)}
        columns = columns_of(list(rows.values()))
        column = resolve_column(sort, columns)
        if column is None:
            known = ", ".join(dict.fromkeys([SORT_VALUE, *columns]))
            raise ConfigError([f"--sort {shorten(sort)}: no such column; columns: {known}"])
        trials.sort(key=lambda t: sort_key(rows[t.number].get(column)))
    return trials if top is None else trials[:top]


def best_trials(study: optuna.Study, top: int = 1) -> list[FrozenTrial]:
    """The best trial (the ``top`` best), or the Pareto set of a multi-objective study, best
    first by its first objective (empty if none).

    The best trials of a single objective are read directly (one ordered query on a
    database), not found among every trial.
    """
    if len(study.directions) == 1:
        return db.top_trials(study, top)
    rank = best_first(study.directions)
    return sorted(study.best_trials, key=lambda t: (rank(t), t.number))


@dataclass(frozen=True)
class Noise:
    """How far apart the best trials are, measured in the validation set's noise.

    Attributes:
        metric: The objective's metric.
        value: The best trial's value.
        standard_error: Of that value: the spread another draw of as many validation
            images would give (see :meth:`hpsearch.study.record.TrialRecord.standard_error`).
        val_size: Validation images the value was measured on.
        within: Numbers of the trials (of the best :data:`NOISE_TOP`) within one standard
            error of the best, the best first: more than one means their order is chance.
    """

    metric: str
    value: float
    standard_error: float
    val_size: int | None
    within: tuple[int, ...]
    score: str = "accuracy"  # what rates a model on the test data: accuracy, or r2
    examples: str = "images"  # what the validation set holds: images, or a table's rows


NOISE_TOP = 20  # trials compared with the best


def selection_noise(study: optuna.Study) -> Noise | None:
    """Which of the best trials are within one standard error of the best; ``None`` when it
    cannot be told (several objectives, a metric without one, trials stored without it)."""
    summary = study_summary(study)
    if len(study.directions) != 1 or summary is None or not summary.metrics:
        return None
    top = records(study, db.top_trials(study, NOISE_TOP))
    if not top or not top[0].values:
        return None
    value = top[0].values[0]
    se = top[0].standard_error(summary.metrics[0], value)
    if se is None:
        return None
    within = tuple(t.number for t in top if t.values and abs(t.values[0] - value) <= se)
    rated = scoring(study)
    return Noise(
        summary.metrics[0], value, se, top[0].val_size, within, rated.score, rated.examples
    )


EDGE = 0.05  # the outer share of a range (on its own scale) that counts as its edge
EDGE_INT_VALUES = 3  # an integer range of fewer values has no inside to leave


@dataclass(frozen=True)
class Edge:
    """A parameter of the best trial at an end of the range it was searched in, where the
    best value may lie beyond the range.

    Attributes:
        param: The parameter (``lr``, ``hidden_layers.width_0``).
        value: The best trial's value.
        low: The range's lower end.
        high: The range's upper end.
        top: Whether it is at the upper end (else at the lower).
        log: Whether the range is searched on a log scale.
    """

    param: str
    value: float
    low: float
    high: float
    top: bool
    log: bool

    def __str__(self) -> str:
        side = "top" if self.top else "bottom"
        scale = ", log scale" if self.log else ""
        return (
            f"{self.param} {self.value:.4g} is at the {side} of its range "
            f"[{self.low:g}, {self.high:g}{scale}]"
        )


def range_edges(trial: FrozenTrial) -> list[Edge]:
    """The numeric parameters of ``trial`` (the best, as a rule) within the outer
    :data:`EDGE` of their range, on its scale (an integer range of a few values: at its end
    value). A lower end of 0 on a linear scale (no dropout, no momentum) is a floor, not an
    edge: nothing lies below it."""
    from optuna.distributions import FloatDistribution
    from optuna.distributions import IntDistribution

    found = []
    for name, dist in trial.distributions.items():
        if not isinstance(dist, FloatDistribution | IntDistribution) or dist.high <= dist.low:
            continue
        value, low, high = float(trial.params[name]), float(dist.low), float(dist.high)
        if isinstance(dist, IntDistribution) and (high - low) / dist.step + 1 < EDGE_INT_VALUES:
            continue
        if isinstance(dist, IntDistribution) and (high - low) / dist.step < 1 / EDGE:
            at = (value - low) / (high - low)
            top, bottom = at == 1.0, at == 0.0
        else:
            scale = math.log if dist.log else float
            at = (scale(value) - scale(low)) / (scale(high) - scale(low))
            top, bottom = at >= 1.0 - EDGE, at <= EDGE
        if top or (bottom and (dist.log or low != 0.0)):
            found.append(Edge(name, value, low, high, top, dist.log))
    return found


def require_best(study: optuna.Study) -> list[FrozenTrial]:
    """:func:`best_trials`, or an error when nothing has completed yet.

    Raises:
        ConfigError: The study has no completed trial.
    """
    trials = best_trials(study)
    if not trials:
        raise ConfigError([f"study {study.study_name!r} has no completed trial yet"])
    return trials


def trial_count(study: optuna.Study) -> int:
    """How many trials the study has, in any state (counted by the database)."""
    return sum(db.trial_counts(study).states.values())


def trial_record(study: optuna.Study, number: int) -> TrialRecord:
    """The stored record of one trial, by number (its traceback included).

    Raises:
        ConfigError: The study has no trial of that number.
    """
    try:
        trial = db.trial_by_number(study, number)
    except KeyError:
        count = trial_count(study)
        raise ConfigError(
            [f"study {study.study_name!r} has no trial {number} (0-{count - 1})"]
        ) from None
    return TrialRecord.from_trial(trial, base_config(study))


def status(study: optuna.Study) -> dict[str, Any]:
    """Counts by state, the best trial, time spent and the trial rate: a few small queries,
    however many trials the study has; a standing ``hpsearch stop`` request (``stop``); why
    its workers ended it before its budget by a rule of its file (``ended``, until it goes
    on); and, for a study launched on Slurm, its job arrays (``slurm``: see
    :func:`hpsearch.launch.slurm.job_summary`)."""
    # Three reads at once, each on a connection of its own: at 100,000 trials each is a
    # pass over the study's rows that the database makes while the others wait on it.
    with ThreadPoolExecutor(max_workers=3) as reads:
        counted = reads.submit(db.trial_counts, study)
        seconds = reads.submit(db.user_attr_sum, study, TRAIN_SECONDS)
        best = reads.submit(lambda: records(study, best_trials(study)))
        counts = counted.result()
    states = counts.states
    first, last = counts.first_start, counts.last_complete
    wall = (last - first).total_seconds() if first and last else 0.0
    finished = budget.finished(counts)
    score = scoring(study).score
    info: dict[str, Any] = {
        "study": study.study_name,
        "directions": [d.name.lower() for d in study.directions],
        "trials": sum(states.values()),
        "states": {s: states.get(s, 0) for s in STATES},
        "best": [
            {
                "number": r.number,
                "values": list(r.values or ()),
                "params": dict(r.params),
                **_test_metrics(r, score),
            }
            for r in best.result()
        ],
        "wall_seconds": wall,
        "trials_per_minute": 60.0 * finished / wall if wall > 0 else None,
        "train_seconds": seconds.result(),
    }
    attrs = db.study_system_attrs(study)
    request = budget.request_in(attrs)
    if request is not None:
        info["stop"] = {**request.to_dict(), "reason": request.reason}
    if (ended := budget.end_of(attrs, finished)) is not None:
        info["ended"] = ended  # by budget.target or budget.plateau, and not gone on since
    jobs = job_summary(attrs)  # the attributes read once
    if jobs is not None:
        info["slurm"] = jobs
    return info


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


def known_points(study: optuna.Study, trials: list[FrozenTrial]) -> list[dict[str, Any]]:
    """The trials' values by parameter of the space, as a study file's ``start_with`` lists
    them (a ``layers`` parameter as its widths): another study starts from them.

    Raises:
        ConfigError: A trial without the config it trained with (it has not finished).
    """
    points = []
    for trial in records(study, trials):
        if trial.config is None:
            raise ConfigError([f"study {study.study_name!r}: trial {trial.number} has no config"])
        point: dict[str, Any] = {}
        for key in trial.params:
            if key.endswith(".depth"):  # a layers parameter, whatever its name
                point[key.removesuffix(".depth")] = trial.config["hidden_layers"]
            elif "." not in key:  # not a layer's width: named after the setting it sets
                point[key] = trial.config[key]
        points.append(point)
    return points


def write_best_config(study: optuna.Study, path: str | Path, number: int | None = None) -> Path:
    """Writes :func:`best_config` as YAML, whole or not at all; returns the path."""
    out = Path(path)
    text = yaml.safe_dump(best_config(study, number), sort_keys=False)
    with files.whole(out) as part:
        part.write_text(text)
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


# a trial row's test metrics, by the study's score: a regression's R² and RMSE (in the
# target's units), else the accuracy
TEST_COLUMNS = {
    "r2": ("test_r2", "test_rmse"),
    "accuracy": ("test_accuracy",),
    "balanced_accuracy": ("test_balanced_accuracy", "test_accuracy"),
}


def _test_metrics(r: TrialRecord, score: str) -> dict[str, Any]:
    return {key: getattr(r, key) for key in TEST_COLUMNS[score]}
