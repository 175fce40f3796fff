"""Reading a storage without loading it: `studies` sums every study up in a few queries, and
`trials --format csv|json` streams every trial a page at a time, the same rows as a load."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
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
from hpsearch.storage import open_storage
from hpsearch.storage._optuna import queries
from tests.helpers import hpsearch

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
    light = queries._light_trials

    def page(*args: Any, ids: list[int], keys: list[str]) -> Any:
        read.append(len(ids))
        return light(*args, ids=ids, keys=keys)

    def whole(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an export loaded whole trials")

    monkeypatch.setattr(queries, "_light_trials", page)
    monkeypatch.setattr(db.ResilientRDBStorage, "_get_trials", whole)
    monkeypatch.setattr(reading, "EXPORT_PAGE", 3)
    columns, rows = stream_trial_rows(study, sort)
    streamed = list(rows)
    assert streamed == loaded  # the same rows in the same order
    assert [r["number"] for r in streamed][:3] == ([1, 5, 3] if sort == "value" else [0, 1, 2])
    assert set(columns) == {k for row in loaded for k in row}
    if not any_storage_url.startswith("journal:"):  # a journal is one file, read whole
        assert read and max(read) <= 3  # never more than a page at once
    # the text is what a whole-table render gives
    csv_text = "".join(stream_rows(iter(loaded), columns, "csv"))
    whole = format_rows([{c: r.get(c) for c in columns} for r in loaded], "csv")
    assert csv_text == whole + "\n"
    assert "".join(stream_rows(iter(loaded), columns, "json")) == format_rows(loaded, "json")
    assert "".join(stream_rows(iter([]), columns, "json")) == "[]"


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
