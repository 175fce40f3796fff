"""Retraining the best trial: its model, config and result written together, each whole."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hpsearch.results import retrain
from hpsearch.results.reading import open_study
from hpsearch.spec.studyfile import parse_study
from hpsearch.study.lifecycle import prepare
from hpsearch.study.worker import run_worker
from tests.helpers import study_doc


def test_a_retrain_stopped_while_writing_leaves_the_earlier_model_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = parse_study(study_doc(tmp_path, budget={"trials": 2}), source="t.yaml")
    storage, _, _ = prepare(spec)
    run_worker(spec, storage)
    study, out = open_study("t", spec.storage), tmp_path / "best"
    done = retrain.retrain_best(study, out, number=0)
    assert [p.name for p in done.files] == ["model.pt", "config.yaml", "result.json"]
    earlier = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(earlier) == {"model.pt", "config.yaml", "result.json"}

    def full_disk(value: Any) -> Any:  # the last of the three files cannot be written
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(retrain, "json_safe", full_disk)
    with pytest.raises(OSError, match="No space left"):
        retrain.retrain_best(study, out, number=1, replace=True)  # another model
    assert {p.name: p.read_bytes() for p in out.iterdir()} == earlier  # no part left either


def test_a_trial_that_stopped_early_is_retrained_for_its_best_epochs(tmp_path: Path) -> None:
    # with no validation data left to watch, the retrain trains the epochs that gave the
    # trial's lowest validation loss
    fixed = {"hidden_layers": [256], "optimizer": "adam", "lr": 0.01, "scheduler": "none"}
    fixed.update(epochs=300, early_stopping=2)
    doc = study_doc(tmp_path, budget={"trials": 1}, fixed=fixed, space={"seed": [1]})
    spec = parse_study(doc, source="t.yaml")
    storage, _, _ = prepare(spec)
    run_worker(spec, storage)
    study = open_study("t", spec.storage)
    (trial,) = study.get_trials()
    assert trial.user_attrs["outcome"] == "early_stopped" and trial.state.name == "COMPLETE"
    losses = trial.user_attrs["curves"]["val_loss"]
    best = losses.index(min(losses)) + 1
    assert best < len(losses) < 300
    done = retrain.retrain_best(study, tmp_path / "best")
    assert len(done.result["epochs"]) == best
    assert done.result["config"]["epochs"] == best and done.result["config"]["early_stopping"] == 0
