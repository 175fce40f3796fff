"""Data sets as tensors: loading, the fixed validation split, preprocessing and caching.

The trainer never iterates a ``DataLoader``: a data set is loaded once per process into
tensors (cached), preprocessed once per device (cached), and batches are index slices.
Available data sets live in :data:`DATASETS`; add one by registering a loader there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import functools
import os
from pathlib import Path
from typing import Any

import torch

from hpsearch.errors import DataError

DATA_DIR_ENV = "HPSEARCH_DATA_DIR"
OFFLINE_ENV = "HPSEARCH_OFFLINE"
SPLIT_SEED = 0  # the validation/test carve-out is the same for every trial, whatever its seed


@dataclass(frozen=True)
class RawData:
    """A data set as loaded: flattened features and integer labels, train and test."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    max_value: float  # the largest possible raw feature value (255 for MNIST, 16 for digits)


@dataclass(frozen=True)
class Preprocessing:
    """How raw features become the trainer's inputs: ``name`` (a key of
    :data:`PREPROCESSING`) with the data set's largest raw value and the training images'
    mean and standard deviation on the [0, 1] scale. Saved with a model, so that it reads
    raw images as it was trained on them."""

    name: str
    max_value: float
    mean: float
    std: float

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        """Raw features (any shape, the data set's raw scale) preprocessed."""
        return PREPROCESSING[self.name](features.float(), self.max_value, self.mean, self.std)


@dataclass(frozen=True)
class DeviceData:
    """Train, validation and test tensors, preprocessed and resident on one device."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_features: int
    num_classes: int
    preprocessing: Preprocessing


def resolve_data_dir(data_dir: str | None) -> Path:
    """The data directory: the explicit one, else ``$HPSEARCH_DATA_DIR``, else ``./data``."""
    return Path(data_dir or os.environ.get(DATA_DIR_ENV) or "data").expanduser()


def _load_digits(data_dir: Path) -> RawData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32)
    y = torch.tensor(digits.target, dtype=torch.int64)
    # scikit-learn ships no test split: carve a fixed 20% off, stratified by shuffling.
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_test = len(y) // 5
    test, train = perm[:n_test], perm[n_test:]
    return RawData(x[train], y[train], x[test], y[test], max_value=16.0)


def _load_synthetic(data_dir: Path) -> RawData:
    # Ten Gaussian blobs in 32 dimensions: separable enough to learn in a few steps.
    gen = torch.Generator().manual_seed(SPLIT_SEED)
    centers = torch.randn(10, 32, generator=gen) * 1.5
    y = torch.arange(1200) % 10
    x = (centers[y] + torch.randn(1200, 32, generator=gen)).clamp(-6.0, 6.0) + 6.0
    return RawData(x[:1000], y[:1000], x[1000:], y[1000:], max_value=12.0)


def _torchvision_loader(class_name: str) -> Callable[[Path], RawData]:
    def load(data_dir: Path) -> RawData:
        from torchvision import datasets

        cls = getattr(datasets, class_name)
        download = not os.environ.get(OFFLINE_ENV)
        try:
            train = cls(str(data_dir), train=True, download=download)
            test = cls(str(data_dir), train=False, download=download)
        except (RuntimeError, OSError) as e:
            raise DataError(_missing_files_message(cls, data_dir, download)) from e
        return RawData(
            train.data.reshape(len(train.data), -1),
            train.targets.long(),
            test.data.reshape(len(test.data), -1),
            test.targets.long(),
            max_value=255.0,
        )

    return load


def _missing_files_message(cls: Any, data_dir: Path, tried_download: bool) -> str:
    raw = data_dir / cls.__name__ / "raw"
    expected = [os.path.splitext(os.path.basename(url))[0] for url, _ in cls.resources]
    missing = [name for name in expected if not (raw / name).exists()] or expected
    how = "the download failed" if tried_download else f"downloads are off (${OFFLINE_ENV})"
    return (
        f"{cls.__name__} files missing in {raw}: {', '.join(missing)} ({how}); "
        f"put the raw IDX files there or pass --data-dir / set ${DATA_DIR_ENV}"
    )


DATASETS: dict[str, Callable[[Path], RawData]] = {
    "digits": _load_digits,  # scikit-learn's bundled 8x8 digits: offline, 1797 images
    "mnist": _torchvision_loader("MNIST"),
    "fashion-mnist": _torchvision_loader("FashionMNIST"),
    "synthetic": _load_synthetic,  # tiny generated blobs for fast tests
}

# name -> f(features, largest raw value, training mean, training std) of the [0, 1] scale
PREPROCESSING: dict[str, Callable[[torch.Tensor, float, float, float], torch.Tensor]] = {
    "raw": lambda t, top, mean, std: t,
    "scale": lambda t, top, mean, std: t / top,
    "standardize": lambda t, top, mean, std: (t / top - mean) / std,
}


@functools.lru_cache(maxsize=4)
def load_raw(dataset: str, data_dir: str | None = None) -> RawData:
    """Loads a data set once per process (cached), as CPU tensors.

    Raises:
        DataError: The name is unknown or its files cannot be found.
    """
    if dataset not in DATASETS:
        raise DataError(f"dataset: unknown {dataset!r}; allowed: {', '.join(DATASETS)}")
    return DATASETS[dataset](resolve_data_dir(data_dir))


def split_indices(n: int, val_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The training and validation indices of ``n`` training images (a fixed shuffle)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_val = round(n * val_fraction)
    return perm[n_val:], perm[:n_val]


@functools.lru_cache(maxsize=4)
def device_data(
    dataset: str,
    data_dir: str | None,
    val_fraction: float,
    train_subset: int | None,
    preprocess: str,
    device: str,
) -> DeviceData:
    """Splits, preprocesses and moves a data set to ``device``; cached per process.

    The validation split is carved from the training set with a fixed seed, so every trial
    of a study is judged on the same images. Standardization uses the mean and standard
    deviation of the remaining training images only.
    """
    raw = load_raw(dataset, data_dir)
    train_x, train_y = raw.train_x, raw.train_y
    if train_subset is not None:
        train_x, train_y = train_x[:train_subset], train_y[:train_subset]
    train_idx, val_idx = split_indices(len(train_y), val_fraction)

    x = train_x.float()
    scaled = x[train_idx] / raw.max_value
    preprocessing = Preprocessing(
        preprocess, raw.max_value, scaled.mean().item(), scaled.std().item()
    )

    def prep(t: torch.Tensor) -> torch.Tensor:
        return preprocessing(t).to(device)

    return DeviceData(
        train_x=prep(x[train_idx]),
        train_y=train_y[train_idx].to(device),
        val_x=prep(x[val_idx]),
        val_y=train_y[val_idx].to(device),
        test_x=prep(raw.test_x),
        test_y=raw.test_y.to(device),
        num_features=x.shape[1],
        num_classes=int(max(int(train_y.max()), int(raw.test_y.max())) + 1),
        preprocessing=preprocessing,
    )
