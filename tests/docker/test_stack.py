"""docker/ for real: the image built from docker/Dockerfile as a user builds it, and the
compose stack (PostgreSQL, the one-shot ``create``, two CPU workers, the dashboard) brought up
with docker/compose.cpu.yaml, on an engine of the tests' own with stand-in base images
(tests/docker/engine.py). Only the PostgreSQL port is added for the test, on 127.0.0.1, so
that it reads the trials as they are stored."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
import json
from pathlib import Path
import secrets
from typing import Any
import urllib.request

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial
from optuna.trial import TrialState
import pytest
import yaml

from hpsearch.storage.states import RETRY_HISTORY
from hpsearch.study.budget import counted
from hpsearch.study.record import FAIL_REASON
from hpsearch.study.record import HOST
from hpsearch.study.record import WORKER
from tests.conftest import _free_port
from tests.docker.engine import Engine
from tests.docker.engine import REPO
from tests.helpers import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]

DOCKER = REPO / "docker"
NAME = "docker"
BUDGET, EXTRA = 20, 6
# Trials of seconds on one thread (batch 8, 40 epochs), so that both workers finish some
# however unevenly they start, and one can be killed while a trial runs; a random sampler,
# whose seed a resume must move on or it draws its first points again.
STUDY: dict[str, Any] = {
    "name": NAME,
    "dataset": "digits",
    "objective": {"metric": "val_loss", "reduce": "best", "direction": "minimize"},
    "sampler": {"name": "random", "seed": 0},
    "budget": {"trials": BUDGET},
    "heartbeat": {"interval": 1, "grace_period": 5},
    "fixed": {"epochs": 40, "scheduler": "none", "batch_size": 8},
    "space": {
        "hidden_layers": {
            "type": "layers",
            "depth": {"low": 1, "high": 2},
            "width": {"low": 16, "high": 64, "log": True},
        },
        "lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True},
        "optimizer": ["adam", "sgd"],
    },
}


@dataclass
class Stack:
    """One compose project on the test engine, and how the test reaches its study."""

    engine: Engine
    project: str
    files: list[Path]
    env: dict[str, str]
    password: str
    url: str
    study_file: Path
    dashboard_port: int

    def compose(self, *args: str, timeout: float = 600) -> str:
        return self.engine.compose(self.files, *args, env=self.env, timeout=timeout).stdout

    _study: optuna.Study | None = None

    def trials(self) -> list[FrozenTrial]:
        if self._study is None:
            try:
                # pre-ping: the connections outlive a `down` and `up` of the server
                storage = RDBStorage(self.url, engine_kwargs={"pool_pre_ping": True})
                self._study = optuna.load_study(study_name=NAME, storage=storage)
            except Exception:  # not created yet, or the server is still starting
                return []
        return self._study.get_trials(deepcopy=False)

    def containers(self, service: str | None = None) -> list[dict[str, Any]]:
        """``docker inspect`` of the project's containers (of one service), stopped ones too."""
        filters = ["--filter", f"label=com.docker.compose.project={self.project}"]
        if service:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        ids = self.engine.docker("ps", "-a", "-q", *filters).stdout.split()
        if not ids:
            return []
        return list(json.loads(self.engine.docker("inspect", *ids).stdout))

    def up(self) -> None:
        self.compose("up", "-d", "--scale", "cpu-worker=2")

    def finished(self, budget: int) -> list[FrozenTrial] | None:
        """The study's trials once its budget has run and nothing waits or runs."""
        trials = self.trials()
        busy = any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in trials)
        return trials if trials and not busy and len(counted(trials)) == budget else None


@pytest.fixture(scope="module")
def stack(docker_engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The project image built with compose, its stack up with the CPU override; taken down,
    volume and all, at the end (its logs printed, shown when a test fails)."""
    tmp = tmp_path_factory.mktemp("compose")
    password = secrets.token_hex(16)
    (tmp / "postgres_password").write_text(password + "\n")
    (tmp / "postgres_password").chmod(0o644)  # a bind-mounted secret: the workers' user reads it
    (tmp / "studies").mkdir()
    (tmp / "data").mkdir()
    study_file = tmp / "studies" / "docker.yaml"
    study_file.write_text(yaml.safe_dump(STUDY))
    pg_port, dashboard_port = _free_port(), _free_port()
    test_override = tmp / "test.yaml"  # the one thing the test adds: reading the database
    test_override.write_text(
        yaml.safe_dump({"services": {"postgres": {"ports": [f"127.0.0.1:{pg_port}:5432"]}}})
    )
    project = f"hpsearchtest{secrets.token_hex(3)}"
    env = {
        "COMPOSE_PROJECT_NAME": project,
        "HPSEARCH_STUDY": "studies/docker.yaml",
        "HPSEARCH_STUDIES": str(tmp / "studies"),
        "HPSEARCH_DATA": str(tmp / "data"),
        "POSTGRES_PASSWORD_FILE": str(tmp / "postgres_password"),
        "HPSEARCH_DASHBOARD_PORT": str(dashboard_port),
    }
    files = [DOCKER / "compose.yaml", DOCKER / "compose.cpu.yaml", test_override]
    url = f"postgresql+psycopg://hpsearch:{password}@127.0.0.1:{pg_port}/hpsearch"
    built = Stack(docker_engine, project, files, env, password, url, study_file, dashboard_port)
    try:
        built.compose("build", timeout=1200)  # docker/Dockerfile, as `compose build` runs it
        built.up()
        yield built
    finally:
        logs = docker_engine.compose(files, "logs", "--no-color", env=env, check=False)
        print(logs.stdout[-20000:])
        docker_engine.compose(files, "down", "-v", "--remove-orphans", env=env, check=False)


def _hosts(trials: list[FrozenTrial]) -> set[str]:
    """The hosts (container names) that finished ``trials``."""
    return {str(t.user_attrs[HOST]) for t in trials if t.state == TrialState.COMPLETE}


def _running(stack: Stack) -> FrozenTrial | None:
    """A trial that has run past its first epoch and is running still."""
    running = [t for t in stack.trials() if t.state == TrialState.RUNNING]
    return next((t for t in running if t.intermediate_values), None)


def _kill_a_running_trial(stack: Stack) -> int:
    """Kills (SIGKILL) the worker container of a trial while that trial runs; its number."""
    for _ in range(5):
        trial = wait_for(lambda: _running(stack), "a trial running past its first epoch")
        host = str(trial.user_attrs[WORKER]).split(":")[0]
        workers = stack.containers("cpu-worker")
        (container,) = [c for c in workers if c["Config"]["Hostname"] == host]
        stack.engine.docker("kill", container["Id"])
        (after,) = [t for t in stack.trials() if t.number == trial.number]
        if after.state == TrialState.RUNNING:  # its process is gone: it stopped mid-trial
            return trial.number
        stack.engine.docker("start", container["Id"])  # it had just finished: again
    raise AssertionError("no trial was ever caught running")


def _running_as_users(stack: Stack) -> None:
    """Every process of every running container's service (its first process and all it
    starts) runs as a user other than root. A health check Docker runs in the container
    (``pg_isready`` through ``sh``, as the image's user) is no process of the service."""
    running = [c for c in stack.containers() if c["State"]["Running"]]
    assert {c["Config"]["Labels"]["com.docker.compose.service"] for c in running} >= {
        "postgres",
        "cpu-worker",
        "dashboard",
    }
    for c in running:
        top = stack.engine.docker("top", c["Id"], "-eo", "pid,ppid,uid,comm").stdout
        rows = [line.split() for line in top.splitlines()[1:]]
        service = {str(c["State"]["Pid"])}
        for _ in rows:  # a pass a generation: each adds the children of those found
            service |= {pid for pid, ppid, *_ in rows if ppid in service}
        uids = {uid for pid, _, uid, *_ in rows if pid in service}
        assert uids and "0" not in uids, (c["Name"], top)
        if c["Config"]["Labels"]["com.docker.compose.service"] != "postgres":
            assert c["Config"]["User"] == "hpsearch", c["Name"]


def _listening(port: int) -> set[str]:
    """The local addresses (hex, as /proc/net shows them) that listen on TCP ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, _, hex_port = fields[1].partition(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def _dashboard_only_on_loopback(stack: Stack) -> None:
    url = f"http://127.0.0.1:{stack.dashboard_port}/api/studies"

    def answers() -> str | None:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return str(response.read().decode())
        except OSError:
            return None

    assert f'"{NAME}"' in wait_for(answers, "the dashboard answering on 127.0.0.1", timeout=300)
    (dashboard,) = stack.containers("dashboard")
    published = [b for bs in dashboard["NetworkSettings"]["Ports"].values() for b in bs or []]
    assert published and {b["HostIp"] for b in published} == {"127.0.0.1"}, published
    # the host listens on its loopback for the port, on no other address (0100007F: 127.0.0.1)
    assert _listening(stack.dashboard_port) == {"0100007F"}


def _no_password_shown(stack: Stack) -> None:
    for c in stack.containers():
        assert stack.password not in json.dumps(c), f"password in docker inspect {c['Name']}"
    logs = stack.compose("logs", "--no-color")
    assert "trial" in logs and stack.password not in logs


@pytest.mark.timeout(1800)  # a fresh machine builds the stand-ins first (minutes)
def test_the_compose_stack_runs_a_study_exactly_and_keeps_it(stack: Stack) -> None:
    # both workers finish trials; then one is killed (Docker restarts no container it was
    # told to kill): the other fails its trial as stale and runs it again
    wait_for(lambda: len(_hosts(stack.trials())) >= 2, "trials finished by two containers")
    killed = _kill_a_running_trial(stack)
    _running_as_users(stack)
    _dashboard_only_on_loopback(stack)

    trials = wait_for(lambda: stack.finished(BUDGET), f"{BUDGET} trials finished", timeout=600)
    budget = counted(trials)
    assert len(budget) == BUDGET and {t.state for t in budget} == {TrialState.COMPLETE}
    (dead,) = [t for t in trials if t.number == killed]
    assert dead.state == TrialState.FAIL and dead.user_attrs[FAIL_REASON].startswith("stale")
    (retry,) = [t for t in trials if killed in t.system_attrs.get(RETRY_HISTORY, [])]
    assert retry.state == TrialState.COMPLETE and retry.params == dead.params
    workers = {c["Config"]["Hostname"] for c in stack.containers("cpu-worker")}
    assert len(workers) == 2 and _hosts(budget) == workers
    # the README's way to read results: a one-off container of the image, on the stack's network
    status = stack.compose("run", "--rm", "create", "status", "studies/docker.yaml")
    assert f"complete {BUDGET}  pruned 0  fail 1  running 0  waiting 0" in status, status
    _no_password_shown(stack)

    # down keeps the named volume; a larger budget in the study file resumes the study
    stack.compose("down")
    before = {t.number: (t.state, t.params, t.values) for t in trials}
    stack.study_file.write_text(yaml.safe_dump({**STUDY, "budget": {"trials": BUDGET + EXTRA}}))
    stack.up()
    extended = BUDGET + EXTRA
    resumed = wait_for(lambda: stack.finished(extended), f"{extended} finished", timeout=600)
    kept = {t.number: (t.state, t.params, t.values) for t in resumed if t.number in before}
    assert kept == before
    new = [t for t in counted(resumed) if t.number not in before]
    assert len(new) == EXTRA and {t.state for t in new} == {TrialState.COMPLETE}
    old_points = [t.params for t in trials]
    assert not [t.params for t in new if t.params in old_points]  # nothing drawn again
    _no_password_shown(stack)
