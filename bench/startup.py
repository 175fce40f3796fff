"""Start-up time and memory of the reading commands (``--help``, ``status``, ``trials``...).

Each command runs as a fresh process, as a user types it; the figures are the median wall
time and the peak resident memory of the process. ``--src`` measures another checkout (an
older commit) with this interpreter, side by side in the same run::

    git worktree add /tmp/before <commit>
    python bench/startup.py --src /tmp/before --src .
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
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


def _run(src: Path, args: list[str], cwd: Path) -> tuple[float, float, int]:
    """Wall seconds, peak RSS in MB and exit status of one ``hpsearch`` process."""
    env = {**os.environ, "PYTHONPATH": str(src.resolve()), "HPSEARCH_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpsearch", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    return wall, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


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
        commands = [
            ["--help"],
            ["studies", "--storage", f"sqlite:///{work / 'hp.db'}"],
            ["status", str(study)],
            ["best", str(study)],
            ["trials", str(study)],
        ]
        print(f"{'command':<10} " + "  ".join(f"{s!s:>28}" for s in sources))
        for command in commands:
            cells = []
            for src in sources:
                runs = [_run(src, command, work) for _ in range(args.repeat)]
                wall = statistics.median(r[0] for r in runs)
                rss = max(r[1] for r in runs)
                ok = "" if all(r[2] == 0 for r in runs) else " (failed)"
                cells.append(f"{wall:6.2f} s {rss:6.0f} MB{ok}")
            print(f"{command[0]:<10} " + "  ".join(f"{c:>28}" for c in cells))


if __name__ == "__main__":
    main()
