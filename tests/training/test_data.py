from __future__ import annotations

import pytest
import torch

from hpsearch.errors import DataError
from hpsearch.spec.config import make_config
from hpsearch.training.data import device_data
from hpsearch.training.data import load_raw
from hpsearch.training.trainer import train


def test_digits_split_is_fixed_and_disjoint() -> None:
    data = device_data("digits", None, 0.1, None, "standardize", "cpu")
    assert data.num_features == 64 and data.num_classes == 10
    total = len(data.train_y) + len(data.val_y) + len(data.test_y)
    assert total == 1797
    assert len(data.val_y) == round(0.1 * (len(data.train_y) + len(data.val_y)))
    # standardized with the training images' statistics
    assert abs(float(data.train_x.mean())) < 1e-4
    assert abs(float(data.train_x.std()) - 1.0) < 1e-3
    # every image is in exactly one split (the 1797 digits images are all distinct)
    parts = (data.train_x, data.val_x, data.test_x)
    splits = [{row.numpy().tobytes() for row in x} for x in parts]
    assert sum(map(len, splits)) == 1797
    assert not (splits[0] & splits[1] or splits[0] & splits[2] or splits[1] & splits[2])
    again = device_data("digits", None, 0.1, None, "scale", "cpu")
    assert bool((again.val_y == data.val_y).all())  # same carve-out whatever the preprocessing
    assert float(again.train_x.max()) == 1.0


def test_digits_are_scikit_learns_digits_without_importing_it() -> None:
    import subprocess
    import sys

    from sklearn.datasets import load_digits

    raw = load_raw("digits")
    x = torch.cat([raw.train_x, raw.test_x])
    y = torch.cat([raw.train_y, raw.test_y])
    digits = load_digits()
    expected = {
        (tuple(r), int(t)) for r, t in zip(digits.data.tolist(), digits.target, strict=True)
    }
    assert {(tuple(r), int(t)) for r, t in zip(x.tolist(), y.tolist(), strict=True)} == expected
    assert len(y) == len(digits.target)
    # loading them costs no scikit-learn import (most of a second per process)
    code = (
        "import sys; from hpsearch.training.data import load_raw; load_raw('digits'); "
        "print('sklearn' in sys.modules)"
    )
    assert subprocess.check_output([sys.executable, "-c", code], text=True).strip() == "False"


def test_unknown_dataset_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="allowed: digits"):
        load_raw("cifar")


def test_missing_mnist_files_are_named(tmp_path: object) -> None:
    with pytest.raises(DataError) as err:
        load_raw("mnist", str(tmp_path))
    message = str(err.value)
    assert "train-images-idx3-ubyte" in message and "t10k-labels-idx1-ubyte" in message
    assert str(tmp_path) in message


@pytest.mark.mnist
def test_mnist_loader_reads_real_files(mnist_dir: str) -> None:
    raw = load_raw("mnist", mnist_dir)
    assert raw.train_x.shape == (60000, 784)
    assert raw.test_x.shape == (10000, 784)
    published = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert raw.test_y.bincount().tolist() == published


@pytest.mark.mnist
def test_short_mnist_run_learns(mnist_dir: str) -> None:
    config = make_config(
        {"dataset": "mnist", "data_dir": mnist_dir, "train_subset": 6000, "epochs": 2}
    )
    result = train(config)
    assert result.outcome == "completed"
    assert result.epochs[-1].val_accuracy > 0.90
    assert result.test_accuracy is not None and result.test_accuracy > 0.90
