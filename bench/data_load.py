"""Loading a user's table: a million rows, a hundred columns, side by side by reader.

Writes a CSV of ``--rows`` rows of ``--columns`` float columns and a 5-class integer target
(about 800 MB at the defaults), then times each step in a fresh process (so no reader
benefits from another's page cache warm-up more than the first): reading the file with
polars (hpsearch's reader), pandas and pyarrow where installed, and hpsearch's whole load
(read, check, split, encode on the training split, tensors), and ``hpsearch init``'s draft
of a study for it (read, check, split sizes; ``--id-column`` adds a column that numbers the
rows, which the draft leaves out)::

    python bench/data_load.py --rows 1000000 --columns 100
    python bench/data_load.py --rows 400000 --columns 20 --id-column --src /tmp/before --src .

Prints seconds and peak memory per case and each reader's time as a ratio of polars'; with
several ``--src`` checkouts, hpsearch's cases run once for each, side by side.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import time

CASES = {
    "polars read_csv (hpsearch's reader)": (
        "import polars as pl; f = pl.read_csv(PATH, infer_schema_length=10000); "
        "x = f.drop('label').to_numpy().astype('float32')"
    ),
    "pandas read_csv (C engine)": (
        "import pandas as pd; f = pd.read_csv(PATH); "
        "x = f.drop(columns='label').to_numpy('float32')"
    ),
    "pyarrow read_csv": (
        "import numpy as np, pyarrow.csv as pc; t = pc.read_csv(PATH); "
        "x = np.column_stack([c.to_numpy() for c in t.drop(['label']).columns]).astype('float32')"
    ),
    "hpsearch: read, check, split, encode, tensors": (
        "from hpsearch.spec.datasource import DataSource; "
        "from hpsearch.training.data import device_data; "
        "d = device_data(DataSource(PATH, target='label'), None, 0.1, None, 'standardize', "
        "'cpu'); "
        "assert d.num_features == COLUMNS"
    ),
    "hpsearch init: draft a study": (
        "from hpsearch.spec.datasource import DataSource; "
        "from hpsearch.study.drafts import draft_study; "
        "draft_study(DataSource(PATH, target='label'), '.', 'big')"
    ),
}


def write_csv(path: Path, rows: int, columns: int, id_column: bool = False) -> None:
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, columns)).astype(np.float32)
    frame = pl.DataFrame({f"f{i}": x[:, i] for i in range(columns)})
    if id_column:
        frame = frame.with_columns(pl.Series("id", np.arange(rows)))
    frame = frame.with_columns(pl.Series("label", rng.integers(0, 5, rows)))
    frame.write_csv(path, float_precision=5)


def run(
    code: str, path: Path, columns: int, src: str = "."
) -> tuple[float | None, float | None, str]:
    """Seconds and peak RSS (MB) of ``code`` in a fresh process, or the reason it could not."""
    script = (
        "import resource, time\n"
        f"PATH, COLUMNS = {str(path)!r}, {columns}\n"
        "start = time.perf_counter()\n"
        f"{code}\n"
        "print(time.perf_counter() - start, "
        "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(src).resolve())}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        return None, None, last
    seconds, memory = map(float, proc.stdout.split())
    return seconds, memory, ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--columns", type=int, default=100)
    parser.add_argument("--id-column", action="store_true", help="a column numbering the rows")
    parser.add_argument(
        "--src", action="append", help="a checkout to time hpsearch's cases in [this one]"
    )
    args = parser.parse_args()
    sources = args.src or [str(Path(__file__).resolve().parents[1])]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.csv"
        start = time.perf_counter()
        write_csv(path, args.rows, args.columns, args.id_column)
        size = path.stat().st_size
        print(
            f"{args.rows:,} rows x {args.columns} columns + label: {size / 1e6:.0f} MB CSV, "
            f"written in {time.perf_counter() - start:.1f}s; {os.cpu_count()} CPU cores"
        )
        results = {}
        for name, code in CASES.items():
            for src in sources if name.startswith("hpsearch") else sources[:1]:
                label = (
                    f"{name} [{src}]" if len(sources) > 1 and name.startswith("hpsearch") else name
                )
                results[label] = run(code, path, args.columns + args.id_column, src)
    base = results["polars read_csv (hpsearch's reader)"][0]
    width = max(len(name) for name in results) + 2
    print(f"{'case':<{width}} {'seconds':>8} {'peak MB':>8} {'x polars':>9}")
    for name, (seconds, memory, why) in results.items():
        if seconds is None:
            print(f"{name:<{width}} {'-':>8} {'-':>8} {'-':>9}  ({why})")
            continue
        ratio = f"{seconds / base:.2f}" if base else "-"
        print(f"{name:<{width}} {seconds:>8.2f} {memory:>8.0f} {ratio:>9}")


if __name__ == "__main__":
    main()
