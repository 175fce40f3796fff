from __future__ import annotations

import os
from pathlib import Path

import pytest

# No test may try to download a data set: the machines running them have no network.
os.environ["HPSEARCH_OFFLINE"] = "1"

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def mnist_dir() -> str:
    """The directory holding MNIST/raw: $HPSEARCH_DATA_DIR, else ../shared/data.

    Skips where the files are absent, except under CI, where their absence is a failure.
    """
    path = Path(os.environ.get("HPSEARCH_DATA_DIR") or REPO.parent / "shared" / "data")
    if not (path / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        if os.environ.get("CI"):
            pytest.fail(f"MNIST files missing under {path} (set HPSEARCH_DATA_DIR)")
        pytest.skip(f"MNIST files missing under {path}")
    return str(path)
