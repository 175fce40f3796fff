"""Benchmark: the same digits study with 1 and 2 CPU workers, and grid claims under contention.

Prints trials per minute for each pool size and their ratio, and the storage overhead per
trial (a trial's wall time minus its training time: claiming, sampling, attributes, tell).
Then the same with `hpsearch worker` processes started by hand (as on a host that joins a
study): 1 and 2 workers with their default of 1 torch thread each, and 2 workers with 2
threads each (what every process got before workers set their threads: oversubscribed).
With --grid-contention it also runs a 40-point grid with 8 processes twice: plain Optuna
(GridSampler shared through the storage) and hpsearch (queued points claimed once).

    python bench/workers.py [--trials 40] [--grid-contention]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
from pathlib import Path
import statistics
import subprocess
import sys
import tempfile
import time

import optuna
import yaml

STUDY = {
    "name": "bench",
    "dataset": "digits",
    "objective": {"metric": "val_accuracy"},
    "sampler": {"name": "random", "seed": 0},
    "fixed": {"epochs": 10, "optimizer": "adam", "lr": 0.01, "scheduler": "none"},
    "space": {
        "lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
        "hidden_layers": {
            "type": "layers",
            "depth": {"low": 1, "high": 2},
            "width": {"low": 32, "high": 128},
        },
    },
}


def launch(doc: dict[str, object], workers: int, workdir: Path) -> float:
    path = workdir / f"{doc['name']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "hpsearch",
            "launch",
            str(path),
            "--workers",
            str(workers),
            "--no-progress",
            "--log-dir",
            str(workdir / "logs"),
        ],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def pool_size(trials: int, workers: int, workdir: Path) -> tuple[float, float]:
    doc = {
        **STUDY,
        "name": f"bench-{workers}",
        "budget": {"trials": trials},
        "storage": f"sqlite:///{workdir / f'w{workers}.db'}",
    }
    wall = launch(doc, workers, workdir)
    study = optuna.load_study(study_name=str(doc["name"]), storage=str(doc["storage"]))
    overhead = [
        t.duration.total_seconds() - t.user_attrs["train_seconds"]
        for t in study.trials
        if t.duration and "train_seconds" in t.user_attrs
    ]
    return 60.0 * trials / wall, statistics.median(overhead)


def by_hand(trials: int, workers: int, threads: int | None, workdir: Path) -> float:
    """Trials per minute of `workers` processes of `hpsearch worker` started by hand."""
    tag = f"hand-{workers}-{threads or 'default'}"
    doc = {
        **STUDY,
        "name": tag,
        "budget": {"trials": trials},
        "storage": f"sqlite:///{workdir / f'{tag}.db'}",
    }
    path = workdir / f"{tag}.yaml"
    path.write_text(yaml.safe_dump(doc))
    hpsearch = [sys.executable, "-m", "hpsearch"]
    subprocess.run([*hpsearch, "create", str(path)], check=True, capture_output=True)
    extra = ["--threads", str(threads)] if threads else []
    start = time.perf_counter()
    procs = [
        subprocess.Popen([*hpsearch, "worker", str(path), *extra], stdout=subprocess.DEVNULL)
        for _ in range(workers)
    ]
    if any(p.wait() != 0 for p in procs):
        raise SystemExit(f"a worker of {tag} failed")
    return 60.0 * trials / (time.perf_counter() - start)


def _plain_optuna_worker(url: str) -> None:
    grid = {"x": list(range(40))}
    study = optuna.load_study(
        study_name="plain", storage=url, sampler=optuna.samplers.GridSampler(grid)
    )
    study.optimize(lambda t: (time.sleep(0.05), t.suggest_int("x", 0, 39))[1])


def grid_contention(workdir: Path) -> None:
    url = f"sqlite:///{workdir / 'plain.db'}"
    optuna.create_study(study_name="plain", storage=url)
    procs = [multiprocessing.Process(target=_plain_optuna_worker, args=(url,)) for _ in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    xs = [t.params.get("x") for t in optuna.load_study(study_name="plain", storage=url).trials]
    print(
        f"plain Optuna GridSampler, 8 processes, 40 points: {len(xs)} trials, "
        f"{len(xs) - len(set(xs))} duplicates"
    )
    doc = {
        **STUDY,
        "name": "grid",
        "sampler": "grid",
        "dataset": "synthetic",
        "storage": f"sqlite:///{workdir / 'grid.db'}",
        "fixed": {"epochs": 1, "hidden_layers": [], "optimizer": "adam", "scheduler": "none"},
        "space": {"lr": {"type": "float", "low": 0.001, "high": 0.04, "step": 0.001}},
    }
    launch(doc, 8, workdir)
    study = optuna.load_study(study_name="grid", storage=str(doc["storage"]))
    lrs = [round(t.params["lr"], 6) for t in study.trials]
    print(
        f"hpsearch grid, 8 workers, 40 points: {len(lrs)} trials, "
        f"{len(lrs) - len(set(lrs))} duplicates"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--grid-contention", action="store_true")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ.setdefault("HPSEARCH_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        results = {n: pool_size(args.trials, n, workdir) for n in (1, 2)}
        for n, (rate, overhead) in results.items():
            print(
                f"{n} worker(s): {rate:6.1f} trials/min  storage overhead "
                f"{1000 * overhead:5.0f} ms/trial (median)"
            )
        print(f"ratio 2/1 workers: {results[2][0] / results[1][0]:.2f}x")
        hand = {
            (n, t): by_hand(args.trials, n, t, workdir) for n, t in ((1, None), (2, None), (2, 2))
        }
        for (n, t), rate in hand.items():
            print(
                f"by hand, {n} worker(s), {t or 1} thread(s) each"
                f"{' (default)' if t is None else ''}: {rate:6.1f} trials/min"
            )
        print(f"ratio 2/1 workers by hand: {hand[(2, None)] / hand[(1, None)]:.2f}x")
        print(
            f"ratio 1 / 2 threads per worker, 2 workers by hand: "
            f"{hand[(2, None)] / hand[(2, 2)]:.2f}x"
        )
        if args.grid_contention:
            grid_contention(workdir)
    print(
        json.dumps(
            {str(k): {"trials_per_min": v[0], "overhead_s": v[1]} for k, v in results.items()}
        )
    )


if __name__ == "__main__":
    main()
