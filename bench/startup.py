"""Start-up time and memory of hpsearch's commands, beside ``python -c "import torch"``.

Each command runs as a fresh process, as a user types it; the figures are the median wall
time and the peak resident memory of the process, and each one's ratio to a torch import
measured in the same run. Measured: the reading commands (``--help``, ``status``,
``trials``...), a bad study file refused by ``run``, ``launch``, ``create`` and ``worker``,
``run`` and ``launch --workers 2`` of a study of two one-epoch trials on digits (for these,
also when the first trial started, read from the storage). ``--src`` measures another
checkout (an older commit) with this interpreter, side by side in the same run::

    git worktree add /tmp/before <commit>
    python bench/startup.py --src /tmp/before --src .
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import datetime
import os
from pathlib import Path
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

STUDY = """\
name: s
storage: sqlite:///{db}
dataset: digits
sampler: {{name: random, seed: 0}}
budget: {{trials: 2}}
fixed: {{epochs: 1}}
space: {{lr: {{type: float, low: 0.001, high: 0.1, log: true}}}}
"""
BAD = "name: s\nstorage: sqlite:///{db}\nbudgt: {{trials: 2}}\n"  # a misspelt key


@dataclass(frozen=True)
class Run:
    """One process: wall seconds, peak RSS in MB, exit status, and when it started."""

    wall: float
    rss: float
    status: int
    started: float  # time.time() at the start


def _run(src: Path, args: list[str], cwd: Path, python: bool = False) -> Run:
    """One ``hpsearch`` process (or, with ``python``, one ``python`` process)."""
    env = {**os.environ, "PYTHONPATH": str(src.resolve()), "HPSEARCH_OFFLINE": "1"}
    command = [sys.executable, *args] if python else [sys.executable, "-m", "hpsearch", *args]
    started, start = time.time(), time.perf_counter()
    proc = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    return Run(wall, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status), started)


def _first_trial(db: Path) -> float:
    """When the study's first trial started (seconds since the epoch), from the storage."""
    with sqlite3.connect(db) as con:
        (first,) = con.execute("SELECT MIN(datetime_start) FROM trials").fetchone()
    # Optuna stores naive local times
    return datetime.datetime.fromisoformat(first).timestamp()


def _study_run(src: Path, args: list[str], work: Path, study: Path) -> tuple[Run, float]:
    """A run or launch of the two-trial study from scratch, and its first trial's start."""
    (work / "fresh.db").unlink(missing_ok=True)
    study.write_text(STUDY.format(db=work / "fresh.db"))
    run = _run(src, [*args, str(study), "--no-progress"], work)
    return run, _first_trial(work / "fresh.db") - run.started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", action="append", type=Path, help="checkouts to compare")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    sources = args.src or [Path(__file__).resolve().parent.parent]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        study = work / "s.yaml"
        study.write_text(STUDY.format(db=work / "hp.db"))
        # one study with finished trials to read, made by the first checkout
        subprocess.run(
            [sys.executable, "-m", "hpsearch", "run", str(study), "--no-progress"],
            cwd=work,
            env={**os.environ, "PYTHONPATH": str(sources[0].resolve())},
            check=True,
            capture_output=True,
        )
        bad = work / "bad.yaml"
        bad.write_text(BAD.format(db=work / "never.db"))
        fresh = work / "fresh.yaml"
        commands = {
            "--help": ["--help"],
            "studies": ["studies", "--storage", f"sqlite:///{work / 'hp.db'}"],
            "status": ["status", str(study)],
            "best": ["best", str(study)],
            "trials": ["trials", str(study)],
            "run bad file": ["run", str(bad)],
            "launch bad file": ["launch", str(bad)],
            "create bad file": ["create", str(bad)],
            "worker bad file": ["worker", str(bad)],
        }
        studies = {"run": ["run"], "launch --workers 2": ["launch", "--workers", "2"]}
        torch = [_run(sources[0], ["-c", "import torch"], work, True) for _ in range(args.repeat)]
        unit = statistics.median(r.wall for r in torch)
        print(f"python -c 'import torch': {unit:.2f} s (the unit of the x columns)\n")
        print(f"{'command':<26} " + "  ".join(f"{s!s:>36}" for s in sources))
        for name, command in commands.items():
            cells = []
            for src in sources:
                runs = [_run(src, command, work) for _ in range(args.repeat)]
                cells.append(_cell(runs, unit))
            print(f"{name:<26} " + "  ".join(f"{c:>36}" for c in cells))
        for name, command in studies.items():
            cells, firsts = [], []
            for src in sources:
                pairs = [_study_run(src, command, work, fresh) for _ in range(args.repeat)]
                cells.append(_cell([r for r, _ in pairs], unit))
                first = statistics.median(f for _, f in pairs)
                firsts.append(f"{first:6.2f} s {first / unit:5.2f}x")
            print(f"{name:<26} " + "  ".join(f"{c:>36}" for c in cells))
            print(f"{'  its first trial started':<26} " + "  ".join(f"{c:>36}" for c in firsts))


def _cell(runs: list[Run], unit: float) -> str:
    wall = statistics.median(r.wall for r in runs)
    rss = max(r.rss for r in runs)
    ok = "" if all(r.status == 0 for r in runs) else f" (exit {runs[0].status})"
    return f"{wall:6.2f} s {wall / unit:5.2f}x {rss:5.0f} MB{ok}"


if __name__ == "__main__":
    main()
