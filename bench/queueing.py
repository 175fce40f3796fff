"""Queueing a study's budget, its retries, and deleting it: ``hpsearch create`` of a study of
N trials, and of a grid of N points, on a fresh SQLite file; ``hpsearch retry`` once all of
them failed; then ``hpsearch delete`` of it, with this checkout and others side by side.

``create`` queues one WAITING trial per trial of the budget (per point of a grid) before
any worker starts, and so does the first ``run`` or ``launch`` of a study: its time is the
wait before the first trial. ``retry`` queues a copy of each failed trial (here every trial
is made FAIL in the database, as when a study ran on a broken data path). Each figure is the
median wall time of ``--repeat`` fresh processes, the checkouts taking turns run by run; the
last columns are each checkout's ratio to the first::

    git worktree add /tmp/before <commit>
    python bench/queueing.py --src /tmp/before --src . --trials 100 1000 10000
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

STUDY = """\
name: q
storage: sqlite:///{db}
dataset: digits
sampler: {sampler}
budget: {{trials: {trials}}}
fixed: {{epochs: 1}}
space: {space}
"""
RANDOM = "{lr: {type: float, low: 0.001, high: 0.1, log: true}}"
# a grid of n points: n values of one integer setting
GRID = "{{seed: {{type: int, low: 1, high: {n}}}}}"


COMMANDS = ("create", "retry", "delete")


def _fail_all(db: Path) -> None:
    connection = sqlite3.connect(db)
    try:
        with connection:  # commits
            connection.execute(
                "UPDATE trials SET state = 'FAIL', datetime_start = CURRENT_TIMESTAMP, "
                "datetime_complete = CURRENT_TIMESTAMP"
            )
    finally:
        connection.close()  # before the file is removed and made again


def _commands(src: Path, folder: Path, kind: str, n: int) -> list[float]:
    """Seconds of one ``hpsearch create`` of a fresh study of ``n`` trials or points, of its
    ``hpsearch retry`` once every trial failed, and of its ``hpsearch delete``."""
    db = folder / "q.db"
    db.unlink(missing_ok=True)
    space = GRID.format(n=n) if kind == "grid" else RANDOM
    sampler = "grid" if kind == "grid" else "{name: random, seed: 0}"
    study = folder / "q.yaml"
    study.write_text(STUDY.format(db=db, sampler=sampler, trials=n, space=space))
    env = {**os.environ, "PYTHONPATH": str(src.resolve()), "HPSEARCH_OFFLINE": "1"}
    seconds = []
    for command in (
        ["create", str(study)],
        ["retry", str(study)],
        ["delete", str(study), "--yes"],
    ):
        if command[0] == "retry":
            _fail_all(db)
        start = time.perf_counter()
        subprocess.run(  # not from a checkout: `python -m` puts the folder it runs in first
            [sys.executable, "-m", "hpsearch", *command],
            cwd=folder,
            env=env,
            check=True,
            capture_output=True,
        )
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", action="append", type=Path, help="a checkout (repeatable)")
    parser.add_argument("--trials", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sources: list[Path] = args.src or [Path(".")]
    names = [str(s) for s in sources]
    print(f"{'study':>20} {'command':<7} " + "  ".join(f"{n:>14}" for n in names) + "  ratio")
    with tempfile.TemporaryDirectory() as tmp:
        folders = [Path(tmp) / str(i) for i in range(len(sources))]
        for folder in folders:
            folder.mkdir()
        for kind in ("random", "grid"):
            for n in args.trials:
                times: list[list[list[float]]] = [[] for _ in sources]
                for _ in range(args.repeat):
                    for i, src in enumerate(sources):
                        times[i].append(_commands(src, folders[i], kind, n))
                label = f"{kind} {n:,} {'points' if kind == 'grid' else 'trials'}"
                for step, command in enumerate(COMMANDS):
                    medians = [statistics.median(t[step] for t in each) for each in times]
                    cells = "  ".join(f"{m:>12.2f} s" for m in medians)
                    ratios = "  ".join(f"{medians[0] / m:.1f}x" for m in medians[1:])
                    print(f"{label:>20} {command:<7} {cells}  {ratios}", flush=True)


if __name__ == "__main__":
    main()
