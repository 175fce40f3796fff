"""A user's own data from the command line: bad data refused up front (one line naming the
file and the row or column, exit 2, nothing written), changed data refused on resume, the
split sizes shown, `train --data`, and `predict` answering in the data's own labels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.helpers import Gate
from tests.helpers import hpsearch
from tests.helpers import start
from tests.helpers import wait_running
from tests.helpers import write_study
from tests.owndata import DIABETES
from tests.owndata import wine_rows
from tests.owndata import write_csv
from tests.owndata import write_images
from tests.owndata import write_wine

FAST = {"epochs": 2, "scheduler": "none", "optimizer": "adam", "lr": 0.01}
SPACE = {"hidden_layers": {"values": [[16], [32]]}}


def _study(tmp_path: Path, dataset: Any, **overrides: Any) -> Path:
    settings = {
        "objective": "val_loss",
        "sampler": {"name": "grid"},
        "budget": {"trials": 2},
        "fixed": FAST,
        "space": SPACE,
        **overrides,
    }
    return write_study(tmp_path, dataset=dataset, **settings)


def _refused(proc: Any, *words: str) -> str:
    """The one line a refusal says (it must name every word), with exit 2, no traceback."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _wine_with(tmp_path: Path, edit: Any) -> Path:
    names, rows = wine_rows()
    names, rows = edit(names, rows)
    return write_csv(tmp_path / "wine.csv", names, rows)


def _column(names: list[str], rows: list[list[Any]], name: str, values: list[Any]) -> Any:
    return [*names, name], [[*row, v] for row, v in zip(rows, values, strict=True)]


def _set(row: int, column: int, value: Any) -> Any:
    def edit(names: list[str], rows: list[list[Any]]) -> Any:
        rows[row][column] = value
        return names, rows

    return edit


BAD_TABLES: dict[str, tuple[Any, dict[str, Any], tuple[str, ...]]] = {
    # name: (how the wine table is spoiled, the dataset's settings, words the line names)
    "target column": (None, {"target": "cultivr"}, ("no column 'cultivr'", "'cultivar'")),
    "missing target": (_set(40, -1, None), {}, ("line 42", "no value of target 'cultivar'")),
    "one class": (
        lambda names, rows: (names, [[*r[:-1], "barolo"] for r in rows]),
        {},
        ("target 'cultivar' has one value ('barolo')",),
    ),
    "few rows": (lambda names, rows: (names, rows[::30]), {}, ("6 rows are too few",)),
    "mixed types": (
        lambda names, rows: _column(names, rows, "dose", [*range(100), "n/a?", *range(77)]),
        {},
        ("line 102", "column 'dose'", "'n/a?'", "mixed types"),
    ),
    "infinite number": (
        lambda names, rows: _column(names, rows, "dose", [*range(100), "-inf", *range(77)]),
        {},
        ("line 102", "column 'dose'", "-inf", "not a finite number"),
    ),
    "more fields than the header": (
        lambda names, rows: (names, [*rows[:30], [*rows[30], 1.5], *rows[31:]]),
        {},
        ("line 32", "16 fields where the header has 15"),
    ),
    "too many categories": (
        lambda names, rows: _column(names, rows, "id", [f"p{i}" for i in range(178)]),
        {"max_categories": 50},
        ("column 'id'", "178 distinct text values", "max_categories (50)", "or --drop id"),
    ),
    "regression on text": (None, {"task": "regression"}, ("holds text", "'barolo'")),
    "column to drop": (None, {"drop": ["shade", "hue_"]}, ("no column 'hue_' to drop", "'hue'")),
}


@pytest.mark.parametrize("case", BAD_TABLES, ids=list(BAD_TABLES))
def test_bad_data_is_refused_up_front_in_one_line_with_nothing_written(
    tmp_path: Path, case: str
) -> None:
    edit, settings, words = BAD_TABLES[case]
    data = _wine_with(tmp_path, edit) if edit else write_wine(tmp_path)
    dataset = {"path": data.name, "target": "cultivar", **settings}
    if settings.get("task") == "regression":
        overrides: dict[str, Any] = {"objective": "val_rmse", "fixed": {**FAST, "loss": "mse"}}
    else:
        overrides = {}
    study = _study(tmp_path, dataset, **overrides)
    # every command that creates a study checks its data first (each case once is enough)
    commands = ("run", "create", "launch") if case == "mixed types" else ("run",)
    for command in commands:
        _refused(hpsearch(command, str(study)), str(data), *words)
    assert not (tmp_path / "hp.db").exists()  # nothing written


def test_a_missing_file_is_named_with_a_did_you_mean(tmp_path: Path) -> None:
    write_wine(tmp_path)
    study = _study(tmp_path, {"path": "wines.csv", "target": "cultivar"})
    _refused(hpsearch("run", str(study)), "wines.csv", "no such train file", "'wine.csv'")
    proc = hpsearch("train", "--data", str(tmp_path / "win.csv"), "--target", "cultivar")
    _refused(proc, "--data", "win.csv", "did you mean 'wine.csv'?")
    assert not (tmp_path / "hp.db").exists()


def test_an_unreadable_image_is_named(tmp_path: Path) -> None:
    folder = write_images(tmp_path / "photos", per_class=4)
    (folder / "dark" / "broken.png").write_bytes(b"not a png at all")
    _refused(
        hpsearch("run", str(_study(tmp_path, {"path": "photos"}))),
        "broken.png",
        "not a readable image",
    )
    assert not (tmp_path / "hp.db").exists()


def test_a_file_too_large_for_memory_says_how_large_and_what_fits(tmp_path: Path) -> None:
    data = write_wine(tmp_path)
    size = data.stat().st_size
    proc = hpsearch(
        "run",
        str(_study(tmp_path, {"path": data.name, "target": "cultivar"})),
        env={"HPSEARCH_DATA_MEMORY": str(size)},  # less than the 3x a CSV takes to load
    )
    line = _refused(proc, str(data), "of memory to load", "is available", "fits")
    assert f"{size / 1e6:.1f} MB on disk" in line
    assert not (tmp_path / "hp.db").exists()


def test_a_loss_or_objective_of_the_other_task_is_refused(tmp_path: Path) -> None:
    study = _study(
        tmp_path,
        {"path": str(DIABETES), "target": "progression"},  # inferred: regression
        objective="val_accuracy",
    )
    _refused(hpsearch("run", str(study)), "val_accuracy is not measured for a regression task")
    study = _study(
        tmp_path, {"path": str(DIABETES), "target": "progression"}, fixed={**FAST, "loss": "bce"}
    )
    _refused(hpsearch("run", str(study)), "fixed.loss: bce is not a regression loss")
    assert not (tmp_path / "hp.db").exists()


def test_a_study_shows_its_split_sizes_and_refuses_changed_data_on_resume(
    tmp_path: Path,
) -> None:
    data = write_wine(tmp_path)
    study = _study(tmp_path, {"path": data.name, "target": "cultivar"})
    proc = hpsearch("run", str(study), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    # 178 rows of classes 59/71/48: 12+14+10 test (20% of each), 5+6+4 validation (10% of
    # each's rest), 127 training
    assert (
        f"data {data}: classification of 'cultivar'; 127 training, 15 validation, 36 test rows"
        in proc.stderr
    )
    assert hpsearch("run", str(study), "--no-progress").returncode == 0  # the same data: resumes
    names, rows = wine_rows()
    rows[5][0] = 99.0  # one cell changed
    write_csv(data, names, rows)
    line = hpsearch("run", str(study), "--no-progress")
    assert line.returncode == 2 and "Traceback" not in line.stderr
    assert "was created on other data" in line.stderr
    assert f"train data {data} changed since the study was created" in line.stderr
    # a moved copy of the same rows is the same data
    names, rows = wine_rows()
    write_csv(tmp_path / "moved.csv", names, rows)
    moved = _study(tmp_path, {"path": "moved.csv", "target": "cultivar"})
    assert hpsearch("run", str(moved), "--no-progress").returncode == 0


def test_imbalanced_classes_are_said_and_a_study_may_select_on_the_balanced_accuracy(
    tmp_path: Path,
) -> None:
    names, rows = wine_rows()
    by_class = {c: [r for r in rows if r[-1] == c] for c in ("grignolino", "barolo", "barbera")}
    kept = by_class["grignolino"] + by_class["barolo"][:10] + by_class["barbera"][:5]  # 71/86
    data = write_csv(tmp_path / "few.csv", names, kept)
    dataset = {"path": data.name, "target": "cultivar"}
    proc = hpsearch(
        "run", str(_study(tmp_path, dataset, objective="val_accuracy")), "--no-progress"
    )
    assert proc.returncode == 0, proc.stderr
    said = "class 'grignolino' holds 83% of the rows (answering 'grignolino' always scores "
    assert said + "0.83 in val_accuracy: objective val_balanced_accuracy" in proc.stderr
    assert hpsearch("delete", str(tmp_path / "study.yaml"), "--yes").returncode == 0
    study = _study(tmp_path, dataset, objective="val_balanced_accuracy")
    proc = hpsearch("run", str(study), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "class 'grignolino' holds 83% of the rows\n" in proc.stderr  # no advice: it is heeded
    assert "  test_balanced_accuracy 0." in proc.stdout  # the best trial, rated by it
    table = hpsearch("trials", str(study)).stdout.splitlines()
    assert table[0].split()[:6] == ["number", "state", "value", "hidden_layers", "test_bal_acc",
                                    "test_acc"]  # fmt: skip
    rows_out = json.loads(hpsearch("trials", str(study), "--format", "json").stdout)
    for row in rows_out:  # the value is the last epoch's validation balanced accuracy
        assert 0.0 <= row["value"] <= 1.0 and 0.0 <= row["test_balanced_accuracy"] <= 1.0
    trial = json.loads(hpsearch("trial", str(study), "0", "--json").stdout)
    curve = trial["curves"]["val_balanced_accuracy"]
    assert len(curve) == 2 and curve[-1] == pytest.approx(trial["values"][0], abs=1e-4)
    assert len(trial["curves"]["val_balanced_accuracy_se"]) == 2
    assert "val_rmse" not in trial["curves"]  # a regression's stay out
    best = hpsearch("best", str(study)).stdout  # its noise: from the stored standard errors
    assert "test_balanced_accuracy 0." in best and " on 7 validation rows)" in best


@pytest.mark.slow  # the same in-process: tests/training/test_own_models.py
def test_train_on_a_table_and_predict_new_rows_in_its_own_labels(tmp_path: Path) -> None:
    data = write_wine(tmp_path)
    proc = hpsearch(
        "train", "--data", str(data), "--target", "cultivar", "--json",
        "--set", "epochs=8", "--set", "optimizer=adam", "--set", "lr=0.01",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["task"] == "classification" and result["test_accuracy"] > 0.85
    study = _study(tmp_path, {"path": data.name, "target": "cultivar"})
    assert hpsearch("run", str(study), "--no-progress").returncode == 0
    model = tmp_path / "model"
    assert (
        hpsearch(
            "retrain", "t", "--storage", f"sqlite:///{tmp_path / 'hp.db'}", "-o", str(model)
        ).returncode
        == 0
    )
    # new rows: no target column, columns shuffled, a cell missing
    names, rows = wine_rows()
    order = list(reversed(names[:-1]))
    new = [[dict(zip(names, row, strict=True))[n] for n in order] for row in rows[:3]]
    new[1][2] = None
    write_csv(tmp_path / "new.csv", order, new)
    proc = hpsearch("predict", str(model), str(tmp_path / "new.csv"), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    answers = json.loads(proc.stdout)
    assert [a["input"] for a in answers] == ["line 2", "line 3", "line 4"]
    assert all(a["class"] in ("barolo", "grignolino", "barbera") for a in answers)
    assert all(0.0 < a["probability"] <= 1.0 for a in answers)
    # a column the model reads is missing: one line naming it
    write_csv(tmp_path / "bad.csv", order[1:], [r[1:] for r in new])
    _refused(
        hpsearch("predict", str(model), str(tmp_path / "bad.csv")),
        "bad.csv",
        f"no column {order[0]!r}",
    )


def test_evaluate_scores_a_retrained_model_as_retrain_measured_it(tmp_path: Path) -> None:
    data = write_wine(tmp_path)
    study = _study(tmp_path, {"path": data.name, "target": "cultivar"})
    assert hpsearch("run", str(study), "--no-progress").returncode == 0
    model = tmp_path / "model"
    assert hpsearch("retrain", str(study), "-o", str(model)).returncode == 0
    saved = json.loads((model / "result.json").read_text())
    proc = hpsearch("evaluate", str(model), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    scores = json.loads(proc.stdout)
    assert scores["metrics"]["accuracy"] == pytest.approx(saved["test_accuracy"], abs=1e-9)
    assert scores["recorded"]["test_accuracy"] == pytest.approx(saved["test_accuracy"])
    assert scores["model"]["study"] == "t" and scores["examples"] == 36  # a fifth of 178 rows
    proc = hpsearch("evaluate", str(model), str(data), "--mistakes", "2")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1] == f"data       {data}: 178 examples" and lines[2].startswith("accuracy ")
    assert "confusion matrix: a row per class, a column per answer" in lines
    header = lines.index("confusion matrix: a row per class, a column per answer") + 1
    assert lines[header].split() == ["class", "barbera", "barolo", "grignolino"]
    # a row of a class the model never saw: one line naming its line
    names, rows = wine_rows()
    rows[4][-1] = "merlot"
    write_csv(tmp_path / "more.csv", names, rows)
    _refused(
        hpsearch("evaluate", str(model), str(tmp_path / "more.csv")),
        "more.csv: line 6: class 'merlot' of 'cultivar' is not among the training data's",
    )
    # a device this machine lacks is named as such, not as a bad model file
    _refused(hpsearch("evaluate", str(model), "--device", "tpu"), "device 'tpu': allowed: auto")
    if not torch.cuda.is_available():
        _refused(
            hpsearch("predict", str(model), str(data), "--device", "cuda"),
            "device cuda: no CUDA GPU is visible to this process",
        )


def test_train_on_a_regression_table_reports_in_the_targets_units(tmp_path: Path) -> None:
    proc = hpsearch(
        "train", "--data", str(DIABETES), "--target", "progression",
        "--set", "epochs=5", "--set", "optimizer=adam", "--set", "lr=0.01",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    shown = dict(line.split(None, 1) for line in proc.stdout.splitlines())
    # the target spans 25-346: an RMSE in its units is tens, not a standardized ~0.7
    assert 30 < float(shown["test_rmse"]) < 90 and 0.0 < float(shown["test_r2"]) < 1.0
    assert "test_accuracy" not in shown
    assert "val_rmse" in proc.stderr  # per epoch


def test_train_leaves_out_the_columns_drop_names(tmp_path: Path) -> None:
    def inputs(*drop: str) -> tuple[int, Any]:
        proc = hpsearch(
            "train", "--data", str(DIABETES), "--target", "progression", "--json",
            "--set", "epochs=1", "--set", "hidden_layers=[]", *drop,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        return result["param_count"] - 1, result["config"]["dataset"].get("drop")  # - the bias

    assert inputs() == (10, None)
    assert inputs("--drop", "age,sex", "--drop", "s6") == (7, ["age", "sex", "s6"])


def test_init_drafts_a_study_that_checks_and_runs_from_where_it_says(tmp_path: Path) -> None:
    names, rows = wine_rows()
    (tmp_path / "data").mkdir()
    write_csv(
        tmp_path / "data" / "wine.csv", ["id", *names], [[i, *r] for i, r in enumerate(rows)]
    )
    proc = hpsearch("init", "data/wine.csv", "--target", "cultivar", "--trials", "3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"data {tmp_path / 'data' / 'wine.csv'}: classification")
    assert lines[1] == "left out 'id': numbers the rows (each whole number once), an ID"
    assert lines[2].startswith("wrote wine.yaml: study wine, TPE over 7 params, 3 trials")
    assert lines[3] == "next: hpsearch check wine.yaml, then hpsearch run wine.yaml"
    check = hpsearch("check", "wine.yaml", cwd=tmp_path)  # as the last line says
    assert check.returncode == 0 and "ok        wine.yaml would start" in check.stdout
    run = hpsearch("run", "wine.yaml", "--no-progress", cwd=tmp_path)
    assert run.returncode == 0 and "done: " in run.stdout, run.stderr
    again = hpsearch("init", "data/wine.csv", "--target", "cultivar", cwd=tmp_path)
    _refused(again, "error: wine.yaml exists: --force replaces it")
    # drafted anew, over a study of its name: says so before a run would refuse a change
    redrafted = hpsearch("init", "data/wine.csv", "--target", "cultivar", "--force", cwd=tmp_path)
    assert redrafted.returncode == 0, redrafted.stderr
    assert redrafted.stdout.splitlines()[-2] == (
        f"note: sqlite:///{tmp_path / 'hpsearch.db'} holds a study wine already (3 trials): a "
        "run resumes it only if this file defines it as it was (check says); --name starts "
        "another"
    )
    other = ["init", "data/wine.csv", "--target", "cultivar", "--name", "wine2"]
    assert "note:" not in hpsearch(*other, cwd=tmp_path).stdout
    (tmp_path / "hpsearch.db").write_text("not a database")  # a note, never a failure
    third = hpsearch("init", "data/wine.csv", "--target", "cultivar", "--force", cwd=tmp_path)
    assert third.returncode == 0 and "note:" not in third.stdout, third.stderr


def test_data_flags_without_data_are_refused(tmp_path: Path) -> None:
    proc = hpsearch("train", "--target", "y")
    assert proc.returncode == 2 and "--target: only with --data" in proc.stderr
    proc = hpsearch("train", "--data", str(DIABETES), "--dataset", "digits")
    assert proc.returncode == 2 and "give one" in proc.stderr
    # a data source the flags cannot make: each problem named by its flag, not as --set's
    folder = write_images(tmp_path / "photos", per_class=2)
    for args, line in (
        (["--data", str(DIABETES), "--set", "epochs=1"], "--target: required for a table"),
        (["--data", str(folder), "--target", "y"], "--target: a folder of images has no target"),
        (["--data", str(DIABETES), "--target", "y", "--test", str(folder)], "--test: '"),
        (["--data", str(DIABETES), "--target", "bmi", "--drop", "age,bmi"], "--drop: 'bmi' is"),
    ):
        proc = hpsearch("train", *args)
        assert proc.returncode == 2 and proc.stderr.startswith(f"error: {line}"), proc.stderr
        assert proc.stderr.count("\n") == 1


def test_a_regression_study_is_read_right_by_pruner_best_report_and_dashboard(
    tmp_path: Path,
) -> None:
    study = _study(
        tmp_path,
        {"path": str(DIABETES), "target": "progression"},  # the task inferred: regression
        objective=None,  # the regression's default: val_r2, maximized
        sampler={"name": "random", "seed": 0},
        pruner={"name": "median", "n_startup_trials": 1, "n_warmup_steps": 1},
        budget={"trials": 5},
        fixed={**FAST, "epochs": 4},
        space={"lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True}},
    )
    assert hpsearch("run", str(study), "--no-progress").returncode == 0
    import optuna

    loaded = optuna.load_study(study_name="t", storage=f"sqlite:///{tmp_path / 'hp.db'}")
    # optuna-dashboard reads the objective by its name and direction
    assert loaded.metric_names == ["val_r2"]
    assert loaded.directions == [optuna.study.StudyDirection.MAXIMIZE]
    assert loaded.user_attrs["objective"] == "val_r2 (maximize, final epoch)"
    for trial in loaded.trials:  # what the pruner saw each epoch is the trial's val_r2
        curve = trial.user_attrs["curves"]["val_r2"]
        reported = [trial.intermediate_values[e] for e in sorted(trial.intermediate_values)]
        assert reported == pytest.approx(curve, abs=1e-4)
        assert "val_accuracy" not in trial.user_attrs["curves"] or not any(
            trial.user_attrs["curves"]["val_accuracy"]
        )
    best = hpsearch("best", str(study))
    assert "test_r2" in best.stdout and "validation rows" in best.stdout, best.stdout
    assert "best val_r2" in best.stdout or "ahead of the next trial" in best.stdout
    rows = json.loads(hpsearch("trials", str(study), "--format", "json").stdout)
    assert all({"test_r2", "test_rmse"} <= set(row) for row in rows)  # pruned ones too
    assert not any("test_accuracy" in row for row in rows)
    assert hpsearch("report", str(study), "-o", str(tmp_path / "r.html")).returncode == 0
    html = (tmp_path / "r.html").read_text()
    assert "Final validation R\\u00b2 against test R\\u00b2" in html
    assert "Best validation R\\u00b2 against training time" in html


@pytest.mark.slow
def test_workers_of_a_launch_split_the_data_alike(tmp_path: Path) -> None:
    data = write_wine(tmp_path)
    study = _study(
        tmp_path,
        {"path": data.name, "target": "cultivar"},
        sampler={"name": "random", "seed": 0},
        budget={"trials": 4},
        space={"lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True}},
    )
    gate = Gate(tmp_path)  # holds each worker's first trial until both run one
    launcher = start("launch", str(study), "--workers", "2", "--no-progress", env=gate.env)
    url = f"sqlite:///{tmp_path / 'hp.db'}"
    wait_running(url, n=2)
    gate.open()
    _, err = launcher.communicate(timeout=300)
    assert launcher.returncode == 0, err
    # it said what it did while it started, in order
    said = [line.split()[0] for line in err.splitlines()]
    assert said[:4] == ["launching", "pre-flight", "study", "data"], err
    import optuna

    trials = optuna.load_study(study_name="t", storage=url).get_trials()
    assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both workers trained
    assert {t.user_attrs["val_size"] for t in trials} == {15}  # on the same validation rows
