from __future__ import annotations

import json
from pathlib import Path
import re
from typing import Any

import optuna
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution
from optuna.trial import TrialState
import pytest

from hpsearch.results import report
from hpsearch.results.reading import open_study
from hpsearch.results.report import build_report
from hpsearch.spec.config import make_config
from hpsearch.spec.studyfile import load_spec
from hpsearch.spec.studyfile import parse_study
from hpsearch.storage import ResilientRDBStorage
from hpsearch.study.lifecycle import create_study
from hpsearch.study.lifecycle import open_spec_storage
from hpsearch.study.lifecycle import prepare
from hpsearch.study.record import records
from hpsearch.study.worker import run_worker
from tests.helpers import BROKEN_SPACE
from tests.helpers import CONDITIONAL_SPACE
from tests.helpers import EDGE
from tests.helpers import EDGE_STUDY
from tests.helpers import hpsearch
from tests.helpers import stand_in_study
from tests.helpers import study_doc
from tests.helpers import write_study

EVERY_PLOT = (
    "Optimization history",
    "Parameter importances",
    "Parallel coordinates",
    "Slice plots",
    "Contour of the two most important parameters",
    "Learning curves",
    "Validation against test",
    "Score against training time",
)


def _sections(page: str) -> dict[str, str]:
    """Section title -> its HTML, split at the <h2> headings."""
    parts = re.split(r"<h2>(.*?)</h2>", page)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.mark.slow
def test_report_of_a_finished_study_has_every_plot(tmp_path: Path) -> None:
    path = write_study(
        tmp_path, budget={"trials": 6}, pruner={"name": "median", "n_startup_trials": 2}
    )
    assert hpsearch("run", str(path), "--no-progress").returncode == 0
    out = tmp_path / "report.html"
    proc = hpsearch("report", str(path), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    assert re.search(r"<script[^>]*\ssrc=", page) is None  # plotly inlined: opens offline
    sections = _sections(page)
    for title in EVERY_PLOT:
        assert "plotly-graph-div" in sections[title], title
    assert "Pareto front" not in sections  # cannot apply to one objective: left out
    assert "sampler</th><td>random" in sections["Summary"]
    assert "test accuracy 0." in sections["Summary"]
    bad = hpsearch("report", str(path), "-o", str(tmp_path / "no" / "such" / "r.html"))
    assert bad.returncode == 2 and "No such file or directory" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_report_of_an_empty_study_says_what_is_missing(tmp_path: Path) -> None:
    spec = parse_study(study_doc(tmp_path), source="t.yaml")
    prepare(spec)  # created and queued, nothing run
    page = build_report(open_study("t", spec.storage))
    sections = _sections(page)
    assert "no completed trial yet" in sections["Summary"]
    assert "needs at least 1 completed trials; the study has 0" in sections["Optimization history"]
    assert "plotly-graph-div" not in page


def test_a_report_is_written_whole_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = parse_study(study_doc(tmp_path), source="t.yaml")
    prepare(spec)
    study = open_study("t", spec.storage)
    built: list[int] = []
    monkeypatch.setattr(report, "build_report", lambda s: built.append(1) or "<html>new")
    for bad in (tmp_path / "no" / "r.html", tmp_path):  # no such folder; a folder
        with pytest.raises(OSError):
            report.write_report(study, bad)
    assert not built  # refused before the report was built
    earlier = tmp_path / "r.html"
    earlier.write_text("<html>earlier")

    def full_disk(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report.os, "replace", full_disk)
    with pytest.raises(OSError, match="No space left"):
        report.write_report(study, earlier)
    assert earlier.read_text() == "<html>earlier"  # untouched, and no part file left beside
    assert sorted(p.name for p in tmp_path.iterdir() if "r.html" in p.name) == ["r.html"]
    monkeypatch.undo()
    assert report.write_report(study, earlier) == earlier and "<h2>Summary" in earlier.read_text()


def test_multi_objective_report_has_pareto_front(tmp_path: Path) -> None:
    doc = study_doc(
        tmp_path,
        sampler={"name": "nsga2", "seed": 0, "population_size": 2},
        objectives=["val_accuracy", "param_count"],
    )
    del doc["objective"]
    spec = parse_study(doc, source="t.yaml")
    storage, _, _ = prepare(spec)
    run_worker(spec, storage)
    sections = _sections(build_report(open_study("t", spec.storage)))
    assert "plotly-graph-div" in sections["Pareto front"]
    assert "plotly-graph-div" in sections["Optimization history"]


def _one_factor_study(tmp_path: Path, space: dict[str, Any]) -> optuna.Study:
    """A one-factor digits study of 2-epoch runs, run to the end."""
    doc = study_doc(tmp_path, sampler="ofat", budget=None, space=space, fixed={"epochs": 2})
    spec = parse_study(doc, source="t.yaml")
    storage, _, _ = prepare(spec)
    run_worker(spec, storage)
    return open_study("t", spec.storage)


def test_one_factor_report_draws_each_factor(tmp_path: Path) -> None:
    study = _one_factor_study(tmp_path, {"activation": ["relu", "tanh"], "batch_size": [64, 16]})
    sections = _sections(build_report(study))
    for factor in ("activation", "batch_size"):
        html = sections[f"Factor: {factor}"]
        assert "validation loss" in html and "training seconds" in html
        assert f"{factor}=" in html and "baseline" in html


def test_report_of_a_large_study_bounds_and_says_what_it_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = stand_in_study(tmp_path, monkeypatch, trials=40, pruner="none")
    # the bounds, scaled down: 40 trials stand for 10,000
    monkeypatch.setattr(report, "SAMPLE_BEST", 3)
    monkeypatch.setattr(report, "SAMPLE_RANDOM", 4)
    monkeypatch.setattr(report, "CONTOUR_BEST", 2)
    monkeypatch.setattr(report, "CONTOUR_RANDOM", 3)
    monkeypatch.setattr(report, "CURVES_BEST", 5)
    study = open_study("t", load_spec(str(path)).storage)
    complete = len(study.get_trials(states=(TrialState.COMPLETE,)))
    assert complete > 7
    sections = _sections(build_report(study))
    for title in EVERY_PLOT:
        assert "plotly-graph-div" in sections[title], title
    note = f"sampled: the best 3 and 4 others at random of {complete} completed trials"
    assert note in sections["Slice plots"]
    assert (
        f"sampled: the best 2 and 3 others at random of {complete}"
        in sections["Contour of the two most important parameters"]
    )
    curves = sections["Learning curves"]
    assert "the best 5 trials as lines, the other 35 as percentile bands" in curves
    assert curves.count('"type":"scatter"') < 5 + 5 + 5  # not one trace per trial
    parallel = sections["Parallel coordinates"]
    assert parallel.count('"dimensions":') == 1  # one Parcoords trace for every trial
    assert f"Parallel coordinates of {complete} completed trials" in parallel
    assert "hidden_layers.width_1" in parallel  # only in deeper trials: named as left out


def test_a_study_too_large_to_draw_whole_is_drawn_from_a_sample_of_its_best_and_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = stand_in_study(tmp_path, monkeypatch, trials=40, pruner="none")
    # the bounds, scaled down: 40 trials stand for 100,000, drawn as 20 (the best 6)
    monkeypatch.setattr(report, "REPORT_TRIALS", 20)
    monkeypatch.setattr(report, "REPORT_BEST", 6)
    study = open_study("t", load_spec(str(path)).storage)
    trials = study.get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = sorted(complete, key=lambda t: -t.values[0])[:6]

    def whole(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the whole study was read")

    monkeypatch.setattr(ResilientRDBStorage, "get_all_trials", whole)
    page = build_report(study)
    sections = _sections(page)
    assert (
        "The study has 40 trials: the figures below draw its best 6 completed trials and "
        "14 others chosen at random (seed 0); the summary counts every trial."
    ) in page
    assert "40: complete" in sections["Summary"]  # the summary counts every trial
    for title in EVERY_PLOT:
        assert "plotly-graph-div" in sections[title], title
    history = sections["Optimization history"]
    drawn = json.loads(re.findall(r'"x":(\[[0-9,]*\])', history)[0])
    assert len(drawn) <= 20 and set(drawn) <= {t.number for t in complete}
    assert {t.number for t in best} <= set(drawn)  # the best are always drawn, by number
    again = _sections(build_report(study))["Optimization history"]
    assert re.findall(r'"x":(\[[0-9,]*\])', again)[0] == json.dumps(drawn).replace(" ", "")


@pytest.mark.slow
def test_a_study_in_the_old_attribute_layout_reads_and_resumes(tmp_path: Path) -> None:
    """Trials written before 0.3 hold their whole config and full-precision curves."""
    path = write_study(tmp_path, budget={"trials": 3})
    spec = load_spec(str(path))
    study = create_study(spec, open_spec_storage(spec, create=True))
    for number, lr in enumerate((0.01, 0.05)):
        config = make_config({"lr": lr, "hidden_layers": []}, spec.base).to_dict()
        accuracy = [0.5 + lr, 0.6123456789 + lr]
        study.add_trial(
            optuna.trial.create_trial(
                params={"lr": lr, "hidden_layers.depth": 0},
                distributions={
                    "lr": FloatDistribution(1e-3, 1e-1, log=True),
                    "hidden_layers.depth": IntDistribution(0, 2),
                },
                value=accuracy[-1],
                intermediate_values={1: accuracy[0], 2: accuracy[1]},
                user_attrs={
                    "worker": "old:1",
                    "pid": 1,
                    "outcome": "completed",
                    "curves": {
                        "train_loss": [1.234567891, 0.9],
                        "val_loss": [1.1, 0.8],
                        "val_accuracy": accuracy,
                        "seconds": [0.1, 0.1],
                    },
                    "test_accuracy": 0.5 + number,
                    "test_loss": 0.7,
                    "train_seconds": 0.2,
                    "param_count": 650,
                    "device": "cpu",
                    "threads": 1,
                    "host": "old",
                    "version": "0.2.0",
                    "config": config,  # the whole config, as 0.2 stored it
                },
            )
        )
    status = json.loads(hpsearch("status", str(path), "--json").stdout)
    assert status["states"]["COMPLETE"] == 2 and status["best"][0]["number"] == 1
    assert "trial 1: values [0.6623]" in hpsearch("best", str(path)).stdout
    top = json.loads(hpsearch("trials", str(path), "--top", "1", "--format", "json").stdout)
    assert [r["number"] for r in top] == [1]
    shown = json.loads(hpsearch("trial", str(path), "0", "--json").stdout)
    assert shown["config"]["lr"] == 0.01 and shown["curves"]["train_loss"][0] == 1.234567891
    out = tmp_path / "r.html"
    assert hpsearch("report", str(path), "-o", str(out)).returncode == 0
    assert "plotly-graph-div" in _sections(out.read_text())["Learning curves"]
    # resumed: the third trial is written in the new layout, and reads the same way
    assert hpsearch("run", str(path), "--no-progress").returncode == 0
    study = open_study("t", spec.storage)
    old, _, new = records(study, study.get_trials())
    assert new.state == "COMPLETE" and new.config is not None and old.config is not None
    assert set(new.config) == set(old.config) and new.config["dataset"] == "digits"
    assert len(study.get_trials()[2].user_attrs["config"]) < len(new.config)  # only its own


def test_conditional_params_are_never_read_as_absent_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = stand_in_study(tmp_path, monkeypatch, trials=40, space=CONDITIONAL_SPACE)
    study = open_study("t", load_spec(str(path)).storage)
    data = report._Data.load(study)
    complete = data.complete
    shared = set(data.shared_params)  # the widths too, where every completed trial has them
    assert {"lr", "hidden_layers.depth", "optimizer", "weight_decay"} <= shared
    assert "momentum" not in shared and all(n in t.params for t in complete for n in shared)
    assert isinstance(data.importances, dict) and set(data.importances) == shared
    sgd = [t for t in complete if t.params["optimizer"] == "sgd"]
    assert data.conditional["momentum"][1] == len(sgd) >= 3  # over the trials that have it
    assert 0.0 <= data.conditional["momentum"][0] <= 1.0
    importances = report._importances(data)
    labels = [y for bar in importances.data for y in bar.y]
    assert f"momentum ({len(sgd)} of {len(complete)})" in labels
    contour = report._contour(data)
    assert set(contour.layout.title.text.split(": ")[1].split(" (")[0].split(", ")) <= shared
    parallel = report._parallel(data)
    dims = [d.label for d in parallel.data[0].dimensions]
    assert "depth" in dims and "optim" in dims and "lr (log10)" in dims
    assert not [d for d in dims if "." in d or d == "None"]
    assert all("None" not in (d.ticktext or ()) for d in parallel.data[0].dimensions)


def test_slices_are_a_grid_that_fits_the_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = stand_in_study(tmp_path, monkeypatch, trials=20, space=CONDITIONAL_SPACE)
    study = open_study("t", load_spec(str(path)).storage)
    fig = report._slices(report._Data.load(study))
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    names = {n for t in complete for n in t.params}
    assert len(fig.data) == len(names)  # one panel per param
    assert fig.layout.width is None  # as wide as the page, not 300 px per parameter
    columns = {tuple(fig.layout[k].domain) for k in fig.layout if k.startswith("xaxis")}
    rows = {tuple(fig.layout[k].domain) for k in fig.layout if k.startswith("yaxis")}
    assert len(columns) == report.SLICE_COLUMNS and len(rows) == -(-len(names) // 3)
    titles = [a.text for a in fig.layout.annotations]
    momentum = next(t for t in titles if t.startswith("momentum"))
    assert re.fullmatch(r"momentum \(\d+ of \d+\)", momentum)  # conditional: says so
    assert fig.layout.xaxis.type in ("log", "linear", "category")
    log_axes = [fig.layout[k].type for k in fig.layout if k.startswith("xaxis")]
    logs = {n for t in complete for n, d in t.distributions.items() if getattr(d, "log", 0)}
    assert log_axes.count("log") == len(logs) >= 3  # lr, weight_decay and the widths
    assert fig.layout.yaxis.title.text == "val_accuracy"


def test_failed_and_pruned_trials_have_their_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Optuna's median pruner compares with completed trials only, so it ratchets up and
    # prunes most before epoch 3, where the stand-in diverges: keep the top 80% instead.
    keep = {"name": "percentile", "percentile": 80, "n_startup_trials": 3, "n_warmup_steps": 3}
    path = stand_in_study(tmp_path, monkeypatch, trials=80, pruner=keep)
    study = open_study("t", load_spec(str(path)).storage)
    trials = records(study, study.get_trials())
    failed = [t for t in trials if t.state == "FAIL"]
    pruned = [t for t in trials if t.state == "PRUNED"]
    assert failed and pruned  # the stand-in diverges ~5%; the median pruner prunes
    section = _sections(build_report(study))["Failed and pruned"]
    assert f"{len(failed)} failed trials, by reason" in section
    reason = failed[0].fail_reason
    assert reason is not None and reason.startswith("diverged")
    same = sum(t.fail_reason == reason for t in failed)
    assert f"<tr><td>{same}</td><td>{reason}</td>" in section
    assert f"{len(pruned)} pruned trials, by the epoch they were stopped at" in section


@pytest.mark.slow
def test_an_all_failed_study_says_why(tmp_path: Path) -> None:
    path = write_study(tmp_path, budget={"trials": 3}, **BROKEN_SPACE)
    assert hpsearch("run", str(path), "--no-progress").returncode != 0
    page = build_report(open_study("t", load_spec(str(path)).storage))
    sections = _sections(page)
    summary = sections["Summary"]
    assert "<th>why</th>" in summary and "every finished trial failed; 3 of 3 with:" in summary
    assert "activation: 2 values for 1 hidden layers" in summary  # the reason itself
    assert "<tr><td>3</td>" in sections["Failed and pruned"]


def test_one_factor_losses_of_different_kinds_get_their_own_axes(tmp_path: Path) -> None:
    data = report._Data.load(_one_factor_study(tmp_path, {"loss": ["cross_entropy", "mse"]}))
    (title, fig), *_ = report._one_factor(data)
    assert title == "Factor: loss"
    titles = [a.text for a in fig.layout.annotations]
    assert titles[:2] == ["validation loss (cross_entropy)", "validation loss (mse)"]
    assert fig.layout.yaxis.title.text == "val_loss (cross_entropy)"
    assert fig.layout.yaxis2.title.text == "val_loss (mse)"
    assert fig.layout.yaxis3.title.text == "val_accuracy"
    assert fig.layout.xaxis.title.text == "epoch" and fig.layout.xaxis3.title.text == "epoch"
    mse = [t for t in fig.data if t.xaxis == "x2"]
    assert mse and all("mse" in t.name for t in mse)  # only the MSE run on the MSE axis


def test_the_summary_names_the_best_trials_parameters_at_an_end_of_their_range(
    tmp_path: Path,
) -> None:
    path = write_study(tmp_path, **EDGE_STUDY)
    assert hpsearch("run", str(path), "--no-progress").returncode == 0
    summary = _sections(build_report(open_study("t", load_spec(str(path)).storage)))["Summary"]
    assert f"<th>edges of #0</th><td>{EDGE}: better values may lie beyond</td>" in summary
