"""Start-up time and memory of hpsearch's commands, beside ``python -c "import torch"``.

Each command runs as a fresh process, as a user types it; the figures are the median wall
time and the peak resident memory of the process, and each one's ratio to a torch import
measured in the same run. Measured: the reading commands (``--help``, ``status``,
``trials``...), a bad study file refused by ``run``, ``launch``, ``create`` and ``worker``,
``run`` and ``launch --workers 2`` of a study of two one-epoch trials on digits (for these,
also when the first trial started, read from the storage). ``--src`` measures another
checkout (an older commit) with this interpreter, side by side in the same run, the
checkouts taking turns run by run; the unit is the median of torch imports measured before
and after the runs::

    git worktree add /tmp/before <commit>
    python bench/startup.py --src /tmp/before --src .
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
import datetime
import functools
import os
from pathlib import Path
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from typing import TypeVar

STUDY = """\
name: s
storage: sqlite:///{db}
dataset: digits
sampler: {{name: random, seed: 0}}
budget: {{trials: 2}}
fixed: {{epochs: 1}}
space: {{lr: {{type: float, low: 0.001, high: 0.1, log: true}}}}
"""
T = TypeVar("T")
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
        torch = _torch_imports(sources[0], work, args.repeat)
        # the checkouts take turns, run by run: a machine whose speed drifts (a shared VM
        # does) then slows each of them alike
        table = {
            name: _in_turn(sources, args.repeat, functools.partial(_run, args=cmd, cwd=work))
            for name, cmd in commands.items()
        }
        firsts: dict[str, dict[Path, list[float]]] = {}
        for name, cmd in studies.items():
            pairs = _in_turn(
                sources,
                args.repeat,
                functools.partial(_study_run, args=cmd, work=work, study=fresh),
            )
            table[name] = {src: [r for r, _ in pairs[src]] for src in sources}
            firsts[name] = {src: [f for _, f in pairs[src]] for src in sources}
        torch += _torch_imports(sources[0], work, args.repeat)  # and as the runs ended
    unit = statistics.median(torch)
    print(
        f"python -c 'import torch': {unit:.2f} s (the unit of the x columns; "
        f"{statistics.median(torch[: args.repeat]):.2f} s before the runs, "
        f"{statistics.median(torch[args.repeat :]):.2f} s after)\n"
    )
    print(f"{'command':<26} " + "  ".join(f"{s!s:>36}" for s in sources))
    for name, runs in table.items():
        print(f"{name:<26} " + "  ".join(f"{_cell(runs[src], unit):>36}" for src in sources))
        if name in firsts:
            medians = [statistics.median(firsts[name][src]) for src in sources]
            cells = [f"{f:6.2f} s {f / unit:5.2f}x" for f in medians]
            print(f"{'  its first trial started':<26} " + "  ".join(f"{c:>36}" for c in cells))


def _torch_imports(src: Path, work: Path, repeat: int) -> list[float]:
    return [_run(src, ["-c", "import torch"], work, True).wall for _ in range(repeat)]


def _in_turn(
    sources: list[Path], repeat: int, measure: Callable[[Path], T]
) -> dict[Path, list[T]]:
    """``repeat`` measurements of each checkout, taking turns."""
    runs: dict[Path, list[T]] = {src: [] for src in sources}
    for _ in range(repeat):
        for src in sources:
            runs[src].append(measure(src))
    return runs


def _cell(runs: list[Run], unit: float) -> str:
    wall = statistics.median(r.wall for r in runs)
    rss = max(r.rss for r in runs)
    ok = "" if all(r.status == 0 for r in runs) else f" (exit {runs[0].status})"
    return f"{wall:6.2f} s {wall / unit:5.2f}x {rss:5.0f} MB{ok}"


if __name__ == "__main__":
    main()
