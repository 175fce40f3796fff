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
        retrain.retrain_best(study, out, number=1)  # another model: other bytes
    assert {p.name: p.read_bytes() for p in out.iterdir()} == earlier  # no part left either
