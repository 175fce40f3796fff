"""A user's own data for tests: real small tables (scikit-learn's wine and diabetes, shipped
as files) written as CSV, TSV, Parquet or .npz, and folders of generated images."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path
from typing import Any

import numpy as np

from tests.conftest import REPO

DIABETES = REPO / "studies" / "data" / "diabetes.csv"  # 442 rows, target "progression"
WINE_CLASSES = ("barolo", "grignolino", "barbera")  # the three cultivars of wine's data


def wine_rows() -> tuple[list[str], list[list[Any]]]:
    """scikit-learn's wine data (178 rows, 13 measurements) with its classes by name, a text
    column (its colour intensity as low/mid/high) and no missing cell."""
    from sklearn.datasets import load_wine

    wine = load_wine()
    names = [n.replace("/", "_") for n in wine.feature_names] + ["shade", "cultivar"]
    rows = []
    for x, y in zip(wine.data, wine.target, strict=True):
        shade = "low" if x[9] < 4 else "mid" if x[9] < 7 else "high"
        rows.append([*(float(v) for v in x), shade, WINE_CLASSES[y]])
    return names, rows


def write_csv(path: Path, names: list[str], rows: list[list[Any]], separator: str = ",") -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter=separator)
        writer.writerow(names)
        writer.writerows(["" if v is None else v for v in row] for row in rows)
    return path


def write_wine(folder: Path, kind: str = "csv") -> Path:
    """The wine table as ``wine.<kind>`` (csv, tsv, parquet; csv.gz, tsv.gz gzipped)."""
    names, rows = wine_rows()
    path = folder / f"wine.{kind}"
    if kind == "parquet":
        import polars as pl

        pl.DataFrame(rows, schema=names, orient="row").write_parquet(path)
        return path
    if kind.endswith(".gz"):
        plain = write_wine(folder, kind.removesuffix(".gz"))
        path.write_bytes(gzip.compress(plain.read_bytes()))
        plain.unlink()
        return path
    return write_csv(path, names, rows, "\t" if kind == "tsv" else ",")


def write_npz(folder: Path) -> Path:
    """The wine measurements as an .npz file of arrays x and y (class indices)."""
    from sklearn.datasets import load_wine

    wine = load_wine()
    path = folder / "wine.npz"
    np.savez(path, x=wine.data.astype(np.float32), y=wine.target)
    return path


def write_images(folder: Path, per_class: int = 24, size: tuple[int, int] = (12, 10)) -> Path:
    """A folder of PNG images by class (``bright``, ``dark``, ``striped``), of ``size``
    (height, width), RGB, a little noise each: a pattern an MLP tells apart."""
    from PIL import Image

    rng = np.random.default_rng(0)
    height, width = size
    for name in ("bright", "dark", "striped"):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            base = np.full((height, width, 3), 200 if name == "bright" else 40, np.float64)
            if name == "striped":
                base[::2] = 230
            pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, "RGB").save(folder / name / f"{i:03d}.png")
    return folder
