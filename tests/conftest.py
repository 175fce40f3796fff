from __future__ import annotations

from collections.abc import Iterator
import contextlib
import os
from pathlib import Path
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid

import pytest

# No test may try to download a data set: the machines running them have no network.
os.environ["HPSEARCH_OFFLINE"] = "1"

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def mnist_dir() -> str:
    """The directory holding MNIST/raw: $HPSEARCH_DATA_DIR, else ../shared/data.

    Skips where the files are absent, except under CI, where their absence is a failure.
    """
    path = Path(os.environ.get("HPSEARCH_DATA_DIR") or REPO.parent / "shared" / "data")
    if not (path / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        if os.environ.get("CI"):
            pytest.fail(f"MNIST files missing under {path} (set HPSEARCH_DATA_DIR)")
        pytest.skip(f"MNIST files missing under {path}")
    return str(path)


def _postgres_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


def _as_postgres(cmd: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root: drop to the postgres user where we are root.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresCluster:
    """A throw-away PostgreSQL cluster on 127.0.0.1 that a test can stop and restart."""

    def __init__(self) -> None:
        initdb, self.pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
        if not (initdb and self.pg_ctl):
            message = "PostgreSQL binaries (initdb, pg_ctl) not found"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        self.base = Path(tempfile.mkdtemp(prefix="hpsearch-pg-"))
        self.base.chmod(0o777)  # the postgres user writes its cluster here
        self.data, self.port = self.base / "data", _free_port()
        try:
            subprocess.run(
                _as_postgres(
                    [initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"]
                ),
                check=True,
                capture_output=True,
            )
            self.start()
        except (subprocess.CalledProcessError, OSError) as e:
            shutil.rmtree(self.base, ignore_errors=True)
            if os.environ.get("CI"):
                pytest.fail(f"cannot start PostgreSQL: {e}")
            pytest.skip(f"cannot start PostgreSQL: {e}")
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}"

    def _ctl(self, *args: str) -> None:
        assert self.pg_ctl is not None
        subprocess.run(
            _as_postgres([self.pg_ctl, "-D", str(self.data), *args]),
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._ctl("-o", options, "-l", str(self.base / "log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "-w", "stop")

    def restart(self, mode: str) -> None:
        self.stop(mode)
        self.start()

    def database(self) -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = f"t{uuid.uuid4().hex[:12]}"
        dsn = self.url.replace("postgresql+psycopg", "postgresql") + "/postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"{self.url}/{name}"

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One throw-away cluster for the session. Fails (does not skip) under CI when the
    server cannot be started."""
    cluster = PostgresCluster()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def own_postgres() -> Iterator[PostgresCluster]:
    """A cluster of this test's own, to stop and restart."""
    cluster = PostgresCluster()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def postgres_server(postgres_cluster: PostgresCluster) -> str:
    """The session cluster's base URL (no database)."""
    return postgres_cluster.url


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """A fresh, empty database on the throw-away server."""
    return postgres_cluster.database()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every storage the multi-process tests must pass on."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hp.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def cpu_hog() -> Iterator[None]:
    """Four busy processes on this machine's cores while the test runs: timing-sensitive
    behaviour (heartbeats, lock waits) must hold on a loaded machine, not only a quiet one."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(4)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
