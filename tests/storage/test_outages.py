"""Storage outages: a database restart or a stop never kills a worker, a launcher or a run;
a full disk is one clear line; no worker outlives its launcher."""

from __future__ import annotations

import os
from pathlib import Path
import resource
import signal
import subprocess
import sys
import time
from typing import Any

from optuna.trial import TrialState
import pytest

from hpsearch.results.reading import open_study
from tests.conftest import PostgresCluster
from tests.helpers import Gate
from tests.helpers import hpsearch
from tests.helpers import wait_running
from tests.helpers import write_study

pytestmark = pytest.mark.slow
# Short trials; a Gate holds the first ones at an epoch end, so an outage lands in the
# middle of some however fast the machine.
MEDIUM = {"epochs": 4, "batch_size": 16, "scheduler": "none", "optimizer": "adam", "lr": 0.01}
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# A grace period longer than a database restart, as the defaults have (5 s / 20 s).
REAL_HB: dict[str, Any] = {"heartbeat": {"interval": 2, "grace_period": 20}}


def _start(
    kind: str, path: Path, tmp_path: Path, gate: Gate | None = None, **env: str
) -> subprocess.Popen[str]:
    extra = ["--workers", "4", "--log-dir", str(tmp_path / "logs")] if kind == "launch" else []
    return subprocess.Popen(
        [sys.executable, "-m", "hpsearch", kind, str(path), "--no-progress", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HPSEARCH_OFFLINE": "1", **(gate.env if gate else {}), **env},
    )


def _check_exact(url: str, budget: int) -> list[Any]:
    trials = open_study("t", url).get_trials()
    # each trial's state and why it failed, should this ever not hold
    said = [(t.number, t.state.name, t.user_attrs.get("fail_reason")) for t in trials]
    assert sum(t.state in FINISHED for t in trials) == budget, said
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)], said
    return trials


def _no_traceback(tmp_path: Path, *texts: str) -> None:
    logs = [p.read_text() for p in (tmp_path / "logs").glob("*.log")]
    assert not [t for t in (*texts, *logs) if "Traceback" in t]


@pytest.mark.postgres
@pytest.mark.parametrize("kind", ["launch", "run"])
@pytest.mark.parametrize("outage", ["restart-fast", "restart-immediate", "stop-30s"])
def test_an_outage_costs_no_trial(
    kind: str,
    outage: str,
    own_postgres: PostgresCluster,
    tmp_path: Path,
    record_property: Any,
) -> None:
    url = own_postgres.database()
    budget = 8
    path = write_study(tmp_path, storage=url, budget={"trials": budget}, fixed=MEDIUM, **REAL_HB)
    gate = Gate(tmp_path)
    proc = _start(kind, path, tmp_path, gate)
    wait_running(url)  # mid-study: trials are running, held at an epoch end
    if outage == "stop-30s":
        own_postgres.stop("fast")
        gate.open()  # the held trials go on into the outage: every process meets it
        time.sleep(30)
        own_postgres.start()
    else:
        own_postgres.stop(outage.removeprefix("restart-"))
        gate.open()
        own_postgres.start()
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    trials = _check_exact(url, budget)
    # nothing was failed and retried: no result was thrown away
    assert len(trials) == budget, [(t.number, t.user_attrs.get("fail_reason")) for t in trials]
    _no_traceback(tmp_path, out, err)
    # Each process that ran into the outage logged it once, and its end once; a restart that
    # fell between two calls is seen by none (the connection pool's pre-ping replaces the
    # dead connection silently). Which of the two paths this case took is recorded.
    logs = [err, *(p.read_text() for p in (tmp_path / "logs").glob("*.log"))]
    for text in logs:
        assert text.count("unreachable") == text.count("is back after") <= 1, text[-2000:]
    seen = sum(text.count("unreachable") for text in logs)
    record_property("path", "waited out" if seen else "replaced between calls")
    if outage == "stop-30s":  # 30 s without a database: every running process met it
        assert seen >= 1
        if kind == "run":
            assert err.count("unreachable") == 1


@pytest.mark.postgres
@pytest.mark.parametrize("kind", ["launch", "run"])
def test_an_outage_past_the_wait_is_one_line_and_resumable(
    kind: str, own_postgres: PostgresCluster, tmp_path: Path
) -> None:
    url = own_postgres.database()
    path = write_study(tmp_path, storage=url, budget={"trials": 6}, fixed=MEDIUM, **REAL_HB)
    gate = Gate(tmp_path)
    proc = _start(kind, path, tmp_path, gate, HPSEARCH_STORAGE_WAIT="4")
    wait_running(url)  # held at an epoch end
    own_postgres.stop("fast")
    gate.open()  # the held trials go on into the outage, past the 4 s wait
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        own_postgres.start()
    assert proc.returncode == 4, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "unreachable for 4 s" in errors[0]
    _no_traceback(tmp_path, out, err)
    if kind == "launch":  # no worker outlives the launcher
        time.sleep(1)
        pids = {t.user_attrs.get("pid") for t in open_study("t", url).get_trials()}
        alive = [p for p in pids if p and _alive(p)]
        assert not alive, alive
    workers = ["--workers", "2", "--log-dir", str(tmp_path / "logs2")] if kind == "launch" else []
    resumed = subprocess.Popen(
        [sys.executable, "-m", "hpsearch", "-v", kind, str(path), "--no-progress", *workers],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, err = resumed.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        resumed.kill()
        _, err = resumed.communicate()
        logs = [p.read_text()[-3000:] for p in (tmp_path / "logs2").glob("*.log")]
        states = [(t.number, t.state.name) for t in open_study("t", url).get_trials()]
        raise AssertionError(f"resume hung: {err[-3000:]}\n{logs}\n{states}") from None
    assert resumed.returncode == 0, err
    _check_exact(url, 6)


@pytest.mark.postgres
def test_a_worker_that_joins_during_an_outage_waits_it_out(
    own_postgres: PostgresCluster, tmp_path: Path
) -> None:
    url = own_postgres.database()
    path = write_study(tmp_path, storage=url, budget={"trials": 2}, fixed=MEDIUM, **REAL_HB)
    assert hpsearch("create", str(path)).returncode == 0
    own_postgres.stop("fast")
    try:
        worker = subprocess.Popen(
            [sys.executable, "-m", "hpsearch", "worker", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "HPSEARCH_OFFLINE": "1"},
        )
        assert worker.stderr is not None
        said = []
        while not said or "unreachable" not in said[-1]:  # the outage, said as it starts
            said.append(worker.stderr.readline())
            assert said[-1], f"the worker ended: {said}"
    finally:
        own_postgres.start()
    _, err = worker.communicate(timeout=240)
    assert worker.returncode == 0, err
    assert "is back after" in err and "error:" not in err
    _check_exact(url, 2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("value", ["abc", "-5", "nan"])
def test_a_bad_outage_wait_is_one_line_not_the_default_unseen(value: str, tmp_path: Path) -> None:
    path = write_study(tmp_path, budget={"trials": 1})
    for args in (["run", str(path)], ["studies", "--storage", f"sqlite:///{tmp_path / 'hp.db'}"]):
        proc = hpsearch(*args, env={"HPSEARCH_STORAGE_WAIT": value}, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr == (
            f"error: $HPSEARCH_STORAGE_WAIT: '{value}' is not a number of seconds >= 0\n"
        )
    assert not (tmp_path / "hp.db").exists()  # refused before anything was written
    ok = hpsearch("run", str(path), env={"HPSEARCH_STORAGE_WAIT": "inf"}, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr  # wait for ever: allowed


def test_a_worker_does_not_outlive_its_launcher(tmp_path: Path) -> None:
    path = write_study(tmp_path, budget={"trials": 2}, fixed=MEDIUM)
    launcher = _start("launch", path, tmp_path, Gate(tmp_path))  # trials held: never opened
    url = f"sqlite:///{tmp_path / 'hp.db'}"
    pids = [t.user_attrs["pid"] for t in wait_running(url)]
    launcher.kill()  # SIGKILL: the launcher cannot stop its workers itself
    launcher.communicate()
    deadline = time.monotonic() + 60
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [p for p in pids if _alive(p)]
    trials = open_study("t", url).get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert any(t.user_attrs.get("fail_reason") == "interrupted" for t in trials)


def _limit_file_size(limit: int) -> None:
    # In the child: writes past `limit` bytes fail with EFBIG (SQLite: "disk is full").
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_full_disk_is_one_line_and_resume_completes(tmp_path: Path) -> None:
    path = write_study(tmp_path, budget={"trials": 60}, fixed={**MEDIUM, "epochs": 1})
    db = tmp_path / "hp.db"
    assert hpsearch("create", str(path)).returncode == 0
    proc = subprocess.run(
        [sys.executable, "-m", "hpsearch", "run", str(path), "--no-progress"],
        capture_output=True,
        text=True,
        env={**os.environ, "HPSEARCH_OFFLINE": "1"},
        preexec_fn=lambda: _limit_file_size(db.stat().st_size + 64 * 1024),
        timeout=300,
    )
    assert proc.returncode == 4, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert f"the file system holding {tmp_path} is full" in errors[0]
    resumed = hpsearch("run", str(path), "--no-progress")  # space is back
    assert resumed.returncode == 0, resumed.stderr
    trials = open_study("t", f"sqlite:///{db}").get_trials()
    assert sum(t.state in FINISHED for t in trials) == 60
    assert not [t for t in trials if t.state == TrialState.RUNNING]
