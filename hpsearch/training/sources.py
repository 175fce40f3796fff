"""A user's own data set, read and checked once per process, and its fixed splits (no torch).

:func:`read_source` reads a :class:`~hpsearch.spec.datasource.DataSource` (a table, with
:mod:`hpsearch.training.tables`, or a folder of images, :mod:`hpsearch.training.images`) and
finds every problem before anything is queued; :func:`carve` splits it: the test share
(unless a test file is given) and the validation share carved once with a fixed seed,
stratified by class, the same for every trial and every worker. Creating a study needs its
data's task (:func:`infer_task`) without loading torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
import functools
from pathlib import Path
from typing import Any

import numpy as np

from hpsearch.errors import ConfigError
from hpsearch.errors import DataError
from hpsearch.spec.choices import table_kind
from hpsearch.spec.config import TrainConfig
from hpsearch.spec.datasource import DataSource
from hpsearch.spec.datasource import missing_files
from hpsearch.spec.tasks import with_task
from hpsearch.training import tables
from hpsearch.training.images import Images
from hpsearch.training.images import read_images

SPLIT_SEED = 0  # the validation/test carve-out is the same for every trial, whatever its seed
TEST_FRACTION = 0.2  # of a user's data set without a test file, held out for testing
IMBALANCED = 0.75  # a class with this share of the rows makes accuracy a poor guide


@dataclass(frozen=True)
class OwnData:
    """A user's data set as read, before its split: a table's rows (``frame``, ``test``) and
    feature kinds, or ``images`` (and ``test_images``); its task and each training row's
    class index (``strata``, for a stratified split; ``None`` for a regression) into
    ``classes``, the class labels."""

    task: str
    strata: np.ndarray | None
    classes: tuple[Any, ...] = ()
    frame: Any = None  # polars.DataFrame
    test: Any = None
    kinds: Mapping[str, str] | None = None
    images: Images | None = None
    test_images: Images | None = None
    image_size: tuple[int, int] | None = None

    @property
    def rows(self) -> int:
        """How many rows (images) the training file (folder) holds."""
        return len(self.strata) if self.strata is not None else int(self.frame.height)


@functools.lru_cache(maxsize=2)
def read_source(source: DataSource) -> OwnData:
    """Reads and checks a user's data set once per process (cached).

    Raises:
        DataError: Each problem, one line naming the file and the row or column.
    """
    if source.kind == "images":
        images, size = read_images(Path(source.path), source.image_size, source.color)
        held = None
        if source.test:
            held, _ = read_images(Path(source.test), size, source.color, images.classes)
        return OwnData(
            "classification",
            images.labels,
            tuple(images.classes),
            images=images,
            test_images=held,
            image_size=size,
        )
    target = source.target_name
    frame = _read_table(source.path, source.kind, target, _version(source.path))
    frame = tables.drop_columns(frame, source.path, source.drop)
    tables.check_target(frame, source.path, target)
    task = source.task or tables.infer_task(frame, target)
    kinds = tables.check_features(frame, source.path, target, source.max_categories)
    test = None
    if source.test:
        kind = table_kind(source.test)
        assert kind is not None  # validated: of the kind of its path
        test = _read_table(source.test, kind, target, _version(source.test))
        tables.check_target(test, source.test, target)
    if task == "regression":
        tables.regression_values(frame, source.path, target)
        return OwnData(task, None, (), frame, test, kinds)
    tables.class_values(frame, source.path, target)
    labels, strata = np.unique(frame[target].to_numpy(), return_inverse=True)
    return OwnData(task, strata, tuple(labels.tolist()), frame, test, kinds)


# The same file read with other columns dropped or its task given (as `hpsearch init` reads
# it again once it found an ID column) is not read again: the frame is immutable.
@functools.lru_cache(maxsize=2)
def _read_table(file: str, kind: str, target: str, version: tuple[int, int] | None) -> Any:
    return tables.read_table(file, kind, target)


def _version(file: str) -> tuple[int, int] | None:
    """A file's modification time and size: a file written anew is read anew."""
    try:
        stat = Path(file).stat()
    except OSError:
        return None  # read_table says what is wrong with it
    return stat.st_mtime_ns, stat.st_size


def infer_task(dataset: str | DataSource) -> str:
    """The task of a data set: a built-in one's is classification; a user's as its source
    names it, else inferred from its target (see :func:`hpsearch.training.tables.infer_task`).

    Raises:
        DataError: The data set cannot be read.
    """
    if not isinstance(dataset, DataSource):
        return "classification"
    return dataset.task or read_source(dataset).task


def carve(
    n: int, strata: np.ndarray | None, test: bool, val_fraction: float, file: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The training, validation and test rows of ``n`` rows: a fixed shuffle per class
    (stratified), the test share first (when ``test``), then the validation share of the
    rest, so the test rows do not depend on ``val_fraction``.

    Raises:
        DataError: Too few rows for a row in each split and two to train.
    """
    rng = np.random.default_rng(SPLIT_SEED)
    groups = (
        [np.arange(n)]
        if strata is None
        else [np.flatnonzero(strata == c) for c in range(int(strata.max()) + 1)]
    )
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for group in groups:
        rows = rng.permutation(group)
        n_test = min(round(len(rows) * TEST_FRACTION), len(rows) - 1) if test else 0
        n_val = min(round((len(rows) - n_test) * val_fraction), len(rows) - n_test - 1)
        parts[2].append(rows[:n_test])
        parts[1].append(rows[n_test : n_test + max(n_val, 0)])
        parts[0].append(rows[n_test + max(n_val, 0) :])
    train, val, held = (np.sort(np.concatenate(p)) for p in parts)
    if len(train) < 2 or (val_fraction > 0 and len(val) == 0) or (test and len(held) == 0):
        shares = (f"test {TEST_FRACTION:.0%}, " if test else "") + f"validation {val_fraction:.0%}"
        raise DataError(
            f"{file}: {n} rows are too few for the splits ({shares}): each needs a row and "
            "training two; give more rows"
        )
    return train, val, held


def check_data(dataset: str | DataSource, val_fraction: float) -> str:
    """Reads a data set, checks it and its splits, and returns its task (a built-in data
    set's is classification and needs no check here).

    Raises:
        DataError: Each problem, one line naming the file and the row or column.
    """
    if not isinstance(dataset, DataSource):
        return "classification"
    split_sizes(dataset, val_fraction)
    return infer_task(dataset)


@functools.lru_cache(maxsize=4)  # the checks, the start line and the launcher ask alike
def split_sizes(source: DataSource, val_fraction: float) -> dict[str, int]:
    """How many rows (images) train, validate and test, as a study shows when it starts.

    Raises:
        DataError: As :func:`read_source` and :func:`carve`.
    """
    own = read_source(source)
    train, val, held = carve(own.rows, own.strata, not source.test, val_fraction, source.path)
    if own.test is not None:
        n_test = own.test.height
    elif own.test_images is not None:
        n_test = len(own.test_images.labels)
    else:
        n_test = len(held)
    return {"train": len(train), "validation": len(val), "test": n_test}


def largest_class(source: DataSource) -> tuple[Any, float] | None:
    """A classification's most common class and its share of the rows (``None`` for a
    regression)."""
    own = read_source(source)
    if own.strata is None or not len(own.strata):
        return None
    counts = np.bincount(own.strata)
    i = int(counts.argmax())
    return own.classes[i], float(counts[i] / counts.sum())


def describe(source: DataSource, val_fraction: float, metrics: tuple[str, ...] = ()) -> str:
    """One line: the data, its task and target, and its split sizes; where one class holds
    most rows, its share, and if ``metrics`` (the objectives') select on accuracy, a word
    that the balanced accuracy does not reward answering that class always."""
    own = read_source(source)
    sizes = split_sizes(source, val_fraction)
    what = (
        f"{own.task} of {source.target_name!r}"
        if source.kind != "images"
        else f"{len(own.classes)} classes of images"
    )
    line = (
        f"data {source.path}: {what}; {sizes['train']} training, {sizes['validation']} "
        f"validation, {sizes['test']} test {'images' if source.kind == 'images' else 'rows'}"
    )
    if own.kinds is not None and (ids := tables.counters(own.frame, own.kinds)):
        named = ("column " if len(ids) == 1 else "columns ") + ", ".join(map(repr, ids))
        line += (
            f"; {named} numbers the rows (each whole number once, no gap): an ID? leave it "
            f"out (dataset.drop: [{', '.join(ids)}])"
        )
    largest = largest_class(source)
    if largest is None or largest[1] < IMBALANCED:
        return line
    unit = "images" if source.kind == "images" else "rows"
    line += f"; class {largest[0]!r} holds {largest[1]:.0%} of the {unit}"
    if "val_accuracy" in metrics:
        line += (
            f" (answering {largest[0]!r} always scores {largest[1]:.2f} in val_accuracy: "
            "objective val_balanced_accuracy or val_loss does not reward it)"
        )
    return line


def fit_config(config: TrainConfig, loss_given: bool) -> TrainConfig:
    """A config fitted to its data's task (see :func:`hpsearch.spec.tasks.with_task`): what
    ``hpsearch train`` trains.

    Raises:
        ConfigError: A file is missing, or the loss does not fit the task.
        DataError: The data cannot be read or fails a check.
    """
    if isinstance(config.dataset, DataSource) and (missing := missing_files(config.dataset)):
        raise ConfigError([f"--data: {line}" for line in missing])
    return with_task(config, check_data(config.dataset, config.val_fraction), loss_given)
