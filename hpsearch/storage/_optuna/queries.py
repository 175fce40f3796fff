"""The few queries a large study needs instead of a load of every trial: counts by state,
the best trials, one trial by number, the sum of one attribute.

Each reads Optuna's ORM tables directly on an RDB storage (private columns included: see
:mod:`hpsearch.storage._optuna`) and falls back on a load of the trials elsewhere.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
import json
from typing import Any

import optuna
from optuna.trial import FrozenTrial
from optuna.trial import TrialState
import sqlalchemy as sa

from hpsearch.storage._optuna.trials import _rdb
from hpsearch.storage._optuna.trials import query
from hpsearch.storage._optuna.trials import storage_of
from hpsearch.storage._optuna.trials import study_id
from hpsearch.storage.states import best_first
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


def top_trials(study: optuna.Study, n: int) -> list[FrozenTrial]:
    """The ``n`` best COMPLETE trials by the first objective, best first, read directly."""
    storage = storage_of(study)
    rdb = _rdb(storage)
    if rdb is None:
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return sorted(done, key=best_first(study.directions))[:n]
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    sid = study_id(study)

    def read(session: Any, models: Any) -> list[int]:
        value, trial = models.TrialValueModel, models.TrialModel
        order = value.value.desc() if maximize else value.value.asc()
        rows = (
            session.query(trial.trial_id)
            .join(value, value.trial_id == trial.trial_id)
            .filter(trial.study_id == sid, trial.state == TrialState.COMPLETE)
            .filter(value.objective == 0, value.value.isnot(None))  # not +-inf
            .order_by(order, trial.trial_id)
            .limit(n)
            .all()
        )
        return [int(r[0]) for r in rows]

    ids = query(rdb, read)
    if not ids:
        return []
    # One read of the chosen trials with their params, values and attributes (a get_trial
    # each would be a read of six tables per trial).
    loaded = rdb._get_trials(sid, None, set(ids), _LARGEST_ID)
    by_id = {t._trial_id: t for t in loaded}
    return [by_id[i] for i in ids]


_LARGEST_ID = 2**31 - 1  # "only the ids included" to Optuna's _get_trials (an INTEGER column)


def trial_by_number(study: optuna.Study, number: int) -> FrozenTrial:
    """One trial by its number, read alone.

    Raises:
        KeyError: The study has no such trial.
    """
    storage = storage_of(study)
    return storage.get_trial(
        storage.get_trial_id_from_study_id_trial_number(study_id(study), number)
    )
