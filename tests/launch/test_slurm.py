"""`hpsearch launch --slurm` on a real single-node Slurm cluster (tests/conftest.py starts a
throw-away one: munged, slurmctld and slurmd, 2 CPUs), with the study on PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path
import re
import stat
import subprocess
import sys
import time
from typing import Any

from optuna.trial import TrialState
import pytest

from hpsearch.launch import slurm
from hpsearch.launch.slots import worker_flags
from hpsearch.results.reading import open_study
from hpsearch.spec.studyfile import load_spec
from hpsearch.study.budget import counted
from hpsearch.study.record import fixed_params
from tests.conftest import SlurmCluster
from tests.helpers import Gate
from tests.helpers import hpsearch
from tests.helpers import TARGET_REACHED
from tests.helpers import TARGET_STUDY
from tests.helpers import wait_for
from tests.helpers import wait_running
from tests.helpers import write_study
from tests.owndata import write_wine


def _on_cluster(test: Any) -> Any:
    """A test on the throw-away Slurm cluster and PostgreSQL server: minutes of waiting."""
    for mark in (pytest.mark.slurm, pytest.mark.postgres, pytest.mark.slow):
        test = mark(test)
    return test


PASSWORD = "s3cret-pw"  # the test server trusts loopback: any password is accepted


def _with_password(url: str) -> str:
    return url.replace("postgres@", f"postgres:{PASSWORD}@", 1)


def _launch(path: Path, url: str, *args: str, timeout: float = 420) -> Any:
    """`hpsearch launch --slurm`, the storage URL in the environment (not argv)."""
    return subprocess.run(
        [sys.executable, "-m", "hpsearch", "launch", str(path), "--slurm", "--no-progress", *args],
        capture_output=True,
        text=True,
        cwd=path.parent,
        env={**os.environ, "HPSEARCH_STORAGE": url},
        timeout=timeout,
    )


def _detached(tmp_path: Path, url: str, trials: int, epochs: int, *args: str) -> str:
    """Submits a digits study of slow trials (batch 16) with --detach; returns the job id."""
    fixed = {"epochs": epochs, "scheduler": "none", "optimizer": "adam", "batch_size": 16}
    path = write_study(tmp_path, budget={"trials": trials}, fixed=fixed)
    proc = _launch(path, url, *args, "--detach", timeout=120)
    assert proc.returncode == 0, proc.stderr
    return str(proc.stdout.strip())


def _job_id(err: str) -> str:
    match = re.search(r"Slurm job array (\d+)", err)
    assert match, err
    return match.group(1)


def _queue_empty(cluster: SlurmCluster, job: str) -> bool:
    return not cluster.run("squeue", "-h", "-j", job, check=False).stdout.strip()


def test_the_workers_of_a_task_share_its_gpu_memory(tmp_path: Path) -> None:
    spec = load_spec(str(write_study(tmp_path)))
    options = slurm.parse_options(1, 1, 2, None, None, None, False, ())
    flags = worker_flags(spec, options.workers_per_gpu)
    script = slurm.job_script(Path("s.yaml"), Path("url"), tmp_path, options, "t", flags)
    assert "--gres=gpu:1" in script and "for k in $(seq 0 1)" in script
    assert "--precision fp32 --memory-share 0.4 --name" in script  # each plans half the share


@pytest.mark.slow
def test_sqlite_is_refused_for_several_nodes_and_bad_options_name_themselves(
    tmp_path: Path,
) -> None:
    path = write_study(tmp_path)
    proc = hpsearch("launch", str(path), "--slurm", "--nodes", "2")
    assert proc.returncode == 2 and "is a SQLite file" in proc.stderr
    assert "PostgreSQL" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "hp.db").exists()  # refused before anything was written
    for args, message in (
        (["--time", "soon"], "--time 'soon': not a Slurm time"),
        (["--slurm-option", "array=0-9"], "--slurm-option array: set by hpsearch"),
        (["--slurm-option", "qos"], "--slurm-option 'qos': give KEY=VALUE"),
    ):
        bad = hpsearch("launch", str(path), "--slurm", *args)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
    local = hpsearch("launch", str(path), "--nodes", "2")
    assert local.returncode == 2 and "--nodes: only with --slurm" in local.stderr


@_on_cluster
def test_a_two_task_array_runs_the_exact_budget_and_never_shows_the_password(
    slurm_cluster: SlurmCluster, postgres_url: str, tmp_path: Path
) -> None:
    url = _with_password(postgres_url)
    # a user's own table beside the study file: every node reads it at the same path
    write_wine(tmp_path)
    dataset = {"path": "wine.csv", "target": "cultivar"}
    path = write_study(tmp_path, budget={"trials": 6}, dataset=dataset)
    proc = _launch(path, url, "--nodes", "2")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    job = _job_id(proc.stderr)
    assert f"squeue -j {job}" in proc.stderr and f"scancel {job}" in proc.stderr
    assert f"data {tmp_path / 'wine.csv'}: classification" in proc.stderr
    assert "every node reads it at this path" in proc.stderr
    assert "6/6 trials finished" in proc.stdout
    trials = open_study("t", url).get_trials()
    assert len(trials) == 6 and {t.state for t in trials} == {TrialState.COMPLETE}
    assert {t.user_attrs["val_size"] for t in trials} == {15}  # one split on every node
    workers = {t.user_attrs["worker"] for t in trials}
    assert {w.rsplit("-", 1)[0] for w in workers} <= {f"slurm-{job}_0", f"slurm-{job}_1"}
    # the password is in no command line, script or job record; its file is the user's
    logs = tmp_path / "hpsearch-logs" / "t"
    script = next((logs / "slurm").glob("job-*.sh")).read_text()
    # the launcher's settings, for every worker; a worker alone on its GPU (or CPU slot)
    assert "--population 1 --precision fp32 --memory-share 0.8" in script
    shown = slurm_cluster.run("scontrol", "show", "job", job, "-dd").stdout
    assert f"JobId={job}" in shown or f"ArrayJobId={job}" in shown
    for text in (script, shown, proc.stdout, proc.stderr):
        assert PASSWORD not in text
    secret = logs / "slurm" / "storage-url"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and PASSWORD in secret.read_text()
    # the budget can be done while a task still exits (squeue: COMPLETING): status shows
    # Slurm's state as it is, so it is read once the array has left the queue
    wait_for(lambda: _queue_empty(slurm_cluster, job), "the array ends")
    status = hpsearch("status", "t", "--storage", url)
    assert f"slurm       jobs {job}: 2 tasks, 0 pending, 0 running, 2 done" in status.stdout


def _held_array(tmp_path: Path, url: str, *flags: str) -> tuple[Path, Gate, subprocess.Popen[str]]:
    """A followed launch on Slurm of a three-trial study (its file, gate and launcher), once
    its first trial runs, held at an epoch end until the gate opens: it cannot finish first."""
    fixed = {"epochs": 2, "scheduler": "none", "optimizer": "adam"}
    path = write_study(tmp_path, budget={"trials": 3}, fixed=fixed)
    gate = Gate(tmp_path)  # the task's environment carries it: its trial is held
    launch = ["launch", str(path), "--slurm", "--no-progress", *flags]
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpsearch", *launch],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, **gate.env, "HPSEARCH_STORAGE": url},
    )
    wait_running(url, process=proc)
    return path, gate, proc


@_on_cluster
def test_an_array_its_timeout_ends_says_so_and_exits_0(
    slurm_cluster: SlurmCluster, postgres_url: str, tmp_path: Path
) -> None:
    _, gate, proc = _held_array(tmp_path, postgres_url, "--timeout", "1")
    time.sleep(1.5)  # past the timeout, counted from the task's start, before it claimed
    gate.open()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "1/3 trials finished" in out
    assert "the timeout stopped starting trials with 2 of the budget left; launch again" in err
    script = next((tmp_path / "hpsearch-logs" / "t").rglob("job-*.sh")).read_text()
    assert "--memory-share 0.8 --timeout 1 --name" in script  # each worker counts it


@_on_cluster
def test_hpsearch_stop_ends_an_array_after_its_running_trial(
    slurm_cluster: SlurmCluster, postgres_url: str, tmp_path: Path
) -> None:
    _, gate, proc = _held_array(tmp_path, postgres_url)
    asked = hpsearch("stop", "t", "--storage", postgres_url)
    assert asked.returncode == 0, asked.stderr
    gate.open()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "1/3 trials finished" in out
    assert re.search(
        r"stopped early: `hpsearch stop` at .* UTC by \S+; 2 trials of the budget left: run "
        r"the same command again to go on",
        err,
    )
    assert "ended before the budget was reached" not in err


@_on_cluster
def test_hpsearch_stop_cancels_the_tasks_that_have_not_started(
    slurm_cluster: SlurmCluster, postgres_url: str, tmp_path: Path
) -> None:
    job = _detached(
        tmp_path, postgres_url, 2, 1, "--nodes", "2", "--slurm-option", "begin=now+3600"
    )
    assert slurm_cluster.run("squeue", "-h", "-r", "-j", job, "-o", "%T").stdout.split() == [
        "PENDING",
        "PENDING",
    ]  # an hour before they may start
    asked = hpsearch("stop", "t", "--storage", postgres_url)
    assert asked.returncode == 0, asked.stderr
    assert f"cancelled the pending tasks of Slurm job {job}\n" in asked.stdout
    wait_for(lambda: _queue_empty(slurm_cluster, job), "the pending tasks leave the queue")
    again = hpsearch("stop", "t", "--storage", postgres_url)  # nothing left to cancel
    assert again.returncode == 0 and "cancelled" not in again.stdout, again.stderr


@_on_cluster
def test_an_array_whose_study_reached_its_target_says_so_and_exits_0(
    slurm_cluster: SlurmCluster, postgres_url: str, tmp_path: Path
) -> None:
    path = write_study(tmp_path, **TARGET_STUDY)
    proc = _launch(path, postgres_url)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "2/4 trials finished" in proc.stdout
    assert f"stopped early: {TARGET_REACHED}; 2 trials of the budget left" in proc.stderr
    assert "ended before the budget was reached" not in proc.stderr


@_on_cluster
def test_scancel_of_one_task_mid_trial_queues_its_trial_again(
    slurm_cluster: SlurmCluster, postgres_url: str, tmp_path: Path
) -> None:
    url = postgres_url
    job = _detached(tmp_path, url, 3, 150, "--nodes", "2")  # trials of about 15 s

    def both_running() -> list[Any]:
        running = open_study("t", url).get_trials(states=(TrialState.RUNNING,))
        return running if len({t.user_attrs.get("worker") for t in running}) == 2 else []

    running = wait_for(both_running, "both tasks run a trial")
    status = hpsearch("status", "t", "--storage", url).stdout
    assert f"slurm       jobs {job}: 2 tasks, 0 pending, 2 running, 0 done" in status
    victim = next(t for t in running if t.user_attrs["worker"].startswith(f"slurm-{job}_1"))
    slurm_cluster.run("scancel", f"{job}_1")
    wait_for(lambda: _queue_empty(slurm_cluster, job), "the array ends", timeout=400)
    trials = open_study("t", url).get_trials()
    cut = next(t for t in trials if t.number == victim.number)
    assert cut.state == TrialState.FAIL  # stopped at an epoch end (or found stale) ...
    retry = [t for t in trials if t.system_attrs.get("retry_history") == [victim.number]]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE  # ... and run again
    assert retry[0].user_attrs["worker"].startswith(f"slurm-{job}_0")
    done = [t for t in counted(trials) if t.state == TrialState.COMPLETE]
    assert len(done) == 3 and len(counted(trials)) == 3  # the budget, exactly


@_on_cluster
def test_a_time_limit_mid_trial_queues_the_trial_again(
    slurm_cluster: SlurmCluster, postgres_url: str, tmp_path: Path
) -> None:
    url = postgres_url
    # a trial that cannot finish before the 2-minute limit: a million epochs
    job = _detached(tmp_path, url, 1, 1_000_000, "--time", "00:02:00")
    wait_for(lambda: _queue_empty(slurm_cluster, job), "the time limit ends the task", timeout=300)
    trials = open_study("t", url).get_trials()
    first = trials[0]
    assert first.state == TrialState.FAIL, [t.state for t in trials]
    assert len(trials) == 2 and trials[1].state == TrialState.WAITING  # not lost: queued
    assert fixed_params(trials[1]) == first.params  # the same point, to run on a resume
    assert trials[1].system_attrs.get("retry_history") == [first.number]
    log = next((tmp_path / "hpsearch-logs" / "t").glob("slurm-*.log")).read_text()
    assert "Traceback" not in log
