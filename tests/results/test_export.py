"""Reading a storage without loading it: `studies` sums every study up in a few queries, and
`trials --format csv|json` streams every trial a page at a time, the same rows as a load; no
reading command holds a large study whole."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
import subprocess
import sys
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState
import pytest

from hpsearch import storage as db
from hpsearch.results import reading
from hpsearch.results.reading import sorted_trials
from hpsearch.results.reading import stream_trial_rows
from hpsearch.results.reading import trial_rows
from hpsearch.results.tables import format_rows
from hpsearch.results.tables import stream_rows
from hpsearch.spec.studyfile import load_spec
from hpsearch.storage import open_storage
from hpsearch.storage._optuna import columns as reader
from tests.helpers import clone_study
from tests.helpers import hpsearch
from tests.helpers import stand_in_study

LR = FloatDistribution(1e-4, 1.0, log=True)
OPT = CategoricalDistribution(["adam", "sgd"])
MOMENTUM = FloatDistribution(0.0, 0.9)


def _study(url: str, direction: str = "minimize") -> optuna.Study:
    """A study of every state: completed trials in shuffled order of value, a conditional
    param, pruned, failed and waiting trials, a failure's reason."""
    study = optuna.create_study(
        study_name="t", storage=open_storage(url, create=True), direction=direction
    )
    for i, value in enumerate([0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8]):
        params: dict[str, Any] = {"lr": 10.0 ** -(i % 4), "optimizer": ["adam", "sgd"][i % 2]}
        dists: dict[str, Any] = {"lr": LR, "optimizer": OPT}
        if i % 2:
            params["momentum"], dists["momentum"] = 0.1 * i, MOMENTUM
        study.add_trial(
            optuna.trial.create_trial(
                params=params, distributions=dists, value=value,
                user_attrs={"train_seconds": 0.5 + i, "test_accuracy": value, "worker": "w"},
            )
        )  # fmt: skip
    study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED, params={"lr": 0.01},
                                              distributions={"lr": LR}))  # fmt: skip
    study.add_trial(
        optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": "boom\nx"})
    )
    study.enqueue_trial({"lr": 0.02})
    return study


@pytest.mark.parametrize("sort", ["value", "number"])
def test_a_streamed_export_is_the_loaded_one_read_a_page_at_a_time(
    any_storage_url: str, sort: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = _study(any_storage_url)
    loaded = trial_rows(study, sorted_trials(study, sort))
    read: list[int] = []
    light = reader.read_trials

    def page(*args: Any, ids: list[int], user_keys: list[str] | None = None) -> Any:
        assert user_keys is not None  # light trials: the attributes a row shows
        read.append(len(ids))
        return light(*args, ids=ids, user_keys=user_keys)

    def whole(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an export loaded whole trials")

    monkeypatch.setattr(reader, "read_trials", page)
    monkeypatch.setattr(db.ResilientRDBStorage, "_get_trials", whole)
    monkeypatch.setattr(db.ResilientRDBStorage, "get_all_trials", whole)
    monkeypatch.setattr(reading, "EXPORT_PAGE", 3)
    columns, rows = stream_trial_rows(study, sort)
    streamed = list(rows)
    assert streamed == loaded  # the same rows in the same order
    assert [r["param.lr"] for r in streamed if r["state"] == "WAITING"] == [0.02]  # queued
    assert [r["number"] for r in streamed][:3] == ([1, 5, 3] if sort == "value" else [0, 1, 2])
    assert set(columns) == {k for row in loaded for k in row}
    if not any_storage_url.startswith("journal:"):  # a journal is one file, read whole
        assert read and max(read) <= 3  # never more than a page at once
    # some states only: the same rows, in the same order, and only theirs read
    read.clear()
    wanted = [r for r in loaded if r["state"] in ("FAIL", "WAITING")]
    assert wanted and list(stream_trial_rows(study, sort, ("fail", "WAITING"))[1]) == wanted
    if not any_storage_url.startswith("journal:"):
        assert sum(read) == len(wanted)
    # the text is what a whole-table render gives
    csv_text = "".join(stream_rows(iter(loaded), columns, "csv"))
    whole = format_rows([{c: r.get(c) for c in columns} for r in loaded], "csv")
    assert csv_text == whole + "\n"
    assert "".join(stream_rows(iter(loaded), columns, "json")) == format_rows(loaded, "json")
    assert "".join(stream_rows(iter([]), columns, "json")) == "[]"


def test_a_queued_points_params_show_before_it_runs(any_storage_url: str) -> None:
    # A grid's or one-factor study's points are queued with their params: `trials --state
    # waiting` shows what is left to run, in a table and in an export.
    study = optuna.create_study(study_name="g", storage=open_storage(any_storage_url, create=True))
    points = [{"lr": 0.1, "activation": "relu"}, {"lr": 0.01, "activation": "tanh"}]
    db.queue_trials(study, [db.QueuedTrial(p) for p in points])
    columns, rows = stream_trial_rows(study, "number")
    assert columns[:5] == ["number", "state", "value", "param.lr", "param.activation"]
    streamed = list(rows)
    shown = [{"lr": r["param.lr"], "activation": r["param.activation"]} for r in streamed]
    assert shown == points
    assert trial_rows(study) == streamed


def test_a_maximized_study_streams_best_first(any_storage_url: str) -> None:
    study = _study(any_storage_url, "maximize")
    _, rows = stream_trial_rows(study)
    assert [r["value"] for r in rows][:3] == [0.9, 0.8, 0.7]


def test_trials_export_and_studies_from_the_command_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hp.db'}"
    study = _study(url)
    optuna.create_study(study_name="other", storage=url, directions=["minimize", "maximize"])
    proc = hpsearch("trials", "t", "--storage", url, "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [int(r["number"]) for r in rows] == [1, 5, 3, 0, 4, 6, 2, 7, 8, 9]
    assert rows[0]["param.momentum"] == "0.1" and rows[3]["param.momentum"] == ""
    assert rows[8]["fail_reason"] == "boom"
    proc = hpsearch("trials", "t", "--storage", url, "--format", "json")
    assert json.loads(proc.stdout) == trial_rows(study, sorted_trials(study))
    proc = hpsearch("studies", "--storage", url, "--format", "json")
    assert json.loads(proc.stdout) == [
        {"study": "t", "trials": 10, "directions": "minimize", "best": [0.1]},
        {"study": "other", "trials": 0, "directions": "minimize,maximize", "best": None},
    ]
    proc = hpsearch("trials", "nope", "--storage", url)
    assert proc.returncode == 2 and "studies there: 't', 'other'" in proc.stderr
    assert db.study_overviews(open_storage(url))[0].best == 0.1


# Runs one command and prints its wall time and peak memory: a child forked from pytest
# itself would count pytest's memory as its own peak.
_MEASURE = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
_, status, usage = os.wait4(proc.pid, 0)
print(usage.ru_maxrss // 1024, os.waitstatus_to_exitcode(status))
"""


def _peak_mb(*command: str, cwd: Path) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, *command], cwd=cwd, capture_output=True, text=True
    )
    peak, status = map(int, out.stdout.split())
    assert status == 0, (command, out.stderr)
    return peak


@pytest.mark.slow
def test_reading_commands_never_hold_a_large_study_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 20 trials run through the worker loop, copied in SQL to 10,000 (the bench's --clone)
    path = stand_in_study(tmp_path, monkeypatch, trials=20, pruner="none")
    url = load_spec(str(path)).storage
    clone_study(url, "t", 10_000)
    load = f"import optuna; optuna.load_study(study_name='t', storage='{url}').get_trials()"
    whole = _peak_mb(sys.executable, "-c", load, cwd=tmp_path)  # every trial, loaded
    cli = [sys.executable, "-m", "hpsearch"]
    for command in (
        ["trials", str(path), "--format", "csv"],
        ["trials", str(path), "--format", "json"],
        ["trials", str(path), "--top", "20"],
        ["studies", "--storage", url],
        ["status", str(path)],
        ["best", str(path)],
    ):
        assert _peak_mb(*cli, *command, cwd=tmp_path) < whole / 4, (command, whole)
    # the report draws a sample of its best and others: 5,000 of the 10,000
    report = ["report", str(path), "-o", str(tmp_path / "r.html")]
    assert _peak_mb(*cli, *report, cwd=tmp_path) < whole * 3 / 4, whole
