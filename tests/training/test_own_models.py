"""Models of a user's data: a regression population trains as its members alone, and a saved
model answers in the data's own labels exactly as its recorded test metrics say."""

from __future__ import annotations

import gzip
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from hpsearch.errors import DataError
from hpsearch.spec.config import make_config
from hpsearch.spec.config import TrainConfig
from hpsearch.spec.datasource import DataSource
from hpsearch.spec.tasks import with_task
from hpsearch.training.data import device_data
from hpsearch.training.saved import load_model
from hpsearch.training.saved import predict_file
from hpsearch.training.saved import save_model
from hpsearch.training.sources import carve
from hpsearch.training.sources import read_source
from hpsearch.training.trainer import fit
from hpsearch.training.trainer import load_data
from hpsearch.training.trainer import plan_groups
from hpsearch.training.trainer import train
from hpsearch.training.trainer import train_population
from tests.owndata import DIABETES
from tests.owndata import write_images
from tests.owndata import write_wine

REGRESSION = DataSource(str(DIABETES), target="progression", task="regression")


def _config(dataset: Any, **values: Any) -> TrainConfig:
    settings = {"epochs": 4, "hidden_layers": [32], "scheduler": "none", "optimizer": "adam"}
    config = make_config({"dataset": dataset, "lr": 0.01, **settings, **values})
    task = dataset.task if isinstance(dataset, DataSource) and dataset.task else "classification"
    return with_task(config, task, loss_given="loss" in values)


@pytest.mark.parametrize("loss", ["mse", "huber", "l1"])
def test_a_regression_population_trains_each_member_as_alone(loss: str) -> None:
    configs = [
        _config(REGRESSION, loss=loss, hidden_layers=[16 + 8 * i], lr=0.003 * (i + 1),
                optimizer=["adam", "sgd", "rmsprop"][i], momentum=0.0 if i == 0 else 0.5)
        for i in range(3)
    ]  # fmt: skip
    assert len(plan_groups(configs)) == 1  # really one population
    together = train_population(configs)
    for config, member in zip(configs, together, strict=True):
        alone = train(config)
        assert member.outcome == alone.outcome == "completed"
        for name in ("train_loss", "val_loss", "val_rmse", "val_mae", "val_r2"):
            a, b = getattr(alone.final, name), getattr(member.final, name)
            assert b == pytest.approx(a, rel=1e-3, abs=1e-4), name
        assert member.test_rmse == pytest.approx(alone.test_rmse, rel=1e-3)


def test_regression_metrics_are_in_the_targets_units() -> None:
    result = train(_config(REGRESSION, epochs=15))
    final = result.final
    data = load_data(_config(REGRESSION), torch.device("cpu"))
    # val_loss is the MSE of the standardized target; its RMSE in the target's units
    assert final.val_rmse == pytest.approx(math.sqrt(final.val_loss) * data.target_scale, rel=1e-4)
    assert math.isnan(final.val_accuracy) and result.test_accuracy is None
    assert math.isnan(final.val_balanced_accuracy) and result.test_balanced_accuracy is None
    assert 0.2 < result.test_r2 < 0.7 and 40 < result.test_rmse < 70  # diabetes: a hard target
    assert final.val_r2_se > 0 and final.val_rmse_se > 0


def _test_rows(source: DataSource) -> tuple[Any, list[Any]]:
    own = read_source(source)
    _, _, held = carve(own.frame.height, own.strata, True, 0.1, source.path)
    rows = own.frame[held]
    return rows, rows[source.target_name].to_list()


def _saved(tmp_path: Path, config: TrainConfig) -> tuple[Any, Any]:
    result, network = fit(config)
    data = load_data(config, torch.device("cpu"))
    save_model(network, config.to_dict(), data, tmp_path / "model.pt")
    return result, load_model(tmp_path)


def test_a_saved_classifier_answers_in_class_names_as_its_test_accuracy_says(
    tmp_path: Path,
) -> None:
    source = DataSource(str(write_wine(tmp_path)), target="cultivar")
    result, model = _saved(tmp_path, _config(source, epochs=6))
    rows, truth = _test_rows(source)
    # raw rows, their columns shuffled: the model reads them by name
    shuffled = rows.select(list(reversed(rows.columns)))
    answers = model.answers(shuffled)
    assert {a["class"] for a in answers} <= {"barolo", "grignolino", "barbera"}
    correct = sum(a["class"] == t for a, t in zip(answers, truth, strict=True))
    assert correct / len(truth) == pytest.approx(result.test_accuracy, abs=1e-9)
    # the same from a list of row mappings, and from a pandas-free dict of columns
    assert model.answers(rows.to_dicts()) == answers
    assert model.answers({c: rows[c].to_list() for c in rows.columns}) == answers


def test_a_saved_regression_answers_in_the_targets_units_as_its_test_rmse_says(
    tmp_path: Path,
) -> None:
    result, model = _saved(tmp_path, _config(REGRESSION, epochs=8))
    rows, truth = _test_rows(REGRESSION)
    values = [a["value"] for a in model.answers(rows.drop("progression"))]
    errors = np.array(values) - np.array(truth, dtype=float)
    assert math.sqrt(float((errors**2).mean())) == pytest.approx(result.test_rmse, rel=1e-4)
    assert float(np.abs(errors).mean()) == pytest.approx(result.test_mae, rel=1e-4)
    assert model.predict(rows).tolist() == pytest.approx(values)


def test_predict_reads_new_rows_with_missing_cells(tmp_path: Path) -> None:
    source = DataSource(str(write_wine(tmp_path)), target="cultivar")
    _saved(tmp_path, _config(source))
    rows, _ = _test_rows(source)
    new = rows.drop("cultivar").select(sorted(rows.columns[:-1]))
    new = new.with_columns(new["alcohol"].scatter([0], None))  # a missing cell
    new.write_csv(tmp_path / "new.csv")
    answers = predict_file(tmp_path, tmp_path / "new.csv")
    assert len(answers) == len(rows) and answers[0]["input"] == "line 2"
    assert all(a["class"] in ("barolo", "grignolino", "barbera") for a in answers)
    packed = tmp_path / "new.csv.gz"  # the same rows gzipped: the same answers, by line
    packed.write_bytes(gzip.compress((tmp_path / "new.csv").read_bytes()))
    assert predict_file(tmp_path, packed) == answers


def test_predict_refuses_an_infinite_number_naming_its_line(tmp_path: Path) -> None:
    source = DataSource(str(write_wine(tmp_path)), target="cultivar")
    _saved(tmp_path, _config(source))
    new = _test_rows(source)[0].drop("cultivar")
    new.with_columns(new["alcohol"].scatter([2], float("inf"))).write_csv(tmp_path / "new.csv")
    with pytest.raises(DataError, match=r"new\.csv: line 4: column 'alcohol' holds inf"):
        predict_file(tmp_path, tmp_path / "new.csv")


def test_a_saved_image_model_reads_a_folder_of_images(tmp_path: Path) -> None:
    folder = write_images(tmp_path / "photos", per_class=12)
    source = DataSource(str(folder), color="rgb")
    result, model = _saved(tmp_path, _config(source, epochs=10))
    assert model.image_shape == (12, 10) and model.color == "rgb"
    answers = predict_file(tmp_path, folder / "striped")
    assert [a["input"] for a in answers] == [f"{i:03d}.png" for i in range(12)]
    assert sum(a["class"] == "striped" for a in answers) >= 10  # it learned the stripes
    data = device_data(source, None, 0.1, None, "standardize", "cpu")
    assert data.classes == ("bright", "dark", "striped") and result.test_accuracy > 0.8


def _imbalanced(folder: Path) -> DataSource:
    """A table of 2,000 rows, 5% of them class 'rare', whose two features overlap the other
    class's: a plain cross-entropy learns to answer 'common' nearly always."""
    from tests.owndata import write_csv

    rng = np.random.default_rng(0)
    rare = rng.random(2000) < 0.05
    x = rng.normal(size=(2000, 2)) + np.where(rare, 1.2, 0.0)[:, None]
    rows = [[*map(float, xi), "rare" if r else "common"] for xi, r in zip(x, rare, strict=True)]
    return DataSource(str(write_csv(folder / "rare.csv", ["a", "b", "y"], rows)), target="y")


def test_balanced_class_weights_are_scikit_learns() -> None:
    from sklearn.utils.class_weight import compute_class_weight

    from hpsearch.training.trainer import balanced_weights

    y = np.array([0] * 50 + [2] * 7 + [3] * 3)  # class 1 has no row
    expected = compute_class_weight("balanced", classes=np.array([0, 2, 3]), y=y)
    weights = balanced_weights(torch.tensor(y), 4)
    assert weights.tolist() == pytest.approx([expected[0], 0.0, expected[1], expected[2]])
    assert float(weights[torch.tensor(y)].mean()) == pytest.approx(1.0)  # over the rows


def test_balanced_class_weights_find_the_rare_class_and_train_in_a_population_as_alone(
    tmp_path: Path,
) -> None:
    source = _imbalanced(tmp_path)
    plain, weighted = (
        _config(source, epochs=6, hidden_layers=[], class_weight=w) for w in ("none", "balanced")
    )
    alone = [train(plain), train(weighted)]
    assert alone[0].test_balanced_accuracy < 0.6  # it answers 'common' (0.52): 0.5 always
    assert alone[1].test_balanced_accuracy > 0.7  # the rare class found (0.79 here)
    assert alone[1].test_accuracy < alone[0].test_accuracy  # at some cost in accuracy
    together = train_population([plain, weighted])
    for one, member in zip(alone, together, strict=True):
        assert member.epochs[0].train_loss == pytest.approx(one.epochs[0].train_loss, rel=1e-4)
        assert member.test_balanced_accuracy == pytest.approx(one.test_balanced_accuracy)


def test_class_weights_and_label_smoothing_are_refused_for_a_regression(tmp_path: Path) -> None:
    from hpsearch.errors import ConfigError
    from hpsearch.spec.studyfile import parse_study
    from tests.helpers import study_doc

    with pytest.raises(ConfigError, match="class_weight: weighs classes; a regression task"):
        _config(REGRESSION, class_weight="balanced")
    regression = {"path": str(DIABETES), "target": "progression", "task": "regression"}
    space = {"class_weight": ["none", "balanced"], "label_smoothing": [0.0, 0.1]}
    with pytest.raises(ConfigError) as refused:  # the task given: checked as the file is read
        parse_study(study_doc(tmp_path, dataset=regression, objective=None, space=space))
    assert refused.value.problems == [
        "space.class_weight: weighs classes; a regression task has none",
        "space.label_smoothing: smooths class labels; a regression task has none",
    ]
