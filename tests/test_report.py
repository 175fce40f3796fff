from __future__ import annotations

from pathlib import Path
import re

from hpsearch.report import build_report
from hpsearch.results import open_study
from hpsearch.study import prepare
from hpsearch.study import run_worker
from hpsearch.studyfile import parse_study
from tests.helpers import hpsearch
from tests.helpers import study_doc
from tests.helpers import write_study


def _sections(page: str) -> dict[str, str]:
    """Section title -> its HTML, split at the <h2> headings."""
    parts = re.split(r"<h2>(.*?)</h2>", page)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


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
    for title in (
        "Optimization history",
        "Parameter importances",
        "Parallel coordinates",
        "Slice plots",
        "Contour of the two most important parameters",
        "Learning curves",
        "Validation against test accuracy",
        "Accuracy against training time",
    ):
        assert "plotly-graph-div" in sections[title], title
    assert "single-objective study" in sections["Pareto front"]
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


def test_one_factor_report_draws_each_factor(tmp_path: Path) -> None:
    spec = parse_study(
        study_doc(
            tmp_path,
            sampler="ofat",
            budget=None,
            space={"activation": ["relu", "tanh"], "batch_size": [64, 16]},
            fixed={"epochs": 2},
        ),
        source="t.yaml",
    )
    storage, _, _ = prepare(spec)
    run_worker(spec, storage)
    sections = _sections(build_report(open_study("t", spec.storage)))
    for factor in ("activation", "batch_size"):
        html = sections[f"Factor: {factor}"]
        assert "validation loss" in html and "training seconds" in html
        assert f"{factor}=" in html and "baseline" in html
