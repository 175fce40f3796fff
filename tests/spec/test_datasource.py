"""The `dataset:` mapping: validated and worded like every key, paths from the study file's
folder, the task's loss and objective, fingerprints that name a changed file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hpsearch.errors import ConfigError
from hpsearch.spec.config import make_config
from hpsearch.spec.studyfile import load_spec
from tests.helpers import study_doc

CSV = {"path": "a.csv", "target": "y"}
BAD = [
    ("digit", "dataset: unknown 'digit' (did you mean 'digits'?); allowed: digits,"),
    (3, "dataset: expected a string or a mapping, got 3"),
    ({"path": "a.xlsx"}, "dataset.path: 'a.xlsx': unknown kind of file; allowed: .csv,"),
    ({"path": "a.csv.bz2"}, "dataset.path: 'a.csv.bz2': unknown kind of file; allowed: .csv,"),
    ({**CSV, "test": "b.parquet.gz"}, "dataset.test: 'b.parquet.gz': unknown kind of file"),
    ({**CSV, "test": "b.npz"}, "dataset.test: 'b.npz' is not of the same kind"),
    ({"path": "a.csv"}, "dataset.target: required for a table"),
    ({**CSV, "tsak": "regression"}, "dataset.tsak: unknown key (did you mean 'task'?)"),
    ({**CSV, "task": "regress"}, "dataset.task: unknown 'regress' (did you mean 'regression'?)"),
    ({"path": "photos", "target": "y"}, "dataset.target: a folder of images has no target"),
    ({**CSV, "test": "photos"}, "dataset.test: 'photos' is not of the same kind"),
    ({**CSV, "max_categories": 1}, "dataset.max_categories: must be in [2, 100000], got 1"),
    ({**CSV, "drop": ["id", "y"]}, "dataset.drop: 'y' is the target: it cannot be dropped"),
    ({"path": "a.npz", "drop": "y"}, "dataset.drop: 'y' is the target"),
    ({"path": "photos", "drop": ["id"]}, "dataset.drop: a folder of images has no columns"),
]


@pytest.mark.parametrize(("dataset", "line"), BAD)
def test_a_bad_dataset_is_one_line_naming_its_key(dataset: object, line: str) -> None:
    with pytest.raises(ConfigError) as e:
        make_config({"dataset": dataset})
    assert len(e.value.problems) == 1 and e.value.problems[0].startswith(line)


def test_a_gzipped_table_is_a_table_of_its_kind() -> None:
    source = make_config({"dataset": {"path": "A.CSV.GZ", "target": "y", "test": "b.csv"}})
    assert source.dataset.kind == "csv"  # type: ignore[union-attr]
    tsv = make_config({"dataset": {"path": "a.tsv.gz", "target": "y", "test": "b.tsv"}})
    assert tsv.dataset.kind == "tsv"  # type: ignore[union-attr]


CSV_T = {"path": "t.csv", "target": "y"}


def _write(tmp_path: Path, **overrides: object) -> Path:
    path = tmp_path / "studies" / "s.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(study_doc(tmp_path, **overrides)))
    return path


def test_paths_are_from_the_study_files_folder_and_checked(tmp_path: Path) -> None:
    (tmp_path / "studies" / "data").mkdir(parents=True)
    (tmp_path / "studies" / "data" / "t.csv").write_text("a,y\n1,2\n")
    spec = load_spec(str(_write(tmp_path, dataset={"path": "data/t.csv", "target": "y"})))
    assert spec.base.dataset.path == str(tmp_path / "studies" / "data" / "t.csv")
    with pytest.raises(
        ConfigError,
        match=r"s.yaml: dataset: .*data/tt.csv: no such train file .did you mean .t.csv.?.",
    ):
        load_spec(str(_write(tmp_path, dataset={"path": "data/tt.csv", "target": "y"})))


def test_a_task_fits_the_loss_and_the_objective(tmp_path: Path) -> None:
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "t.csv").write_text("a,y\n1,2\n")
    regression = {"path": "t.csv", "target": "y", "task": "regression"}
    spec = load_spec(str(_write(tmp_path, dataset=regression, objective=None)))
    assert spec.base.loss == "mse" and spec.base.task == "regression"  # the task's defaults
    assert [(o.metric, o.direction) for o in spec.objectives] == [("val_r2", "maximize")]
    spec = load_spec(str(_write(tmp_path, dataset=regression, objective="val_rmse",
                                fixed={"loss": "huber"})))  # fmt: skip
    assert spec.base.loss == "huber" and spec.objectives[0].metric == "val_rmse"
    with pytest.raises(ConfigError) as e:
        load_spec(str(_write(tmp_path, dataset=regression, objective="val_accuracy",
                             fixed={"loss": "cross_entropy"})))  # fmt: skip
    assert [p.split(":")[0] for p in e.value.problems] == ["objective", "fixed.loss"]
    # an inferred task is fitted later (by the pre-flight), from the same rules
    inferred = load_spec(str(_write(tmp_path, dataset={"path": "t.csv", "target": "y"},
                                    objective=None)))  # fmt: skip
    assert inferred.base.task is None
    fitted = inferred.for_task("regression")
    assert fitted.base.loss == "mse" and fitted.objectives[0].metric == "val_r2"
    assert fitted.definition()["dataset"] == {"kind": "csv", "target": "y", "task": "regression"}
    classes = inferred.for_task("classification")
    assert classes.base.loss == "cross_entropy" and classes.objectives[0].metric == "val_accuracy"
    searched = _write(tmp_path, dataset=CSV_T, space={"loss": ["cross_entropy", "huber"]})
    with pytest.raises(ConfigError, match=r"space\.loss: huber is not a classification loss"):
        load_spec(str(searched)).for_task("classification")
