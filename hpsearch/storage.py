"""Opening Optuna storages from URLs: SQLite tuned for many processes, PostgreSQL, journals.

SQLite serialises writers, but its default deferred transactions let two processes both read
a WAITING trial and both claim it, and a reader upgrading to a writer fails at once with
"database is locked" whatever the timeout. Worker connections therefore start every
transaction with ``BEGIN IMMEDIATE`` (claims become atomic, waits honour the busy timeout) and
use WAL so that readers (dashboard, status) never block writers.
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
import re
import sqlite3
from typing import Any
from urllib.parse import unquote
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
    except Exception:
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
    if not create:  # never turn a missing file, or another tool's database, into Optuna's
        _require_optuna_database(url, parsed)
    engine_kwargs: dict[str, Any] = {}
    if is_sqlite:
        engine_kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT_S}
        engine_kwargs["plugins"] = ["hpsearch_sqlite"]
        engine_kwargs["hpsearch_read_only"] = read_only
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
        raise StorageError(f"storage {redact(url)}: cannot open: {_reason(e, url)}") from e
    if is_sqlite and not read_only:
        _IMMEDIATE.add(storage.engine)
    return storage


def _reason(error: BaseException, url: str) -> str:
    """The first line of an error, with the URL's secrets scrubbed."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return scrub(text, url)


# Tables every Optuna RDB storage has; a database without them is not one.
_OPTUNA_TABLES = {"studies", "trials", "version_info"}


def _require_optuna_database(url: str, parsed: URL) -> None:
    """Checks, without writing anything, that ``url`` names an existing Optuna database.

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
        except sqlite3.DatabaseError as e:
            raise StorageError(f"storage {redact(url)}: {file} is not a SQLite database") from e
    elif parsed.get_backend_name() != "sqlite":
        try:
            engine = sqlalchemy.create_engine(parsed)
            try:
                tables = set(sqlalchemy.inspect(engine).get_table_names())
            finally:
                engine.dispose()
        except Exception as e:
            raise StorageError(f"storage {redact(url)}: cannot open: {_reason(e, url)}") from e
    else:
        return  # in-memory
    if not tables >= _OPTUNA_TABLES:
        where = file or "the database"
        raise StorageError(
            f"storage {redact(url)}: {where} is not an Optuna database (no study tables); "
            "nothing was changed"
        )
