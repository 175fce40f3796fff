"""The launch layer without processes: flags that belong to Slurm, where logs go, how a
pool decides whether work is left, and how Slurm job arrays are recorded."""

from __future__ import annotations

from pathlib import Path
import pickle
from typing import Any

import optuna
import pytest

from hpsearch import storage as db
from hpsearch.errors import ConfigError
from hpsearch.launch import slurm
from hpsearch.launch.local import log_dir
from hpsearch.launch.pool import Pool
from hpsearch.launch.pool import WorkerSlot
from hpsearch.spec.studyfile import load_spec
from hpsearch.storage import open_storage
from tests.helpers import hpsearch
from tests.helpers import write_study


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--time", "01:00:00"], "--time"),
        (["--slurm-option", "qos=high"], "--slurm-option"),
        (["--partition", "gpu", "--requeue"], "--partition, --requeue"),
    ],
)
def test_slurm_flags_without_slurm_are_refused_before_anything_runs(
    flags: list[str], named: str, tmp_path: Path
) -> None:
    study = write_study(tmp_path)
    proc = hpsearch("launch", str(study), *flags, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == f"error: {named}: only with --slurm\n"
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "hp.db").exists()  # nothing written, no worker started


def test_a_launch_and_its_slurm_jobs_share_one_log_directory(tmp_path: Path) -> None:
    spec = load_spec(str(write_study(tmp_path)))
    assert log_dir(spec) == Path("hpsearch-logs") / "t"
    assert log_dir(spec, tmp_path / "logs") == tmp_path / "logs"


def test_a_pool_counts_the_work_left_without_loading_the_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = load_spec(str(write_study(tmp_path)))
    storage = open_storage(spec.storage, create=True)
    study = optuna.create_study(study_name="t", storage=storage)
    pool = Pool(spec, study, [WorkerSlot("cpu-0", "cpu")], tmp_path / "logs")
    assert not pool._work_left()
    study.enqueue_trial({})

    def load(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the pool loaded the study's trials")

    monkeypatch.setattr(optuna.Study, "get_trials", load)
    monkeypatch.setattr(optuna.Study, "_get_trials", load)
    assert pool._work_left()


def test_two_launchers_recording_jobs_at_once_keep_both(tmp_path: Path) -> None:
    # Each launcher writes its job alone; neither reads the others' first (a shared list,
    # read, extended and written back, lost one of two launches submitted together).
    url = f"sqlite:///{tmp_path / 'hp.db'}"
    first = optuna.create_study(study_name="t", storage=open_storage(url, create=True))
    second = optuna.load_study(study_name="t", storage=open_storage(url))
    before = db.study_system_attrs(first)
    slurm.record_job(first, "101", 2)
    slurm.record_job(second, "102", 4)
    assert db.study_system_attrs(first).keys() - before.keys() == {
        f"{slurm.JOB_ATTR_PREFIX}101",
        f"{slurm.JOB_ATTR_PREFIX}102",
    }
    assert [(j["job_id"], j["tasks"]) for j in slurm.recorded_jobs(first)] == [
        ("101", 2),
        ("102", 4),
    ]


def test_jobs_recorded_in_the_earlier_one_list_layout_still_read(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hp.db'}"
    study = optuna.create_study(study_name="t", storage=open_storage(url, create=True))
    db.set_study_system_attr(
        study, slurm.JOBS_ATTR, [{"job_id": "7", "tasks": 1, "submitted": 1.0}]
    )
    slurm.record_job(study, "8", 3)
    assert [j["job_id"] for j in slurm.recorded_jobs(study)] == ["7", "8"]


def test_user_errors_survive_a_process_pool() -> None:
    # A worker pool pickles exceptions: an error must read the same on the other side.
    error = ConfigError(["space.lr.low: must be > 0"], source="study.yaml")
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is ConfigError and str(again) == str(error)
    assert again.problems == error.problems and again.source == "study.yaml"
