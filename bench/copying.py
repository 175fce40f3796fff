"""Copying a study into another storage: `hpsearch copy` against Optuna's `copy_study`, on
the same study, side by side in one run.

The study is built as bench/scale.py builds its own (hpsearch's code path, a stand-in
trainer: see that module's docstring) and grown to each size by copying its trials in SQL.
Each copy goes into a fresh SQLite file, or with ``--postgres`` a fresh database on a
throw-away PostgreSQL server: `hpsearch copy` as a user types it (a fresh process, its
start-up included), Optuna's `copy_study` called in this process (no start-up counted).
Both copies are then read back and compared trial by trial, field by field::

    python bench/copying.py --trials 1000 --clone 10000
    python bench/copying.py --trials 1000 --clone 10000 --postgres
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
import sys
import tempfile
import time

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import optuna  # noqa: E402
from scale import _write  # noqa: E402
from scale import build  # noqa: E402
from scale import command  # noqa: E402
from scale import storage_base  # noqa: E402

from hpsearch.storage import open_storage  # noqa: E402
from tests.helpers import clone_study  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.ERROR)


def same(a: optuna.Study, b: optuna.Study) -> bool:
    """Whether two studies hold the same trials, field by field (ids aside; a dict's keys in
    any order; by repr, as a NaN is not == itself)."""

    def fields(t: optuna.trial.FrozenTrial) -> str:
        kept = {k: v for k, v in vars(t).items() if k != "_trial_id"}
        return repr({k: sorted(v.items()) if isinstance(v, dict) else v for k, v in kept.items()})

    trials = zip(a.get_trials(deepcopy=False), b.get_trials(deepcopy=False), strict=True)
    return all(fields(t) == fields(u) for t, u in trials)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000, help="trials built")
    parser.add_argument("--clone", type=int, nargs="*", default=[10000], metavar="N")
    parser.add_argument("--postgres", action="store_const", const="throw-away")
    args = parser.parse_args()
    rows = []
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        make_url = stack.enter_context(storage_base(None, work))
        into = stack.enter_context(storage_base(args.postgres, work))
        path = _write(work, "s", make_url("s"), args.trials)
        build(path)
        for size in [args.trials, *args.clone]:
            if size != args.trials:
                clone_study(make_url("s"), "s", size)
            ours_url, optunas_url = into(f"ours{size}"), into(f"optunas{size}")
            wall, rss, rc = command(["copy", str(path), "--to", ours_url], work)
            assert rc == 0, "hpsearch copy failed"
            start = time.perf_counter()
            optuna.copy_study(
                from_study_name="s", from_storage=make_url("s"), to_storage=optunas_url
            )
            theirs = time.perf_counter() - start
            ours = optuna.load_study(study_name="s", storage=open_storage(ours_url))
            optunas = optuna.load_study(study_name="s", storage=optunas_url)
            kind = "PostgreSQL" if args.postgres else "SQLite"
            rows.append(
                (
                    f"{size}",
                    f"SQLite -> {kind}",
                    f"{wall:.2f} s ({rss:.0f} MB)",
                    f"{theirs:.2f} s",
                    f"{theirs / wall:.1f}x",
                    "yes" if same(ours, optunas) else "NO",
                )
            )
            print("  ".join(rows[-1]), flush=True)
    print(
        "\n| trials | copy | `hpsearch copy` (process, peak RSS) | Optuna's `copy_study` "
        "| ratio | same trials |\n|---|---|---|---|---|---|"
    )
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
