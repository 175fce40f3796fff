"""A study copied into another storage: its attributes, then its trials written many a
transaction, under a name of its own until it is whole.

Optuna's ``copy_study`` writes each trial in a transaction of its own (10,000 trials:
minutes on a server) and leaves a half-copied study where it stops. Here an RDB
destination takes :data:`COPY_CHUNK` whole trials an ``INSERT`` a table
(:func:`~hpsearch.storage._optuna.sessions.insert_trials`), into a study whose name is
changed to the wanted one in one statement once every trial is in: no reader of the
destination sees the copy half done. A journal destination takes the trials one at a time
through Optuna and cannot rename (it only appends).
"""

from __future__ import annotations

from collections.abc import Sequence
import functools
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial
import sqlalchemy as sa

from hpsearch.errors import StorageError
from hpsearch.storage._optuna import sessions
from hpsearch.storage._optuna.trials import _rdb
from hpsearch.storage._optuna.trials import query
from hpsearch.storage._optuna.trials import storage_of
from hpsearch.storage._optuna.trials import study_id
from hpsearch.storage._optuna.trials import study_system_attrs

COPY_CHUNK = 500  # whole trials a transaction (an export's page)


def can_rename(storage: BaseStorage) -> bool:
    """Whether a study of this storage can change its name (an RDB; a journal only
    appends): a copy is then made under another name and renamed once whole."""
    return _rdb(storage) is not None


def create_copy(study: optuna.Study, storage: BaseStorage, name: str) -> optuna.Study:
    """Creates an empty study ``name`` in ``storage`` with ``study``'s directions and its
    user and system attributes (its metric names, a grid's space, hpsearch's records), as
    Optuna's ``copy_study`` begins.

    Raises:
        optuna.exceptions.DuplicatedStudyError: ``storage`` holds a study of that name.
    """
    copy = optuna.create_study(study_name=name, storage=storage, directions=study.directions)
    target, sid = storage_of(copy), study_id(copy)
    for key, value in study_system_attrs(study).items():
        target.set_study_system_attr(sid, key, value)
    for key, value in study.user_attrs.items():
        target.set_study_user_attr(sid, key, value)
    return copy


def add_trials(study: optuna.Study, trials: Sequence[FrozenTrial]) -> list[int]:
    """Appends whole trials to a study, numbered after its last one, as Optuna's
    ``create_new_trial`` with each as the template; returns their ids.

    On an RDB, :data:`COPY_CHUNK` trials a transaction, the study's row locked; a chunk
    whose commit an outage hid is found by its trials' numbers, not written twice.
    """
    storage, sid = storage_of(study), study_id(study)
    rdb = _rdb(storage)
    if rdb is None:
        return [storage.create_new_trial(sid, template_trial=t) for t in trials]
    ids: list[int] = []
    held = query(rdb, functools.partial(sessions.trial_total, study_id=sid))  # counted once
    for start in range(0, len(trials), COPY_CHUNK):
        chunk, first = trials[start : start + COPY_CHUNK], held + start
        write = functools.partial(_insert, study_id=sid, trials=chunk, first=first)
        ids += query(rdb, write, functools.partial(_written, rdb, sid, first, len(chunk)))
    return ids


def _insert(
    session: Any, models: Any, study_id: int, trials: Sequence[FrozenTrial], first: int
) -> list[int]:
    models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
    if sessions.trial_total(session, models, study_id) != first:
        raise StorageError(f"study id {study_id} changed while trials were copied into it")
    return sessions.insert_trials(session, models, study_id, first, trials)


def _written(rdb: Any, sid: int, first: int, count: int) -> list[int] | None:
    """The ids of a chunk whose commit an outage hid, or ``None`` if it was not written."""

    def read(session: Any, models: Any) -> list[int] | None:
        trial = models.TrialModel
        ids = (
            session.query(trial.trial_id)
            .filter(trial.study_id == sid, trial.number >= first, trial.number < first + count)
            .order_by(trial.number)
            .all()
        )
        return [int(i) for (i,) in ids] if len(ids) == count else None

    return sessions.transaction(rdb, read)


def rename_study(study: optuna.Study, name: str) -> bool:
    """Gives a study of an RDB storage another name, in one statement; ``False`` where the
    storage holds a study of that name already (the name is unique there)."""
    rdb = _rdb(storage_of(study))
    assert rdb is not None, "only an RDB storage renames (see can_rename)"
    sid = study_id(study)

    def run(session: Any, models: Any) -> None:
        studies = models.StudyModel.__table__
        session.execute(
            sa.update(studies).where(studies.c.study_id == sid).values(study_name=name)
        )

    try:
        query(rdb, run)
    except sa.exc.IntegrityError:
        return False
    return True
