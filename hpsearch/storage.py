"""Opening Optuna storages from URLs: SQLite tuned for many processes, PostgreSQL, journals.

SQLite serialises writers, but its default deferred transactions let two processes both read
a WAITING trial and both claim it, and a reader upgrading to a writer fails at once with
"database is locked" whatever the timeout. Worker connections therefore start every
transaction with ``BEGIN IMMEDIATE`` (claims become atomic, waits honour the busy timeout) and
use WAL so that readers (dashboard, status) never block writers.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
import contextlib
import copy
import errno
import logging
import math
import os
from pathlib import Path
import re
import sqlite3
import threading
import time
from typing import Any
from typing import cast
from urllib.parse import unquote
import uuid
import warnings
import weakref

import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage
from optuna.storages import RDBStorage
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.storages._rdb import storage as rdb_storage_module
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal import JournalStorage
from optuna.trial import FrozenTrial
from optuna.trial import TrialState
import sqlalchemy
from sqlalchemy import event
from sqlalchemy.dialects import plugins
from sqlalchemy.engine import CreateEnginePlugin
from sqlalchemy.engine import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.engine import URL

from hpsearch import internals
from hpsearch import record
from hpsearch.errors import StorageError
from hpsearch.errors import StorageOutage

# Heartbeats, their retry callback and PatientPruner are "experimental" since Optuna 2.8-3.0:
# a warning on every start is noise to our users.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

_log = logging.getLogger(__name__)

DEFAULT_STORAGE = "sqlite:///hpsearch.db"
OUTAGE_WAIT_ENV = "HPSEARCH_STORAGE_WAIT"
DEFAULT_OUTAGE_WAIT_S = 300  # how long workers wait out a database restart or network cut
JOURNAL_PREFIX = "journal:"
SQLITE_TIMEOUT_S = 120  # generous: 8+ workers queue for the one writer lock
MAX_RETRIES = 3  # a trial whose worker died is re-queued at most this often


class RetryCleanly(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry (a WAITING copy with the same params), minus the attempt's attributes."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        trial = copy.deepcopy(trial)
        trial.user_attrs = record.point_attrs(trial)
        super().__call__(study, trial)


# Query parameters that carry a secret in the URL forms SQLAlchemy and libpq accept.
_SECRET_PARAMS = re.compile(
    r"(?i)([?&](?:password|passwd|pwd|sslpassword|secret|token|api_?key|access_?key)=)([^&#]*)"
)


def _userinfo_password(url: str) -> tuple[int, int] | None:
    """Where the password of ``scheme://user:password@host`` lies; it may itself hold ``@``
    or ``:`` (unquoted), so the host starts after the last ``@`` before the query."""
    start = url.find("://")
    if start < 0:
        return None
    start += 3
    query = url.find("?", start)
    at = url.rfind("@", start, query if query >= 0 else len(url))
    colon = url.find(":", start, at)
    if at < 0 or colon < 0 or colon + 1 == at:
        return None
    return colon + 1, at


def secrets_in(url: str) -> list[str]:
    """The secret parts of a storage URL: its password and password-like query values."""
    found = []
    span = _userinfo_password(url)
    if span is not None:
        found.append(url[span[0] : span[1]])
    found += [m.group(2) for m in _SECRET_PARAMS.finditer(url) if m.group(2)]
    return found


def scrub(text: str, url: str) -> str:
    """``text`` (an error message, say) with every secret of ``url`` replaced by ``***``."""
    for secret in sorted(secrets_in(url), key=len, reverse=True):
        for form in {secret, unquote(secret)}:
            text = text.replace(form, "***")
    return text


def redact(url: str) -> str:
    """The URL as messages show it: every password replaced by ``***``, and a relative SQLite
    path made absolute, so that a user sees which file a relative URL opened."""
    if url.startswith(JOURNAL_PREFIX):
        return url
    path = sqlite_path(url)
    if path is not None:
        _, sep, query = url.partition("?")
        url = f"sqlite:///{path}{sep}{query}"
    span = _userinfo_password(url)
    if span is not None:
        url = f"{url[: span[0]]}***{url[span[1] :]}"
    return _SECRET_PARAMS.sub(r"\1***", url)


def sqlite_path(url: str) -> Path | None:
    """The absolute path of a SQLite URL's file; ``None`` for other URLs and in-memory ones."""
    try:
        parsed = make_url(url)
    except Exception as e:  # not a URL at all: open_storage says so, here it is no file
        _log.debug("not a database URL: %s", e)
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).absolute()


class _SQLiteTuning(CreateEnginePlugin):
    """SQLAlchemy engine plugin: busy timeout, WAL, and explicit transaction starts."""

    def __init__(self, url: URL, kwargs: dict[str, Any]) -> None:
        super().__init__(url, kwargs)
        self.read_only = bool(kwargs.pop("hpsearch_read_only", False))

    def update_url(self, url: URL) -> URL:
        return url

    def engine_created(self, engine: Engine) -> None:
        read_only = self.read_only

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn: sqlite3.Connection, record: Any) -> None:
            dbapi_conn.isolation_level = None  # no implicit BEGIN: we emit ours, below
            dbapi_conn.execute(f"PRAGMA busy_timeout = {SQLITE_TIMEOUT_S * 1000}")
            if not read_only:  # switching a file to WAL writes its header: readers never do
                dbapi_conn.execute("PRAGMA journal_mode = WAL")
            dbapi_conn.execute("PRAGMA synchronous = NORMAL")

        @event.listens_for(engine, "begin")
        def _begin(conn: sqlalchemy.Connection) -> None:
            # Workers take the write lock up front: atomic claims, and no failed upgrades.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if engine in _IMMEDIATE else "BEGIN")


# Engines switched to BEGIN IMMEDIATE once opened (Optuna's own set-up nests two
# connections, which an immediate transaction would deadlock).
_IMMEDIATE: weakref.WeakSet[Engine] = weakref.WeakSet()
plugins.register("hpsearch_sqlite", __name__, "_SQLiteTuning")


def open_storage(
    url: str,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    read_only: bool = False,
    create: bool = False,
) -> BaseStorage:
    """Opens the storage at ``url`` (any SQLAlchemy URL, or ``journal:PATH``).

    Args:
        url: ``sqlite:///file.db``, ``postgresql+psycopg://user:pw@host/db``, ``journal:f.log``.
        heartbeat_interval: Seconds between heartbeats of a running trial (RDB only); with
            ``grace_period``, a trial whose worker died is failed and re-queued.
        grace_period: Seconds without a heartbeat after which a trial counts as stale.
        read_only: For commands that only read (status, trials, report, the dashboard):
            SQLite transactions never take the write lock. Writers (workers, ``run``) get
            claim-safe ``BEGIN IMMEDIATE`` transactions.
        create: Whether a missing SQLite file may be created (only when creating a study);
            otherwise it is an error, not a new empty database.

    Raises:
        StorageError: The URL is malformed or the database cannot be opened.
    """
    if url.startswith(JOURNAL_PREFIX):
        path = url[len(JOURNAL_PREFIX) :].removeprefix("//")
        try:
            return JournalStorage(JournalFileBackend(path))
        except OSError as e:
            raise StorageError(f"storage {url}: cannot open journal file: {e.strerror}") from e
    try:
        parsed = make_url(url)
    except Exception as e:
        raise StorageError(
            f"storage {redact(url)}: not a database URL; expected e.g. {DEFAULT_STORAGE}, "
            "postgresql+psycopg://user@host/db or journal:FILE"
        ) from e
    is_sqlite = parsed.get_backend_name() == "sqlite"
    # Never turn a missing file, or another tool's database, into Optuna's. A writer checks
    # before Optuna's set-up writes; a reader's set-up writes nothing, so a reader of a server
    # database checks through its own engine once it is open (one connection, not two).
    check_after = read_only and not is_sqlite and not create
    if not create and not check_after:
        _require_optuna_database(url, parsed)
    engine_kwargs: dict[str, Any] = {}
    if is_sqlite:
        engine_kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT_S}
        engine_kwargs["plugins"] = ["hpsearch_sqlite"]
        engine_kwargs["hpsearch_read_only"] = read_only
    else:
        engine_kwargs["pool_pre_ping"] = True  # a connection that died in a restart is replaced
    heartbeat: dict[str, Any] = {}
    if heartbeat_interval:
        heartbeat = {
            "heartbeat_interval": heartbeat_interval,
            "grace_period": grace_period or 4 * heartbeat_interval,
            "heartbeat_stale_trial_callback": RetryCleanly(MAX_RETRIES),
        }
    try:
        storage = ResilientRDBStorage(
            url, engine_kwargs=engine_kwargs, read_only=read_only, **heartbeat
        )
    except StorageError:
        raise
    except Exception as e:
        raise StorageError(f"storage {redact(url)}: cannot open: {_reason(e, url)}") from e
    if check_after:
        try:
            _require_optuna_database(url, parsed, storage.engine)
        except StorageError:
            storage.engine.dispose()
            raise
    if is_sqlite and not read_only:
        _IMMEDIATE.add(storage.engine)
    return storage


def _reason(error: BaseException, url: str) -> str:
    """The first line of an error's root cause (the driver's words, not Optuna's wrapper),
    with the URL's secrets scrubbed."""
    root = _causes(error)[-1]
    text = str(root).strip().splitlines()[0] if str(root).strip() else type(root).__name__
    return scrub(text, url)


def _stamped(execute: Callable[[str], Any]) -> bool:
    """Whether Optuna finished creating the database (its version rows are written): opening
    it earlier would make this reader write them too, racing the creator."""
    return all(
        execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None
        for table in ("version_info", "alembic_version")
    )


# Tables every Optuna RDB storage has; a database without them is not one.
_OPTUNA_TABLES = {"studies", "trials", "version_info", "alembic_version"}


def _require_optuna_database(url: str, parsed: URL, engine: Engine | None = None) -> None:
    """Checks, without writing anything, that ``url`` names an existing Optuna database.

    Args:
        url: The storage URL.
        parsed: ``url`` parsed.
        engine: A server database's engine to check through (a reader's own: one connection
            instead of two); by default a throw-away one.

    Raises:
        StorageError: A missing SQLite file, a file that is not SQLite, or a database that
            holds no Optuna tables.
    """
    file = sqlite_path(url)
    if file is not None:
        if not file.is_file():
            raise StorageError(f"storage {redact(url)}: {file} does not exist")
        try:
            with contextlib.closing(sqlite3.connect(f"{file.as_uri()}?mode=ro", uri=True)) as c:
                rows = c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                tables = {name for (name,) in rows}
                ready = tables >= _OPTUNA_TABLES and _stamped(c.execute)
        except sqlite3.DatabaseError as e:
            raise StorageError(f"storage {redact(url)}: {file} is not a SQLite database") from e
    elif parsed.get_backend_name() != "sqlite":
        own = engine is None
        try:
            engine = engine or sqlalchemy.create_engine(parsed)
            try:
                with engine.connect() as conn:
                    tables = set(sqlalchemy.inspect(conn).get_table_names())
                    ready = tables >= _OPTUNA_TABLES and _stamped(
                        lambda q: conn.execute(sqlalchemy.text(q))
                    )
            finally:
                if own:
                    engine.dispose()
        except Exception as e:
            raise StorageError(f"storage {redact(url)}: cannot open: {_reason(e, url)}") from e
    else:
        return  # in-memory
    if tables >= _OPTUNA_TABLES and not ready:  # another process is creating it right now
        raise StorageError(f"storage {redact(url)}: the Optuna tables are still being created")
    if not tables >= _OPTUNA_TABLES:
        where = file or "the database"
        raise StorageError(
            f"storage {redact(url)}: {where} is not an Optuna database (no study tables); "
            "nothing was changed"
        )


# --- outages ---------------------------------------------------------------------------------


def outage_wait() -> float:
    """Seconds a storage call waits out an outage (``$HPSEARCH_STORAGE_WAIT``, default 300)."""
    try:
        return float(os.environ.get(OUTAGE_WAIT_ENV) or DEFAULT_OUTAGE_WAIT_S)
    except ValueError:
        return DEFAULT_OUTAGE_WAIT_S


def _causes(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


# What SQLite and the OS say when a write cannot get disk space (an I/O error on a write is
# most often that too, e.g. a file size limit): not an outage to wait out.
_DISK_ERRORS = ("database or disk is full", "No space left on device", "disk I/O error")


def disk_full(error: BaseException) -> bool:
    """Whether ``error`` (or its cause) says the disk is full or failing."""
    for e in _causes(error):
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            return True
        if any(text in str(e) for text in _DISK_ERRORS):
            return True
    return False


def transient(error: BaseException) -> bool:
    """Whether ``error`` is a database outage worth waiting out (a restart, a dropped
    connection, a lock) rather than a bug or a bad request."""
    for e in _causes(error):
        if isinstance(e, sqlalchemy.exc.DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
            return True
        if isinstance(e, sqlalchemy.exc.TimeoutError):  # no pooled connection came back
            return True
        if isinstance(e, sqlalchemy.exc.PendingRollbackError):  # a session the drop broke
            return True
    return False


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
            self._manager = _OPTUNA_VERSION_MANAGER(*self._args)
        return getattr(self._manager, name)


_OPTUNA_VERSION_MANAGER = rdb_storage_module._VersionManager
_VERSION_MANAGER_SWAP = threading.Lock()


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
        (:class:`_LazySchemaVersions`).
        """
        if not read_only:
            super().__init__(url, **kwargs)
            return
        with _VERSION_MANAGER_SWAP:
            rdb_storage_module._VersionManager = _LazySchemaVersions  # type: ignore[misc,assignment]
            try:
                super().__init__(
                    url, skip_table_creation=True, skip_compatibility_check=True, **kwargs
                )
            finally:
                rdb_storage_module._VersionManager = _OPTUNA_VERSION_MANAGER  # type: ignore[misc]

    def _retry(self, call: Callable[[], Any], done: Callable[[], Any] = lambda: None) -> Any:
        """Runs ``call``; after a transient failure, returns ``done()`` if it is not None (the
        write had committed), else runs ``call`` again, until the wait runs out."""
        wait = outage_wait()
        deadline: float | None = None
        pause = 0.2
        while True:
            try:
                result = call()
            except Exception as e:
                if disk_full(e):
                    raise StorageOutage(self._full_message(e)) from e
                if not transient(e):
                    raise
                # This thread's session may be broken by the drop: start the retry afresh.
                with contextlib.suppress(Exception):
                    self.scoped_session.remove()
                now = time.monotonic()
                deadline = deadline or now + wait
                self._outage_started(e)
                if now >= deadline:
                    raise StorageOutage(
                        f"storage {redact(self.url)}: unreachable for {wait:.0f} s "
                        f"({_reason(e, self.url)}); set ${OUTAGE_WAIT_ENV} to wait longer"
                    ) from e
                time.sleep(pause)
                pause = min(2 * pause, 5.0)
                try:
                    finished = done()
                except Exception as check:  # still down: try the call itself next time round
                    _log.debug("checking whether a write took effect failed: %s", check)
                    finished = None
                if finished is not None:
                    result = finished
                else:
                    continue
            self._outage_ended()
            return result

    def _outage_started(self, error: BaseException) -> None:
        with self._outage_lock:
            if ResilientRDBStorage._outage_since is None:
                ResilientRDBStorage._outage_since = time.monotonic()
                _log.warning(
                    "storage %s unreachable (%s); waiting up to %.0f s for it",
                    redact(self.url),
                    _reason(error, self.url),
                    outage_wait(),
                )

    def _outage_ended(self) -> None:
        if ResilientRDBStorage._outage_since is None:
            return
        with self._outage_lock:
            since = ResilientRDBStorage._outage_since
            ResilientRDBStorage._outage_since = None
            ResilientRDBStorage._outage_ended_at = time.monotonic()
        if since is not None:
            _log.warning(
                "storage %s is back after %.0f s", redact(self.url), time.monotonic() - since
            )

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
            return cast(FrozenTrial, self._retry(lambda: create(study_id)))
        token = uuid.uuid4().hex
        template = copy.copy(template_trial)
        template.system_attrs = {**template_trial.system_attrs, record.CREATE_TOKEN: token}

        def done() -> FrozenTrial | None:
            trial_id = self._trial_with_token(token)
            return None if trial_id is None else self.get_trial(trial_id)

        return cast(FrozenTrial, self._retry(lambda: create(study_id, template), done))

    def _trial_with_token(self, token: str) -> int | None:
        return internals.rdb_trial_with_system_attr(self, record.CREATE_TOKEN, token)

    def fail_running_trial(self, trial_id: int, reason: str) -> bool:
        """See :func:`hpsearch.internals.fail_running_trial`; waits out outages too."""

        def done() -> bool | None:
            trial = self.get_trial(trial_id)
            ours = trial.state == TrialState.FAIL and record.fail_reason_of(trial) == reason
            return True if ours else None

        return bool(
            self._retry(lambda: internals.rdb_fail_running_trial(self, trial_id, reason), done)
        )

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        def done() -> bool | None:
            # A state change that may have committed is taken as done (hpsearch's own claims
            # go through internals.claim_waiting_trial, which records a heartbeat with them).
            return True if self.get_trial(trial_id).state == state else None

        return bool(
            self._retry(
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
        self._retry(
            lambda: write(
                trial_id, param_name, param_value_internal, distribution, previous_distribution
            ),
            done=lambda: True if param_name in self.get_trial(trial_id).params else None,
        )

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        # One guarded upsert each epoch (idempotent: retried through an outage as it is).
        internals.set_intermediate_value(self, trial_id, step, intermediate_value)

    def record_heartbeat(self, trial_id: int) -> None:
        super().record_heartbeat(trial_id)  # not retried: a missed beat is sent next interval


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
        return self._retry(lambda: method(self, *args, **kwargs))

    call.__name__ = name
    call.__doc__ = method.__doc__
    return call


# Reads and idempotent writes (upserts of attributes and intermediate values): plain retries.
for _name in (
    "create_new_study",
    "delete_study",
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
    "get_all_trials",
    "get_best_trial",
    "_get_stale_trial_ids",
    "_get_trials",
    "_get_best_trial_id",
):
    setattr(ResilientRDBStorage, _name, _retried(_name))
