"""The few queries a large study needs instead of a load of every trial: counts by state,
the best trials, one trial by number, the sum of one attribute, every study of a storage
summed up, and every trial in pages (an export that never holds a study whole).

Each reads Optuna's ORM tables directly on an RDB storage (private columns included: see
:mod:`hpsearch.storage._optuna`) and falls back on a load of the trials elsewhere.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from collections.abc import Iterable
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
import functools
import json
import random
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial
from optuna.trial import TrialState
import sqlalchemy as sa

from hpsearch.storage._optuna import columns
from hpsearch.storage._optuna.trials import _rdb
from hpsearch.storage._optuna.trials import query
from hpsearch.storage._optuna.trials import storage_of
from hpsearch.storage._optuna.trials import study_id
from hpsearch.storage.states import best_first
from hpsearch.storage.states import FIXED_PARAMS
from hpsearch.storage.states import RETRY_HISTORY


@dataclass(frozen=True)
class TrialCounts:
    """A study's trials counted by state, without loading them (the budget's rules on these
    counts are :mod:`hpsearch.study.budget`'s).

    Attributes:
        states: Trials by state name (``COMPLETE``, ``PRUNED``, ...).
        retried: Numbers that some trial's retry history names (Optuna's
            ``retry_history``: the trials it is a retry of).
        retried_failed: How many FAIL trials ``retried`` names.
        first_start: When the first trial started (compare only with ``last_complete``:
            local time on some storages, UTC on others).
        last_complete: When the last trial finished.
    """

    states: dict[str, int]
    retried: frozenset[int]
    retried_failed: int
    first_start: datetime | None
    last_complete: datetime | None


def retried_numbers(trials: Iterable[FrozenTrial]) -> set[int]:
    """Numbers that the retry histories of ``trials`` name."""
    return {n for t in trials for n in t.system_attrs.get(RETRY_HISTORY, [])}


def count_trials(trials: Iterable[FrozenTrial]) -> TrialCounts:
    """:class:`TrialCounts` of trials already loaded."""
    trials = list(trials)
    again = retried_numbers(trials)
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    return TrialCounts(
        states=dict(Counter(t.state.name for t in trials)),
        retried=frozenset(again),
        retried_failed=sum(t.state == TrialState.FAIL and t.number in again for t in trials),
        first_start=min(starts, default=None),
        last_complete=max(ends, default=None),
    )


_CHUNK = 500  # numbers per IN (...) list: far below every database's parameter limit


def trial_counts(study: optuna.Study) -> TrialCounts:
    """Counts a study's trials by state in a few small queries (every trial, loaded, costs a
    second per few thousand)."""
    rdb = _rdb(storage_of(study))
    if rdb is None:
        return count_trials(study.get_trials(deepcopy=False))
    sid = study_id(study)

    def read(session: Any, models: Any) -> TrialCounts:
        trial = models.TrialModel
        by_state = (
            session.query(trial.state, sa.func.count(trial.trial_id))
            .filter(trial.study_id == sid)
            .group_by(trial.state)
            .all()
        )
        first, last = (
            # the columns behind Optuna's datetime properties: naive UTC; only their
            # difference is used
            session.query(
                sa.func.min(trial._datetime_start_utc), sa.func.max(trial._datetime_complete_utc)
            )
            .filter(trial.study_id == sid)
            .one()
        )
        attr = models.TrialSystemAttributeModel
        histories = (
            session.query(attr.value_json)
            .join(trial, trial.trial_id == attr.trial_id)
            .filter(trial.study_id == sid, attr.key == RETRY_HISTORY)
            .all()
        )
        retried = sorted({n for (h,) in histories for n in json.loads(h)})
        failed = sum(
            session.query(sa.func.count(trial.trial_id))
            .filter(trial.study_id == sid, trial.state == TrialState.FAIL)
            .filter(trial.number.in_(retried[i : i + _CHUNK]))
            .scalar()
            for i in range(0, len(retried), _CHUNK)
        )
        return TrialCounts(
            states={TrialState(s).name: int(n) for s, n in by_state},
            retried=frozenset(retried),
            retried_failed=int(failed),
            first_start=first,
            last_complete=last,
        )

    return query(rdb, read)


def user_attr_sum(study: optuna.Study, key: str) -> float:
    """The sum of one numeric user attribute over a study's trials (those without it, or
    with it null, left out), summed by the database: one row, however many trials."""
    rdb = _rdb(storage_of(study))
    if rdb is None:
        values = (t.user_attrs.get(key) for t in study.get_trials(deepcopy=False))
        return sum(float(v) for v in values if v is not None)
    sid = study_id(study)

    def read(session: Any, models: Any) -> float:

        attr, trial = models.TrialUserAttributeModel, models.TrialModel
        number = sa.cast(sa.func.nullif(attr.value_json, "null"), sa.Float)
        total = (
            session.query(sa.func.sum(number))
            .join(trial, trial.trial_id == attr.trial_id)
            .filter(trial.study_id == sid, attr.key == key)
            .scalar()
        )
        return float(total or 0.0)

    return query(rdb, read)


def _best_of(trials: list[FrozenTrial], study: optuna.Study, n: int) -> list[FrozenTrial]:
    """The ``n`` best COMPLETE trials of ``trials`` (already read), best first."""
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    return sorted(done, key=best_first(study.directions))[:n]


def top_trials(study: optuna.Study, n: int) -> list[FrozenTrial]:
    """The ``n`` best COMPLETE trials by the first objective, best first, read directly."""
    storage = storage_of(study)
    rdb = _rdb(storage)
    if rdb is None:
        return _best_of(study.get_trials(deepcopy=False), study, n)
    sid, maximize = study_id(study), _maximize(study)

    def read(session: Any, models: Any) -> list[FrozenTrial]:
        # the chosen trials read together (a get_trial each reads six tables per trial)
        return columns.read_many(session, models, _top_ids(session, models, sid, maximize, n))

    return query(rdb, read)


def sample_trials(study: optuna.Study, best: int, others: int, seed: int = 0) -> list[FrozenTrial]:
    """The ``best`` best COMPLETE trials and ``others`` of the rest (any state) chosen at
    random with ``seed``, whole, by number: what a report draws of a study too large to
    draw whole. Only the chosen trials are read."""
    rdb = _rdb(storage_of(study))
    if rdb is None:  # a journal file is read whole anyway
        trials = study.get_trials(deepcopy=False)
        top = {t.number for t in _best_of(trials, study, best)}
        rest = [t for t in trials if t.number not in top]
        picked = random.Random(seed).sample(rest, min(others, len(rest)))
        return sorted([t for t in trials if t.number in top] + picked, key=lambda t: t.number)
    sid, maximize = study_id(study), _maximize(study)

    def read(session: Any, models: Any) -> list[FrozenTrial]:
        top = _top_ids(session, models, sid, maximize, best)
        trial = models.TrialModel
        every = session.query(trial.trial_id).filter(trial.study_id == sid)
        chosen = set(top)
        rest = [int(r[0]) for r in every.order_by(trial.trial_id) if int(r[0]) not in chosen]
        picked = sorted([*top, *random.Random(seed).sample(rest, min(others, len(rest)))])
        return sorted(columns.read_many(session, models, picked), key=lambda t: t.number)

    return query(rdb, read)


def _maximize(study: optuna.Study) -> bool:
    return study.directions[0] == optuna.study.StudyDirection.MAXIMIZE


def _top_ids(session: Any, models: Any, study_id: int, maximize: bool, n: int) -> list[int]:
    """The ids of the ``n`` best COMPLETE trials with a finite first objective, best first."""
    value, trial = models.TrialValueModel, models.TrialModel
    order = value.value.desc() if maximize else value.value.asc()
    rows = (
        session.query(trial.trial_id)
        .join(value, value.trial_id == trial.trial_id)
        .filter(trial.study_id == study_id, trial.state == TrialState.COMPLETE)
        .filter(value.objective == 0, value.value.isnot(None))  # not +-inf
        .order_by(order, trial.trial_id)
        .limit(n)
        .all()
    )
    return [int(r[0]) for r in rows]


def trial_by_number(study: optuna.Study, number: int) -> FrozenTrial:
    """One trial by its number, read alone.

    Raises:
        KeyError: The study has no such trial.
    """
    storage = storage_of(study)
    return storage.get_trial(
        storage.get_trial_id_from_study_id_trial_number(study_id(study), number)
    )


@dataclass(frozen=True)
class StudyOverview:
    """One study of a storage: its name, trial count, directions and, for one objective, the
    best completed value."""

    name: str
    trials: int
    directions: tuple[str, ...]
    best: float | None


def study_overviews(storage: BaseStorage) -> list[StudyOverview]:
    """Every study of a storage in four queries, whatever its trials (Optuna's own summaries
    load each study's best trial, and on some storages every trial)."""
    rdb = _rdb(storage)
    if rdb is None:
        return [
            StudyOverview(
                s.study_name,
                s.n_trials,
                tuple(d.name.lower() for d in s.directions),
                s.best_trial.values[0] if s.best_trial and len(s.directions) == 1 else None,
            )
            for s in optuna.get_all_study_summaries(storage)
        ]

    def read(session: Any, models: Any) -> list[StudyOverview]:
        study, trial, value = models.StudyModel, models.TrialModel, models.TrialValueModel
        names = session.query(study.study_id, study.study_name).order_by(study.study_id).all()
        directions: dict[int, list[tuple[int, StudyDirection]]] = {}
        for sid, objective, direction in session.query(
            models.StudyDirectionModel.study_id,
            models.StudyDirectionModel.objective,
            models.StudyDirectionModel.direction,
        ):
            directions.setdefault(sid, []).append((objective, direction))
        counts = dict(
            session.query(trial.study_id, sa.func.count(trial.trial_id))
            .group_by(trial.study_id)
            .all()
        )
        best: dict[tuple[int, str], float] = {}
        for name, reduce in (("minimize", sa.func.min), ("maximize", sa.func.max)):
            for sid, v in (
                session.query(trial.study_id, reduce(value.value))
                .join(value, value.trial_id == trial.trial_id)
                .filter(trial.state == TrialState.COMPLETE, value.objective == 0)
                .group_by(trial.study_id)
            ):
                best[(sid, name)] = v
        summaries = []
        for sid, study_name in names:
            ways = tuple(d.name.lower() for _, d in sorted(directions.get(sid, [])))
            single = best.get((sid, ways[0])) if len(ways) == 1 else None
            summaries.append(StudyOverview(study_name, int(counts.get(sid, 0)), ways, single))
        return summaries

    return query(rdb, read)


def trial_pages(
    study: optuna.Study,
    by_value: bool,
    size: int,
    user_keys: Collection[str] | None,
    states: Collection[TrialState] | None = None,
) -> Iterator[list[FrozenTrial]]:
    """Every trial of a study (of ``states``, when given), ``size`` at a time, in a table's
    order: by number, or (``by_value``) the COMPLETE ones by the first objective, best first,
    then the others by number. The order is one query of ids, which picks the states too;
    each page a few column queries, so a large study is never held whole. The trials are
    light: their number, state, values, times, params and only the user attributes named in
    ``user_keys`` (no intermediate values, no system attributes): what a table's row shows;
    ``user_keys=None`` reads them whole (a copy's pages)."""
    storage = storage_of(study)
    rdb = _rdb(storage)
    if rdb is None:  # no query to order by: a journal file is read whole anyway
        trials = study.get_trials(deepcopy=False, states=states)
        if by_value:
            done, rank = TrialState.COMPLETE, best_first(study.directions)
            trials.sort(key=lambda t: (t.state != done, rank(t) if t.state == done else 0))
        for i in range(0, len(trials), size):
            yield trials[i : i + size]
        return
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    sid = study_id(study)

    def order(session: Any, models: Any) -> list[int]:
        value, trial = models.TrialValueModel, models.TrialModel
        kept = sa.true() if states is None else trial.state.in_(list(states))
        if not by_value:
            ordered = session.query(trial.trial_id).filter(trial.study_id == sid, kept)
            return [int(r[0]) for r in ordered.order_by(trial.number)]
        by = value.value.desc() if maximize else value.value.asc()
        infinite = sa.case((value.value.is_(None), 1), else_=0)  # +-inf: after the finite
        best = (
            session.query(trial.trial_id)
            .join(value, value.trial_id == trial.trial_id)
            .filter(trial.study_id == sid, trial.state == TrialState.COMPLETE, kept)
            .filter(value.objective == 0)
            .order_by(infinite, by, trial.number)
        )
        rest = (
            session.query(trial.trial_id)
            .filter(trial.study_id == sid, trial.state != TrialState.COMPLETE, kept)
            .order_by(trial.number)
        )
        return [int(r[0]) for r in best] + [int(r[0]) for r in rest]

    ids = query(rdb, order)
    keys = None if user_keys is None else sorted(user_keys)
    for i in range(0, len(ids), size):
        page = ids[i : i + size]
        yield query(rdb, functools.partial(columns.read_trials, ids=page, user_keys=keys))


def param_names(study: optuna.Study) -> list[str]:
    """The names of every param of a study's trials, in the order they were first set, then
    those of the point its first WAITING trial was queued with (a grid's or one-factor
    study's, before any of its points ran)."""
    rdb = _rdb(storage_of(study))
    if rdb is None:
        names: dict[str, None] = {}
        for t in study.get_trials(deepcopy=False):
            names.update(dict.fromkeys(t.params))
            if t.state == TrialState.WAITING:
                names.update(dict.fromkeys(t.system_attrs.get(FIXED_PARAMS) or {}))
        return list(names)
    sid = study_id(study)

    def read(session: Any, models: Any) -> list[str]:
        param, trial = models.TrialParamModel, models.TrialModel
        rows = (
            session.query(param.param_name, sa.func.min(param.param_id))
            .join(trial, trial.trial_id == param.trial_id)
            .filter(trial.study_id == sid)
            .group_by(param.param_name)
            .order_by(sa.func.min(param.param_id))
        )
        names = dict.fromkeys(str(name) for name, _ in rows)
        attr = models.TrialSystemAttributeModel
        point = (
            session.query(attr.value_json)
            .join(trial, trial.trial_id == attr.trial_id)
            .filter(trial.study_id == sid, trial.state == TrialState.WAITING)
            .filter(attr.key == FIXED_PARAMS)
            .order_by(trial.trial_id)
            .first()
        )
        names.update(dict.fromkeys(json.loads(point[0]) if point else {}))
        return list(names)

    return query(rdb, read)
