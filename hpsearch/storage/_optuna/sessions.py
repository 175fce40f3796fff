"""One transaction on Optuna's RDB tables: the statements hpsearch writes in place of
Optuna's own (upserts, a guarded intermediate value, failing a running trial with its reason,
many whole trials inserted at once, a study deleted a table at a time).

Nothing here waits out an outage: :class:`~hpsearch.storage._optuna.rdb.ResilientRDBStorage`
and :func:`hpsearch.storage._optuna.trials.query` retry these calls.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from datetime import datetime
from datetime import UTC
import json
from typing import Any
from typing import TypeVar

from optuna.distributions import distribution_to_json
from optuna.storages import RDBStorage
from optuna.storages._rdb import models as rdb_models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial
from optuna.trial import TrialState
import sqlalchemy as sa

_T = TypeVar("_T")


def transaction(rdb: RDBStorage, run: Callable[[Any, Any], _T]) -> _T:
    """Runs ``run(session, models)`` in one transaction of ``rdb`` (Optuna's ORM models)."""
    with _create_scoped_session(rdb.scoped_session) as session:
        return run(session, rdb_models)


def upsert_user_attrs(
    rdb: RDBStorage, session: Any, models: Any, trial_id: int, attrs: Mapping[str, Any]
) -> None:
    """Inserts or replaces a trial's user attributes, as Optuna's ``set_trial_user_attr``
    does one key at a time (two round trips a key), in one statement on SQLite and
    PostgreSQL. The caller has checked that the trial may be updated."""
    model = models.TrialUserAttributeModel
    insert = upsert_builder(rdb)
    if insert is None:
        for key, value in attrs.items():
            rdb._set_trial_attr_without_commit(session, model, trial_id, key, value)
        return
    rows = [
        {"trial_id": trial_id, "key": k, "value_json": json.dumps(v)} for k, v in attrs.items()
    ]
    statement = insert(model).values(rows)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[model.trial_id, model.key],
            set_={"value_json": statement.excluded.value_json},
        )
    )


def upsert_builder(rdb: RDBStorage) -> Callable[[Any], Any] | None:
    """The ``INSERT ... ON CONFLICT`` builder of the storage's database (SQLite's or
    PostgreSQL's), or ``None`` for another database: the caller falls back on Optuna's
    writes."""
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.dialects import sqlite

    builders: dict[str, Callable[[Any], Any]] = {
        "sqlite": sqlite.insert,
        "postgresql": postgresql.insert,
    }
    return builders.get(rdb.engine.name)


def set_intermediate_value(rdb: RDBStorage, trial_id: int, step: int, value: float) -> None:
    """Optuna's ``set_trial_intermediate_value`` as one statement on SQLite and PostgreSQL:
    an upsert guarded by the trial's state (Optuna reads the trial, then the step, then
    writes: three statements each epoch of every trial).

    Raises:
        KeyError: No such trial.
        UpdateFinishedTrialError: The trial is finished; nothing is written.
    """
    insert = upsert_builder(rdb)
    if insert is None:
        RDBStorage.set_trial_intermediate_value(rdb, trial_id, step, value)
        return

    def write(session: Any, models: Any) -> None:

        model, trial = models.TrialIntermediateValueModel, models.TrialModel
        stored, kind = model.intermediate_value_to_stored_repr(value)
        row = sa.select(
            sa.literal(trial_id),
            sa.literal(step),
            sa.literal(stored, sa.Float),
            sa.literal(kind, model.intermediate_value_type.type),
        ).where(trial.trial_id == trial_id, trial.state.in_(_UPDATABLE))
        columns = ["trial_id", "step", "intermediate_value", "intermediate_value_type"]
        statement = insert(model).from_select(columns, row)
        upsert = statement.on_conflict_do_update(
            index_elements=[model.trial_id, model.step],
            set_={
                "intermediate_value": statement.excluded.intermediate_value,
                "intermediate_value_type": statement.excluded.intermediate_value_type,
            },
        )
        written = session.execute(upsert.returning(model.step)).first()
        if written is None:  # no such trial, or it is finished
            found = models.TrialModel.find_or_raise_by_id(trial_id, session)
            rdb.check_trial_is_updatable(trial_id, found.state)

    transaction(rdb, write)


_UPDATABLE = (TrialState.RUNNING, TrialState.WAITING)  # Optuna's check_trial_is_updatable


def fail_running(rdb: RDBStorage, trial_id: int, attrs: Mapping[str, Any]) -> bool:
    """Fails a RUNNING trial and writes ``attrs`` with it: one transaction, the row locked.
    ``False``, changing nothing, when the trial is no longer RUNNING."""

    def write(session: Any, models: Any) -> bool:
        trial = models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=True)
        if trial.state != TrialState.RUNNING:
            return False
        upsert_user_attrs(rdb, session, models, trial_id, attrs)
        trial.state = TrialState.FAIL
        trial.datetime_complete = datetime.now()
        return True

    return transaction(rdb, write)


def delete_study(rdb: RDBStorage, study_id: int) -> None:
    """Deletes a study and everything of it, one ``DELETE`` a table, children first.

    Optuna deletes the study's ORM object, whose cascade loads every trial, param, value,
    attribute and epoch of it to delete them one row at a time: 11 s for 10,000 trials on
    SQLite. The tables and their order come from Optuna's ORM metadata (each table that
    refers to a trial or a study, before the table it refers to), so a table a new Optuna
    adds is deleted from too.

    Raises:
        KeyError: No such study.
    """

    def run(session: Any, models: Any) -> None:
        models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
        studies, trials = models.StudyModel.__table__, models.TrialModel.__table__
        of_study = sa.select(trials.c.trial_id).where(trials.c.study_id == study_id)
        _delete_rows(session, models, of_study, study_id)
        session.execute(sa.delete(studies).where(studies.c.study_id == study_id))

    transaction(rdb, run)


def _delete_rows(session: Any, models: Any, trial_ids: Any, study_id: int | None) -> None:
    """Deletes, children first, the rows of every table that refers to a trial in
    ``trial_ids`` (a list or a select) and, given ``study_id``, to that study (its trials
    among them). The tables and their order come from Optuna's ORM metadata."""
    studies, trials = models.StudyModel.__table__, models.TrialModel.__table__
    for table in reversed(models.BaseModel.metadata.sorted_tables):
        for key in table.foreign_keys:
            if key.column.table is trials:
                session.execute(sa.delete(table).where(key.parent.in_(trial_ids)))
            elif key.column.table is studies and study_id is not None:
                session.execute(sa.delete(table).where(key.parent == study_id))


def trial_total(session: Any, models: Any, study_id: int) -> int:
    """How many trials a study holds, in any state (one count)."""
    trial = models.TrialModel
    count = session.query(sa.func.count(trial.trial_id)).filter(trial.study_id == study_id)
    return int(count.scalar())


def unqueue_from(session: Any, models: Any, study_id: int, first: int) -> None:
    """Deletes a study's trials numbered ``first`` and above while they are WAITING: the run
    of WAITING trials at the end of its numbering, from the last one back.

    Only the end of the numbering: Optuna numbers a new trial by the trials before it, so a
    gap lower down would give two trials one number. The study's row is locked, as a trial's
    creation locks it, and the trials' rows too: a worker claiming one of them meanwhile
    either claimed it first (it is RUNNING, and ends the run) or finds it gone. Run again
    after it committed, it finds nothing to delete.
    """
    models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
    trial = models.TrialModel
    last = (
        session.query(trial.trial_id, trial.state)
        .filter(trial.study_id == study_id, trial.number >= first)
        .with_for_update()
        .all()
    )
    kept = [int(i) for i, state in last if state != TrialState.WAITING]
    tail = sa.select(trial.trial_id).where(
        trial.study_id == study_id, trial.number >= first, trial.trial_id > max(kept, default=-1)
    )
    if len(kept) < len(last):  # a select, not a list of ids: no limit on how many
        _delete_rows(session, models, tail, None)
        session.execute(sa.delete(trial.__table__).where(trial.trial_id.in_(tail)))


def insert_trials(
    session: Any,
    models: Any,
    study_id: int,
    number: int,
    trials: Iterable[FrozenTrial],
    mark: Mapping[str, Any] | None = None,
) -> list[int]:
    """Inserts whole trials into a study, numbered from ``number`` on: their state, times,
    values, params, intermediate values and attributes, as Optuna's ``create_new_trial``
    writes a template trial, one ``INSERT`` a table for all of them. The caller holds the
    study's lock and chose ``number``.

    Args:
        mark: System attributes added to every trial (a create token, by which a write an
            outage hid is found).

    Returns:
        The new trials' ids, in order.
    """
    trials = list(trials)
    ids = _insert_rows(
        session,
        models,
        [
            {
                "study_id": study_id,
                "number": number + i,
                "state": t.state,
                "datetime_start": _utc(t.datetime_start),
                "datetime_complete": _utc(t.datetime_complete),
            }
            for i, t in enumerate(trials)
        ],
    )
    tables: dict[Any, list[dict[str, Any]]] = {}
    for tid, frozen in zip(ids, trials, strict=True):
        for model, row in _rows_of(models, tid, frozen, mark or {}):
            tables.setdefault(model, []).append(row)
    for model, rows in tables.items():
        session.execute(sa.insert(model), rows)
    return ids


def _rows_of(
    models: Any, tid: int, trial: FrozenTrial, mark: Mapping[str, Any]
) -> Iterator[tuple[Any, dict[str, Any]]]:
    """The rows that refer to trial ``tid`` (its attributes, ``mark`` among the system ones,
    params, values and intermediate values), each with the model of its table, as Optuna's
    ``create_new_trial`` stores them."""
    for model, attrs in (
        (models.TrialSystemAttributeModel, {**trial.system_attrs, **mark}),
        (models.TrialUserAttributeModel, trial.user_attrs),
    ):
        for key, value in attrs.items():
            yield model, {"trial_id": tid, "key": key, "value_json": json.dumps(value)}
    for name, distribution in trial.distributions.items():
        yield (
            models.TrialParamModel,
            {
                "trial_id": tid,
                "param_name": name,
                "param_value": distribution.to_internal_repr(trial.params[name]),
                "distribution_json": distribution_to_json(distribution),
            },
        )
    values = models.TrialValueModel
    for objective, value in enumerate(trial.values or ()):
        stored, kind = values.value_to_stored_repr(value)
        yield (
            values,
            {"trial_id": tid, "objective": objective, "value": stored, "value_type": kind},
        )
    steps = models.TrialIntermediateValueModel
    for step, value in trial.intermediate_values.items():
        stored, kind = steps.intermediate_value_to_stored_repr(value)
        yield (
            steps,
            {
                "trial_id": tid,
                "step": step,
                "intermediate_value": stored,
                "intermediate_value_type": kind,
            },
        )


def _insert_rows(session: Any, models: Any, rows: list[dict[str, Any]]) -> list[int]:
    """Inserts rows of the trials table (by column name); returns their ids, in order."""
    table = models.TrialModel.__table__
    if session.get_bind().dialect.insert_executemany_returning_sort_by_parameter_order:
        # SQLite and PostgreSQL: one INSERT ... RETURNING, no ORM object a row (10,000
        # queued trials: 0.9 s, not 1.4 s)
        statement = sa.insert(table).returning(table.c.trial_id, sort_by_parameter_order=True)
        return [int(i) for i in session.execute(statement, rows).scalars()]
    mapper = models.TrialModel.__mapper__  # the attribute of each column: `_datetime_..._utc`
    attribute = {c.name: mapper.get_property_by_column(c).key for c in table.columns}
    objects = [models.TrialModel(**{attribute[k]: v for k, v in r.items()}) for r in rows]
    session.add_all(objects)
    session.flush()  # the ids, for the rows that refer to them
    return [int(o.trial_id) for o in objects]


def _utc(local: datetime | None) -> datetime | None:
    """A trial's time as Optuna's tables keep it: naive UTC (a ``FrozenTrial``'s is naive
    local time; ``TrialModel``'s setters convert the same way)."""
    return None if local is None else local.astimezone(UTC).replace(tzinfo=None)


def trial_with_system_attr(rdb: RDBStorage, key: str, value: Any) -> int | None:
    """The id of a trial whose system attribute ``key`` is ``value`` (one indexed query)."""

    def read(session: Any, models: Any) -> int | None:
        attr = models.TrialSystemAttributeModel
        row = (
            session.query(attr.trial_id)
            .filter(attr.key == key, attr.value_json == json.dumps(value))
            .first()
        )
        return None if row is None else int(row[0])

    return transaction(rdb, read)
