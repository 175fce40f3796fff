"""A study file drafted from a user's data (``drafts``, behind ``hpsearch init``): choices
that follow the data, a file that loads as written and runs, and nothing written when the
data or the target file is refused."""

from __future__ import annotations

import logging
from pathlib import Path
import re
import shutil
from typing import Any

import numpy as np
import pytest
import yaml

from hpsearch.errors import ConfigError
from hpsearch.errors import DataError
from hpsearch.spec.datasource import DataSource
from hpsearch.spec.studyfile import load_spec
from hpsearch.study import drafts
from hpsearch.study.drafts import init_study
from hpsearch.study.drafts import study_name
from hpsearch.study.worker import run_study
from hpsearch.training import tables
from tests.owndata import DIABETES
from tests.owndata import wine_rows
from tests.owndata import write_csv
from tests.owndata import write_images
from tests.owndata import write_wine


def _source(path: Path, **keys: Any) -> DataSource:
    return DataSource(path=str(path.resolve()), **keys)


def _init(source: DataSource, path: Path, **keys: Any) -> tuple[drafts.Draft, dict[str, Any]]:
    draft, _ = init_study(source, path, **keys)
    return draft, yaml.safe_load(path.read_text())


def _table(folder: Path, rows: int, features: int = 4, name: str = "table.csv") -> Path:
    """``rows`` rows of ``features`` numbers and a class ``y`` that their sum decides."""
    x = np.random.default_rng(0).normal(size=(rows, features)).round(4)
    names = [f"f{i}" for i in range(features)] + ["y"]
    return write_csv(folder / name, names, [[*r, int(sum(r) > 0)] for r in x.tolist()])


def test_a_drafted_study_loads_as_written_and_runs(tmp_path: Path) -> None:
    data = write_wine(tmp_path)
    draft, doc = _init(_source(data, target="cultivar"), tmp_path / "wine.yaml")
    assert doc["name"] == draft.name == "wine"
    assert doc["dataset"] == {"path": "wine.csv", "target": "cultivar", "task": "classification"}
    spec = load_spec(str(tmp_path / "wine.yaml"), storage=f"sqlite:///{tmp_path / 'hp.db'}")
    assert spec.base.dataset == draft.source  # the same data, read from the file's folder
    study, stats = run_study(load_spec(str(tmp_path / "wine.yaml"), spec.storage, trials=4))
    assert stats.completed + stats.pruned == 4 and stats.failed == 0
    assert study.best_trial.user_attrs["test_accuracy"] > 0.8  # wine is easy


def test_a_drafted_studys_known_point_loads_once_uncommented(tmp_path: Path) -> None:
    init_study(_source(write_wine(tmp_path), target="cultivar"), tmp_path / "wine.yaml")
    text = (tmp_path / "wine.yaml").read_text()
    assert "# start_with:" in text
    (tmp_path / "known.yaml").write_text(re.sub(r"^# (start_with:|  - )", r"\1", text, flags=re.M))
    spec = load_spec(str(tmp_path / "known.yaml"))
    assert spec.start_points == (
        {"hidden_layers.depth": 1, "hidden_layers.width_0": 64, "optimizer": "adam", "lr": 1e-3},
    )


def test_a_drafted_study_loads_without_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for path in (_table(tmp_path, 30_000), write_wine(tmp_path)):
        target = "y" if path.name == "table.csv" else "cultivar"
        init_study(_source(path, target=target), tmp_path / f"{path.stem}.yaml")
    with caplog.at_level(logging.WARNING):
        load_spec(str(tmp_path / "table.yaml"))
        load_spec(str(tmp_path / "wine.yaml"))
    assert not caplog.records  # e.g. no pruner that starts after the last epoch


def test_a_small_table_validates_a_quarter_in_small_batches_for_many_epochs(
    tmp_path: Path,
) -> None:
    draft, doc = _init(_source(write_wine(tmp_path), target="cultivar"), tmp_path / "w.yaml")
    fixed = doc["fixed"]
    assert draft.val_fraction == fixed["val_fraction"] == 0.25  # 36 rows validate, not 14
    assert fixed["batch_size"] == 32 and fixed["epochs"] == drafts.EPOCHS[1]
    assert fixed["early_stopping"] == drafts.EPOCHS[1] // 5
    layers = doc["space"]["hidden_layers"]
    assert layers["depth"]["high"] == 2 and layers["width"]["high"] == drafts.WIDTHS[0]
    assert doc["objective"] == "val_loss"
    assert draft.inputs == 13 + 3  # 13 measurements, a text column of 3 shades


def test_a_large_table_validates_a_tenth_in_large_batches_for_few_epochs(
    tmp_path: Path,
) -> None:
    draft, doc = _init(_source(_table(tmp_path, 30_000, 300), target="y"), tmp_path / "t.yaml")
    fixed = doc["fixed"]
    assert fixed["val_fraction"] == 0.1 and fixed["batch_size"] == 128
    steps = -(-21_600 // 128)  # 30,000 rows less a test fifth and a validation tenth
    assert fixed["epochs"] == round(drafts.STEPS / steps)
    assert doc["pruner"]["n_warmup_steps"] == max(3, fixed["epochs"] // 5)
    layers = doc["space"]["hidden_layers"]
    assert layers["depth"]["high"] == 3 and layers["width"]["high"] == 1024  # 600, capped
    assert draft.inputs == 300


def test_a_column_that_numbers_the_rows_is_left_out_with_those_the_user_drops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names, rows = wine_rows()
    data = write_csv(
        tmp_path / "wine.csv",
        ["row", "batch", *names],
        [[len(rows) - i, i % 7, *r] for i, r in enumerate(rows)],
    )
    reads = []
    read = tables.read_table
    monkeypatch.setattr(tables, "read_table", lambda *args: reads.append(args) or read(*args))
    draft, doc = _init(_source(data, target="cultivar", drop=("shade",)), tmp_path / "w.yaml")
    assert draft.ids == ("row",)  # `batch` repeats: a measurement, not an ID
    assert doc["dataset"]["drop"] == ["shade", "row"]
    assert draft.inputs == 13 + 1  # the measurements and batch; neither row nor shade
    assert len(reads) == 1  # checked again without the ID, not read again


def test_imbalanced_classes_select_on_the_balanced_accuracy_and_search_class_weights(
    tmp_path: Path,
) -> None:
    names, rows = wine_rows()
    labels = ["rare" if i % 10 == 0 else "common" for i in range(len(rows))]
    data = write_csv(
        tmp_path / "t.csv", names, [[*r[:-1], y] for r, y in zip(rows, labels, strict=True)]
    )
    draft, doc = _init(_source(data, target="cultivar"), tmp_path / "t.yaml")
    assert doc["objective"] == {"metric": "val_balanced_accuracy", "direction": "maximize"}
    assert doc["space"]["class_weight"] == ["none", "balanced"]
    assert "holds 90% of the rows" in draft.text
    _, balanced = _init(_source(write_wine(tmp_path), target="cultivar"), tmp_path / "w.yaml")
    assert "class_weight" not in balanced["space"]


def test_a_regression_selects_on_r2_with_a_squared_loss(tmp_path: Path) -> None:
    _, doc = _init(_source(DIABETES, target="progression"), tmp_path / "d.yaml")
    assert doc["objective"] == {"metric": "val_r2", "direction": "maximize"}
    assert doc["fixed"]["loss"] == "mse" and doc["dataset"]["task"] == "regression"
    assert "class_weight" not in doc["space"]


def test_a_held_out_file_and_a_given_task_are_written_as_given(tmp_path: Path) -> None:
    names, rows = wine_rows()
    train = write_csv(tmp_path / "train.csv", names, rows[::2])
    test = write_csv(tmp_path / "test.csv", names, rows[1::2])
    source = _source(train, target="alcohol", task="regression", test=str(test.resolve()))
    draft, doc = _init(source, tmp_path / "w.yaml")
    assert doc["dataset"]["test"] == "test.csv" and "# test:" not in draft.text
    assert "task: regression               # as given" in draft.text
    assert doc["objective"]["metric"] == "val_r2"
    # no test share carved out of train.csv: its 89 rows all train or validate
    assert draft.val_fraction == 0.25 and "# 22 validation rows" in draft.text


def test_a_folder_of_images_names_its_size_and_keeps_its_colour(tmp_path: Path) -> None:
    folder = write_images(tmp_path / "pics", size=(12, 10))  # RGB, each channel's own noise
    draft, doc = _init(_source(folder), tmp_path / "pics.yaml")
    assert doc["dataset"] == {"path": "pics", "color": "rgb"}  # no target, no task
    assert "# image_size: [12, 10]" in draft.text and "validation images" in draft.text
    assert draft.inputs == 3 * 12 * 10
    assert load_spec(str(tmp_path / "pics.yaml")).base.dataset.color == "rgb"  # type: ignore[union-attr]


def test_grey_images_saved_as_rgb_stay_grey(tmp_path: Path) -> None:
    from PIL import Image

    folder = write_images(tmp_path / "pics", size=(12, 10))
    for file in folder.rglob("*.png"):
        Image.open(file).convert("L").convert("RGB").save(file)
    draft, doc = _init(_source(folder), tmp_path / "pics.yaml")
    assert doc["dataset"] == {"path": "pics"} and draft.inputs == 12 * 10


def test_data_beside_the_file_is_named_relatively_and_far_data_absolutely(
    tmp_path: Path,
) -> None:
    for folder in ("data", "studies"):
        (tmp_path / "project" / folder).mkdir(parents=True)
    data = write_wine(tmp_path / "project" / "data")
    _, near = _init(_source(data, target="cultivar"), tmp_path / "project" / "studies" / "w.yaml")
    assert near["dataset"]["path"] == "../data/wine.csv"
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "project", moved)  # the project moved whole still finds it
    assert load_spec(str(moved / "studies" / "w.yaml")).base.dataset.path == str(  # type: ignore[union-attr]
        moved / "data" / "wine.csv"
    )
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    _, far = _init(_source(data, target="cultivar"), deep / "w.yaml")
    assert far["dataset"]["path"] == str(data.resolve())


@pytest.mark.parametrize("column", ["on", "null", "class: kind", "# label", "1.5", "naïve y"])
def test_any_column_name_reads_back_as_itself(column: str, tmp_path: Path) -> None:
    names, rows = wine_rows()
    data = write_csv(tmp_path / "wine.csv", [*names[:-1], column], rows)
    _, doc = _init(_source(data, target=column), tmp_path / "w.yaml")
    assert doc["dataset"]["target"] == column
    assert load_spec(str(tmp_path / "w.yaml")).base.dataset.target == column  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("file", "name"),
    [
        ("train.csv.gz", "train"),
        ("my data (v2).csv", "my_data_v2"),
        ("-x.csv", "x"),
        ("日本.csv", "study"),
        ("pics", "pics"),
    ],
)
def test_a_study_is_named_after_its_data(file: str, name: str, tmp_path: Path) -> None:
    assert study_name(_source(tmp_path / file, target="y" if "." in file else None)) == name


def test_an_existing_file_is_replaced_only_when_asked(tmp_path: Path) -> None:
    data, path = write_wine(tmp_path), tmp_path / "w.yaml"
    path.write_text("mine\n")
    with pytest.raises(ConfigError, match=r"w\.yaml exists: --force replaces it"):
        init_study(_source(data, target="cultivar"), path)
    assert path.read_text() == "mine\n"
    init_study(_source(data, target="cultivar"), path, trials=7, replace=True)
    assert yaml.safe_load(path.read_text())["budget"] == {"trials": 7}


def test_nothing_is_written_for_data_that_is_refused(tmp_path: Path) -> None:
    names, rows = wine_rows()
    data = write_csv(tmp_path / "one.csv", names, [[*r[:-1], "barolo"] for r in rows])
    with pytest.raises(DataError, match=r"one\.csv"):
        init_study(_source(data, target="cultivar"), tmp_path / "one.yaml")
    with pytest.raises(ConfigError, match="no such train file"):
        init_study(_source(tmp_path / "none.csv", target="y"), tmp_path / "none.yaml")
    with pytest.raises(ConfigError, match="no folder"):
        init_study(_source(write_wine(tmp_path), target="cultivar"), tmp_path / "x" / "w.yaml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.csv", "wine.csv"]
