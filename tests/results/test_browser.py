"""Page tests in a real headless Chromium (Debian's `chromium`, driven by Playwright)."""

from __future__ import annotations

from collections.abc import Iterator
import os
from pathlib import Path
import re
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.helpers import hpsearch
from tests.helpers import stand_in_study
from tests.helpers import write_study

pytestmark = pytest.mark.browser
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium; fails (does not skip) under CI when it is missing."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        executable = None
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("chromium or playwright missing: run scripts/install-system-deps.sh")
        pytest.skip("chromium or playwright missing")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


def _page(browser: Any) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return page, errors


def _start_dashboard(path: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpsearch", "dashboard", str(path), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    match = re.search(r"at (http://127\.0\.0\.1:\d+/dashboard)", line)
    assert match, line
    return proc, match.group(1)


def _wait_for_text(page: Any, pattern: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = page.inner_text("body")
        if re.search(pattern, text):
            return str(text)
        page.wait_for_timeout(500)
        page.reload()
    raise AssertionError(f"{pattern!r} never appeared; page: {text[:500]}")


def test_dashboard_shows_study_while_workers_write(browser: Any, tmp_path: Path) -> None:
    path = write_study(
        tmp_path,
        budget={"trials": 8},
        fixed={"epochs": 30, "scheduler": "none", "optimizer": "adam"},
    )
    runner = subprocess.Popen(
        [sys.executable, "-m", "hpsearch", "run", str(path), "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not (tmp_path / "hp.db").exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # the dashboard reads an existing database; the run creates it
    dashboard, url = _start_dashboard(path)
    try:
        page, errors = _page(browser)
        page.goto(url)
        _wait_for_text(page, r"1\. t\b")  # "1. t": the study (id 1, name t) is listed
        page.goto(url + "/studies/1/trials")
        _wait_for_text(page, r"\d+ Trials")  # while the run is still writing
        assert runner.wait(timeout=300) == 0
        text = _wait_for_text(page, r"\b8 Trials")
        assert "Complete" in text
        page.screenshot(path=str(tmp_path / "dashboard.png"))
        # the study's settings as flat attributes, and the objective by its name
        page.goto(url + "/studies/1")
        page.wait_for_selector("text=random (seed 0)", timeout=60_000)
        text = page.inner_text("body")
        assert "val_accuracy (maximize, final epoch)" in text
        assert "digits (validation fraction 0.1)" in text
        assert "val_accuracy" in text and "Objective 0" not in text
        page.screenshot(path=str(tmp_path / "dashboard-study.png"), full_page=True)
        assert not errors, errors
    finally:
        runner.kill()
        dashboard.send_signal(signal.SIGINT)
        _, err = dashboard.communicate(timeout=30)
    assert dashboard.returncode == 0 and "dashboard stopped" in err
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000


def test_report_loads_without_errors_and_draws_plots(browser: Any, tmp_path: Path) -> None:
    path = write_study(tmp_path, budget={"trials": 6})
    assert hpsearch("run", str(path), "--no-progress").returncode == 0
    report = tmp_path / "report.html"
    assert hpsearch("report", str(path), "-o", str(report)).returncode == 0
    page, errors = _page(browser)
    page.goto(report.as_uri())
    page.wait_for_selector(".js-plotly-plot .main-svg")
    assert page.locator(".js-plotly-plot").count() >= 8
    assert page.locator(".js-plotly-plot .main-svg").count() >= 8  # drawn, not just placed
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert not errors, errors
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_report_sections_fit_the_page_and_read_right(
    browser: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A study with a conditional param, failures and pruned trials: every figure fits a
    1280 px window, the parallel plot's labels stay inside it; screenshots of the sections
    are left in the test's temp dir."""
    from hpsearch.results.reading import open_study
    from hpsearch.results.report import build_report
    from hpsearch.spec.studyfile import load_spec
    from tests.helpers import CONDITIONAL_SPACE

    keep = {"name": "percentile", "percentile": 80, "n_startup_trials": 3, "n_warmup_steps": 3}
    path = stand_in_study(tmp_path, monkeypatch, trials=80, pruner=keep, space=CONDITIONAL_SPACE)
    report = tmp_path / "report.html"
    report.write_text(build_report(open_study("t", load_spec(str(path)).storage)))
    page, errors = _page(browser)
    page.goto(report.as_uri())
    page.wait_for_selector(".js-plotly-plot .main-svg")
    headings = page.locator("h2").all_inner_texts()
    assert "Failed and pruned" in headings and "Pareto front" not in headings
    width = page.evaluate("window.innerWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # nothing overflows
    for box in (p.bounding_box() for p in page.locator(".js-plotly-plot").all()):
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
    parallel = page.locator("h2:text('Parallel coordinates') + div .js-plotly-plot")
    frame = parallel.bounding_box()
    labels = parallel.locator("text.axis-title")
    assert labels.count() >= 5
    assert frame is not None
    for label in labels.all():
        box = label.bounding_box()
        assert box and frame["x"] <= box["x"]
        assert box["x"] + box["width"] <= frame["x"] + frame["width"]
    texts = [label.text_content() or "" for label in labels.all()]
    assert "momentum" not in texts and not [t for t in texts if "." in t]
    for title in (
        "Slice plots",
        "Parameter importances",
        "Parallel coordinates",
        "Failed and pruned",
    ):
        section = page.locator(f"h2:text('{title}') + *")
        name = title.lower().replace(" ", "-")
        section.screenshot(path=str(tmp_path / f"report-{name}.png"))
        assert (tmp_path / f"report-{name}.png").stat().st_size > 5_000
    failures = page.locator("table.grid").inner_text()
    assert "diverged" in failures
    assert not errors, errors


def test_the_comparison_page_draws_each_studys_best_so_far(
    browser: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = []
    for folder, seed in ((tmp_path / "one", 0), (tmp_path / "two", 1)):
        folder.mkdir()
        sampler = {"name": "random", "seed": seed}
        files.append(str(stand_in_study(folder, monkeypatch, trials=12, sampler=sampler)))
    page_file = tmp_path / "compare.html"
    assert hpsearch("compare", *files, "-o", str(page_file)).returncode == 0
    page, errors = _page(browser)
    page.goto(page_file.as_uri())
    page.wait_for_selector(".js-plotly-plot .main-svg")
    plots = page.locator(".js-plotly-plot")
    assert plots.count() == 2  # by trials, by time
    for plot in plots.all():
        assert plot.locator("g.trace.scatter").count() == 2  # a line per study
        legend = [t.text_content() for t in plot.locator("g.legend text.legendtext").all()]
        assert sorted(legend) == sorted(files)  # one study name in two storages: by file
    width = page.evaluate("window.innerWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # nothing overflows
    assert page.locator("table.grid tr").count() == 3  # the header and a row per study
    assert not errors, errors
