from __future__ import annotations

from collections.abc import Iterator
import contextlib
import os
from pathlib import Path
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
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

    def database(self, options: str = "") -> str:
        """A fresh, empty database (``options``: more of ``CREATE DATABASE``, such as its
        encoding); returns its URL."""
        import psycopg

        name = f"t{uuid.uuid4().hex[:12]}"
        dsn = self.url.replace("postgresql+psycopg", "postgresql") + "/postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} {options}")
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


class SlurmCluster:
    """A throw-away single-node Slurm cluster (munged, slurmctld, slurmd) for this machine:
    its own config, key, sockets and state in a temp dir, its own ports, 2 CPUs, no GPU.
    Needs root and Debian's slurm-wlm and munge."""

    DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol")

    def __init__(self) -> None:
        missing = [d for d in self.DAEMONS if shutil.which(d) is None]
        problem = f"Slurm or munge missing: {', '.join(missing)}" if missing else None
        if problem is None and os.geteuid() != 0:
            problem = "a throw-away Slurm cluster needs root"
        if problem:
            if os.environ.get("CI"):
                pytest.fail(f"{problem} (scripts/install-system-deps.sh installs them)")
            pytest.skip(problem)
        self.base = Path(tempfile.mkdtemp(prefix="hpsearch-slurm-"))
        for sub in ("state", "spool"):
            (self.base / sub).mkdir()
        key = self.base / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        b = self.base
        munged = [
            "munged", "--force", f"--socket={b}/munge.sock", f"--key-file={key}",
            f"--log-file={b}/munged.log", f"--pid-file={b}/munged.pid",
            f"--seed-file={b}/munged.seed",
        ]  # fmt: skip
        self._start(munged)
        host = socket.gethostname().split(".")[0]
        conf = b / "slurm.conf"
        conf.write_text(
            "\n".join(
                [
                    "ClusterName=hpsearchtest",
                    f"SlurmctldHost={host}(127.0.0.1)",  # no name lookup needed
                    "SlurmUser=root",
                    f"SlurmctldPort={_free_port()}",
                    f"SlurmdPort={_free_port()}",
                    "AuthType=auth/munge",
                    f"AuthInfo=socket={b}/munge.sock",
                    f"StateSaveLocation={b}/state",
                    f"SlurmdSpoolDir={b}/spool",
                    f"SlurmctldPidFile={b}/slurmctld.pid",
                    f"SlurmdPidFile={b}/slurmd.pid",
                    f"SlurmctldLogFile={b}/slurmctld.log",
                    f"SlurmdLogFile={b}/slurmd.log",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_CPU",
                    "MpiDefault=none",
                    "ReturnToService=2",
                    "JobAcctGatherType=jobacct_gather/none",
                    "SchedulerParameters=sched_interval=1",
                    "KillWait=10",
                    "MinJobAge=600",
                    f"NodeName={host} NodeAddr=127.0.0.1 CPUs=2 RealMemory=2000 State=UNKNOWN",
                    "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
                ]
            )
            + "\n"
        )
        self.env = {**os.environ, "SLURM_CONF": str(conf)}
        self._start(["slurmctld", "-f", str(conf)])
        self._start(["slurmd", "-f", str(conf)])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = self.run("sinfo", "-h", "-o", "%t", check=False).stdout.strip()
            if out in ("idle", "mix", "alloc"):
                return
            time.sleep(0.5)
        self.close()
        pytest.fail(f"the Slurm node never came up (sinfo: {out!r})")

    def _start(self, cmd: list[str]) -> None:
        proc = subprocess.run(cmd, env=getattr(self, "env", None), capture_output=True, text=True)
        if proc.returncode != 0:
            self.close()
            pytest.fail(f"{cmd[0]} did not start: {proc.stderr.strip()[-500:]}")

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A Slurm command against this cluster."""
        return subprocess.run(
            list(args), env=self.env, capture_output=True, text=True, timeout=60, check=check
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.run("scancel", "--user", "root", check=False)
            time.sleep(1)
        for name in ("slurmd", "slurmctld", "munged"):
            pid_file = self.base / f"{name}.pid"
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
        time.sleep(1)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """One throw-away Slurm cluster for the session; its SLURM_CONF is set for every
    process the tests start. Fails (does not skip) under CI when it cannot be started."""
    cluster = SlurmCluster()
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = cluster.env["SLURM_CONF"]
    try:
        yield cluster
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        cluster.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "journal"])
def any_storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh storage URL: SQLite, PostgreSQL (marked) and the journal storage."""
    return url_of(request.param, tmp_path, request)


def url_of(kind: str, folder: Path, request: pytest.FixtureRequest, stem: str = "hp") -> str:
    """A fresh storage URL of a kind (``sqlite``, ``journal``, ``postgres``): a file named
    ``stem`` in ``folder``, or a new database on the session's PostgreSQL server."""
    if kind == "sqlite":
        return f"sqlite:///{folder / stem}.db"
    if kind == "journal":
        return f"journal:{folder / stem}.log"
    return str(request.getfixturevalue("postgres_url"))


# A marker is true: a test that uses what a marker names carries that marker, so that
# `make test-fast` (which deselects them) never starts a server, a cluster or reads MNIST.
_NEEDS = {
    "mnist": {"mnist_dir"},
    "postgres": {"postgres_cluster", "postgres_server", "postgres_url", "own_postgres"},
    "slurm": {"slurm_cluster"},
    "docker": {"docker_engine"},
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    untrue = [
        f"{item.nodeid} uses {sorted(fixtures & set(item.fixturenames))} without @{mark}"
        for item in items
        for mark, fixtures in _NEEDS.items()
        if fixtures & set(getattr(item, "fixturenames", ())) and not item.get_closest_marker(mark)
    ]
    if untrue:
        raise pytest.UsageError("markers that are not true:\n" + "\n".join(untrue))
