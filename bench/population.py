"""Trials per hour of populations of K trials trained at once, side by side in one run.

(a) The MNIST reference config (784-128-10, Adadelta, batch 64; members differ in their
learning rate) for each K: wall time, trials per hour, the best validation accuracy, on a
GPU its utilisation, and the useful arithmetic done (the matrix products of the forward and
backward passes and of evaluation) in TFLOP/s and as a share of the device's peak, measured
by one large matrix product in the same precision (``--precision``); on a GPU, for the K of
``--eager-sizes``, the same population stepped eagerly (``cuda_graphs: false``) and how many
times faster the CUDA graphs made it. (b)
``studies/quickstart.yaml`` as a whole study with ``--population K``: wall time and the best
value it reached. The last line is
``population speedup: Xx``, K=16 against K=1 on (a)::

    python bench/population.py --data-dir ../shared/data --epochs 2
    python bench/population.py --data-dir ../shared/data --epochs 14 --sizes 1,16,64,256,512
    python bench/population.py --data-dir DIR --epochs 14 --sizes 1,16,512 --precision tf32
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
from pathlib import Path
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import torch

from hpsearch.spec.choices import PRECISIONS
from hpsearch.spec.config import make_config
from hpsearch.spec.config import TrainConfig
from hpsearch.training.trainer import load_data
from hpsearch.training.trainer import numerics
from hpsearch.training.trainer import resolve_device
from hpsearch.training.trainer import train_population
from hpsearch.training.trainer import TrainResult

REPO = Path(__file__).resolve().parent.parent


class GpuMonitor:
    """Samples ``nvidia-smi``'s GPU utilisation every 0.2 s while it runs."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                ).stdout
                self.samples.append(float(out.split()[0]))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                return

    def __enter__(self) -> GpuMonitor:
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


def reference(k: int, args: argparse.Namespace, graphs: bool = True) -> list[TrainConfig]:
    """K reference configs that differ in their learning rate (as a search would draw);
    ``graphs``: full batches replayed from a CUDA graph on a CUDA GPU (else eager)."""
    base = {
        "dataset": "mnist",
        "data_dir": args.data_dir,
        "epochs": args.epochs,
        "device": args.device,
        "train_subset": args.train_subset,
        "precision": args.precision,
        "cuda_graphs": graphs,
    }
    return [make_config({**base, "lr": 1.0 * 0.9 ** (i % 16)}) for i in range(k)]


def sync(device: torch.device) -> None:
    """Waits for the device's queued work (a CUDA device runs it asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(configs: list[TrainConfig]) -> tuple[list[TrainResult], float]:
    """Trains ``configs`` as one call of the trainer; its results and wall time."""
    device = resolve_device(configs[0].device)
    sync(device)
    start = time.perf_counter()
    results = train_population(configs)
    sync(device)
    return results, time.perf_counter() - start


def trial_flops(config: TrainConfig) -> float:
    """The useful arithmetic of one run of ``config``: its matrix products, 2 operations a
    weight a sample forward and 4 more backward for each training sample of each epoch, 2
    for each validation sample of each epoch and each test sample once (biases, activations
    and the optimizer's few operations a weight a step are left out)."""
    data = load_data(config, resolve_device(config.device))
    widths = [data.num_features, *config.hidden_layers, data.num_classes]
    weights = sum(a * b for a, b in itertools.pairwise(widths))
    train, val, test = len(data.train_y), len(data.val_y), len(data.test_y)
    return float(weights * (config.epochs * (6 * train + 2 * val) + 2 * test))


# Dense tensor-core and vector peaks from NVIDIA's data sheets (SXM), TFLOP/s, by precision.
DATASHEET = {
    "H100": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4},
    "H200": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4},
}


def matmul_peak(device: torch.device, precision: str) -> float:
    """TFLOP/s of a large square matrix product on ``device`` in ``precision``: the
    arithmetic this device actually reaches, which its data sheet's peak bounds."""
    n = 8192 if device.type == "cuda" else 1024
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    with numerics(precision, device):
        for _ in range(3):
            a @ b
        sync(device)
        reps, start = 10, time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        seconds = time.perf_counter() - start
    return 2 * n**3 * reps / seconds / 1e12


def peak_line(device: torch.device, precision: str) -> tuple[float, str]:
    """The measured peak, and a line that names it and the data sheet's where known."""
    measured = matmul_peak(device, precision)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    sheet = next((v[precision] for k, v in DATASHEET.items() if k in name), None)
    known = f"; data sheet {sheet:.0f}" if sheet else ""
    return measured, (
        f"peak on {name} in {precision}: {measured:.2f} TFLOP/s measured (one large "
        f"matrix product){known}"
    )


def bench_reference(sizes: list[int], args: argparse.Namespace) -> dict[int, float]:
    device = resolve_device(args.device)
    train_population(reference(1, args)[:1])  # loads MNIST onto the device, warms up
    flops = trial_flops(reference(1, args)[0])
    peak, line = peak_line(device, args.precision)
    rates = {}
    print(f"(a) MNIST reference config, {args.epochs} epochs, on {device}, {args.precision}")
    print(f"    {line}; a trial is {flops / 1e12:.3f} TFLOP of matrix products")
    eager_sizes = (
        {int(k) for k in args.eager_sizes.split(",") if k} if device.type == "cuda" else set()
    )
    print(
        f"{'K':>5} {'wall s':>9} {'s/trial':>9} {'trials/h':>10} {'best val':>9} {'GPU %':>6} "
        f"{'TFLOP/s':>8} {'% peak':>7} {'eager s':>8} {'graphs':>7}"
    )
    for k in sizes:
        with GpuMonitor() as gpu:
            results, wall = timed(reference(k, args))
        best = max(r.epochs[-1].val_accuracy for r in results)
        rates[k] = k / wall * 3600
        util = gpu.mean()
        achieved = k * flops / wall / 1e12
        # the same population stepped eagerly (cuda_graphs: false), side by side
        eager = timed(reference(k, args, graphs=False))[1] if k in eager_sizes else None
        print(
            f"{k:>5} {wall:>9.2f} {wall / k:>9.3f} {rates[k]:>10.0f} {best:>9.4f} "
            f"{'' if util is None else f'{util:.0f}':>6} {achieved:>8.3f} "
            f"{100 * achieved / peak:>6.1f}% {'' if eager is None else f'{eager:.2f}':>8} "
            f"{'' if eager is None else f'{eager / wall:.1f}x':>7}",
            flush=True,
        )
    return rates


def bench_study(sizes: list[int], args: argparse.Namespace) -> None:
    from hpsearch.spec.studyfile import load_spec
    from hpsearch.study.worker import run_study  # Optuna only here: (a) needs the trainer alone

    print(f"(b) {args.study} as a whole study, on {resolve_device(args.device)}")
    print(f"{'K':>5} {'wall s':>9} {'best':>8} {'complete':>9} {'pruned':>7}")
    for k in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            spec = load_spec(args.study, storage=f"sqlite:///{tmp}/b.db")
            base = make_config({"device": args.device, "precision": args.precision}, spec.base)
            spec = dataclasses.replace(spec, population=k, base=base, timeout=None)
            start = time.perf_counter()
            study, stats = run_study(spec)
            wall = time.perf_counter() - start
            print(
                f"{k:>5} {wall:>9.2f} {study.best_value:>8.4f} {stats.completed:>9} "
                f"{stats.pruned:>7}",
                flush=True,
            )


def group_sizes() -> None:
    """The average group size each shipped study reaches with its ``population``: its first
    population drawn at random (as a sampler's startup trials are), grouped as the trainer
    groups members that can share kernels."""
    import optuna

    from hpsearch.spec.config import make_config
    from hpsearch.spec.studyfile import load_spec
    from hpsearch.training.trainer import plan_groups

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from hpsearch.training import trainer

    print("(c) group sizes of the shipped studies' populations (one population each)")
    print(f"{'study':<28} {'population':>10} {'mean size on a CPU':>19} {'on a GPU':>9}")
    for path in sorted((REPO / "studies").glob("*.yaml")):
        spec = load_spec(str(path))
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        points = spec.points()
        configs = []
        for i in range(spec.population):
            if points:
                study.enqueue_trial(points[i % len(points)][2])
            values = spec.space.suggest(study.ask())
            configs.append(make_config({**values, "device": "cpu"}, spec.base))
        on_cpu = len(plan_groups(configs))
        merged = trainer.MERGE_DEPTHS
        trainer.MERGE_DEPTHS = ("cuda", "cpu")  # group as on a GPU: depths merge
        on_gpu = len(plan_groups(configs))
        trainer.MERGE_DEPTHS = merged
        print(
            f"{path.name:<28} {spec.population:>10} {spec.population / on_cpu:>19.1f} "
            f"{spec.population / on_gpu:>9.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("HPSEARCH_DATA_DIR"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--sizes", default="1,4,16,64")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--train-subset", type=int, default=None)
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32")
    parser.add_argument(
        "--eager-sizes", default="1,16", help="K also timed without CUDA graphs, on a GPU"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--study", default=str(REPO / "studies" / "quickstart.yaml"))
    parser.add_argument("--study-sizes", default=None, help="K for (b) [--sizes]")
    parser.add_argument("--skip-study", action="store_true")
    parser.add_argument("--skip-groups", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [int(k) for k in args.sizes.split(",")]
    rates = bench_reference(sizes, args)
    if not args.skip_study:
        study_sizes = [int(k) for k in (args.study_sizes or args.sizes).split(",")]
        bench_study(study_sizes, args)
    if not args.skip_groups:
        group_sizes()
    if 1 in rates and 16 in rates:
        print(f"population speedup: {rates[16] / rates[1]:.1f}x")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
