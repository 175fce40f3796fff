"""Optuna's RDB storage, waiting out database outages (see :class:`ResilientRDBStorage`)."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Container
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
import contextlib
import copy
import functools
import logging
import math
import os
import threading
import time
from typing import Any
from typing import cast
from typing import TypeVar
import uuid

from optuna.distributions import BaseDistribution
from optuna.storages import RDBStorage
from optuna.storages._rdb import storage as rdb_storage_module
from optuna.trial import FrozenTrial
from optuna.trial import TrialState
from sqlalchemy.engine import Engine

from hpsearch.errors import StorageOutage
from hpsearch.spec.defaults import outage_wait
from hpsearch.spec.defaults import OUTAGE_WAIT_ENV
from hpsearch.storage._optuna import columns
from hpsearch.storage._optuna import sessions
from hpsearch.storage.outages import disk_full
from hpsearch.storage.outages import reason
from hpsearch.storage.outages import transient
from hpsearch.storage.urls import redact
from hpsearch.storage.urls import sqlite_path

_T = TypeVar("_T")
_log = logging.getLogger(__name__)

# System attribute of a queued trial: finds a retried insert's trial after a dropped
# connection. The claim removes it (it means nothing once the trial runs).
CREATE_TOKEN = "hpsearch:create_token"


class _LazySchemaVersions:
    """A reader's stand-in for Optuna's schema version manager, built only when something
    asks for a schema version (optuna-dashboard does, once): a command that reads trials
    never imports Alembic. On a database Optuna finished creating (which readers check
    first) the real manager only reads."""

    def __init__(self, url: str, engine: Engine, scoped_session: Any) -> None:
        self._args = (url, engine, scoped_session)
        self._manager: Any = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # not set up (a copy): no manager to build
            raise AttributeError(name)
        if self._manager is None:
            self._manager = _MigrationsReadOnce(*self._args)
        return getattr(self._manager, name)


_OPTUNA_VERSION_MANAGER = rdb_storage_module._VersionManager
_VERSION_MANAGER_SWAP = threading.Lock()
_migrations: Any = None  # Alembic's script directory of Optuna's migrations, once read


class _MigrationsReadOnce(_OPTUNA_VERSION_MANAGER):
    """Optuna's schema version manager, reading Alembic's migration scripts once a process.

    Optuna builds a new Alembic script directory for every question it asks: opening a new
    database executes its 30 migration files three times (about 0.03 s each time on two
    cores), and every worker's opening once more. The files are the pinned Optuna's and do
    not change while a process runs; a launcher reads them before it forks its workers
    (:func:`read_migrations`), which then share them.
    """

    def _create_alembic_script(self) -> Any:
        global _migrations
        if _migrations is None:
            script = super()._create_alembic_script()
            script.get_current_head()  # executes every migration file, now and once
            _migrations = script
        return _migrations


def read_migrations(url: str) -> None:
    """Reads Optuna's migration scripts into this process (see :class:`_MigrationsReadOnce`);
    ``url`` is any RDB URL (Alembic's configuration names one; the scripts do not depend on
    it)."""
    manager = _MigrationsReadOnce.__new__(_MigrationsReadOnce)  # no database needed
    manager.url = url
    manager._create_alembic_script()


class ResilientRDBStorage(RDBStorage):
    """Optuna's RDB storage, with every call waiting out a database outage.

    A call that fails with a connection error is retried with backoff for
    :func:`outage_wait` seconds, logged once when the outage starts and once when it ends;
    past the wait it raises :class:`~hpsearch.errors.StorageOutage`. A full disk raises it
    at once. Writes that may have committed before the connection dropped are checked
    before they are redone: a new trial carries a token that the retry looks for, a state
    change or a param is not written twice. Heartbeats are not retried (the next beat is).
    """

    _outage_lock = threading.Lock()
    _outage_since: float | None = None  # this process's current outage, if any
    _outage_ended_at: float = -math.inf  # when this process's last outage ended

    def __init__(self, url: str, *, read_only: bool = False, **kwargs: Any) -> None:
        """Opens the storage; ``read_only``: for a database known to be Optuna's (see
        :func:`open_storage`), skip every set-up step that writes or checks the schema.

        Optuna's set-up always builds a schema version manager, which imports Alembic and
        queries its version table even with the schema check skipped: 0.25 s of every
        reading command, for nothing a reader uses (it serves only ``optuna storage
        upgrade`` and the dashboard's schema line). A reader builds it only when asked
        (:class:`_LazySchemaVersions`); a writer's reads Optuna's migration scripts once a
        process (:class:`_MigrationsReadOnce`).
        """
        manager: Any = _LazySchemaVersions if read_only else _MigrationsReadOnce
        if read_only:
            kwargs.update(skip_table_creation=True, skip_compatibility_check=True)
        with _VERSION_MANAGER_SWAP:
            rdb_storage_module._VersionManager = manager  # type: ignore[misc]
            try:
                super().__init__(url, **kwargs)
            finally:
                rdb_storage_module._VersionManager = _OPTUNA_VERSION_MANAGER  # type: ignore[misc]

    def retry(self, call: Callable[[], Any], done: Callable[[], Any] = lambda: None) -> Any:
        """Runs ``call``; after a transient failure, returns ``done()`` if it is not None (the
        write had committed), else runs ``call`` again, until the wait runs out.

        ``call`` runs again only once ``done()`` has answered: a check that fails too (the
        database still down) is asked again after the next pause, never skipped. Were it
        skipped, a write whose commit the drop hid would be redone when the database came
        back between the check and the call: a claim would find its own trial RUNNING, take
        it for another worker's and leave it so, run by no one.
        """
        failed = False  # the last call failed: it may have committed, ask done() first

        def attempt() -> Any:
            finished = done() if failed else None
            return call() if finished is None else finished

        def on_error(e: Exception) -> None:
            nonlocal failed
            if disk_full(e):
                raise StorageOutage(self._full_message(e)) from e
            if transient(e):
                failed = True
                # This thread's session may be broken by the drop: start the retry afresh.
                with contextlib.suppress(Exception):
                    self.scoped_session.remove()

        return wait_out(self.url, attempt, on_error)

    def _full_message(self, error: BaseException) -> str:
        path = sqlite_path(self.url)
        where = f"the file system holding {path.parent}" if path else "the database server's disk"
        free = ""
        if path is not None:
            with contextlib.suppress(OSError):
                stats = os.statvfs(path.parent)
                free = f" ({stats.f_bavail * stats.f_frsize // 1024} KiB free)"
        return (
            f"storage {redact(self.url)}: {where} is full or failing{free}; free some space, "
            "then run the same command again to resume"
        )

    # Writes that are not simply idempotent: check before redoing.

    # Optuna's cache calls these private methods of its backend, so they are the ones wrapped.

    def _create_new_trial(
        self, study_id: int, template_trial: FrozenTrial | None = None
    ) -> FrozenTrial:
        create = super()._create_new_trial
        if template_trial is None:
            return cast(FrozenTrial, self.retry(lambda: create(study_id)))
        token = uuid.uuid4().hex
        template = copy.copy(template_trial)
        template.system_attrs = {**template_trial.system_attrs, CREATE_TOKEN: token}

        def done() -> FrozenTrial | None:
            trial_id = self._trial_with_token(token)
            return None if trial_id is None else self.get_trial(trial_id)

        return cast(FrozenTrial, self.retry(lambda: create(study_id, template), done))

    def _trial_with_token(self, token: str) -> int | None:
        return sessions.trial_with_system_attr(self, CREATE_TOKEN, token)

    def fail_running_trial(self, trial_id: int, attrs: Mapping[str, Any]) -> bool:
        """See :func:`hpsearch.storage.fail_running_trial`; waits out outages too."""

        def done() -> bool | None:
            trial = self.get_trial(trial_id)
            ours = trial.state == TrialState.FAIL and all(
                trial.user_attrs.get(k) == v for k, v in attrs.items()
            )
            return True if ours else None

        return bool(self.retry(lambda: sessions.fail_running(self, trial_id, attrs), done))

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        def done() -> bool | None:
            # A state change that may have committed is taken as done (hpsearch's own claims
            # go through claim_waiting_trial, which records a heartbeat with them).
            return True if self.get_trial(trial_id).state == state else None

        return bool(
            self.retry(
                lambda: super(ResilientRDBStorage, self).set_trial_state_values(
                    trial_id, state, values
                ),
                done=done,
            )
        )

    def _set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
        previous_distribution: BaseDistribution | None,
    ) -> None:
        write = super()._set_trial_param
        self.retry(
            lambda: write(
                trial_id, param_name, param_value_internal, distribution, previous_distribution
            ),
            done=lambda: True if param_name in self.get_trial(trial_id).params else None,
        )

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        # One guarded upsert each epoch (idempotent: retried through an outage as it is).
        self.retry(
            lambda: sessions.set_intermediate_value(self, trial_id, step, intermediate_value)
        )

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        # Optuna's reader builds an ORM object per trial, param, value, attribute and epoch
        # (20 s for 10,000 trials); the same trials read as columns take a tenth of that.
        trials = self._columns(study_id, states, limit=getattr(_first, "limit", None))
        return copy.deepcopy(trials) if deepcopy else trials

    def _get_trials(
        self,
        study_id: int,
        states: Container[TrialState] | None,
        included_trial_ids: set[int],
        trial_id_greater_than: int,
    ) -> list[FrozenTrial]:
        # What Optuna's trial cache reads (a worker's first load of a study, then what
        # changed), read as columns too.
        return self._columns(
            study_id, states, included=included_trial_ids, after=trial_id_greater_than
        )

    def _columns(
        self, study_id: int, states: Container[TrialState] | None, **which: Any
    ) -> list[FrozenTrial]:
        """:func:`columns.all_trials` in one transaction, through an outage."""
        read = functools.partial(columns.all_trials, study_id=study_id, states=states, **which)
        return cast(list[FrozenTrial], self.retry(lambda: sessions.transaction(self, read)))

    def delete_study(self, study_id: int) -> None:
        """Optuna's, a ``DELETE`` a table (:func:`sessions.delete_study`): a second through
        an outage finds the study gone, not missing."""

        def gone() -> bool | None:
            try:
                RDBStorage.get_study_name_from_id(self, study_id)
            except KeyError:
                return True
            return None

        self.retry(lambda: sessions.delete_study(self, study_id), gone)

    def record_heartbeat(self, trial_id: int) -> None:
        super().record_heartbeat(trial_id)  # not retried: a missed beat is sent next interval


_first = threading.local()


@contextlib.contextmanager
def first_trials(n: int) -> Iterator[None]:
    """Within this block, in this thread, ``get_all_trials`` of a :class:`ResilientRDBStorage`
    reads only a study's first ``n`` trials (by id): a page of a large study that shows at
    once, where its caller (optuna-dashboard) reads every trial to show a few."""
    _first.limit = n
    try:
        yield
    finally:
        _first.limit = None


def wait_out(
    url: str, call: Callable[[], _T], on_error: Callable[[Exception], None] | None = None
) -> _T:
    """Runs ``call`` (a call to the storage at ``url``, or opening it) until it fails for no
    outage, retrying with backoff for :func:`outage_wait` seconds; the outage is logged once
    a process as it starts and once as it ends.

    Args:
        url: The storage's URL, for the log and the error (its password hidden).
        call: What to run.
        on_error: Sees each error first (and may raise another instead).

    Raises:
        StorageOutage: The storage stayed unreachable past the wait.
    """
    wait = outage_wait()
    deadline: float | None = None
    pause = 0.2
    while True:
        try:
            result = call()
        except Exception as e:
            if on_error is not None:
                on_error(e)
            if not transient(e):
                raise
            now = time.monotonic()
            deadline = deadline or now + wait
            _outage_started(url, e)
            if now >= deadline:
                raise _past_wait(url, wait, e) from e
            time.sleep(pause)
            pause = min(2 * pause, 5.0)
            continue
        _outage_ended(url)
        return result


def _past_wait(url: str, wait: float, error: BaseException) -> StorageOutage:
    return StorageOutage(
        f"storage {redact(url)}: unreachable for {wait:.0f} s ({reason(error, url)}); "
        f"set ${OUTAGE_WAIT_ENV} to wait longer"
    )


def _outage_started(url: str, error: BaseException) -> None:
    """Logs an outage once a process, at its start."""
    cls = ResilientRDBStorage
    with cls._outage_lock:
        if cls._outage_since is None:
            cls._outage_since = time.monotonic()
            _log.warning(
                "storage %s unreachable (%s); waiting up to %.0f s for it",
                redact(url),
                reason(error, url),
                outage_wait(),
            )


def _outage_ended(url: str) -> None:
    """Logs an outage's end once, if one was under way."""
    cls = ResilientRDBStorage
    if cls._outage_since is None:
        return
    with cls._outage_lock:
        since = cls._outage_since
        cls._outage_since = None
        cls._outage_ended_at = time.monotonic()
    if since is not None:
        _log.warning("storage %s is back after %.0f s", redact(url), time.monotonic() - since)


def in_or_after_outage(seconds: float) -> bool:
    """Whether this process is in a storage outage or left one less than ``seconds`` ago.

    Heartbeats stop during an outage, so right after one every running trial looks stale:
    the stale-trial check waits until live workers had time to beat again.
    """
    cls = ResilientRDBStorage
    return cls._outage_since is not None or time.monotonic() - cls._outage_ended_at < seconds


def _retried(name: str) -> Callable[..., Any]:
    method = getattr(RDBStorage, name)

    def call(self: ResilientRDBStorage, *args: Any, **kwargs: Any) -> Any:
        return self.retry(lambda: method(self, *args, **kwargs))

    call.__name__ = name
    call.__doc__ = method.__doc__
    return call


# Reads and idempotent writes (upserts of attributes and intermediate values): plain retries.
for _name in (
    "create_new_study",
    "set_study_user_attr",
    "set_study_system_attr",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_trial_user_attrs",
    "get_trial_system_attrs",
    "get_all_studies",
    "get_trial_param",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial_id_from_study_id_trial_number",
    "get_trial",
    "get_best_trial",
    "_get_stale_trial_ids",
    "_get_best_trial_id",
):
    setattr(ResilientRDBStorage, _name, _retried(_name))
