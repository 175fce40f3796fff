"""Scoring a saved model (``hpsearch evaluate``): on its own test split it reproduces the test
metrics recorded when it was saved; on labelled files of every kind it counts every example;
bad labels are one line naming the row."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from hpsearch.errors import ConfigError
from hpsearch.errors import DataError
from hpsearch.spec.datasource import DataSource
from hpsearch.training.scores import evaluate_model
from hpsearch.training.scores import Scores
from tests.owndata import WINE_CLASSES
from tests.owndata import write_csv
from tests.owndata import write_images
from tests.owndata import write_wine
from tests.training.test_own_models import _config
from tests.training.test_own_models import _saved
from tests.training.test_own_models import _test_rows
from tests.training.test_own_models import REGRESSION


def _consistent(scores: Scores) -> None:
    """What holds of any classification's scores: the confusion matrix counts every example
    once, its diagonal the right ones; each class's recall and precision are its row's and
    column's; mistakes are wrong, the most confident first."""
    matrix = np.array(scores.confusion)
    assert matrix.sum() == scores.examples
    assert scores.wrong == scores.examples - np.trace(matrix)
    assert scores.metrics["accuracy"] == pytest.approx(np.trace(matrix) / scores.examples)
    for i, c in enumerate(scores.classes):
        assert c["rows"] == matrix[i].sum()
        assert c["recall"] == (pytest.approx(matrix[i, i] / c["rows"]) if c["rows"] else None)
        answered = matrix[:, i].sum()
        assert c["precision"] == (pytest.approx(matrix[i, i] / answered) if answered else None)
    assert len(scores.mistakes) == min(scores.wrong, 10)
    assert all(m["class"] != m["answer"] for m in scores.mistakes)
    confidence = [m["probability"] for m in scores.mistakes]
    assert confidence == sorted(confidence, reverse=True)


def test_a_classifiers_test_split_scores_as_its_recorded_test_metrics(tmp_path: Path) -> None:
    source = DataSource(str(write_wine(tmp_path)), target="cultivar")
    result, _ = _saved(tmp_path, _config(source, epochs=3, lr=0.002))
    scores = evaluate_model(tmp_path)
    rows, _ = _test_rows(source)
    assert scores.source == f"the test split of {source.path}" and scores.examples == len(rows)
    assert scores.metrics["accuracy"] == pytest.approx(result.test_accuracy, abs=1e-9)
    assert scores.metrics["balanced_accuracy"] == pytest.approx(result.test_balanced_accuracy)
    assert scores.metrics["log_loss"] == pytest.approx(result.test_loss, rel=1e-4)
    assert [c["class"] for c in scores.classes] == sorted(WINE_CLASSES)
    assert scores.wrong > 0  # three epochs: some wrong answers to list
    _consistent(scores)
    # each mistake names its line of the file, whose row holds that class
    lines = {f"line {i + 2}": row[-1] for i, row in enumerate(_wine_rows_of(source))}
    assert all(lines[m["input"]] == m["class"] for m in scores.mistakes)
    # the same rows as a file of their own, columns in another order: the same scores
    shuffled = rows.select(list(reversed(rows.columns)))
    shuffled.write_csv(tmp_path / "held.csv")
    again = evaluate_model(tmp_path, tmp_path / "held.csv")
    assert again.metrics == scores.metrics and again.confusion == scores.confusion
    assert again.mistakes[0]["input"].startswith("line ")


def _wine_rows_of(source: DataSource) -> list[list[Any]]:
    import csv

    with open(source.path) as f:
        return list(csv.reader(f))[1:]


def test_a_regressions_test_split_scores_as_its_recorded_test_metrics(tmp_path: Path) -> None:
    result, _ = _saved(tmp_path, _config(REGRESSION, epochs=6))
    scores = evaluate_model(tmp_path, mistakes=5)
    assert scores.task == "regression" and scores.examples == len(_test_rows(REGRESSION)[0])
    assert scores.metrics["rmse"] == pytest.approx(result.test_rmse, rel=1e-4)
    assert scores.metrics["mae"] == pytest.approx(result.test_mae, rel=1e-4)
    assert scores.metrics["r2"] == pytest.approx(result.test_r2, rel=1e-3)
    errors = [abs(m["error"]) for m in scores.mistakes]
    assert len(errors) == 5 and errors == sorted(errors, reverse=True)
    assert all(m["answer"] - m["value"] == pytest.approx(m["error"]) for m in scores.mistakes)
    assert errors[0] >= scores.metrics["mae"]  # the largest error is no smaller than the mean


def test_an_image_model_scores_a_folder_of_class_subfolders(tmp_path: Path) -> None:
    folder = write_images(tmp_path / "photos", per_class=12)
    result, _ = _saved(tmp_path, _config(DataSource(str(folder), color="rgb"), epochs=10))
    own = evaluate_model(tmp_path)
    assert own.metrics["accuracy"] == pytest.approx(result.test_accuracy, abs=1e-9)
    assert all("/" in m["input"] for m in own.mistakes)  # class/file.png
    _consistent(own)
    # labelled images of some classes only: those counted, each image's class its folder's
    some = write_images(tmp_path / "new", per_class=5)
    for image in (some / "dark").iterdir():
        image.unlink()
    (some / "dark").rmdir()
    scores = evaluate_model(tmp_path, some)
    assert scores.examples == 10 and sum(c["rows"] for c in scores.classes) == 10
    assert {c["class"] for c in scores.classes if c["rows"]} == {"bright", "striped"}
    _consistent(scores)
    (some / "spotted").mkdir()
    with pytest.raises(ConfigError, match=r"spotted: no class 'spotted' in the model; .*bright"):
        evaluate_model(tmp_path, some)


def test_a_built_in_data_sets_model_scores_its_test_split_and_arrays(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    result, model = _saved(tmp_path, _config("digits", epochs=2))
    scores = evaluate_model(tmp_path, mistakes=0)
    assert scores.source == "the test split of digits" and scores.examples == 359
    assert scores.metrics["accuracy"] == pytest.approx(result.test_accuracy, abs=1e-9)
    assert scores.mistakes == [] and [c["class"] for c in scores.classes] == list(range(10))
    digits = load_digits()
    np.savez(tmp_path / "some.npz", x=digits.data[:40], y=digits.target[:40])
    some = evaluate_model(tmp_path, tmp_path / "some.npz")
    x = torch.from_numpy(digits.data[:40])
    right = int((model.predict(x).numpy() == digits.target[:40]).sum())
    assert some.examples == 40 and some.metrics["accuracy"] == right / 40
    p = (right + 1) / 42  # a perfect score on 40 examples is not certain
    assert some.metrics["accuracy_se"] == pytest.approx(math.sqrt(p * (1 - p) / 40))
    _consistent(some)


def _digits_model(tmp_path: Path) -> Path:
    _saved(tmp_path, _config("digits", epochs=1))
    return tmp_path


BAD_ARRAYS = {
    "no y": ({"x": np.zeros((3, 64))}, r"bad\.npz: no array 'y'; it holds x \(expected x and y\)"),
    "y of classes": (
        {"x": np.zeros((3, 64)), "y": np.array([0, 10, 1])},
        r"bad\.npz: y\[1\] is 10: the model's classes are 0 to 9",
    ),
    "y not integers": (
        {"x": np.zeros((3, 64)), "y": np.array([0.5, 1, 2])},
        r"bad\.npz: y of shape \(3,\) \(float64\); expected 3 class indices",
    ),
    "x too narrow": (
        {"x": np.zeros((3, 60)), "y": np.zeros(3, int)},
        r"bad\.npz: x of shape \(3, 60\) \(float64\); the model takes rows of 64 numbers",
    ),
    "x not finite": (
        {"x": np.full((3, 64), np.nan), "y": np.zeros(3, int)},
        r"bad\.npz: x\[0\] holds NaN or inf",
    ),
}


@pytest.mark.parametrize("case", list(BAD_ARRAYS))
def test_bad_labelled_arrays_are_one_line_naming_the_array(case: str, tmp_path: Path) -> None:
    model = _digits_model(tmp_path)
    arrays, message = BAD_ARRAYS[case]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ConfigError, match=message):
        evaluate_model(model, tmp_path / "bad.npz")


def test_examples_without_labels_are_refused_saying_what_has_them(tmp_path: Path) -> None:
    model = _digits_model(tmp_path)
    np.save(tmp_path / "x.npy", np.zeros((3, 64)))
    needed = r"x\.npy: examples with labels are needed here: a folder of class subfolders or an"
    with pytest.raises(ConfigError, match=needed):
        evaluate_model(model, tmp_path / "x.npy")
    with pytest.raises(ConfigError, match=r"nothing: no such file or directory"):
        evaluate_model(model, tmp_path / "nothing")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda row: row[:-1], r"rows\.csv: no column 'cultivar' \(did you mean"),
        (lambda row: [*row[:-1], "merlot"], r"rows\.csv: line 2: class 'merlot' of 'cultivar'"),
        (lambda row: [*row[:-1], None], r"rows\.csv: line 2: no value of target 'cultivar'"),
    ],
)
def test_bad_labelled_rows_are_one_line_naming_the_line(
    edit: Any, message: str, tmp_path: Path
) -> None:
    from tests.owndata import wine_rows

    source = DataSource(str(write_wine(tmp_path)), target="cultivar")
    _saved(tmp_path, _config(source, epochs=1))
    names, rows = wine_rows()
    first = edit(rows[0])
    if len(first) < len(names):  # the target column left out of every row
        names, rows = names[:-1], [edit(r) for r in rows]
        names[-1] = "cultivars"  # close enough for a did-you-mean
    else:
        rows = [first, *rows[1:]]
    write_csv(tmp_path / "rows.csv", names, rows)
    with pytest.raises((DataError, ConfigError), match=message):
        evaluate_model(tmp_path, tmp_path / "rows.csv")
