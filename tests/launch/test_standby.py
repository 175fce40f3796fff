"""Workers forked from a launcher (hpsearch/launch/standby.py): each runs its command line in
a session and log of its own, waits until the launcher lets it go, and is ended having done
nothing if the launcher gives up first."""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys

import pytest

from hpsearch.launch.standby import GO_ENV
from hpsearch.launch.standby import LauncherGone
from hpsearch.launch.standby import Standby
from hpsearch.launch.standby import wait_for_launcher


def _worker(out: Path) -> object:
    """A stand-in for the CLI's main: says what it got, waits to be let go, exits 3."""

    def main(argv: list[str]) -> None:
        seen = {"argv": argv, "x": os.environ.get("X"), "sid": os.getsid(0), "pid": os.getpid()}
        print("waiting", flush=True)
        wait_for_launcher()
        out.write_text(json.dumps(seen))
        sys.exit(3)

    return main


def test_a_released_worker_runs_its_command_in_its_own_session_and_log(tmp_path: Path) -> None:
    out, log = tmp_path / "seen.json", tmp_path / "w.log"
    standby = Standby(_worker(out))  # type: ignore[arg-type]
    standby.fork("w", ["worker", "s.yaml"], {**os.environ, "X": "1"}, log)
    process = standby.release("w")
    assert process is not None and standby.release("w") is None  # let go once
    assert process.wait(timeout=60) == 3  # its exit status, as a spawned worker's
    seen = json.loads(out.read_text())
    assert seen["argv"] == ["worker", "s.yaml"] and seen["x"] == "1"
    assert seen["pid"] == process.pid and seen["sid"] == process.pid  # a session of its own
    assert log.read_text() == "waiting\n"  # its output in its log, not the launcher's
    standby.close()


def test_a_worker_never_let_go_is_ended_having_done_nothing(tmp_path: Path) -> None:
    out = tmp_path / "seen.json"
    standby = Standby(_worker(out))  # type: ignore[arg-type]
    standby.fork("w", [], dict(os.environ), tmp_path / "w.log")
    standby.fork("v", [], dict(os.environ), tmp_path / "v.log")
    standby.close()  # the launch stopped before its pool: both reaped
    assert not out.exists()
    assert standby.release("w") is None


def test_a_worker_whose_launcher_goes_away_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    read, write = os.pipe()
    monkeypatch.setenv(GO_ENV, str(read))
    os.close(write)  # the launcher died: its end of the pipe closed unwritten
    with pytest.raises(LauncherGone, match="stopped before the study was ready"):
        wait_for_launcher()
    wait_for_launcher()  # a process not forked by a launcher does not wait


@pytest.mark.parametrize(
    ("setup", "hazard"),
    [
        ("", None),
        ("import polars", "this process has loaded polars"),
        (
            "import threading, time; threading.Thread(target=time.sleep, args=(9,), daemon=True)"
            ".start()",
            "this process runs other threads",
        ),
        (
            "import torch; torch.cuda.is_initialized = lambda: True",
            "this process has initialised CUDA",
        ),
    ],
)
def test_a_process_that_a_fork_would_break_is_never_forked(setup: str, hazard: str | None) -> None:
    code = f"{setup}\nfrom hpsearch.launch.standby import fork_hazard; print(fork_hazard())"
    found = subprocess.check_output([sys.executable, "-c", code], text=True).strip()
    assert found == str(hazard)
