"""Claims, writes and the worker's trial cache: the parts of hpsearch's trial life that need
Optuna's private API (see the list in :mod:`hpsearch.storage._optuna`).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from collections.abc import Container
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
import contextlib
import copy
import dataclasses
from datetime import datetime
import functools
import math
import time
from typing import Any
from typing import cast
from typing import TypeVar
import uuid

import optuna
from optuna.distributions import BaseDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.storages import RDBStorage
from optuna.storages._cached_storage import _CachedStorage
from optuna.storages._cached_storage import _StudyInfo
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from hpsearch.storage._optuna import sessions
from hpsearch.storage._optuna.rdb import CREATE_TOKEN
from hpsearch.storage._optuna.rdb import ResilientRDBStorage
from hpsearch.storage.states import FAILED_TRIAL
from hpsearch.storage.states import FIXED_PARAMS
from hpsearch.storage.states import RETRY_HISTORY
from hpsearch.storage.states import STARTED

_T = TypeVar("_T")


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage a study reads and writes (Optuna may wrap an RDB storage in a cache)."""
    return study._storage


def study_id(study: optuna.Study) -> int:
    """The storage's id of a study."""
    return study._study_id


def study_exists(study: optuna.Study) -> bool:
    """Whether the study is still in its storage (``hpsearch delete`` may remove it while a
    worker runs it: its trials' records are then gone, and every write fails)."""
    storage = storage_of(study)
    try:  # the database itself: Optuna's cache keeps a study's name once read
        (_rdb(storage) or storage).get_study_name_from_id(study_id(study))
    except KeyError:
        return False
    return True


def trial_id(trial: FrozenTrial | optuna.Trial) -> int:
    """The storage's id of a trial (not its number)."""
    return trial._trial_id


def claim_waiting_trial(study: optuna.Study, attrs: Mapping[str, Any] | None = None) -> int | None:
    """Moves one WAITING trial to RUNNING atomically and returns its id, or ``None``.

    Unlike ``Study.ask`` it never creates a trial: workers only run what the budget queued.
    On an RDB storage it reads the ids of the first few WAITING trials only (Optuna's own
    ``_pop_waiting_trial_id`` reads every WAITING trial with all its attributes: the whole
    remaining budget, on every claim), then claims the first one no other worker took.

    Args:
        study: The study.
        attrs: User attributes to store with the claimed trial, in the claim's own
            transaction on an RDB storage (who runs it, for a launcher looking).
    """
    storage = storage_of(study)
    rdb = _rdb(storage)
    if rdb is None:
        trial_id = study._pop_waiting_trial_id()
        if trial_id is not None and attrs:
            set_trial_user_attrs(study, trial_id, attrs)
        return trial_id
    beat = bool(rdb.heartbeat_interval)
    while True:
        ids = query(rdb, lambda s, m: _waiting_ids(s, m, study_id(study), CLAIM_WINDOW))
        if not ids:
            return None
        for trial_id in ids:
            if _claim(rdb, trial_id, beat, attrs or {}):
                if isinstance(storage, _StartedTrialsCache):
                    storage.refresh(study_id(study), claimed=trial_id)
                return trial_id


# Trials queued in one transaction: each costs a transaction of its own through Optuna
# (3.3 ms on SQLite, 33 s for a budget of 10,000); a chunk keeps a writer that waits for the
# study's lock (another host queueing, a worker asking) waiting at most a chunk's time.
QUEUE_CHUNK = 1000


@dataclasses.dataclass(frozen=True)
class QueuedTrial:
    """A WAITING trial to queue: what ``enqueue_trial(params, user_attrs=...)`` makes, its
    ``params`` fixed (the ``fixed_params`` system attribute); or, given their
    ``distributions``, what ``add_trial`` of a WAITING trial with these params, user and
    system attributes makes (a retry, see :func:`retry_of`)."""

    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    user_attrs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    system_attrs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    distributions: Mapping[str, BaseDistribution] | None = None

    def system(self) -> dict[str, Any]:
        """Its system attributes as stored: a queued point's with its fixed params."""
        if self.distributions is not None:
            return dict(self.system_attrs)
        return {**self.system_attrs, FIXED_PARAMS: dict(self.params)}


def retry_of(trial: FrozenTrial, user_attrs: Mapping[str, Any]) -> QueuedTrial:
    """What Optuna's ``RetryHeartbeatStaleTrialCallback`` adds to run a failed ``trial``
    again (its params, ``user_attrs``, its system attributes with the retry history grown by
    it), to queue with others in one transaction."""
    system = {FAILED_TRIAL: trial.number, RETRY_HISTORY: [], **trial.system_attrs}
    system[RETRY_HISTORY] = [*system[RETRY_HISTORY], trial.number]
    return QueuedTrial(trial.params, user_attrs, system, trial.distributions)


def queue_trials(
    study: optuna.Study, trials: Sequence[QueuedTrial], after: int | None = None
) -> int:
    """Queues WAITING trials as ``Study.enqueue_trial`` does, many in one transaction.

    Each trial is what ``enqueue_trial(params, user_attrs=attrs)`` makes: WAITING, no start
    time, the next number, its params as the ``fixed_params`` system attribute, its user
    attributes, and its other system attributes. On an RDB storage :data:`QUEUE_CHUNK`
    trials share a transaction, the study's row locked (as Optuna does for each trial: no
    other trial takes their numbers), and a chunk whose commit an outage hid is found by its
    create token, not queued twice. Other storages queue one at a time, through Optuna.

    Args:
        study: The study.
        trials: The trials, in the order to number them.
        after: How many trials the study held when the caller chose these (the budget's
            gap, a grid's missing points): a chunk is queued only while the study still
            holds that many plus the chunks before it, checked under the study's lock, so
            that two processes filling the same gap at once do not both fill it.

    Returns:
        How many it queued: all of them, or, given ``after``, those queued before another
        process changed the study (the caller counts again and chooses anew).
    """
    rdb = _rdb(storage_of(study))
    if rdb is None:
        # a journal has no lock to check under: the count is read just before, at best
        if after is not None and len(study.get_trials(deepcopy=False)) != after:
            return 0
        for queued in trials:
            study.add_trial(_frozen(queued))  # what enqueue_trial adds, or a retry
        return len(trials)
    for start in range(0, len(trials), QUEUE_CHUNK):
        chunk, token = trials[start : start + QUEUE_CHUNK], uuid.uuid4().hex
        inserted = query(
            rdb,
            functools.partial(
                _insert_waiting,
                study_id=study_id(study),
                trials=chunk,
                token=token,
                after=None if after is None else after + start,
            ),
            functools.partial(_queued, rdb, token),
        )
        if not inserted:
            return start
    return len(trials)


def can_unqueue(study: optuna.Study) -> bool:
    """Whether :func:`unqueue_trials` can take trials off this study's queue (an RDB
    storage; a journal only appends)."""
    return _rdb(storage_of(study)) is not None


def unqueue_trials(study: optuna.Study, count: int) -> int:
    """Takes up to ``count`` WAITING trials off the queue, the last queued first (a budget
    lowered below what is queued); returns how many.

    Only the WAITING trials at the end of the study's numbering, on an RDB storage: a
    journal storage only ever appends, and a gap in the numbering would give a later trial
    a number already taken. Trials a worker claims meanwhile stay.
    """
    rdb = _rdb(storage_of(study))
    if rdb is None or count <= 0:
        return 0
    total = functools.partial(sessions.trial_total, study_id=study_id(study))
    before = query(rdb, total)
    # From a number, not a count, and counted by the totals: a second attempt after an
    # outage hid the first one's commit deletes nothing more, and the first one's count.
    first = before - count
    query(rdb, functools.partial(sessions.unqueue_from, study_id=study_id(study), first=first))
    _forget_trials(storage_of(study), study_id(study))
    return before - query(rdb, total)


def _forget_trials(storage: BaseStorage, sid: int) -> None:
    """Drops a study's trials from Optuna's cache, to be read anew: it keeps a WAITING trial
    it read until the trial finishes, so one taken off the queue would stay in this
    process's view of the study. As Optuna's cache forgets a deleted study."""
    if not isinstance(storage, _CachedStorage):
        return
    with storage._lock:
        info = storage._studies.pop(sid, None)
        for number in info.trials if info is not None else ():
            trial_id = storage._study_id_and_number_to_trial_id.pop((sid, number), None)
            storage._trial_id_to_study_id_and_number.pop(trial_id, None)  # type: ignore[arg-type]
        if isinstance(storage, _StartedTrialsCache):
            storage.forget(sid)


def _insert_waiting(
    session: Any,
    models: Any,
    study_id: int,
    trials: Sequence[QueuedTrial],
    token: str,
    after: int | None,
) -> bool:
    models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
    number = sessions.trial_total(session, models, study_id)
    if after is not None and number != after:
        return False  # another process queued (or took off) trials since the caller counted
    # the token on every trial of the chunk: a claim removes it from its trial alone
    sessions.insert_trials(
        session, models, study_id, number, map(_frozen, trials), {CREATE_TOKEN: token}
    )
    return True


def _frozen(queued: QueuedTrial) -> FrozenTrial:
    """The WAITING trial ``enqueue_trial`` (or a retry's ``add_trial``) makes of ``queued``:
    no number or id yet, no start, its params set only with their distributions (built as
    ``create_trial`` builds it, less its checks: ``add_trial`` checks, and a budget of
    10,000 trials paid 30 ms for them)."""
    set_params = queued.distributions is not None
    return FrozenTrial(
        number=-1,
        state=TrialState.WAITING,
        value=None,
        values=None,
        datetime_start=None,
        datetime_complete=None,
        params=dict(queued.params) if set_params else {},
        distributions=dict(queued.distributions or {}),
        user_attrs=dict(queued.user_attrs),
        system_attrs=queued.system(),
        intermediate_values={},
        trial_id=-1,
    )


def _queued(rdb: RDBStorage, token: str) -> bool | None:
    return True if sessions.trial_with_system_attr(rdb, CREATE_TOKEN, token) else None


CLAIM_WINDOW = 8  # WAITING trial ids read per claim; more only when others took all of them


def _waiting_ids(session: Any, models: Any, sid: int, limit: int) -> list[int]:
    rows = (
        session.query(models.TrialModel.trial_id)
        .filter(models.TrialModel.study_id == sid)
        .filter(models.TrialModel.state == TrialState.WAITING)
        .order_by(models.TrialModel.trial_id)
        .limit(limit)
        .all()
    )
    return [int(r[0]) for r in rows]


def _claim(rdb: RDBStorage, trial_id: int, beat: bool, attrs: Mapping[str, Any]) -> bool:
    def done() -> bool | None:
        # After a drop mid-commit, a trial found RUNNING with this claim's attributes is ours
        # (left RUNNING without a worker it would only come back through its heartbeat going
        # stale); RUNNING with another's, another worker was first.
        trial = rdb.get_trial(trial_id)
        if trial.state != TrialState.RUNNING:
            return None
        return all(trial.user_attrs.get(k) == v for k, v in attrs.items())

    return query(rdb, lambda s, m: _start_trial(rdb, s, m, trial_id, beat, attrs), done)


def _start_trial(
    rdb: RDBStorage, session: Any, models: Any, trial_id: int, beat: bool, attrs: Mapping[str, Any]
) -> bool:
    """Moves a WAITING trial to RUNNING and, with heartbeats on, records its first heartbeat
    in the same transaction: a trial whose worker died before its first beat would stay
    RUNNING forever (Optuna finds only trials with a heartbeat stale), and every other worker
    would wait for it. ``attrs`` are written in it too, and the queued trial's create token
    (:data:`CREATE_TOKEN`, which only served its insert) is removed. ``False``: another
    worker was first."""
    trial = (
        session.query(models.TrialModel)
        .filter(models.TrialModel.trial_id == trial_id)
        .with_for_update()
        .one_or_none()
    )
    if trial is None or trial.state != TrialState.WAITING:
        return False
    trial.state = TrialState.RUNNING
    trial.datetime_start = datetime.now()  # as Optuna's set_trial_state_values does
    token = models.TrialSystemAttributeModel
    session.query(token).filter(token.trial_id == trial_id, token.key == CREATE_TOKEN).delete()
    if beat:
        session.add(models.TrialHeartbeatModel(trial_id=trial_id))
    if attrs:
        session.flush()  # the state first: the attributes' writer checks it
        sessions.upsert_user_attrs(rdb, session, models, trial_id, attrs)
    return True


def query(
    rdb: RDBStorage, run: Callable[[Any, Any], _T], done: Callable[[], Any] | None = None
) -> _T:
    """Runs ``run(session, models)`` in one transaction; hpsearch's storage retries it
    through an outage (``done``: see :meth:`ResilientRDBStorage.retry`)."""

    def once() -> _T:
        return sessions.transaction(rdb, run)

    if not isinstance(rdb, ResilientRDBStorage):
        return once()
    return cast(_T, rdb.retry(once) if done is None else rdb.retry(once, done))


def worker_storage(storage: BaseStorage) -> BaseStorage:
    """The storage a worker's study should read through: Optuna's trial cache, minus the
    WAITING trials.

    Optuna's cache re-reads every unfinished trial, with all its attributes, on each
    ``get_trials`` (the sampler's and the pruner's, several per epoch); a study whose whole
    budget is queued has thousands of WAITING trials, which made each read cost as much as
    the budget left. WAITING trials are claimed in id order (:func:`claim_waiting_trial`)
    and every new one gets a larger id, so a trial skipped while WAITING is always read
    later, once a worker has claimed it. Non-RDB storages are returned as they are.
    """
    rdb = _rdb(storage)
    return storage if rdb is None else _StartedTrialsCache(rdb)


def _number(trial: FrozenTrial) -> int:
    return trial.number


def _place(
    ordered: list[FrozenTrial],
    trials: list[FrozenTrial],
    states: frozenset[TrialState] | None,
) -> None:
    """Puts ``trials`` (new, or changed) in ``ordered`` (by number) where their state is one
    of ``states`` (any: ``None``), and takes out those whose state no longer is: a bisection
    each, not a pass over the study."""
    for trial in trials:
        at = bisect.bisect_left(ordered, trial.number, key=_number)
        there = at < len(ordered) and ordered[at].number == trial.number
        if states is None or trial.state in states:
            if there:
                ordered[at] = trial
            else:
                ordered.insert(at, trial)
        elif there:
            del ordered[at]


REFRESH_S = 1.0  # a worker's view of other workers' trials is at most this old


class _StartedTrialsCache(_CachedStorage):
    """Optuna's ``_CachedStorage`` that reads RUNNING and finished trials only, at most once
    every :data:`REFRESH_S` (the sampler and the pruner ask several times per epoch; news from
    other workers a second late changes nothing). The worker's own trials are read and written
    directly, as by Optuna's cache."""

    def __init__(self, backend: RDBStorage) -> None:
        super().__init__(backend)
        self._read_at: dict[int, float] = {}
        # A trial just claimed, as the refresh after its claim read it: the next get_trial
        # of it (optuna.Trial's first) is answered with this copy instead of a read.
        self._claimed: dict[int, FrozenTrial] = {}
        # Trials whose params are being suggested: their writes wait to go together.
        self._pending: dict[int, list[tuple[str, float, BaseDistribution]]] = {}
        # Optuna's cache filters and sorts every trial on each call (several per epoch: 80 ms
        # at 100,000 trials): the trials are kept in order as they arrive, and each filtered
        # list asked for is kept and changed with them.
        self._ordered: dict[int, list[FrozenTrial]] = {}  # a study's cached trials, by number
        self._lists: dict[tuple[int, frozenset[TrialState] | None], list[FrozenTrial]] = {}
        self.version = 0  # counts changes: what is derived from the trials (a window) is stale

    def _add_trials_to_cache(self, study_id: int, trials: list[FrozenTrial]) -> None:
        super()._add_trials_to_cache(study_id, trials)
        if not trials:
            return
        ordered = self._ordered.setdefault(study_id, [])
        numbers = [t.number for t in trials]
        if (not ordered or numbers[0] > ordered[-1].number) and numbers == sorted(numbers):
            ordered.extend(trials)  # a first load, or only new trials
        else:
            _place(ordered, trials, None)
        for (sid, states), kept in self._lists.items():  # each list: the changes alone
            if sid == study_id:
                _place(kept, trials, states)
        self.version += 1

    def forget(self, study_id: int) -> None:
        """Drops what this cache derived from a study's trials (the caller holds the lock
        and dropped the trials: see :func:`_forget_trials`)."""
        self._ordered.pop(study_id, None)
        for key in [k for k in self._lists if k[0] == study_id]:
            del self._lists[key]
        self._read_at.pop(study_id, None)
        self.version += 1

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        if deepcopy or not (states is None or isinstance(states, tuple | list | set | frozenset)):
            return super().get_all_trials(study_id, deepcopy, states)
        self._read_trials_from_remote_storage(study_id)
        with self._lock:
            key = (study_id, None if states is None else frozenset(states))
            trials = self._lists.get(key)
            if trials is None:
                ordered = self._ordered.get(study_id, [])
                chosen = ordered if states is None else [t for t in ordered if t.state in states]
                trials = self._lists[key] = list(chosen)
            return list(trials)

    def refresh(self, study_id: int, claimed: int | None = None) -> None:
        """Reads what changed now (after a claim: the claimed trial must be in the cache,
        its params are written through it)."""
        self._read_at.pop(study_id, None)
        self._read_trials_from_remote_storage(study_id)
        if claimed is None:
            return
        with self._lock:
            where = self._trial_id_to_study_id_and_number.get(claimed)
            if where is not None:
                trial = self._studies[where[0]].trials[where[1]]
                if trial._trial_id == claimed and trial.state == TrialState.RUNNING:
                    self._claimed[claimed] = trial

    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._lock:
            claimed = self._claimed.pop(trial_id, None)
        if claimed is not None:
            return copy.deepcopy(claimed)
        return super().get_trial(trial_id)

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
    ) -> None:
        with self._lock:
            pending = self._pending.get(trial_id)
            if pending is not None:
                pending.append((param_name, param_value_internal, distribution))
                return
        super().set_trial_param(trial_id, param_name, param_value_internal, distribution)

    @contextlib.contextmanager
    def params_together(self, trial_id: int) -> Iterator[None]:
        """Holds back the params suggested for ``trial_id`` inside the block and writes them
        in one transaction at its end (Optuna writes each in a transaction of its own: four
        round trips a param). Also at an error: the params drawn so far stay recorded."""
        with self._lock:
            self._pending[trial_id] = []
        try:
            yield
        except BaseException:
            with contextlib.suppress(Exception):
                self._write_params(trial_id)
            raise
        self._write_params(trial_id)

    def _write_params(self, trial_id: int) -> None:
        with self._lock:
            params = self._pending.pop(trial_id, [])
            if not params:
                return
            study_id, _ = self._trial_id_to_study_id_and_number[trial_id]
            known = self._studies[study_id].param_distribution
            previous = {name: known.get(name) for name, _, _ in params}
        set_trial_params(self._backend, trial_id, params, previous)
        with self._lock:
            for name, _, distribution in params:
                known.setdefault(name, distribution)

    def _read_trials_from_remote_storage(self, study_id: int) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._read_at.get(study_id, -math.inf) < REFRESH_S:
                return
            self._read_at[study_id] = now
            if study_id not in self._studies:
                self._studies[study_id] = _StudyInfo()
            study = self._studies[study_id]
            trials = self._backend._get_trials(
                study_id,
                states=STARTED,
                included_trial_ids=study.unfinished_trial_ids,
                trial_id_greater_than=study.last_finished_trial_id,
            )
            if not trials:
                return
            self._add_trials_to_cache(study_id, trials)
            for trial in trials:
                if not trial.state.is_finished():
                    study.unfinished_trial_ids.add(trial._trial_id)
                    continue
                study.last_finished_trial_id = max(study.last_finished_trial_id, trial._trial_id)
                study.unfinished_trial_ids.discard(trial._trial_id)


def set_trial_user_attrs(study: optuna.Study, trial_id: int, attrs: Mapping[str, Any]) -> None:
    """Writes several user attributes of a running trial in one transaction (Optuna writes
    each in a transaction of its own).

    Raises:
        UpdateFinishedTrialError: The trial is finished (another process failed it).
    """
    storage = storage_of(study)
    rdb = _rdb(storage)
    if rdb is None:
        for key, value in attrs.items():
            storage.set_trial_user_attr(trial_id, key, value)
        return

    def write(session: Any, models: Any) -> None:
        trial = models.TrialModel.find_or_raise_by_id(trial_id, session)
        rdb.check_trial_is_updatable(trial_id, trial.state)
        sessions.upsert_user_attrs(rdb, session, models, trial_id, attrs)

    query(rdb, write)


def params_together(study: optuna.Study, trial_id: int) -> contextlib.AbstractContextManager[None]:
    """A block whose suggestions for ``trial_id`` are written in one transaction at its end
    (on a worker's storage, see :func:`worker_storage`; elsewhere each as it is drawn)."""
    storage = storage_of(study)
    if isinstance(storage, _StartedTrialsCache):
        return storage.params_together(trial_id)
    return contextlib.nullcontext()


def set_trial_params(
    rdb: RDBStorage,
    trial_id: int,
    params: Sequence[tuple[str, float, BaseDistribution]],
    previous: Mapping[str, BaseDistribution | None],
) -> None:
    """Writes a running trial's params (name, internal value, distribution) in one
    transaction, each checked against the distribution the study already has for its name
    (``previous``, else read) as Optuna's ``set_trial_param`` does.

    Raises:
        UpdateFinishedTrialError: The trial is finished; nothing is written.
        ValueError: A distribution is incompatible with the study's; nothing is written.
    """
    from optuna.distributions import check_distribution_compatibility
    from optuna.distributions import distribution_to_json
    from optuna.distributions import json_to_distribution

    def write(session: Any, models: Any) -> None:
        trial = models.TrialModel.find_or_raise_by_id(trial_id, session)
        rdb.check_trial_is_updatable(trial_id, trial.state)
        for name, _, distribution in params:
            before = previous.get(name)
            if before is None:
                row = (
                    session.query(models.TrialParamModel.distribution_json)
                    .join(models.TrialModel)
                    .filter(models.TrialModel.study_id == trial.study_id)
                    .filter(models.TrialParamModel.param_name == name)
                    .first()
                )
                before = None if row is None else json_to_distribution(row[0])
            if before is not None:
                check_distribution_compatibility(before, distribution)
        session.add_all(
            models.TrialParamModel(
                trial_id=trial_id,
                param_name=name,
                param_value=value,
                distribution_json=distribution_to_json(distribution),
            )
            for name, value, distribution in params
        )

    def done() -> bool | None:  # committed before a connection drop: not written twice
        written = rdb.get_trial(trial_id).params
        return True if all(name in written for name, _, _ in params) else None

    query(rdb, write, done)


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


def may_go_stale(study: optuna.Study) -> bool:
    """Whether some RUNNING trial has a heartbeat, so may yet be failed and queued again.

    A RUNNING trial without one (started by a client without heartbeats) is never found
    stale: a worker waiting for it would wait forever.
    """
    rdb = _rdb(storage_of(study))
    if rdb is None or not rdb.heartbeat_interval:
        return False

    def beating(session: Any, models: Any) -> bool:
        trials, beats = models.TrialModel, models.TrialHeartbeatModel
        query = (
            session.query(trials.trial_id)
            .join(beats, beats.trial_id == trials.trial_id)
            .filter(trials.study_id == study_id(study))
            .filter(trials.state == TrialState.RUNNING)
        )
        return query.first() is not None

    return query(rdb, beating)


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


def fail_running_trial(study: optuna.Study, trial_id: int, attrs: Mapping[str, Any]) -> bool:
    """Fails a RUNNING trial and stores ``attrs`` (its reason) with it, atomically.

    Returns ``False``, changing nothing, when the trial is no longer RUNNING (its worker, or
    another process, finished it first): so a COMPLETE trial never carries a fail reason, and
    exactly one of several processes that race to fail a trial wins.
    """
    storage = storage_of(study)
    rdb = _rdb(storage)
    if rdb is None:
        return _fail_without_transaction(storage, trial_id, attrs)
    if isinstance(rdb, ResilientRDBStorage):
        return rdb.fail_running_trial(trial_id, attrs)
    return sessions.fail_running(rdb, trial_id, attrs)


def _fail_without_transaction(
    storage: BaseStorage, trial_id: int, attrs: Mapping[str, Any]
) -> bool:
    # Journal and in-memory storages apply each write in order: check, tag, fail.
    try:
        if storage.get_trial(trial_id).state != TrialState.RUNNING:
            return False
        for key, value in attrs.items():
            storage.set_trial_user_attr(trial_id, key, value)
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
