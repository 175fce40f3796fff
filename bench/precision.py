"""What TF32 and bf16 do to the reference configuration's accuracy and speed, in one run.

The MNIST reference config (784-128-10, Adadelta, batch 64) as a population of K members
that differ in their learning rate (bench/population.py's), trained once in each precision.
For each precision: wall time, the mean validation and test accuracy, and the mean paired
difference of test accuracy from fp32 (the same member, same batches) with its standard
error. The noise it is judged against is the standard error of one test accuracy,
``sqrt(p (1 - p) / n)``: a change within twice that cannot be told from a different seed's::

    python bench/precision.py --data-dir ../shared/data --epochs 14 --members 16

On a CPU ``tf32`` is float32 (the trainer uses TF32 only on a CUDA GPU).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics

from population import reference  # bench/population.py: the same configs and timing
from population import timed

from hpsearch.spec.choices import PRECISIONS
from hpsearch.training.trainer import resolve_device
from hpsearch.training.trainer import train_population

MNIST_TEST = 10_000  # images in MNIST's test set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("HPSEARCH_DATA_DIR"))
    parser.add_argument("--epochs", type=int, default=14)
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--train-subset", type=int, default=None)
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    args = parser.parse_args()
    precisions = args.precisions.split(",")
    warm = argparse.Namespace(**{**vars(args), "precision": "fp32"})
    train_population(reference(1, warm))  # loads MNIST onto the device, warms up
    print(
        f"MNIST reference config, {args.members} members (lr 0.9**i), {args.epochs} epochs, "
        f"on {resolve_device(args.device)}"
    )
    print(
        f"{'precision':<10} {'wall s':>8} {'val acc':>8} {'test acc':>9} "
        f"{'vs fp32':>8} {'+-':>6} {'noise':>6}  verdict"
    )
    exact: list[float] = []
    for precision in ["fp32", *[p for p in precisions if p != "fp32"]]:
        results, wall = timed(
            reference(args.members, argparse.Namespace(**{**vars(args), "precision": precision}))
        )
        tests = [r.test_accuracy or math.nan for r in results]
        vals = [r.epochs[-1].val_accuracy for r in results]
        p = statistics.fmean(tests)
        noise = math.sqrt(p * (1 - p) / MNIST_TEST)  # one test accuracy's standard error
        if not exact:
            exact = tests
            print(
                f"{precision:<10} {wall:>8.2f} {statistics.fmean(vals):>8.4f} {p:>9.4f} "
                f"{'':>8} {'':>6} {noise:>6.4f}",
                flush=True,
            )
            continue
        diffs = [t - e for t, e in zip(tests, exact, strict=True)]
        mean = statistics.fmean(diffs)
        se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else math.nan
        verdict = "within noise" if abs(mean) <= 2 * noise else "CHANGES RESULTS"
        print(
            f"{precision:<10} {wall:>8.2f} {statistics.fmean(vals):>8.4f} {p:>9.4f} "
            f"{mean:>+8.4f} {se:>6.4f} {noise:>6.4f}  {verdict}",
            flush=True,
        )


if __name__ == "__main__":
    main()
