"""Every use of Optuna's private API, behind one door.

hpsearch needs a few things Optuna does not expose publicly: the storage and id of a study,
the id of a trial, an atomic claim of a WAITING trial that never creates a new one, the ids of
trials whose heartbeat went stale, and failing a RUNNING trial together with its reason in one
transaction. They live here, and ``tests/test_internals.py`` runs each against SQLite,
PostgreSQL and the journal storage, so that an Optuna upgrade breaks one test, not a worker.
The tested range is pinned in ``pyproject.toml``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
import json
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from hpsearch import record


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage a study reads and writes (Optuna may wrap an RDB storage in a cache)."""
    return study._storage


def study_id(study: optuna.Study) -> int:
    """The storage's id of a study."""
    return study._study_id


def trial_id(trial: FrozenTrial | optuna.Trial) -> int:
    """The storage's id of a trial (not its number)."""
    return trial._trial_id


def claim_waiting_trial(study: optuna.Study) -> int | None:
    """Moves one WAITING trial to RUNNING atomically and returns its id, or ``None``.

    Unlike ``Study.ask`` it never creates a trial: workers only run what the budget queued.
    """
    return study._pop_waiting_trial_id()


def trial_for(study: optuna.Study, trial_id: int) -> optuna.Trial:
    """A live ``Trial`` for a claimed trial id (its suggestions go through the sampler)."""
    return optuna.Trial(study, trial_id)


def stale_trial_callback(
    study: optuna.Study,
) -> Callable[[optuna.Study, FrozenTrial], None] | None:
    """The storage's callback for a stale trial (hpsearch's retry), if heartbeats are on."""
    rdb = _rdb(storage_of(study))
    return None if rdb is None else rdb.get_heartbeat_stale_trial_callback()


def _rdb(storage: BaseStorage) -> RDBStorage | None:
    inner = getattr(storage, "_backend", storage)  # optuna's _CachedStorage wraps an RDB
    return inner if isinstance(inner, RDBStorage) else None


def stale_trial_ids(study: optuna.Study) -> list[int]:
    """RUNNING trials whose heartbeat is older than the storage's grace period."""
    storage = storage_of(study)
    if not getattr(_rdb(storage), "heartbeat_interval", None):
        return []
    return list(storage._get_stale_trial_ids(study_id(study)))  # type: ignore[attr-defined]


def grace_period(study: optuna.Study) -> int | None:
    """Seconds without a heartbeat after which a trial is stale (``None``: no heartbeats)."""
    rdb = _rdb(storage_of(study))
    if rdb is None or not rdb.heartbeat_interval:
        return None
    return rdb.grace_period or 2 * rdb.heartbeat_interval


def heartbeat_interval(study: optuna.Study) -> int:
    """Seconds between heartbeats (0: no heartbeats)."""
    rdb = _rdb(storage_of(study))
    return int(rdb.heartbeat_interval or 0) if rdb is not None else 0


def fail_running_trial(study: optuna.Study, trial_id: int, reason: str) -> bool:
    """Fails a RUNNING trial and records ``reason`` as its ``fail_reason``, atomically.

    Returns ``False``, changing nothing, when the trial is no longer RUNNING (its worker, or
    another process, finished it first): so a COMPLETE trial never carries a fail reason, and
    exactly one of several processes that race to fail a trial wins.
    """
    storage = storage_of(study)
    rdb = _rdb(storage)
    if rdb is None:
        return _fail_without_transaction(storage, trial_id, reason)
    resilient = getattr(rdb, "fail_running_trial", None)  # hpsearch's storage retries it
    return (
        bool(resilient(trial_id, reason))
        if resilient
        else rdb_fail_running_trial(rdb, trial_id, reason)
    )


def rdb_fail_running_trial(rdb: RDBStorage, trial_id: int, reason: str) -> bool:
    """:func:`fail_running_trial` on an RDB storage: one transaction, the row locked."""
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(rdb.scoped_session) as session:
        trial = models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=True)
        if trial.state != TrialState.RUNNING:
            return False
        rdb._set_trial_attr_without_commit(
            session, models.TrialUserAttributeModel, trial_id, record.FAIL_REASON, reason
        )
        trial.state = TrialState.FAIL
        trial.datetime_complete = datetime.now()
    return True


def rdb_trial_with_system_attr(rdb: RDBStorage, key: str, value: Any) -> int | None:
    """The id of a trial whose system attribute ``key`` is ``value`` (one indexed query)."""
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(rdb.scoped_session) as session:
        row = (
            session.query(models.TrialSystemAttributeModel.trial_id)
            .filter(models.TrialSystemAttributeModel.key == key)
            .filter(models.TrialSystemAttributeModel.value_json == json.dumps(value))
            .first()
        )
        return None if row is None else int(row[0])


def _fail_without_transaction(storage: BaseStorage, trial_id: int, reason: str) -> bool:
    # Journal and in-memory storages apply each write in order: check, tag, fail.
    try:
        if storage.get_trial(trial_id).state != TrialState.RUNNING:
            return False
        storage.set_trial_user_attr(trial_id, record.FAIL_REASON, reason)
        return storage.set_trial_state_values(trial_id, TrialState.FAIL)
    except UpdateFinishedTrialError:
        return False


def get_trial(study: optuna.Study, trial_id: int) -> FrozenTrial:
    """A trial by id, as the database has it now (not a cached copy)."""
    storage = storage_of(study)
    return (_rdb(storage) or storage).get_trial(trial_id)


def set_study_system_attr(study: optuna.Study, key: str, value: Any) -> None:
    """Stores machine-readable study data that the dashboard does not show as a user attr."""
    storage_of(study).set_study_system_attr(study_id(study), key, value)


def study_system_attrs(study: optuna.Study) -> dict[str, Any]:
    """The study's system attributes."""
    return dict(storage_of(study).get_study_system_attrs(study_id(study)))


def drop_session(storage: BaseStorage) -> None:
    """Discards this thread's database session (after an interrupt left it unusable)."""
    rdb = _rdb(storage)
    if rdb is not None:
        rdb.scoped_session.remove()
