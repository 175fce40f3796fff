"""What asking "was this study stopped?" costs a worker: ``hpsearch run`` of N one-epoch
trials of a tiny network (training a few milliseconds, so the worker loop's own work shows),
with this checkout and others side by side.

Every worker reads the study's stop request (``hpsearch stop``) before each claim, and a
``--now`` request at epoch ends at most every 2 s. The figure is the loop's time per trial,
from the first trial's start to the last one's end as the database recorded them (start-up
excluded), the median of ``--repeat`` fresh studies, the checkouts taking turns run by run;
the last column is each checkout's ratio to the first::

    git worktree add /tmp/before <commit>
    python bench/stopping.py --src /tmp/before --src . --trials 200
"""

from __future__ import annotations

import argparse
from datetime import datetime
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
pruner: {{name: none}}
budget: {{trials: {trials}}}
fixed: {{epochs: 1, hidden_layers: [], scheduler: none, optimizer: adam}}
space: {{lr: {{type: float, low: 0.001, high: 0.1, log: true}}}}
"""


def _per_trial(src: Path, folder: Path, trials: int) -> float:
    """Milliseconds of the worker loop per trial in one fresh ``hpsearch run``."""
    db = folder / "s.db"
    db.unlink(missing_ok=True)
    study = folder / "s.yaml"
    study.write_text(STUDY.format(db=db, trials=trials))
    env = {**os.environ, "PYTHONPATH": str(src.resolve()), "HPSEARCH_OFFLINE": "1"}
    subprocess.run(  # not from a checkout: `python -m` puts the folder it runs in first
        [sys.executable, "-m", "hpsearch", "run", str(study), "--no-progress", "--threads", "1"],
        cwd=folder,
        env=env,
        check=True,
        capture_output=True,
    )
    connection = sqlite3.connect(db)
    try:
        first, last, n = connection.execute(
            "SELECT MIN(datetime_start), MAX(datetime_complete), COUNT(*) FROM trials "
            "WHERE state = 'COMPLETE'"
        ).fetchone()
    finally:
        connection.close()
    assert n == trials, f"{src}: {n} of {trials} trials completed"
    seconds = (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()
    return 1000.0 * seconds / trials


def _read_ms(db: Path, reads: int = 1000) -> float:
    """Milliseconds of one read of the stop request (this checkout's), as a worker makes
    before each claim."""
    from hpsearch.results.reading import open_study
    from hpsearch.study import budget

    study = open_study("s", f"sqlite:///{db}")
    start = time.perf_counter()
    for _ in range(reads):
        budget.stop_request(study)
    return 1000.0 * (time.perf_counter() - start) / reads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", action="append", type=Path, help="a checkout [.]")
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sources: list[Path] = args.src or [Path(".")]
    runs: dict[Path, list[float]] = {src: [] for src in sources}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            for src in sources:  # taking turns: a slower minute hits every checkout alike
                runs[src].append(_per_trial(src, Path(tmp), args.trials))
        read = _read_ms(Path(tmp) / "s.db")
    base = statistics.median(runs[sources[0]])
    print(f"{args.trials} one-epoch trials, worker loop ms per trial (median of {args.repeat})")
    print(f"{'checkout':<30} {'ms/trial':>9} {'runs':>24} {'ratio':>6}")
    for src in sources:
        median = statistics.median(runs[src])
        each = " ".join(f"{r:.1f}" for r in runs[src])
        print(f"{src!s:<30} {median:>9.1f} {each:>24} {median / base:>6.2f}")
    print(f"one read of the stop request (this checkout, SQLite): {read:.2f} ms")


if __name__ == "__main__":
    main()
