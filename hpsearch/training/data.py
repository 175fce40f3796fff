"""Data sets as tensors: loading, the fixed splits, preprocessing and caching.

The trainer never iterates a ``DataLoader``: a data set is loaded once per process into
tensors (cached), preprocessed once per device (cached), and batches are index slices.
Built-in data sets live in :data:`DATASETS`; add one by registering a loader there. A user's
own data set (a :class:`~hpsearch.spec.datasource.DataSource`: a table, read by
:mod:`hpsearch.training.tables`, or a folder of images, :mod:`hpsearch.training.images`) is
split by :mod:`hpsearch.training.sources`, its encoding fitted on the training split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import functools
import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hpsearch.errors import DataError
from hpsearch.spec.datasource import DataSource
from hpsearch.training import tables
from hpsearch.training.images import PIXEL_MAX
from hpsearch.training.sources import carve
from hpsearch.training.sources import OwnData
from hpsearch.training.sources import read_source
from hpsearch.training.sources import SPLIT_SEED
from hpsearch.training.tables import TableEncoding

DATA_DIR_ENV = "HPSEARCH_DATA_DIR"
OFFLINE_ENV = "HPSEARCH_OFFLINE"


@dataclass(frozen=True)
class RawData:
    """A data set as loaded: flattened features and integer labels, train and test."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    max_value: float  # the largest possible raw feature value (255 for MNIST, 16 for digits)
    image_shape: tuple[int, int, int] | None = None  # images: (channels, height, width)


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
    num_classes: int  # the network's outputs: 1 for a regression
    preprocessing: Preprocessing
    task: str = "classification"
    encoding: TableEncoding | None = None  # a table's (its features are encoded already)
    classes: tuple[Any, ...] = ()  # a user's data set's class names
    image_shape: tuple[int, int, int] | None = None  # images: (channels, height, width)
    target_scale: float = 1.0  # a regression target's standard deviation (training split)


def resolve_data_dir(data_dir: str | None) -> Path:
    """The data directory: the explicit one, else ``$HPSEARCH_DATA_DIR``, else ``./data``."""
    return Path(data_dir or os.environ.get(DATA_DIR_ENV) or "data").expanduser()


def _load_digits(data_dir: Path) -> RawData:
    # scikit-learn's bundled file, read as its load_digits reads it, without importing
    # scikit-learn: that import costs every process almost a second, more than a worker spends
    # on everything else before its first trial
    table = torch.from_numpy(np.loadtxt(_sklearn_file("digits.csv.gz"), delimiter=","))
    x = table[:, :-1].to(torch.float32)
    y = table[:, -1].to(torch.int64)
    # scikit-learn ships no test split: carve a fixed 20% off, stratified by shuffling.
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_test = len(y) // 5
    test, train = perm[:n_test], perm[n_test:]
    return RawData(x[train], y[train], x[test], y[test], max_value=16.0, image_shape=(1, 8, 8))


def _sklearn_file(name: str) -> Path:
    """A data file that scikit-learn ships (``sklearn/datasets/data/NAME``)."""
    package = importlib.util.find_spec("sklearn")  # finds, does not import
    if package is None or not package.submodule_search_locations:
        raise DataError("the digits data set needs scikit-learn (pip install scikit-learn)")
    return Path(package.submodule_search_locations[0]) / "datasets" / "data" / name


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
            image_shape=(1, *train.data.shape[1:]),
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


IDENTITY = Preprocessing("raw", 1.0, 0.0, 1.0)  # a table's features are encoded when read


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
    dataset: str | DataSource,
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
    if isinstance(dataset, DataSource):
        return _own_device_data(dataset, val_fraction, train_subset, preprocess, device)
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
        image_shape=raw.image_shape,
    )


def shift_images(
    x: torch.Tensor, shape: tuple[int, int, int], offsets: torch.Tensor, most: int
) -> torch.Tensor:
    """Each image of a batch moved by its own offset, its edge pixels repeated into the
    space it leaves.

    Args:
        x: Flattened images (B, channels * height * width), channels first.
        shape: ``(channels, height, width)``.
        offsets: Each image's move down and across (B, 2), integers in ``[-most, most]``,
            on the device of ``x``.
        most: The largest move.
    """
    c, h, w = shape
    b, side = len(x), w + 2 * most
    padded = F.pad(x.view(b, c, h, w), (most, most, most, most), mode="replicate")
    rows = (offsets[:, :1] + most) + torch.arange(h, device=x.device)  # (B, h)
    cols = (offsets[:, 1:] + most) + torch.arange(w, device=x.device)  # (B, w)
    # one gather reads every output pixel from its place in the padded image
    index = (rows.unsqueeze(2) * side + cols.unsqueeze(1)).view(b, 1, h * w).expand(b, c, -1)
    return padded.view(b, c, -1).gather(2, index).view(b, c * h * w)


# --- a user's own data --------------------------------------------------------------------


def _own_device_data(
    source: DataSource,
    val_fraction: float,
    train_subset: int | None,
    preprocess: str,
    device: str,
) -> DeviceData:
    own = read_source(source)
    split, val, held = carve(own.rows, own.strata, not source.test, val_fraction, source.path)
    train = split if train_subset is None else split[:train_subset]
    if own.images is not None:
        return _images_device_data(own, train, val, held, preprocess, device)
    frame = own.frame
    train_rows = frame[train]
    classes: tuple[Any, ...] = ()
    if own.task == "classification":  # the training split's (stratified: every class)
        classes = tuple(frame[source.target_name][split].unique().sort().to_list())
    assert own.kinds is not None
    encoding = tables.fit_encoding(
        train_rows, own.kinds, source.target_name, own.task, preprocess, classes
    )
    test_rows, test_file = (
        (own.test, source.test) if own.test is not None else (frame[held], source.path)
    )

    def to(rows: Any, file: str) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(encoding.features(rows, file))
        return x.to(device), torch.from_numpy(encoding.labels(rows, file)).to(device)

    (train_x, train_y), (val_x, val_y) = to(train_rows, source.path), to(frame[val], source.path)
    test_x, test_y = to(test_rows, test_file or source.path)
    return DeviceData(
        train_x,
        train_y,
        val_x,
        val_y,
        test_x,
        test_y,
        num_features=encoding.num_features,
        num_classes=len(classes) if own.task == "classification" else 1,
        preprocessing=IDENTITY,
        task=own.task,
        encoding=encoding,
        classes=classes,
        target_scale=encoding.target_scale,
    )


def _images_device_data(
    own: OwnData,
    train: np.ndarray,
    val: np.ndarray,
    held: np.ndarray,
    preprocess: str,
    device: str,
) -> DeviceData:
    images = own.images
    assert images is not None and own.image_size is not None
    pixels = torch.from_numpy(images.pixels)
    labels = torch.from_numpy(images.labels)
    scaled = pixels[torch.from_numpy(train)].float() / PIXEL_MAX
    preprocessing = Preprocessing(preprocess, PIXEL_MAX, scaled.mean().item(), scaled.std().item())
    test_pixels, test_labels = (
        (torch.from_numpy(own.test_images.pixels), torch.from_numpy(own.test_images.labels))
        if own.test_images is not None
        else (pixels[torch.from_numpy(held)], labels[torch.from_numpy(held)])
    )

    def prep(rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.from_numpy(rows)
        return preprocessing(pixels[index]).to(device), labels[index].to(device)

    (train_x, train_y), (val_x, val_y) = prep(train), prep(val)
    channels = images.pixels.shape[1] // (own.image_size[0] * own.image_size[1])
    return DeviceData(
        train_x,
        train_y,
        val_x,
        val_y,
        preprocessing(test_pixels).to(device),
        test_labels.to(device),
        num_features=images.pixels.shape[1],
        num_classes=len(images.classes),
        preprocessing=preprocessing,
        classes=images.classes,
        image_shape=(channels, *own.image_size),
    )
