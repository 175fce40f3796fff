from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
import re
import signal
import subprocess
import sys
import time
from typing import Any
import urllib.error
import urllib.request

import optuna
from optuna.trial import TrialState
import pytest

from hpsearch.errors import ConfigError
from hpsearch.launch import pool
from hpsearch.launch.local import workers_needed
from hpsearch.launch.pool import plan_slots
from hpsearch.launch.pool import worker_args
from hpsearch.results.reading import open_study
from hpsearch.spec.studyfile import load_spec
from hpsearch.study.lifecycle import prepare
from hpsearch.study.record import records
from tests.helpers import BROKEN_SPACE
from tests.helpers import Gate
from tests.helpers import hpsearch
from tests.helpers import start
from tests.helpers import wait_running
from tests.helpers import write_study

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# Short trials, held at their epoch ends by a Gate until the test opens it.
GATED = {"epochs": 3, "batch_size": 16, "scheduler": "none", "optimizer": "adam", "lr": 0.01}


def test_plan_slots_gpus_and_cpus(tmp_path: Path) -> None:
    slots = plan_slots(None, 2, None, visible_gpus=2, cores=16)
    assert [s.name for s in slots] == ["gpu0-0", "gpu0-1", "gpu1-0", "gpu1-1"]
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in slots] == ["0", "0", "1", "1"]
    assert {s.device for s in slots} == {"cuda"}
    # two workers share each GPU: each plans its populations within half the share
    assert {s.sharing for s in slots} == {2}
    spec = load_spec(str(write_study(tmp_path)))
    args = worker_args(dataclasses.replace(spec, population=8), slots[0])
    assert " ".join(args).endswith("--population 8 --precision fp32 --memory-share 0.4")
    timed = worker_args(dataclasses.replace(spec, timeout=90.5), slots[0])  # launch --timeout
    assert " ".join(timed).endswith("--memory-share 0.4 --timeout 90.5")
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in plan_slots("1", 1, None, 4, 16)] == ["1"]
    cpu = plan_slots(None, 1, 4, visible_gpus=0, cores=16)
    assert len(cpu) == 4 and cpu[0].env["HPSEARCH_TORCH_THREADS"] == "4"
    assert len(plan_slots("none", 1, None, visible_gpus=2, cores=3)) == 3
    with pytest.raises(ConfigError, match="no GPU 5"):
        plan_slots("0,5", 1, None, visible_gpus=2, cores=4)
    # no more workers than trials (--workers 100000 forked processes until the machine choked)
    few = plan_slots(None, 1, 100_000, visible_gpus=0, cores=16, most=3)
    assert len(few) == 3 and few[0].env["HPSEARCH_TORCH_THREADS"] == "5"
    assert len(plan_slots(None, 1, None, visible_gpus=0, cores=16, most=40)) == 16
    gpus = plan_slots(None, 4, None, visible_gpus=8, cores=16, most=3)
    assert [s.name for s in gpus] == ["gpu0-0", "gpu1-0", "gpu2-0"] and gpus[0].sharing == 1
    gpus = plan_slots(None, 4, None, visible_gpus=2, cores=16, most=3)  # 2 a GPU: 4 for 3
    assert [s.name for s in gpus] == ["gpu0-0", "gpu0-1", "gpu1-0", "gpu1-1"]
    spec = dataclasses.replace(spec, trials=10, population=4)
    assert (
        workers_needed(spec) == 3
        and workers_needed(dataclasses.replace(spec, trials=None)) is None
    )
    with pytest.raises(ConfigError, match="expected all, none or indices"):
        plan_slots("first", 1, None, visible_gpus=2, cores=4)


def _trials(path: Path, storage: str) -> list[optuna.trial.FrozenTrial]:
    return open_study("t", storage).get_trials()


@pytest.mark.slow
def test_launch_three_workers_grid_exactly_once(storage_url: str, tmp_path: Path) -> None:
    path = write_study(
        tmp_path,
        storage=storage_url,
        sampler="grid",
        budget=None,
        space={"lr": [0.003, 0.01, 0.03, 0.1], "activation": ["relu", "tanh", "gelu"]},
    )
    proc = hpsearch(
        "launch", str(path), "--workers", "3", "--no-progress", "--log-dir", str(tmp_path / "logs")
    )
    assert proc.returncode == 0, proc.stderr
    assert "12/12 trials finished" in proc.stdout
    trials = _trials(path, storage_url)
    assert len(trials) == 12
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 12
    assert {t.user_attrs["worker"] for t in trials} <= {"cpu-0", "cpu-1", "cpu-2"}
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == [
        "cpu-0.log",
        "cpu-1.log",
        "cpu-2.log",
    ]


def _seconds(*command: str) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def test_a_launchs_workers_start_within_about_one_torch_import(tmp_path: Path) -> None:
    # The unit is a torch import measured here, on this machine, under its present load.
    # Workers forked once the launcher has imported torch start their first trial about one
    # import after the launch (1.4 here); workers that import torch themselves start two and
    # a half imports after it (the launcher's import, then theirs, two at once).
    torch_s = sorted(_seconds(sys.executable, "-c", "import torch") for _ in range(3))[1]
    path = write_study(tmp_path, budget={"trials": 2}, fixed={"epochs": 1})
    started = time.time()
    proc = hpsearch("launch", str(path), "--workers", "2", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    trials = _trials(path, f"sqlite:///{tmp_path / 'hp.db'}")
    first = min(t.datetime_start for t in trials if t.datetime_start).timestamp() - started
    assert first < 2.0 * torch_s, (first, torch_s)
    assert {t.user_attrs["worker"] for t in trials} <= {"cpu-0", "cpu-1"}


@pytest.mark.slow
def test_launch_budget_is_global(tmp_path: Path) -> None:
    path = write_study(
        tmp_path, sampler={"name": "tpe", "seed": 0, "n_startup_trials": 3}, budget={"trials": 7}
    )
    logs = str(tmp_path / "logs")
    proc = hpsearch(
        "launch", str(path), "--workers", "3", "--no-progress", "--log-dir", logs,
        "--precision", "bf16",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    url = f"sqlite:///{tmp_path / 'hp.db'}"
    trials = _trials(path, url)
    assert len(trials) == 7 and all(t.state in FINISHED for t in trials)
    # the launcher's settings reach its workers, which read the file (fp32) themselves
    configs = [r.config for r in records(open_study("t", url), trials)]
    assert {c and c["precision"] for c in configs} == {"bf16"}
    # seeded samplers get a seed per worker: the startup trials are not copies
    assert len({t.params["lr"] for t in trials}) == 7


def _launch(path: Path, tmp_path: Path, *extra: str, gate: Gate) -> subprocess.Popen[str]:
    log_dir = str(tmp_path / "logs")
    return start("launch", str(path), "--no-progress", "--log-dir", log_dir, *extra, env=gate.env)


@pytest.mark.slow
def test_sigkilled_worker_loses_no_trial(storage_url: str, tmp_path: Path) -> None:
    path = write_study(tmp_path, storage=storage_url, budget={"trials": 5}, fixed=GATED)
    gate = Gate(tmp_path)
    launcher = _launch(path, tmp_path, "--workers", "2", gate=gate)
    victim = wait_running(storage_url, process=launcher)[0]  # held at an epoch end: cannot finish
    os.kill(victim.user_attrs["pid"], signal.SIGKILL)
    gate.open()
    _, err = launcher.communicate(timeout=300)
    assert launcher.returncode == 0, err
    assert "exited 1x with [-9]" in err  # the launcher reports the dead worker
    trials = _trials(path, storage_url)
    killed = next(t for t in trials if t.number == victim.number)
    assert killed.state == TrialState.FAIL
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    # the retry keeps every param the killed trial had drawn (a kill can land mid-suggestion,
    # leaving the rest to be drawn by the retry)
    assert retry[0].params.items() >= killed.params.items()
    assert sum(t.state in FINISHED for t in trials) == 5
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


@pytest.mark.slow
def test_stop_now_ends_a_launch_and_loses_no_trial(tmp_path: Path) -> None:
    # trials of 100,000 epochs cannot finish: the workers stop them at an epoch end
    endless = {"epochs": 100_000, "batch_size": 16, "scheduler": "none", "optimizer": "adam"}
    path = write_study(tmp_path, budget={"trials": 4}, fixed=endless)
    url = f"sqlite:///{tmp_path / 'hp.db'}"
    logs = str(tmp_path / "logs")
    launcher = start("launch", str(path), "--no-progress", "--log-dir", logs, "--workers", "2")
    wait_running(url, n=2, process=launcher)
    asked = hpsearch("stop", str(path), "--now")
    assert asked.returncode == 0, asked.stderr
    assert "its running trials (2) stop at their next epoch end, queued again" in asked.stdout
    out, err = launcher.communicate(timeout=240)
    assert launcher.returncode == 0, err
    assert out.startswith("0/4 trials finished")
    assert "stopped early: `hpsearch stop --now` at " in err
    assert "4 trials of the budget left: run the same command again to go on" in err
    assert "every trial of this launch failed" not in err and "worker failure" not in err
    trials = _trials(path, url)
    stopped = [t for t in trials if t.state == TrialState.FAIL]
    assert len(stopped) == 2
    assert {t.user_attrs["fail_reason"] for t in stopped} == {"stopped by `hpsearch stop --now`"}
    assert sum(t.state == TrialState.WAITING for t in trials) == 4  # two of them copies
    assert not [t for t in trials if t.state == TrialState.RUNNING]


@pytest.mark.slow
def test_a_launch_its_timeout_ends_says_so_and_exits_0(tmp_path: Path) -> None:
    path = write_study(tmp_path, budget={"trials": 3}, fixed=GATED)
    gate = Gate(tmp_path)
    launcher = _launch(path, tmp_path, "--workers", "1", "--timeout", "1", gate=gate)
    wait_running(f"sqlite:///{tmp_path / 'hp.db'}", process=launcher)  # held: cannot finish
    time.sleep(1.5)  # past the timeout, counted from the worker's start, before it claimed
    gate.open()
    _, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 0, err
    assert "the timeout stopped starting trials with 2 of the budget left; launch again" in err
    (log,) = (tmp_path / "logs").glob("*.log")
    assert (
        "1 completed, 0 pruned, 0 failed; the timeout stopped it starting trials"
        in log.read_text()
    )
    states = [t.state for t in open_study("t", f"sqlite:///{tmp_path / 'hp.db'}").get_trials()]
    assert sorted(s.name for s in states) == ["COMPLETE", "WAITING", "WAITING"]


@pytest.mark.slow
def test_a_study_deleted_while_a_launch_runs_it_ends_the_launch_in_one_line(
    tmp_path: Path,
) -> None:
    path = write_study(tmp_path, budget={"trials": 3}, fixed=GATED)
    gate = Gate(tmp_path)
    launcher = _launch(path, tmp_path, "--workers", "1", gate=gate)
    wait_running(f"sqlite:///{tmp_path / 'hp.db'}", process=launcher)  # held: cannot finish
    assert hpsearch("delete", str(path), "--yes").returncode == 0
    gate.open()
    _, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 2, err
    assert err.splitlines()[-1] == (
        "error: study 't' was deleted while the launch ran it; the launch stopped"
    )
    (log,) = (tmp_path / "logs").glob("*.log")  # its worker said so, and was not restarted
    assert "deleted while this worker ran it" in log.read_text()
    assert "Traceback" not in err + log.read_text()


@pytest.mark.slow
def test_ctrl_c_stops_pool_and_launch_resumes(storage_url: str, tmp_path: Path) -> None:
    path = write_study(tmp_path, storage=storage_url, budget={"trials": 5}, fixed=GATED)
    launcher = _launch(path, tmp_path, "--workers", "2", gate=Gate(tmp_path))
    wait_running(storage_url, process=launcher)[0]  # held at an epoch end until the stop
    start = time.monotonic()
    launcher.send_signal(signal.SIGINT)
    _, err = launcher.communicate(timeout=60)
    # every worker stopped within seconds: SIGTERM, at worst SIGKILL after its 10 s grace, then
    # the re-queue; the margin is for a loaded machine
    assert time.monotonic() - start < 25
    assert launcher.returncode == 130, err
    trials = _trials(path, storage_url)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert any(t.user_attrs.get("fail_reason") == "interrupted" for t in trials)
    proc = hpsearch(
        "launch", str(path), "--workers", "2", "--no-progress", "--log-dir", str(tmp_path / "logs")
    )
    assert proc.returncode == 0, proc.stderr
    trials = _trials(path, storage_url)
    assert sum(t.state in FINISHED for t in trials) == 5
    # a retry carries the point, not the failed attempt's attributes
    assert not [t for t in trials if t.state in FINISHED and "fail_reason" in t.user_attrs]


@pytest.mark.slow
def test_eight_workers_four_hundred_trials_on_sqlite(tmp_path: Path, cpu_hog: None) -> None:
    # Beside a CPU hog: 8 workers and 4 busy processes share 2 cores, as on a loaded machine.
    tiny: dict[str, Any] = {
        "epochs": 1,
        "hidden_layers": [],
        "optimizer": "adam",
        "scheduler": "none",
    }
    path = write_study(
        tmp_path,
        dataset="synthetic",
        budget={"trials": 400},
        fixed=tiny,
        space={"lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True}},
        heartbeat={"interval": 2, "grace_period": 30},  # the defaults' order of magnitude
    )
    proc = hpsearch(
        "launch",
        str(path),
        "--workers",
        "8",
        "--no-progress",
        "--log-dir",
        str(tmp_path / "logs"),
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    trials = _trials(path, f"sqlite:///{tmp_path / 'hp.db'}")
    assert len(trials) == 400
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) > 1
    logs = "".join(p.read_text() for p in (tmp_path / "logs").iterdir())
    assert "database is locked" not in logs and "Traceback" not in logs


@pytest.mark.slow
def test_a_late_worker_discards_its_stale_trial_and_goes_on(
    storage_url: str, tmp_path: Path
) -> None:
    path = write_study(tmp_path, storage=storage_url, budget={"trials": 3}, fixed=GATED)
    gate = Gate(tmp_path)
    launcher = _launch(path, tmp_path, "--workers", "2", gate=gate)
    victim = wait_running(storage_url, process=launcher)[0]  # held at an epoch end: cannot finish
    pid = victim.user_attrs["pid"]
    stale = None
    for _ in range(5):  # a pause that lands inside a database write blocks the others: retry
        os.kill(pid, signal.SIGSTOP)  # past the 3 s grace period: the launcher fails it
        deadline = time.monotonic() + 15
        while stale is None and time.monotonic() < deadline:
            trial = next(t for t in _trials(path, storage_url) if t.number == victim.number)
            stale = trial if trial.state == TrialState.FAIL else None
            time.sleep(0.3)
        os.kill(pid, signal.SIGCONT)
        if stale is not None:
            break
        time.sleep(0.5)
    assert stale is not None, "the paused worker's trial was never failed as stale"
    gate.open()
    _, err = launcher.communicate(timeout=300)
    assert launcher.returncode == 0, err
    assert stale.user_attrs["fail_reason"] == "stale: no heartbeat for 3 s"
    trials = _trials(path, storage_url)
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert sum(t.state in FINISHED for t in trials) == 3  # the budget is exact
    assert next(t for t in trials if t.number == victim.number).state == TrialState.FAIL
    log = (tmp_path / "logs" / f"{victim.user_attrs['worker']}.log").read_text()
    assert log.count("discarding this worker's result") == 1, log
    assert "Traceback" not in log
    assert "exited" not in err  # the late worker did not crash


@pytest.mark.slow
def test_launch_of_a_study_whose_trials_all_fail_exits_non_zero(tmp_path: Path) -> None:
    path = write_study(tmp_path, budget={"trials": 4}, **BROKEN_SPACE)
    proc = hpsearch(
        "launch",
        str(path),
        "--workers",
        "2",
        "--no-progress",
        "--max-same-failures",
        "0",
        "--log-dir",
        str(tmp_path / "logs"),
    )
    assert proc.returncode == 1
    assert "every trial of this launch failed" in proc.stderr
    trials = _trials(path, f"sqlite:///{tmp_path / 'hp.db'}")
    assert [t.state for t in trials] == [TrialState.FAIL] * 4


@pytest.mark.slow
def test_launch_does_not_restart_a_worker_stopped_by_repeated_errors(tmp_path: Path) -> None:
    path = write_study(tmp_path, budget={"trials": 12}, **BROKEN_SPACE)
    proc = hpsearch(
        "launch", str(path), "--workers", "2", "--no-progress", "--log-dir", str(tmp_path / "logs")
    )
    assert proc.returncode == 1
    assert "exited 1x with [3]" in proc.stderr and "now broken" in proc.stderr
    states = [t.state for t in _trials(path, f"sqlite:///{tmp_path / 'hp.db'}")]
    assert states.count(TrialState.FAIL) == 6  # 3 per worker, then each stopped
    assert states.count(TrialState.WAITING) == 6


@pytest.mark.slow
def test_worker_needs_an_existing_study(tmp_path: Path) -> None:
    path = write_study(tmp_path)
    proc = hpsearch("worker", str(path))
    assert proc.returncode == 2
    assert f"{tmp_path / 'hp.db'} does not exist" in proc.stderr
    other = tmp_path / "other.yaml"
    other.write_text(path.read_text().replace("name: t\n", "name: other\n"))
    assert hpsearch("create", str(other)).returncode == 0
    proc = hpsearch("worker", str(path))
    assert proc.returncode == 2
    assert "no study 't'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_grid_under_contention_runs_each_point_once(tmp_path: Path) -> None:
    # Plain Optuna GridSampler shared by 8 processes repeats points; queued claims must not.
    tiny = {"epochs": 1, "hidden_layers": [], "optimizer": "adam", "scheduler": "none"}
    path = write_study(
        tmp_path,
        dataset="synthetic",
        sampler="grid",
        budget=None,
        fixed=tiny,
        space={"lr": {"type": "float", "low": 0.001, "high": 0.04, "step": 0.001}},
    )
    proc = hpsearch(
        "launch", str(path), "--workers", "8", "--no-progress", "--log-dir", str(tmp_path / "logs")
    )
    assert proc.returncode == 0, proc.stderr
    trials = _trials(path, f"sqlite:///{tmp_path / 'hp.db'}")
    assert len(trials) == 40
    assert len({round(t.params["lr"], 6) for t in trials}) == 40


# A worker that never exits on its own and ignores SIGTERM, but answers it with a second
# Ctrl-C to its launcher (this test's process): it writes READY once it can.
_STUBBORN = """
import os, pathlib, signal, sys, time
signal.signal(signal.SIGTERM, lambda *a: os.kill(os.getppid(), signal.SIGINT))
pathlib.Path(sys.argv[1]).touch()
time.sleep(600)
"""


@pytest.mark.timeout(120)  # without the second Ctrl-C's kill: the grace of an hour
def test_ctrl_c_during_the_stale_trial_check_stops_the_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signal comes wherever the launcher is: inside the stale-trial check (a database
    call a busy SQLite file makes long), whose own errors are only logged, it still stops
    the pool; a second Ctrl-C while the workers get their grace kills them at once."""
    spec = load_spec(str(write_study(tmp_path)))
    _, study, _ = prepare(spec)
    ready = tmp_path / "READY"
    command = [sys.executable, "-c", _STUBBORN, str(ready)]
    monkeypatch.setattr(pool, "worker_command", lambda *a: command)
    monkeypatch.setattr(pool, "STOP_GRACE_S", 3600.0)  # only the second Ctrl-C ends it
    checks = []

    def stale_check(study: optuna.Study) -> None:
        checks.append(1)
        if len(checks) > 1:  # not an Exception: the check's own handler would log it
            pytest.fail("the pool ran on after Ctrl-C")
        while not ready.exists():
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)  # delivered at the next bytecode, in here
        time.sleep(1)

    monkeypatch.setattr(pool, "fail_stale_trials", stale_check)
    launcher = pool.Pool(spec, study, [pool.WorkerSlot("cpu-0", "cpu")], tmp_path / "logs")
    result = launcher.run(poll_s=0.1)
    assert result.interrupted and checks == [1]
    process = launcher.workers[0].process
    assert process is not None and process.poll() == -signal.SIGKILL


@pytest.mark.slow
def test_launch_with_dashboard_serves_beside_the_pool(tmp_path: Path) -> None:
    # Trials of 100,000 epochs cannot finish while the test looks: the dashboard is fetched
    # while the pool runs, and goes away with it.
    slow = {"epochs": 100_000, "scheduler": "none", "optimizer": "adam", "lr": 0.01}
    path = write_study(tmp_path, budget={"trials": 2}, fixed=slow)
    launch = start(
        "launch", str(path), "--workers", "1", "--no-progress", "--dashboard",
        "--dashboard-port", "0", "--log-dir", str(tmp_path / "logs"),
    )  # fmt: skip
    assert launch.stderr is not None
    seen = []
    for line in launch.stderr:
        seen.append(line)
        found = re.search(
            r"optuna-dashboard on sqlite:///\S+ at http://127\.0\.0\.1:(\d+)/dashboard", line
        )
        if found:
            break
    assert found, "".join(seen)
    base = f"http://127.0.0.1:{found.group(1)}"
    try:
        with urllib.request.urlopen(f"{base}/api/studies", timeout=60) as response:
            studies = json.load(response)["study_summaries"]
        assert [s["study_name"] for s in studies] == ["t"]
        assert launch.poll() is None  # served beside the running pool
    finally:
        launch.send_signal(signal.SIGINT)
        launch.communicate(timeout=120)
    assert launch.returncode == 130
    with pytest.raises(urllib.error.URLError):  # it stopped with the pool
        urllib.request.urlopen(f"{base}/api/studies", timeout=10)
