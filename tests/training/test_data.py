from __future__ import annotations

import pytest
import torch

from hpsearch.errors import ConfigError
from hpsearch.errors import DataError
from hpsearch.spec.config import make_config
from hpsearch.training.data import device_data
from hpsearch.training.data import load_raw
from hpsearch.training.data import shift_images
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


def test_a_shift_moves_each_image_by_its_own_offset_repeating_its_edges() -> None:
    gen = torch.Generator().manual_seed(0)
    shape, most = (3, 5, 7), 2
    x = torch.rand(6, 3 * 5 * 7, generator=gen)
    offsets = torch.tensor([[0, 0], [1, 0], [0, -2], [-2, 2], [2, 1], [-1, -1]])
    moved = shift_images(x, shape, offsets, most).view(6, 3, 5, 7)
    images = x.view(6, 3, 5, 7)
    for b, (down, across) in enumerate(offsets.tolist()):
        for i in range(5):
            for j in range(7):  # the pixel it shows, clamped to the image: its edge repeated
                source = images[b, :, min(max(i + down, 0), 4), min(max(j + across, 0), 6)]
                assert torch.equal(moved[b, :, i, j], source)
    assert torch.equal(moved[0], images[0])  # no move: the image itself


def test_built_in_images_know_their_shape_and_points_have_none() -> None:
    assert device_data("digits", None, 0.1, None, "standardize", "cpu").image_shape == (1, 8, 8)
    assert device_data("synthetic", None, 0.1, None, "standardize", "cpu").image_shape is None


def test_shifted_training_differs_repeats_and_learns() -> None:
    settings = {"epochs": 4, "augment_shift": 1, "device": "cpu"}
    moved, again = train(make_config(settings)), train(make_config(settings))
    plain = train(make_config({**settings, "augment_shift": 0}))
    curve = [e.train_loss for e in moved.epochs]
    assert curve == [e.train_loss for e in again.epochs]  # the moves follow the seed
    assert curve != [e.train_loss for e in plain.epochs]  # and the steps saw them
    assert moved.test_accuracy is not None and moved.test_accuracy > 0.8


def test_only_images_can_be_shifted() -> None:
    with pytest.raises(ConfigError) as e:
        make_config({"dataset": "synthetic", "augment_shift": 1})
    assert e.value.problems == [
        "augment_shift: only images can be shifted; images are mnist, fashion-mnist, digits "
        "or a folder of images"
    ]
    with pytest.raises(ConfigError, match="augment_shift"):
        make_config({"augment_shift": 5})  # at most 4 pixels
