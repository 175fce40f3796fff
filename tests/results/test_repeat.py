"""``hpsearch repeat``: the best trials trained again with other seeds, their own seed first,
which gives back each trial's stored value; ranked by the mean; nothing written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hpsearch.errors import ConfigError
from hpsearch.results.reading import open_study
from hpsearch.results.repeat import repeat_best
from hpsearch.spec.studyfile import parse_study
from hpsearch.study.worker import run_study
from tests.helpers import hpsearch
from tests.helpers import study_doc
from tests.helpers import write_study


def _study(tmp_path: Path, **overrides: Any) -> Any:
    spec = parse_study(study_doc(tmp_path, **overrides), source="test.yaml")
    return run_study(spec)[0]


@pytest.mark.parametrize("dropout", [0.0, 0.3], ids=["in populations", "alone"])
def test_each_trials_own_seed_gives_back_its_stored_value(dropout: float, tmp_path: Path) -> None:
    fixed = {"epochs": 2, "scheduler": "none", "optimizer": "adam", "dropout": dropout}
    # one depth: the repeats of both trials are members of one population on a CPU
    space = {
        "lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
        "hidden_layers": {"values": [[16], [24], [32]]},
    }
    study = _study(tmp_path, budget={"trials": 3}, fixed=fixed, space=space)
    found = repeat_best(study, top=2, seeds=3)
    assert found.metric == "val_accuracy" and found.direction == "maximize"
    assert len(found.trials) == 2 and found.best == study.best_trial.number
    for r in found.trials:
        assert r.seeds == (1, 2, 3)
        assert r.values[0] == pytest.approx(r.stored, abs=1e-9)  # its own seed: as stored
        assert r.tests[0] == pytest.approx(
            study.trials[r.number].user_attrs["test_accuracy"], abs=1e-9
        )
        assert r.mean == pytest.approx(sum(r.values) / 3)  # type: ignore[arg-type]
    means = [r.mean for r in found.trials]
    assert means == sorted(means, reverse=True)  # accuracy: the largest mean first
    assert len(study.trials) == 3  # nothing written


def test_repeat_refuses_what_it_cannot_rank(tmp_path: Path) -> None:
    study = _study(tmp_path, budget={"trials": 2})
    with pytest.raises(ConfigError, match="--seeds: at least 2"):
        repeat_best(study, seeds=1)
    with pytest.raises(ConfigError, match="device: allowed: auto, cpu, cuda, cuda:N, mps"):
        repeat_best(study, device="tpu")
    two = _study(
        tmp_path,
        name="two",
        objective=None,
        objectives=["val_accuracy", "param_count"],
        budget={"trials": 2},
    )
    with pytest.raises(
        ConfigError, match="repeat ranks trials by one objective; this study has 2"
    ):
        repeat_best(two)


def test_the_command_prints_the_ranking_and_leaves_the_study_as_it_was(tmp_path: Path) -> None:
    path = write_study(tmp_path, budget={"trials": 3})
    assert hpsearch("run", str(path), "--no-progress").returncode == 0
    url = f"sqlite:///{tmp_path / 'hp.db'}"
    before = [(t.number, t.state, t.value) for t in open_study("t", url).trials]
    proc = hpsearch("repeat", str(path), "--top", "2", "--seeds", "2", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == [
        "trial", "stored", "mean", "sd", "test_accuracy", "test_accuracy_sd",
        "val_accuracy_by_seed",
    ]  # fmt: skip
    assert len(lines) == 4 and lines[-1].startswith(
        "ranked by the mean val_accuracy over seeds 1, 2:"
    )
    assert proc.stderr.startswith("repeating trials ")
    assert [(t.number, t.state, t.value) for t in open_study("t", url).trials] == before
    refused = hpsearch("repeat", str(path), "--seeds", "1")
    assert refused.returncode == 2 and "'--seeds': 1 is not in the range x>=2" in refused.stderr
