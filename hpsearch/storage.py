"""Opening Optuna storages from URLs: SQLite tuned for many processes, PostgreSQL, journals.

SQLite serialises writers, but its default deferred transactions let two processes both read
a WAITING trial and both claim it, and a reader upgrading to a writer fails at once with
"database is locked" whatever the timeout. Worker connections therefore start every
transaction with ``BEGIN IMMEDIATE`` (claims become atomic, waits honour the busy timeout) and
use WAL so that readers (dashboard, status) never block writers.
"""

from __future__ import annotations

import copy
from pathlib import Path
import re
import sqlite3
from typing import Any
import warnings
import weakref

import optuna
from optuna.storages import BaseStorage
from optuna.storages import RDBStorage
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal import JournalStorage
from optuna.trial import FrozenTrial
import sqlalchemy
from sqlalchemy import event
from sqlalchemy.dialects import plugins
from sqlalchemy.engine import CreateEnginePlugin
from sqlalchemy.engine import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.engine import URL

from hpsearch.errors import StorageError

# Heartbeats, their retry callback and PatientPruner are "experimental" since Optuna 2.8-3.0:
# a warning on every start is noise to our users.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

DEFAULT_STORAGE = "sqlite:///hpsearch.db"
JOURNAL_PREFIX = "journal:"
SQLITE_TIMEOUT_S = 120  # generous: 8+ workers queue for the one writer lock
MAX_RETRIES = 3  # a trial whose worker died is re-queued at most this often


# User attributes that describe the trial's point, not one attempt at running it: a retry keeps
# them (the rest, such as fail_reason or the curves of a killed run, would mislabel it).
POINT_ATTRS = ("ofat_factor", "ofat_value")


class RetryCleanly(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry (a WAITING copy with the same params), minus the attempt's attributes."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        trial = copy.deepcopy(trial)
        trial.user_attrs = {k: v for k, v in trial.user_attrs.items() if k in POINT_ATTRS}
        super().__call__(study, trial)


def redact(url: str) -> str:
    """The URL as messages show it: any password replaced by ``***``, and a relative SQLite
    path made absolute, so that a user sees which file a relative URL opened."""
    if url.startswith(JOURNAL_PREFIX):
        return url
    try:
        parsed = make_url(url)
    except Exception:  # an unparsable URL may still hold a user:password@ part
        return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)
    path = sqlite_path(url)
    if path is not None:
        parsed = parsed.set(database=str(path))
    return parsed.render_as_string(hide_password=True)


def sqlite_path(url: str) -> Path | None:
    """The absolute path of a SQLite URL's file; ``None`` for other URLs and in-memory ones."""
    try:
        parsed = make_url(url)
    except Exception:
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).absolute()


class _SQLiteTuning(CreateEnginePlugin):
    """SQLAlchemy engine plugin: busy timeout, WAL, and explicit transaction starts."""

    def update_url(self, url: URL) -> URL:
        return url

    def engine_created(self, engine: Engine) -> None:
        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn: sqlite3.Connection, record: Any) -> None:
            dbapi_conn.isolation_level = None  # no implicit BEGIN: we emit ours, below
            dbapi_conn.execute(f"PRAGMA busy_timeout = {SQLITE_TIMEOUT_S * 1000}")
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
    file = sqlite_path(url)
    if not create and file is not None and not file.is_file():
        raise StorageError(f"storage {redact(url)}: {file} does not exist")
    engine_kwargs: dict[str, Any] = {}
    if is_sqlite:
        engine_kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT_S}
        engine_kwargs["plugins"] = ["hpsearch_sqlite"]
    else:
        engine_kwargs["pool_pre_ping"] = True  # survive server restarts between trials
    heartbeat: dict[str, Any] = {}
    if heartbeat_interval:
        heartbeat = {
            "heartbeat_interval": heartbeat_interval,
            "grace_period": grace_period or 4 * heartbeat_interval,
            "heartbeat_stale_trial_callback": RetryCleanly(MAX_RETRIES),
        }
    try:
        storage = RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
    except StorageError:
        raise
    except Exception as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if parsed.password:
            reason = reason.replace(parsed.password, "***")
        raise StorageError(f"storage {redact(url)}: cannot open: {reason}") from e
    if is_sqlite and not read_only:
        _IMMEDIATE.add(storage.engine)
    return storage
