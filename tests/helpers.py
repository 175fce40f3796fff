"""Shared helpers: small study files on digits and a CLI runner."""

from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys
import time
from typing import Any

import optuna
from optuna.trial import TrialState
import yaml

# Every trial fails the same way (two activations for one hidden layer), while the fixed
# settings alone train fine: the pre-flight check passes, every trial raises.
BROKEN_SPACE: dict[str, Any] = {
    "fixed": {"epochs": 1, "hidden_layers": [16], "scheduler": "none"},
    "space": {"activation": {"values": [["relu", "tanh"]]}},
}


def study_doc(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """A small, fast digits study stored in a temporary SQLite file."""
    doc: dict[str, Any] = {
        "name": "t",
        "storage": f"sqlite:///{tmp_path / 'hp.db'}",
        "dataset": "digits",
        "objective": {"metric": "val_accuracy", "reduce": "final"},
        "sampler": {"name": "random", "seed": 0},
        "budget": {"trials": 4},
        "fixed": {"epochs": 2, "scheduler": "none", "optimizer": "adam", "lr": 0.01},
        "space": {
            "lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
            "hidden_layers": {
                "type": "layers",
                "depth": {"low": 0, "high": 2},
                "width": {"low": 8, "high": 64, "log": True},
            },
        },
        "heartbeat": {"interval": 1, "grace_period": 3},
    }
    doc.update(overrides)
    return doc


def write_study(tmp_path: Path, name: str = "study.yaml", **overrides: Any) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(study_doc(tmp_path, **overrides), sort_keys=False))
    return path


def hpsearch(
    *args: str, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Runs the CLI in a subprocess, as a user would."""
    env = {**os.environ, "HPSEARCH_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "hpsearch", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def start(*args: str) -> subprocess.Popen[str]:
    """Starts the CLI in the background, offline, its output captured."""
    return subprocess.Popen(
        [sys.executable, "-m", "hpsearch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HPSEARCH_OFFLINE": "1"},
    )


def wait_running(url: str, n: int = 1, timeout: float = 180) -> list[optuna.trial.FrozenTrial]:
    """The first ``n`` trials (by number) of study ``t`` that run with their worker's pid
    recorded, once that many do."""
    from hpsearch.results import open_study

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            running = open_study("t", url).get_trials(states=(TrialState.RUNNING,))
        except Exception:  # the study may not exist yet
            running = []
        started = sorted((t for t in running if "pid" in t.user_attrs), key=lambda t: t.number)
        if len(started) >= n:
            return started[:n]
        time.sleep(0.2)
    raise AssertionError(f"{n} trials never ran at once")
