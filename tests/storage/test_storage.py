from __future__ import annotations

import hashlib
import os
from pathlib import Path
import sqlite3
import subprocess
import sys

import optuna
import pytest

from hpsearch.errors import StorageError
from hpsearch.results.reading import open_study
from hpsearch.storage import open_storage
from hpsearch.storage import redact
from hpsearch.storage import scrub
from hpsearch.storage.urls import with_password_file
from tests.conftest import PostgresCluster
from tests.helpers import hpsearch
from tests.helpers import write_study

URL_FORMS = [
    ("postgresql+psycopg://me:S3cr3t@db/hp", "postgresql+psycopg://me:***@db/hp"),
    ("postgresql+psycopg://me:a@Zx9@db/hp", "postgresql+psycopg://me:***@db/hp"),
    ("postgresql+psycopg://me:p%40S3cr3t@db:5432/hp", "postgresql+psycopg://me:***@db:5432/hp"),
    (
        "postgresql+psycopg://me@db/hp?password=S3cr3t",
        "postgresql+psycopg://me@db/hp?password=***",
    ),
    (
        "postgresql://me@db/hp?sslmode=require&PASSWORD=S3cr3t&x=1",
        "postgresql://me@db/hp?sslmode=require&PASSWORD=***&x=1",
    ),
    ("postgresql://:S3cr3t@db/hp", "postgresql://:***@db/hp"),
    ("mysql+pymysql://me:pa:S3cr3t@db/hp", "mysql+pymysql://me:***@db/hp"),
    ("postgresql+psycopg://me:S3c?r3t@db/hp", "postgresql+psycopg://me:***@db/hp"),
    (
        "postgresql+psycopg://me:S3c?r3t@db/hp?sslmode=require",
        "postgresql+psycopg://me:***@db/hp?sslmode=require",
    ),
    ("postgresql://me@db:5432/hp", "postgresql://me@db:5432/hp"),
    ("journal:runs/hp.log", "journal:runs/hp.log"),
]


@pytest.mark.parametrize(("url", "shown"), URL_FORMS)
def test_every_password_form_is_redacted(url: str, shown: str) -> None:
    assert redact(url) == shown
    assert "S3cr3t" not in scrub(f"cannot connect to {url}: bad login", url)


@pytest.mark.parametrize(
    ("url", "opened"),
    [
        ("postgresql+psycopg://me@db/hp", "postgresql+psycopg://me:p%40ss%3Aw%2Frd@db/hp"),
        (
            "postgresql+psycopg://me@db:5432/hp?sslmode=require",
            "postgresql+psycopg://me:p%40ss%3Aw%2Frd@db:5432/hp?sslmode=require",
        ),
        ("postgresql+psycopg://me:own@db/hp", "postgresql+psycopg://me:own@db/hp"),  # its own
        ("postgresql+psycopg://db/hp", "postgresql+psycopg://db/hp"),  # no user: libpq's
        ("sqlite:///hp.db", "sqlite:///hp.db"),
        ("journal:hp.log", "journal:hp.log"),
    ],
)
def test_a_password_file_fills_in_a_urls_missing_password(
    url: str, opened: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "pw"
    secret.write_text("p@ss:w/rd\n")  # as `openssl rand ... > file` leaves it: one newline
    assert with_password_file(url) == url  # unset: the URL as it is
    monkeypatch.setenv("HPSEARCH_STORAGE_PASSWORD_FILE", str(secret))
    assert with_password_file(url) == opened
    assert "p@ss" not in redact(opened) and "p%40ss" not in redact(opened)


def test_an_unreadable_or_empty_password_file_is_one_line_naming_it(tmp_path: Path) -> None:
    url = "postgresql+psycopg://me@127.0.0.1:1/hp"
    (tmp_path / "empty").write_text("\n")
    for path, why in (
        (tmp_path / "missing", "No such file or directory"),
        (tmp_path / "empty", "empty"),
    ):
        proc = hpsearch(
            "studies", "--storage", url, env={"HPSEARCH_STORAGE_PASSWORD_FILE": str(path)}
        )
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert proc.stderr.strip() == f"error: $HPSEARCH_STORAGE_PASSWORD_FILE {path}: {why}"


def test_relative_sqlite_urls_are_shown_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert redact("sqlite:///hp.db") == f"sqlite:///{tmp_path / 'hp.db'}"
    assert redact("sqlite:////abs/hp.db") == "sqlite:////abs/hp.db"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


READERS = [
    ["status", "s"],
    ["trials", "s"],
    ["best", "s"],
    ["report", "s", "-o", "r.html"],
    ["studies"],
    ["dashboard", "--port", "0"],
    ["retry", "s"],
    ["delete", "s", "--yes"],
]


@pytest.mark.slow
@pytest.mark.parametrize("args", READERS, ids=[a[0] for a in READERS])
def test_reading_never_creates_or_changes_a_database(args: list[str], tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('mine')")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    before = {p: _digest(p) for p in (other, junk)}
    for path, message in (
        (other, "is not an Optuna database (no study tables)"),
        (junk, "is not a SQLite database"),
    ):
        proc = hpsearch(*args, "--storage", f"sqlite:///{path}", cwd=tmp_path, timeout=60)
        assert proc.returncode == 2
        assert proc.stderr == f"error: storage sqlite:///{path}: {path} {message}" + (
            "; nothing was changed\n" if path == other else "\n"
        )
    missing = tmp_path / "missing.db"
    proc = hpsearch(*args, "--storage", f"sqlite:///{missing}", cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == f"error: storage sqlite:///{missing}: {missing} does not exist\n"
    assert {p: _digest(p) for p in (other, junk)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.db", "other.db"]


BAD_URLS = {
    # an in-memory database: a reader waited five minutes for tables that never come
    "sqlite://": "an in-memory database ends with its process",
    "sqlite:///:memory:": "an in-memory database ends with its process",
    "postgres://me:pw-9f3@127.0.0.1/db": "unknown kind of database 'postgres' (did you mean",
    "nosuch://x": "unknown kind of database 'nosuch'; expected e.g. sqlite:///",
    "sqlite:/x.db": "not a database URL; expected e.g. sqlite:///",
}


@pytest.mark.parametrize("url", BAD_URLS)
def test_a_url_no_storage_could_open_is_one_line_for_readers_and_writers(
    url: str, tmp_path: Path
) -> None:
    study = write_study(tmp_path, budget={"trials": 1})
    for args in (["studies"], ["status", "t"], ["run", str(study)]):
        proc = hpsearch(
            *args, "--storage", url, cwd=tmp_path, timeout=120, env={"HPSEARCH_STORAGE_WAIT": "5"}
        )
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.startswith(f"error: storage {redact(url)}: {BAD_URLS[url]}"), args
        assert proc.stderr.count("\n") == 1 and "pw-9f3" not in proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == [study.name]  # nothing written


def test_opening_waits_out_an_outage_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy as sa

    from hpsearch.errors import StorageOutage
    from hpsearch.storage._optuna.rdb import ResilientRDBStorage

    real, calls = ResilientRDBStorage.__init__, []

    def down_twice(self: ResilientRDBStorage, *args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) <= 2 or os.environ.get("DOWN_FOR_GOOD"):
            raise sa.exc.OperationalError("connect", {}, Exception("connection refused"))
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ResilientRDBStorage, "__init__", down_twice)
    url = f"sqlite:///{tmp_path / 'hp.db'}"
    with pytest.raises(StorageError, match=r"cannot open: .*connection refused"):
        open_storage(url, create=True)  # a command's start: a mistyped host says so at once
    calls.clear()
    assert isinstance(open_storage(url, create=True, wait=True), ResilientRDBStorage)
    assert len(calls) == 3
    monkeypatch.setenv("DOWN_FOR_GOOD", "1")
    monkeypatch.setenv("HPSEARCH_STORAGE_WAIT", "1")
    with pytest.raises(StorageOutage, match=r"unreachable for 1 s \(.*connection refused\)"):
        open_storage(url, create=True, wait=True)


def test_a_sqlite_file_in_a_missing_folder_names_the_folder(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nodir' / 'hp.db'}"
    with pytest.raises(StorageError) as e:
        open_storage(url, create=True)
    assert str(e.value) == f"storage {url}: no folder {tmp_path / 'nodir'} to create it in"
    assert [p.name for p in tmp_path.iterdir()] == []


@pytest.mark.slow
def test_reading_a_plain_optuna_database_leaves_it_byte_for_byte(tmp_path: Path) -> None:
    db = tmp_path / "plain.db"
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{db}")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    before = _digest(db)
    for args in (["status", "s"], ["trials", "s"], ["best", "s"], ["studies"]):
        proc = hpsearch(*args, "--storage", f"sqlite:///{db}")
        assert proc.returncode == 0, proc.stderr
    assert _digest(db) == before


_READER = """
import sys
import optuna
from hpsearch.storage import open_storage
storage = open_storage(sys.argv[1], read_only=True)
study = optuna.load_study(study_name="s", storage=storage)
print(len(study.trials), "alembic" in sys.modules)
print(storage.get_current_version() == storage.get_head_version())
"""


@pytest.mark.parametrize(
    "server", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_a_reader_skips_schema_versions_until_asked(
    server: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # Alembic (a quarter of a reading command's start) is imported only for the schema
    # version, which optuna-dashboard asks for and the reading commands never do.
    url = (
        f"sqlite:///{tmp_path / 'hp.db'}"
        if server == "sqlite"
        else str(request.getfixturevalue("postgres_url"))
    )
    study = optuna.create_study(study_name="s", storage=url)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    proc = subprocess.run(
        [sys.executable, "-c", _READER, url], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["2", "False", "True"]


@pytest.mark.postgres
def test_reading_an_empty_postgres_database_creates_no_table(postgres_url: str) -> None:
    import psycopg

    proc = hpsearch("status", "s", "--storage", postgres_url)
    assert proc.returncode == 2 and "is not an Optuna database" in proc.stderr
    dsn = postgres_url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(dsn) as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        assert tables.fetchall() == []


@pytest.mark.postgres
def test_a_database_created_without_a_locale_holds_studies(
    postgres_cluster: PostgresCluster, tmp_path: Path
) -> None:
    """``SQL_ASCII`` (``initdb`` without a locale, some hosted servers) hands psycopg bytes
    where text is read, unless the client asks for UTF-8."""
    url = postgres_cluster.database(
        "ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
    )
    study = write_study(tmp_path, storage=url, budget={"trials": 2})
    proc = hpsearch("run", str(study), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    written = open_study("t", url, read_only=False)
    written.set_user_attr("note", "Größe, 99 %")  # non-ASCII text, as UTF-8 bytes
    assert open_study("t", url).user_attrs["note"] == "Größe, 99 %"
    proc = hpsearch("trials", "t", "--storage", url)
    assert proc.returncode == 0, proc.stderr
    assert "COMPLETE" in proc.stdout


@pytest.mark.postgres
def test_a_password_never_reaches_output_logs_or_files(postgres_url: str, tmp_path: Path) -> None:
    # The throw-away server trusts every login, so any password connects: a real secret's path.
    secret = "S3cr3tQ9"
    url = f"{postgres_url}?password={secret}"
    path = write_study(tmp_path, storage="sqlite:///unused.db", budget={"trials": 2})
    env = {**os.environ, "HPSEARCH_STORAGE": url, "HPSEARCH_OFFLINE": "1"}
    outputs = []
    for args in (
        ["run", str(path), "--no-progress"],
        ["launch", str(path), "--trials", "4", "--workers", "2", "--no-progress"],
        ["status", str(path)],
        ["trials", str(path)],
        ["studies"],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "hpsearch", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout + proc.stderr)
    unreachable = f"postgresql+psycopg://me:{secret}@127.0.0.1:1/hp"
    for bad in (unreachable, f"{unreachable}?password={secret}", f"nodriver://me:{secret}@x"):
        proc = hpsearch("status", str(path), "--storage", bad)
        assert proc.returncode == 2 and (
            "cannot open" in proc.stderr or "unknown kind" in proc.stderr
        )
        outputs.append(proc.stdout + proc.stderr)
    assert "password=***" in outputs[0]
    assert not [o for o in outputs if secret in o]
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".log" for p in written)  # the workers' logs are searched too
    assert not [p for p in written if secret.encode() in p.read_bytes()]


@pytest.mark.parametrize("command", ["run", "create"])
def test_a_study_is_never_created_in_another_tools_database(command: str, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    before = _digest(other)
    study = write_study(tmp_path)
    proc = hpsearch(command, str(study), "--storage", f"sqlite:///{other}", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == (
        f"error: storage sqlite:///{other}: {other} holds another tool's tables (notes), not "
        "Optuna's; nothing was changed: name a new file or database\n"
    )
    assert _digest(other) == before
