"""Selection noise on the quickstart: which objective picks a trial whose test accuracy
holds up, on the 8x8 digits' small validation split?

Runs ``studies/quickstart.yaml`` (TPE, 40 trials, median pruning) once per variant and
sampler seed, each in a fresh SQLite file with 2 workers, and prints per variant:

- ``ties``: trials whose objective equals the best one's (an arbitrary pick among them);
- ``within 1 SE``: completed trials within one standard error of the best value;
- ``rho``: Spearman rank correlation between the objective and the test accuracy of the
  completed trials (how well the objective ranks trials as the test set does);
- ``best test``: test accuracy of the trial each objective picks, and the mean of its top 5.

Test accuracy is each trial's own model on the 359 held-out test images (trained without
them), so it is an independent check of the selection::

    python bench/selection.py                     # 4 variants x seeds 0 1 2
    python bench/selection.py --seeds 0 --variants accuracy loss
"""

from __future__ import annotations

import argparse
from pathlib import Path
import statistics
import subprocess
import sys
import tempfile
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hpsearch.results.reading import open_study  # noqa: E402
from hpsearch.study.record import records  # noqa: E402

VARIANTS: dict[str, dict[str, Any]] = {
    "accuracy": {"objective": {"metric": "val_accuracy", "reduce": "best"}},
    "loss": {"objective": {"metric": "val_loss", "reduce": "best"}},
    "accuracy-25%": {
        "objective": {"metric": "val_accuracy", "reduce": "best"},
        "fixed": {"val_fraction": 0.25},
    },
    "loss-25%": {
        "objective": {"metric": "val_loss", "reduce": "best"},
        "fixed": {"val_fraction": 0.25},
    },
}


def run(variant: str, seed: int, work: Path) -> dict[str, float]:
    doc = yaml.safe_load((ROOT / "studies" / "quickstart.yaml").read_text())
    change = VARIANTS[variant]
    doc["objective"] = change["objective"]
    doc["fixed"] = {**doc["fixed"], **change.get("fixed", {})}
    doc["sampler"]["seed"] = seed
    doc["storage"] = f"sqlite:///{work / f'{variant}-{seed}.db'}"
    path = work / f"{variant}-{seed}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    cmd = [sys.executable, "-m", "hpsearch", "launch", str(path), "--workers", "2"]
    subprocess.run([*cmd, "--no-progress"], check=True, capture_output=True, cwd=work)
    study = open_study(doc["name"], doc["storage"])
    maximize = doc["objective"]["metric"] == "val_accuracy"
    done = [r for r in records(study, study.get_trials()) if r.state == "COMPLETE"]
    done.sort(key=lambda r: -r.values[0] if maximize else r.values[0])  # type: ignore[index]
    best = done[0]
    value = best.values[0]  # type: ignore[index]
    se = best.standard_error(doc["objective"]["metric"], value) or 0.0
    return {
        "ties": sum(r.values[0] == value for r in done),  # type: ignore[index]
        "within_se": sum(abs(r.values[0] - value) <= se for r in done),  # type: ignore[index]
        "rho": _spearman(
            [(r.values[0] if maximize else -r.values[0]) for r in done],  # type: ignore[index]
            [r.test_accuracy or 0.0 for r in done],
        ),
        "best_test": best.test_accuracy or 0.0,
        "top5_test": statistics.mean(r.test_accuracy or 0.0 for r in done[:5]),
        "completed": len(done),
    }


def _ranks(xs: list[float]) -> list[float]:
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):  # ties share their mean rank
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2
        i = j + 1
    return ranks


def _spearman(xs: list[float], ys: list[float]) -> float:
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = statistics.mean(rx), statistics.mean(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sx = sum((a - mx) ** 2 for a in rx) ** 0.5
    sy = sum((b - my) ** 2 for b in ry) ** 0.5
    return cov / (sx * sy) if sx and sy else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args()
    print(
        f"{'variant':<14}{'seed':>5}{'done':>6}{'ties':>6}{'in 1 SE':>9}{'rho':>7}"
        f"{'best test':>11}{'top5 test':>11}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            rows = []
            for seed in args.seeds:
                r = run(variant, seed, Path(tmp))
                rows.append(r)
                print(
                    f"{variant:<14}{seed:>5}{r['completed']:>6}{r['ties']:>6}"
                    f"{r['within_se']:>9}{r['rho']:>7.3f}{r['best_test']:>11.4f}"
                    f"{r['top5_test']:>11.4f}",
                    flush=True,
                )
            mean = {k: statistics.mean(r[k] for r in rows) for k in rows[0]}
            print(
                f"{variant:<14}{'mean':>5}{mean['completed']:>6.1f}{mean['ties']:>6.1f}"
                f"{mean['within_se']:>9.1f}{mean['rho']:>7.3f}{mean['best_test']:>11.4f}"
                f"{mean['top5_test']:>11.4f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
