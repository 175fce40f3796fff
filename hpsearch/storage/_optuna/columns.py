"""Trials read as columns: one query per table of Optuna's schema (trials, values, params,
attributes, intermediate values) and a :class:`FrozenTrial` built from plain rows, instead
of Optuna's ORM objects, one per trial, param, value, attribute and epoch.

The same trials Optuna's ``RDBStorage.get_all_trials`` returns (checked field by field in
tests/storage/test_optuna_contract.py), about ten times faster: 10,000 trials of ten epochs
took Optuna's reader 19.6 s on two cores.
"""

from __future__ import annotations

from collections.abc import Collection
from collections.abc import Container
from collections.abc import Iterable
from datetime import datetime
from datetime import UTC
import functools
import json
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.distributions import json_to_distribution
from optuna.trial import FrozenTrial
from optuna.trial import TrialState
import sqlalchemy as sa

from hpsearch.storage.states import FIXED_PARAMS

CHUNK = 900  # ids per IN list: under every SQLite's limit of bound variables


def all_trials(
    session: Any,
    models: Any,
    study_id: int,
    states: Container[TrialState] | None = None,
    included: Collection[int] = (),
    after: int = -1,
    limit: int | None = None,
) -> list[FrozenTrial]:
    """A study's trials (of ``states``), whole, by id, as Optuna's reader gives them: every
    one, or (``after`` > -1) those with an id above ``after`` or in ``included`` (Optuna's
    ``RDBStorage._get_trials``: how its trial cache reads what changed); with ``limit``,
    only the first ones.

    Raises:
        KeyError: No such study (what Optuna raises).
    """
    models.StudyModel.find_or_raise_by_id(study_id, session)
    trial = models.TrialModel
    ids = session.query(trial.trial_id).filter(trial.study_id == study_id)
    if states is not None:
        assert isinstance(states, Iterable)
        ids = ids.filter(trial.state.in_(list(states)))
    chosen = {i for i in included if i <= after}
    if after > -1 and len(chosen) <= CHUNK:  # in SQL: a cache's refresh reads a few trials
        later = trial.trial_id > after
        ids = ids.filter(sa.or_(later, trial.trial_id.in_(chosen)) if chosen else later)
    ordered = [
        i for (i,) in ids.order_by(trial.trial_id) if after < 0 or i > after or i in chosen
    ][:limit]
    found = read_many(session, models, ordered)
    # a trial may have finished since its id was chosen (each query its own snapshot)
    return found if states is None else [t for t in found if t.state in states]


def read_many(session: Any, models: Any, ids: list[int]) -> list[FrozenTrial]:
    """The whole trials of ``ids``, however many, in that order (:data:`CHUNK` a query)."""
    found: list[FrozenTrial] = []
    for i in range(0, len(ids), CHUNK):
        found += read_trials(session, models, ids[i : i + CHUNK])
    return found


def read_trials(
    session: Any, models: Any, ids: list[int], user_keys: Collection[str] | None = None
) -> list[FrozenTrial]:
    """The trials of ``ids`` (at most :data:`CHUNK`), in that order.

    Args:
        user_keys: ``None``: the whole trials. Else light trials for a table's rows: only
            these user attributes, no intermediate values, and of the system attributes
            only a WAITING trial's fixed params (the point it was queued with).
    """
    whole = user_keys is None
    trial, value = models.TrialModel, models.TrialValueModel
    param, attr = models.TrialParamModel, models.TrialUserAttributeModel
    # The trials table first: PostgreSQL's READ COMMITTED gives each query of a transaction a
    # snapshot of its own, and a trial's state is committed with its values, so a state read
    # before its values never shows a COMPLETE trial without them (read after, it did: one
    # worker's sampler then sorted a None among the values of another's finished trials).
    rows = session.execute(
        sa.select(
            trial.trial_id,
            trial.number,
            trial.state,
            trial._datetime_start_utc,
            trial._datetime_complete_utc,
        ).where(trial.trial_id.in_(ids))
    ).all()
    values: dict[int, dict[int, float]] = {}
    for tid, objective, v, kind in session.execute(
        sa.select(value.trial_id, value.objective, value.value, value.value_type).where(
            value.trial_id.in_(ids)
        )
    ):
        values.setdefault(tid, {})[objective] = value.stored_repr_to_value(v, kind)
    params: dict[int, dict[str, Any]] = {}
    dists: dict[int, dict[str, Any]] = {}
    for tid, name, v, dist in session.execute(
        sa.select(param.trial_id, param.param_name, param.param_value, param.distribution_json)
        .where(param.trial_id.in_(ids))
        .order_by(param.param_id)
    ):
        distribution = _distribution(dist)
        params.setdefault(tid, {})[name] = distribution.to_external_repr(v)
        dists.setdefault(tid, {})[name] = distribution
    user: dict[int, dict[str, Any]] = {}
    system: dict[int, dict[str, Any]] = {}
    steps: dict[int, dict[int, float]] = {}
    if whole:
        user = _attrs(session, attr, ids)
        system = _attrs(session, models.TrialSystemAttributeModel, ids)
        step = models.TrialIntermediateValueModel
        for tid, s, v, kind in session.execute(
            sa.select(
                step.trial_id, step.step, step.intermediate_value, step.intermediate_value_type
            )
            .where(step.trial_id.in_(ids))
            .order_by(step.trial_intermediate_value_id)
        ):
            steps.setdefault(tid, {})[s] = step.stored_repr_to_intermediate_value(v, kind)
    else:
        if user_keys:
            user = _attrs(session, attr, ids, user_keys)
        waiting = [tid for tid, _, state, _, _ in rows if state == TrialState.WAITING]
        if waiting:
            system = _attrs(session, models.TrialSystemAttributeModel, waiting, (FIXED_PARAMS,))
    by_id = {}
    for tid, number, state, start, end in rows:
        found = values.get(tid)
        by_id[tid] = FrozenTrial(
            number=number,
            state=state,
            value=None,
            values=[found[k] for k in sorted(found)] if found else None,
            datetime_start=_local(start),
            datetime_complete=_local(end),
            params=params.get(tid, {}),
            distributions=dists.get(tid, {}),
            user_attrs=user.get(tid, {}),
            system_attrs=system.get(tid, {}),
            intermediate_values=steps.get(tid, {}),
            trial_id=tid,
        )
    return [by_id[tid] for tid in ids]


def _attrs(
    session: Any, model: Any, ids: list[int], keys: Collection[str] | None = None
) -> dict[int, dict[str, Any]]:
    rows = sa.select(model.trial_id, model.key, model.value_json).where(model.trial_id.in_(ids))
    if keys is not None:
        rows = rows.where(model.key.in_(sorted(keys)))
    found: dict[int, dict[str, Any]] = {}
    order = (model.trial_id, *model.__table__.primary_key.columns)
    for tid, key, v in session.execute(rows.order_by(*order)):
        found.setdefault(tid, {})[key] = json.loads(v)
    return found


@functools.lru_cache(maxsize=1024)
def _distribution(text: str) -> BaseDistribution:
    return json_to_distribution(text)  # a study has few distinct ones: parse each once


def _local(utc: datetime | None) -> datetime | None:
    # what Optuna's TrialModel.datetime_start gives: naive local time from naive UTC
    if utc is None:
        return None
    return utc.replace(tzinfo=UTC).astimezone().replace(tzinfo=None)
