"""A worker process's start-up (``hpsearch worker``), in this process."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpsearch.errors import ConfigError
from hpsearch.errors import StorageError
from hpsearch.launch import worker
from hpsearch.spec.studyfile import load_spec
from tests.helpers import write_study


def test_a_worker_takes_its_share_of_the_gpu_memory_and_of_the_cores(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shares: list[float] = []
    threads: list[int | None] = []
    monkeypatch.setattr(worker, "set_memory_share", shares.append)
    monkeypatch.setattr(worker, "set_threads", threads.append)
    monkeypatch.setattr(worker, "install_stop_signals", lambda: None)  # pytest's own stay
    monkeypatch.setenv(worker.THREADS_ENV, "3")  # a launcher's share of the cores
    spec = load_spec(str(write_study(tmp_path)))
    with pytest.raises(StorageError, match="does not exist"):  # the launcher creates it
        worker.join_study(spec, device="cpu", memory_share=0.25)
    assert shares == [0.25] and threads == [3]
    with pytest.raises(StorageError):  # not given: the process keeps the default share
        worker.join_study(spec, device="cpu")
    assert shares == [0.25] and threads == [3, 3]


@pytest.mark.parametrize("value", ["abc", "0", "-2", "1.5", "2 cores"])
def test_a_bad_thread_count_in_the_environment_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(worker.THREADS_ENV, value)
    with pytest.raises(ConfigError, match=rf"^\$HPSEARCH_TORCH_THREADS: '{value}' is not a"):
        worker.worker_threads(None)
    assert worker.worker_threads(4) == 4  # --threads wins: the variable is not read


def test_the_environment_sets_a_workers_threads_else_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(worker.THREADS_ENV, " 6")
    assert worker.worker_threads(None) == 6
    monkeypatch.delenv(worker.THREADS_ENV)
    assert worker.worker_threads(None) == 1
