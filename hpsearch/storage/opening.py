"""Opening a storage from its URL: SQLite tuned for many processes, PostgreSQL, journals.

SQLite serialises writers, but its default deferred transactions let two processes both read
a WAITING trial and both claim it, and a reader upgrading to a writer fails at once with
"database is locked" whatever the timeout. Worker connections therefore start every
transaction with ``BEGIN IMMEDIATE`` (claims become atomic, waits honour the busy timeout) and
use WAL so that readers (dashboard, status) never block writers.

A missing file, or another tool's database, is never turned into Optuna's: writers check
before Optuna's set-up writes, readers check once open.
"""

from __future__ import annotations

from collections.abc import Callable
import contextlib
from pathlib import Path
import sqlite3
from typing import Any
import warnings
import weakref

import optuna
from optuna.storages import BaseStorage
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
from sqlalchemy.exc import NoSuchModuleError

from hpsearch.errors import closest
from hpsearch.errors import StorageError
from hpsearch.spec.defaults import DEFAULT_STORAGE
from hpsearch.storage._optuna.rdb import read_migrations
from hpsearch.storage._optuna.rdb import ResilientRDBStorage
from hpsearch.storage._optuna.rdb import wait_out
from hpsearch.storage.outages import reason
from hpsearch.storage.urls import JOURNAL_PREFIX
from hpsearch.storage.urls import redact
from hpsearch.storage.urls import sqlite_path

# Heartbeats, their retry callback and PatientPruner are "experimental" since Optuna 2.8-3.0:
# a warning on every start is noise to our users.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

SQLITE_TIMEOUT_S = 120  # generous: 8+ workers queue for the one writer lock


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
_OPENED: weakref.WeakSet[Engine] = weakref.WeakSet()  # every database storage opened here
plugins.register("hpsearch_sqlite", __name__, "_SQLiteTuning")


def check_url(url: str) -> None:
    """Refuses, without connecting, a storage URL that no storage could open: malformed, of
    a kind of database SQLAlchemy does not know, or in memory (so that a command refuses it
    before it loads torch, not after).

    Raises:
        StorageError: In the words :func:`open_storage` would use.
    """
    if not url.startswith(JOURNAL_PREFIX):
        _parsed(url)


# what a storage URL may look like, for the words of a refusal
_EXAMPLES = f"expected e.g. {DEFAULT_STORAGE}, postgresql+psycopg://user@host/db or journal:FILE"
_KNOWN = ("sqlite", "postgresql", "mysql", "journal")


def _parsed(url: str) -> URL:
    """``url`` parsed, refused if no storage could open it: malformed, of a kind of database
    SQLAlchemy does not know, or an in-memory SQLite database (it ends with its process, and
    every command and worker of a study is a process of its own: a reader of one would wait
    for tables that never come).

    Raises:
        StorageError: Naming the URL (its password hidden) and what is allowed.
    """
    try:
        parsed = make_url(url)
    except Exception as e:
        raise StorageError(f"storage {redact(url)}: not a database URL; {_EXAMPLES}") from e
    try:
        parsed.get_dialect()
    except NoSuchModuleError as e:
        close = closest(parsed.get_backend_name(), _KNOWN)
        hint = f" (did you mean {close!r}?)" if close else ""
        raise StorageError(
            f"storage {redact(url)}: unknown kind of database {parsed.drivername!r}{hint}; "
            f"{_EXAMPLES}"
        ) from e
    except Exception as e:
        raise StorageError(f"storage {redact(url)}: cannot open: {reason(e, url)}") from e
    if parsed.get_backend_name() == "sqlite" and sqlite_path(url) is None:
        raise StorageError(
            f"storage {redact(url)}: an in-memory database ends with its process, and each "
            f"command and worker is a process of its own; name a file, e.g. {DEFAULT_STORAGE}"
        )
    return parsed


def preload(url: str) -> None:
    """Imports now what opening ``url`` to write would import (Alembic, which Optuna checks
    the schema with, and the database's driver: about 0.4 s) and reads Optuna's migration
    scripts, so that the worker processes forked from this one share them instead of each
    reading them."""
    if url.startswith(JOURNAL_PREFIX):
        return
    import alembic.migration  # noqa: F401

    read_migrations(url)
    with contextlib.suppress(Exception):  # a bad URL is reported by open_storage, not here
        make_url(url).get_dialect().import_dbapi()


def open_storage(
    url: str,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    read_only: bool = False,
    create: bool = False,
    on_stale: Callable[[optuna.Study, FrozenTrial], None] | None = None,
    wait: bool = False,
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
        on_stale: What to do with a trial whose heartbeat went stale, once it is failed
            (the study layer's retry rule); with heartbeats only.
        wait: Wait out an outage while opening, as every later call does (a worker joining
            a study that exists: a restart must not end it); else a server that does not
            answer is an error at once (a mistyped host, at a command's start).

    Raises:
        StorageError: The URL is malformed or the database cannot be opened.
        StorageOutage: With ``wait``, the database stayed unreachable past the wait.
    """
    if wait:
        return wait_out(
            url,
            lambda: open_storage(
                url,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                read_only=read_only,
                create=create,
                on_stale=on_stale,
            ),
        )
    if url.startswith(JOURNAL_PREFIX):
        try:
            return JournalStorage(JournalFileBackend(str(_journal_path(url))))
        except OSError as e:
            raise StorageError(f"storage {url}: cannot open journal file: {e.strerror}") from e
    parsed = _parsed(url)
    is_sqlite = parsed.get_backend_name() == "sqlite"
    # Never turn a missing file, or another tool's database, into Optuna's. A writer checks
    # before Optuna's set-up writes; a reader's set-up writes nothing, so a reader of a server
    # database checks through its own engine once it is open (one connection, not two).
    check_after = read_only and not is_sqlite and not create
    if not check_after:
        _require_optuna_database(url, parsed, creating=create)
    engine_kwargs: dict[str, Any] = {}
    if is_sqlite:
        engine_kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT_S}
        engine_kwargs["plugins"] = ["hpsearch_sqlite"]
        engine_kwargs["hpsearch_read_only"] = read_only
    else:
        engine_kwargs = _server_kwargs(parsed)
    heartbeat: dict[str, Any] = {}
    if heartbeat_interval:
        heartbeat = {
            "heartbeat_interval": heartbeat_interval,
            "grace_period": grace_period or 4 * heartbeat_interval,
            "heartbeat_stale_trial_callback": on_stale,
        }
    try:
        storage = ResilientRDBStorage(
            url, engine_kwargs=engine_kwargs, read_only=read_only, **heartbeat
        )
    except StorageError:
        raise
    except Exception as e:
        raise StorageError(f"storage {redact(url)}: cannot open: {reason(e, url)}") from e
    if check_after:
        try:
            _require_optuna_database(url, parsed, storage.engine)
        except StorageError:
            storage.engine.dispose()
            raise
    if is_sqlite and not read_only:
        _IMMEDIATE.add(storage.engine)
    _OPENED.add(storage.engine)
    return storage


# PostgreSQL's drivers that connect through libpq, which takes the client's encoding as a
# setting ("": SQLAlchemy's default, psycopg2 or psycopg by its version)
_LIBPQ_DRIVERS = ("", "psycopg", "psycopg2")


def _server_kwargs(parsed: URL) -> dict[str, Any]:
    """A database server's engine settings: a connection that died in a restart is
    replaced; text travels as UTF-8 (a database created without a locale, ``SQL_ASCII``,
    would otherwise hand psycopg bytes where SQLAlchemy reads text), unless the URL says."""
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    libpq = (
        parsed.get_backend_name() == "postgresql"
        and parsed.drivername.partition("+")[2] in _LIBPQ_DRIVERS
    )
    if libpq and "client_encoding" not in parsed.query:
        kwargs["connect_args"] = {"client_encoding": "utf8"}
    return kwargs


def close_storages() -> None:
    """Closes the pooled connections of every database storage this process opened, as the
    interpreter's exit would (the last connection to a SQLite file folds its write-ahead log
    back into the file); a storage used again reconnects."""
    for engine in list(_OPENED):
        with contextlib.suppress(Exception):  # a server gone away: nothing left to close
            engine.dispose()


def _stamped(execute: Callable[[str], Any]) -> bool:
    """Whether Optuna finished creating the database (its version rows are written): opening
    it earlier would make this reader write them too, racing the creator."""
    return all(
        execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None
        for table in ("version_info", "alembic_version")
    )


# Tables every Optuna RDB storage has; a database without them is not one.
_OPTUNA_TABLES = {"studies", "trials", "version_info", "alembic_version"}


def holds_studies(url: str) -> bool:
    """Whether ``url`` names an Optuna database already, read without writing anything:
    ``False`` for a missing SQLite or journal file or an empty database, which creating a
    study sets up.

    Raises:
        StorageError: What creating a study there would be refused for: a malformed URL, a
            file that is not SQLite, another tool's tables, a server that does not answer.
    """
    if url.startswith(JOURNAL_PREFIX):
        path = _journal_path(url)
        return path.is_file() and path.stat().st_size > 0
    return _require_optuna_database(url, _parsed(url), creating=True)


def storage_file(url: str) -> Path | None:
    """The file a SQLite or journal URL keeps its studies in; ``None`` for a server."""
    return _journal_path(url) if url.startswith(JOURNAL_PREFIX) else sqlite_path(url)


def _journal_path(url: str) -> Path:
    """The file a ``journal:PATH`` (or ``journal://PATH``) URL names."""
    return Path(url[len(JOURNAL_PREFIX) :].removeprefix("//"))


def _tables(url: str, parsed: URL, engine: Engine | None = None) -> tuple[set[str], bool] | None:
    """The tables of the database at ``url`` and whether Optuna finished creating them
    (see :func:`_stamped`), read only; ``None`` for a missing SQLite file.

    Raises:
        StorageError: A path that is not a file, a file that is not SQLite, a server that
            cannot be reached.
    """
    file = sqlite_path(url)
    if file is not None:
        if not file.exists():
            return None
        if not file.is_file():
            raise StorageError(f"storage {redact(url)}: {file} is not a file")
        try:
            with contextlib.closing(sqlite3.connect(f"{file.as_uri()}?mode=ro", uri=True)) as c:
                rows = c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                tables = {name for (name,) in rows}
                return tables, tables >= _OPTUNA_TABLES and _stamped(c.execute)
        except sqlite3.DatabaseError as e:
            raise StorageError(f"storage {redact(url)}: {file} is not a SQLite database") from e
    own = engine is None
    try:
        engine = engine or sqlalchemy.create_engine(parsed, **_server_kwargs(parsed))
        try:
            with engine.connect() as conn:
                tables = set(sqlalchemy.inspect(conn).get_table_names())
                ready = tables >= _OPTUNA_TABLES and _stamped(
                    lambda q: conn.execute(sqlalchemy.text(q))
                )
                return tables, ready
        finally:
            if own:
                engine.dispose()
    except Exception as e:
        raise StorageError(f"storage {redact(url)}: cannot open: {reason(e, url)}") from e


def _require_optuna_database(
    url: str, parsed: URL, engine: Engine | None = None, creating: bool = False
) -> bool:
    """Checks, without writing anything, that ``url`` names an existing Optuna database (or,
    ``creating``, one Optuna may create its tables in: a missing SQLite file, an empty
    database, or one with Optuna's tables); returns whether Optuna's tables are there.

    Args:
        url: The storage URL.
        parsed: ``url`` parsed.
        engine: A server database's engine to check through (a reader's own: one connection
            instead of two); by default a throw-away one.
        creating: Whether a study is being created (``run``, ``launch``, ``create``).

    Raises:
        StorageError: A missing SQLite file, a file that is not SQLite, or a database that
            holds no Optuna tables (when creating: one that holds tables of another tool).
    """
    file = sqlite_path(url)
    if parsed.get_backend_name() == "sqlite" and file is None:
        return False  # in-memory: refused by _parsed before
    found = _tables(url, parsed, engine)
    if found is None:
        if creating and file is not None and not file.parent.is_dir():
            raise StorageError(f"storage {redact(url)}: no folder {file.parent} to create it in")
        if creating:
            return False  # Optuna creates it
        raise StorageError(f"storage {redact(url)}: {file} does not exist")
    tables, ready = found
    if creating:
        if tables and not tables & _OPTUNA_TABLES:
            shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
            raise StorageError(
                f"storage {redact(url)}: {file or 'the database'} holds another tool's tables "
                f"({shown}), not Optuna's; nothing was changed: name a new file or database"
            )
        # empty, or Optuna's (perhaps being created by another launcher right now)
        return tables >= _OPTUNA_TABLES
    if tables >= _OPTUNA_TABLES and not ready:  # another process is creating it right now
        raise StorageError(f"storage {redact(url)}: the Optuna tables are still being created")
    if not tables >= _OPTUNA_TABLES:
        where = file or "the database"
        raise StorageError(
            f"storage {redact(url)}: {where} is not an Optuna database (no study tables); "
            "nothing was changed"
        )
    return True
