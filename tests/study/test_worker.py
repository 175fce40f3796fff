from __future__ import annotations

import json
from pathlib import Path
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import optuna
from optuna.trial import TrialState
import pytest

from hpsearch.errors import ConfigError
from hpsearch.errors import StorageError
from hpsearch.results.reading import open_study
from hpsearch.results.reading import status
from hpsearch.spec.studyfile import load_spec
from hpsearch.spec.studyfile import parse_study
from hpsearch.spec.studyfile import StudySpec
from hpsearch.study import budget
from hpsearch.study import record
from hpsearch.study.budget import finished_count
from hpsearch.study.budget import retry_failed
from hpsearch.study.lifecycle import open_spec_storage
from hpsearch.study.lifecycle import plan
from hpsearch.study.lifecycle import prepare
from hpsearch.study.record import records
from hpsearch.study.worker import fail_stale_trials
from hpsearch.study.worker import run_worker
from tests.helpers import Gate
from tests.helpers import hpsearch
from tests.helpers import stand_in_study
from tests.helpers import start
from tests.helpers import study_doc
from tests.helpers import TARGET_REACHED
from tests.helpers import TARGET_STUDY
from tests.helpers import wait_running
from tests.helpers import write_study

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _spec(tmp_path: Path, trials: int | None = None, **overrides: Any) -> StudySpec:
    return parse_study(study_doc(tmp_path, **overrides), source="test.yaml", trials=trials)


def _run(spec: StudySpec, stop_after: int | None = None) -> optuna.Study:
    storage, study, _ = prepare(spec)
    stop = threading.Event()
    seen: list[int] = []

    def count(trial: Any) -> None:
        seen.append(trial.number)
        if stop_after is not None and len(seen) >= stop_after:
            stop.set()

    run_worker(spec, storage, worker="test", stop=stop, on_trial=count)
    return study


@pytest.mark.parametrize(
    ("sampler", "objectives"),
    [
        ({"name": "random", "seed": 0}, None),
        ({"name": "tpe", "seed": 0, "n_startup_trials": 2}, None),
        ({"name": "gp", "seed": 0, "n_startup_trials": 2}, None),
        ({"name": "cmaes", "seed": 0, "n_startup_trials": 2}, None),
        ({"name": "qmc", "seed": 0}, None),
        (
            {"name": "nsga2", "seed": 0, "population_size": 2},
            [{"metric": "val_accuracy"}, {"metric": "param_count"}],
        ),
        (
            {"name": "tpe", "seed": 0, "n_startup_trials": 2},
            [{"metric": "val_accuracy"}, {"metric": "train_seconds"}],
        ),
    ],
    ids=["random", "tpe", "gp", "cmaes", "qmc", "nsga2", "tpe-multi"],
)
def test_each_sampler_runs_its_budget(
    sampler: dict[str, Any], objectives: list[dict[str, str]] | None, tmp_path: Path
) -> None:
    extra = {"objectives": objectives, "objective": None} if objectives else {}
    doc = study_doc(tmp_path, sampler=sampler, budget={"trials": 5}, **extra)
    if objectives:
        del doc["objective"]
    spec = parse_study(doc, source="test.yaml")
    study = _run(spec)
    trials = study.get_trials()
    assert len(trials) == 5
    assert all(t.state == TrialState.COMPLETE for t in trials)
    for t, r in zip(trials, records(study, trials), strict=True):
        assert 1e-3 <= t.params["lr"] <= 1e-1
        assert 0 <= t.params["hidden_layers.depth"] <= 2
        assert 0.0 <= t.values[0] <= 1.0
        assert t.values[0] == pytest.approx(r.curve("val_accuracy")[-1], rel=1e-4)  # 5 digits
        assert len(r.curve("val_loss")) == 2
        assert r.config is not None and r.config["lr"] == t.params["lr"]
        assert r.config["dataset"] == "digits"  # from the study's base config
        assert "dataset" not in t.user_attrs["config"]  # stored once, with the study
        assert r.test_accuracy is not None
        assert r.worker == "test"
    if objectives:
        assert all(len(t.values) == 2 for t in trials)
    assert max(t.values[0] for t in trials) > 0.5  # something learned


def test_grid_covers_every_point_exactly_once(tmp_path: Path) -> None:
    spec = _spec(
        tmp_path,
        sampler="grid",
        budget=None,
        space={
            "lr": {"type": "float", "low": 0.01, "high": 0.03, "step": 0.01},
            "activation": ["relu", "tanh"],
            "hidden_layers": {"values": [[16], [8, 8]]},
        },
    )
    study = _run(spec)
    params = [json.dumps(t.params, sort_keys=True) for t in study.get_trials()]
    assert len(params) == 12 == len(set(params))
    assert all(t.state == TrialState.COMPLETE for t in study.get_trials())
    _run(spec)  # running a finished grid again adds nothing
    assert len(study.get_trials()) == 12


def test_one_factor_study_runs_baseline_and_each_variation(tmp_path: Path) -> None:
    spec = _spec(
        tmp_path,
        sampler="ofat",
        budget=None,
        space={
            "activation": ["relu", "tanh", "sigmoid"],
            "batch_size": [16, 64],
            "loss": ["nll", "mse"],
        },
        fixed={"epochs": 1, "batch_size": 64},
    )
    study = _run(spec)
    trials = study.get_trials()
    factors = sorted(
        (t.user_attrs["ofat_factor"], str(t.user_attrs["ofat_value"])) for t in trials
    )
    assert factors == [
        ("activation", "sigmoid"),
        ("activation", "tanh"),
        ("baseline", "None"),
        ("batch_size", "16"),
        ("loss", "mse"),
    ]
    baseline = next(r for r in records(study, trials) if r.ofat_factor == "baseline")
    assert baseline.config is not None
    assert baseline.config["activation"] == "relu"
    assert baseline.config["loss"] == "cross_entropy"


def test_resume_and_extend_budget(tmp_path: Path) -> None:
    spec = _spec(tmp_path, trials=5)
    study = _run(spec, stop_after=2)
    assert len([t for t in study.get_trials() if t.state in FINISHED]) == 2
    study = _run(_spec(tmp_path, trials=5))
    assert len(study.get_trials()) == 5
    assert all(t.state in FINISHED for t in study.get_trials())
    study = _run(_spec(tmp_path, trials=8))  # raising the budget adds exactly the difference
    assert len(study.get_trials()) == 8
    assert all(t.state in FINISHED for t in study.get_trials())


def test_a_lowered_budget_runs_only_it_and_a_raised_one_queues_the_rest(tmp_path: Path) -> None:
    # `hpsearch create` queued 6; `run --trials 2` runs 2, not 6: the queued trials beyond
    # the budget are taken off the queue, the last first (as a raised budget adds exactly
    # the difference).
    _, study, queued = prepare(_spec(tmp_path, trials=6))
    assert queued == 6
    storage, study, queued = prepare(_spec(tmp_path, trials=2))
    assert queued == -4
    run_worker(_spec(tmp_path, trials=2), storage, worker="test")
    assert [(t.number, t.state in FINISHED) for t in study.get_trials()] == [(0, True), (1, True)]
    _, _, queued = prepare(_spec(tmp_path, trials=1))  # below what has run: nothing to take
    assert queued == 0
    study = _run(_spec(tmp_path, trials=6))
    assert [t.number for t in study.get_trials() if t.state in FINISHED] == list(range(6))


def test_a_grid_whose_budget_was_lowered_runs_its_first_points_then_the_rest(
    tmp_path: Path,
) -> None:
    grid = {"sampler": "grid", "budget": None, "space": {"lr": [0.1, 0.01, 0.001, 1e-4]}}
    prepare(_spec(tmp_path, **grid))  # 4 points queued
    study = _run(_spec(tmp_path, trials=2, **grid))
    assert [t.params["lr"] for t in study.get_trials()] == [0.1, 0.01]
    study = _run(_spec(tmp_path, **grid))  # the two taken off are queued again, once each
    assert sorted(t.params["lr"] for t in study.get_trials()) == [1e-4, 0.001, 0.01, 0.1]
    assert all(t.state in FINISHED for t in study.get_trials())


def test_pruning_prunes_hopeless_trials(tmp_path: Path) -> None:
    spec = _spec(
        tmp_path,
        sampler="grid",
        budget=None,
        fixed={"epochs": 6, "optimizer": "sgd", "scheduler": "none"},
        pruner={"name": "median", "n_startup_trials": 2, "n_warmup_steps": 0},
        space={"lr": [0.1, 1e-7], "seed": [1, 2]},
    )
    study = _run(spec)
    by_lr: dict[float, list[Any]] = {}
    for t in study.get_trials():
        by_lr.setdefault(t.params["lr"], []).append(t)
    assert all(t.state == TrialState.COMPLETE for t in by_lr[0.1])
    assert all(t.state == TrialState.PRUNED for t in by_lr[1e-7])
    assert all(len(t.user_attrs["curves"]["val_accuracy"]) < 6 for t in by_lr[1e-7])


def test_diverging_and_raising_trials_do_not_stop_the_study(tmp_path: Path) -> None:
    spec = _spec(
        tmp_path,
        sampler="grid",
        budget=None,
        fixed={"epochs": 4, "optimizer": "sgd", "scheduler": "none"},
        space={"lr": [1e4, 0.1], "nesterov": [False, True]},  # nesterov needs momentum > 0
    )
    study = _run(spec)
    trials = study.get_trials()
    assert len(trials) == 4
    failed = [t for t in trials if t.state == TrialState.FAIL]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 1 and complete[0].params == {"lr": 0.1, "nesterov": False}
    reasons = sorted(t.user_attrs["fail_reason"] for t in failed)
    assert reasons[0].startswith("ConfigError: trial") and "nesterov" in reasons[0]
    assert any(r.startswith("diverged: non-finite loss") for r in reasons)


def test_a_model_too_large_for_the_ram_fails_alone_in_its_population(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Allocated, it would fail the whole population or, where Linux overcommits, get the
    # worker killed; the RAM is made small here, so that [512, 512] (300,000 parameters,
    # 2.4 MB of weights and gradients) cannot fit where [8] can.
    from hpsearch.training import trainer

    monkeypatch.setattr(trainer, "available_ram", lambda: 2_000_000)
    spec = _spec(
        tmp_path,
        sampler="grid",
        budget=None,
        population=2,
        space={"hidden_layers": [[8], [512, 512]]},
    )
    trials = {t.params["hidden_layers"]: t for t in _run(spec).get_trials()}
    assert trials["[8]"].state == TrialState.COMPLETE
    big = trials["[512, 512]"]
    assert big.state == TrialState.FAIL
    assert big.user_attrs["fail_reason"].startswith(
        "DeviceError: hidden_layers [512, 512]: 301,066 parameters need 2.4 MB for their "
        "weights and gradients alone; 2.0 MB of RAM is available"
    )


def test_optuna_cli_reads_hpsearch_study(tmp_path: Path) -> None:
    spec = _spec(tmp_path, trials=3)
    _run(spec)
    optuna_cli = shutil.which("optuna", path=str(Path(sys.executable).parent))
    assert optuna_cli is not None
    proc = subprocess.run(
        [optuna_cli, "trials", "--storage", spec.storage, "--study-name", "t", "-f", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len(rows) == 3 and all(r["state"] == "COMPLETE" for r in rows)


@pytest.mark.slow
def test_cli_run_and_inspect(tmp_path: Path) -> None:
    path = write_study(tmp_path, budget={"trials": 3})
    proc = hpsearch("run", str(path), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "done: 3 completed" in proc.stdout
    url = f"sqlite:///{tmp_path / 'hp.db'}"
    listed = json.loads(hpsearch("studies", "--storage", url, "--format", "json").stdout)
    assert [(s["study"], s["trials"], s["directions"]) for s in listed] == [("t", 3, "maximize")]
    table = hpsearch("studies", "--storage", url).stdout.splitlines()
    assert table[0].split() == ["study", "trials", "directions", "best"] and len(table) == 2
    status = json.loads(hpsearch("status", str(path), "--json").stdout)
    assert status["states"]["COMPLETE"] == 3 and status["best"][0]["test_accuracy"] > 0
    rows = json.loads(hpsearch("trials", "t", "--storage", url, "--format", "json").stdout)
    assert sorted(r["number"] for r in rows) == [0, 1, 2]
    assert [r["value"] for r in rows] == sorted((r["value"] for r in rows), reverse=True)
    csv = hpsearch("trials", str(path), "--format", "csv").stdout.splitlines()
    assert csv[0].startswith("number,state,value,") and len(csv) == 4
    best_file = tmp_path / "best.yaml"
    assert hpsearch("best", str(path), "--write-config", str(best_file)).returncode == 0
    best_rows = json.loads(hpsearch("best", str(path), "--format", "json").stdout)
    assert [r["number"] for r in best_rows] == [status["best"][0]["number"]]
    shown = hpsearch("trial", str(path), str(best_rows[0]["number"]), "--json")
    record = json.loads(shown.stdout)
    assert record["state"] == "COMPLETE" and len(record["curves"]["val_accuracy"]) == 2
    assert record["config"]["lr"] == status["best"][0]["params"]["lr"]
    assert hpsearch("trial", str(path), "7").returncode == 2
    trained = hpsearch("train", "--config", str(best_file), "--json")
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout)["config"]["lr"] == status["best"][0]["params"]["lr"]
    out = tmp_path / "model"
    proc = hpsearch("retrain", str(path), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert (out / "model.pt").exists() and (out / "config.yaml").exists()
    assert json.loads((out / "result.json").read_text())["config"]["val_fraction"] == 0.0
    missing = hpsearch("status", "nope", "--storage", url)
    assert missing.returncode == 2 and "no study 'nope'" in missing.stderr
    assert hpsearch("delete", str(path), "--yes").returncode == 0
    assert "no studies" in hpsearch("studies", "--storage", url).stdout


@pytest.mark.slow
def test_ctrl_c_leaves_nothing_running_and_resume_completes(tmp_path: Path) -> None:
    path = write_study(tmp_path, budget={"trials": 6}, fixed={"epochs": 3, "scheduler": "none"})
    db = tmp_path / "hp.db"
    proc = start("run", str(path), "--no-progress", env=Gate(tmp_path).env)
    wait_running(f"sqlite:///{db}")  # held at an epoch end: it cannot finish first
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err
    study = open_study("t", f"sqlite:///{db}")
    assert not study.get_trials(states=(TrialState.RUNNING,))
    assert hpsearch("run", str(path), "--no-progress").returncode == 0
    study = open_study("t", f"sqlite:///{db}")
    finished = [t for t in study.get_trials() if t.state in FINISHED]
    assert len(finished) == 6


def _held_run(tmp_path: Path, *flags: str) -> tuple[Path, str, Gate, subprocess.Popen[str]]:
    """`hpsearch run` of a three-trial study (its file, storage URL, gate and process), once
    its first trial runs, held at an epoch end until the gate opens: it cannot finish first."""
    path = write_study(tmp_path, budget={"trials": 3}, fixed={"epochs": 2, "scheduler": "none"})
    gate, url = Gate(tmp_path), f"sqlite:///{tmp_path / 'hp.db'}"
    proc = start("run", str(path), "--no-progress", *flags, env=gate.env)
    wait_running(url, process=proc)
    return path, url, gate, proc


@pytest.mark.slow
def test_a_timeout_on_the_command_line_stops_starting_trials_and_says_so(
    tmp_path: Path,
) -> None:
    path, url, gate, proc = _held_run(tmp_path, "--timeout", "1")
    time.sleep(1.5)  # past the timeout, counted from the worker's start, before it claimed
    gate.open()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "the timeout stopped starting trials with 2 of the budget left; run again" in err
    states = [t.state for t in open_study("t", url).get_trials()]
    assert states == [TrialState.COMPLETE, TrialState.WAITING, TrialState.WAITING]
    assert hpsearch("run", str(path), "--timeout", "0").returncode == 2  # must be > 0


@pytest.mark.slow
def test_hpsearch_stop_lets_the_running_trial_finish_and_run_goes_on_after(
    tmp_path: Path,
) -> None:
    path, url, gate, proc = _held_run(tmp_path)  # its first trial cannot finish yet
    asked = hpsearch("stop", str(path))
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout.splitlines()[0] == (
        "asked every worker of study 't' to stop: its running trials (1) finish first "
        "(`--now`: stop them too)"
    )
    shown = hpsearch("status", "t", "--storage", url)
    assert re.search(
        r"^stopping    `hpsearch stop` at .* UTC by .*; running trials: 1;", shown.stdout, re.M
    )
    gate.open()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out.startswith("done: 1 completed, 0 pruned, 0 failed in this run")
    assert re.search(
        r"stopped early: `hpsearch stop` at .* UTC by \S+; 2 trials of the budget left: run "
        r"the same command again to go on",
        err,
    )
    assert _states(open_study("t", url)) == ["C", "W", "W"]
    joined = hpsearch("worker", str(path))  # joins later: stops at once
    assert (
        joined.returncode == 0
        and "0 completed, 0 pruned, 0 failed; stopped early: `hpsearch stop` at " in joined.stdout
    )
    as_json = json.loads(hpsearch("status", str(path), "--json").stdout)
    assert as_json["stop"]["now"] is False and as_json["stop"]["by"]
    checked = hpsearch("check", str(path), "--no-train")
    assert "; a start withdraws the stop request (`hpsearch stop` at " in checked.stdout
    again = hpsearch("run", str(path), "--no-progress")  # starting it withdraws the request
    assert again.returncode == 0 and again.stdout.startswith("done: 2 completed"), again.stderr
    assert "WARNING study t: withdrew the stop request (`hpsearch stop` at " in again.stderr
    assert "stopping" not in hpsearch("status", str(path)).stdout
    assert "stop" not in json.loads(hpsearch("status", str(path), "--json").stdout)
    missing = hpsearch("stop", "nope", "--storage", url)
    assert missing.returncode == 2 and missing.stderr.startswith("error: no study 'nope'")


@pytest.mark.slow
def test_a_study_deleted_while_it_runs_stops_its_worker_in_one_line(tmp_path: Path) -> None:
    path, _, gate, proc = _held_run(tmp_path)  # it reports again once released
    assert hpsearch("delete", str(path), "--yes").returncode == 0
    gate.open()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert err.splitlines()[-1] == (
        "error: study 't' was deleted while this worker ran it; this worker stopped"
    )
    assert "Traceback" not in err and "failed on worker" not in err


def test_journal_file_storage(tmp_path: Path) -> None:
    spec = _spec(tmp_path, trials=3, storage=f"journal:{tmp_path / 'hp.log'}")
    study = _run(spec)
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE] * 3
    assert (tmp_path / "hp.log").stat().st_size > 0


def test_time_budget_stops_starting_trials(tmp_path: Path) -> None:
    spec = _spec(
        tmp_path,
        trials=50,
        budget={"trials": 50, "timeout": 1},
        fixed={"epochs": 20, "scheduler": "none", "optimizer": "adam"},
    )
    study = _run(spec)
    finished = [t for t in study.get_trials() if t.state in FINISHED]
    assert 1 <= len(finished) < 50
    # the rest of the budget stays queued: running the study again carries on
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 50 - len(finished)


@pytest.mark.mnist
def test_tpe_study_on_an_mnist_subset(mnist_dir: str, tmp_path: Path) -> None:
    spec = _spec(
        tmp_path,
        trials=4,
        dataset="mnist",
        data_dir=mnist_dir,
        sampler={"name": "tpe", "seed": 0, "n_startup_trials": 2},
        fixed={"epochs": 2, "train_subset": 4000, "optimizer": "adam", "scheduler": "none"},
        space={
            "lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
            "hidden_layers": {"values": [[64], [128, 64]]},
        },
    )
    study = _run(spec)
    trials = study.get_trials()
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    assert study.best_value > 0.9
    assert all(r.config and r.config["dataset"] == "mnist" for r in records(study, trials))
    assert all(t.user_attrs["test_accuracy"] > 0.85 for t in trials)


SEEDED_SAMPLERS = [
    {"name": "random", "seed": 0},
    {"name": "tpe", "seed": 0},
    {"name": "gp", "seed": 0},
    {"name": "cmaes", "seed": 0},
    {"name": "qmc", "seed": 0},
    {"name": "nsga2", "seed": 0},
]


def _points(study: optuna.Study) -> list[str]:
    return [json.dumps(t.params, sort_keys=True) for t in study.get_trials()]


@pytest.mark.parametrize("sampler", SEEDED_SAMPLERS, ids=[s["name"] for s in SEEDED_SAMPLERS])
def test_resume_and_extend_never_redraw_a_point(sampler: dict[str, Any], tmp_path: Path) -> None:
    _run(_spec(tmp_path, trials=4, sampler=sampler))
    study = _run(_spec(tmp_path, trials=8, sampler=sampler))  # a new sampler, same file seed
    points = _points(study)
    assert len(points) == 8
    assert len(set(points)) == 8, points


@pytest.mark.parametrize("sampler", SEEDED_SAMPLERS, ids=[s["name"] for s in SEEDED_SAMPLERS])
def test_same_seed_from_scratch_gives_the_same_trials(
    sampler: dict[str, Any], tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _run(_spec(tmp_path / "a", trials=3, sampler=sampler))
    second = _run(_spec(tmp_path / "b", trials=3, sampler=sampler))
    assert _points(first) == _points(second)


def test_interrupted_run_resumes_with_new_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stop (Ctrl-C, SIGTERM) requested in the first epoch of the third trial: that trial
    # fails as interrupted and is queued again with its point; the resume runs it once more
    # and draws new points for the rest, never one already drawn.
    import hpsearch.study.worker as study_module

    monkeypatch.setattr(study_module, "_STOP", threading.Event())  # this test's own flag
    real = study_module.train_population
    calls: list[int] = []

    def interrupted(configs: Any, on_epoch: Any = None) -> Any:
        calls.append(len(configs))

        def epoch(i: int, stats: Any) -> bool:
            if len(calls) == 3:
                study_module.request_stop()
            return bool(on_epoch(i, stats))

        return real(configs, epoch)

    monkeypatch.setattr(study_module, "train_population", interrupted)
    spec = _spec(tmp_path, trials=6)
    storage, study, _ = prepare(spec)
    stats = run_worker(spec, storage, worker="test")
    assert stats.interrupted and stats.completed + stats.pruned == 2
    cut = study.get_trials()[2]
    assert cut.state == TrialState.FAIL and cut.user_attrs["fail_reason"] == "interrupted"
    monkeypatch.setattr(study_module, "_STOP", threading.Event())  # the next run's process
    monkeypatch.setattr(study_module, "train_population", real)
    study = _run(_spec(tmp_path, trials=6))
    done = [t for t in study.get_trials() if t.state != TrialState.FAIL]
    assert len(done) == 6 and all(t.state.is_finished() for t in done)
    points = [json.dumps(t.params, sort_keys=True) for t in done]
    assert len(set(points)) == 6  # no point drawn twice
    assert json.dumps(cut.params, sort_keys=True) in points  # the cut one ran again


def test_a_changed_study_file_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    _run(_spec(tmp_path, trials=2))
    changed = _spec(
        tmp_path,
        trials=4,
        objective={"metric": "val_accuracy", "reduce": "best"},
        space={
            "lr": {"type": "float", "low": 1e-3, "high": 0.5, "log": True},
            "activation": ["relu", "silu"],
        },
    )
    with pytest.raises(ConfigError) as caught:
        prepare(changed)
    message = str(caught.value)
    assert "test.yaml: study 't'" in message and "new `name:`" in message
    assert "objectives[0].reduce: final -> best" in message
    assert "space.lr.high: 0.1 -> 0.5" in message
    assert 'space.activation: (absent) -> {"type": "categorical"' in message
    assert re.search(r'space\.hidden_layers: \{"type": "layers".*\.\.\. -> \(absent\)', message)
    assert "fixed.activation: relu -> (absent)" in message  # now searched, no longer fixed
    storage = f"sqlite:///{tmp_path / 'hp.db'}"
    assert len(open_study("t", storage).get_trials()) == 2  # nothing queued
    # the budget, timeout, sampler, pruner and heartbeat may change freely
    free = _spec(
        tmp_path,
        trials=3,
        sampler={"name": "tpe", "seed": 5},
        pruner={"name": "median"},
        heartbeat={"interval": 2, "grace_period": 9},
    )
    assert len(_run(free).get_trials()) == 3


def test_repeated_same_error_stops_the_worker_and_retry_requeues(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hpsearch.study.worker as study_module

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    spec = _spec(tmp_path, trials=6)
    storage, study, _ = prepare(spec)
    monkeypatch.setattr(study_module, "train_population", broken)
    stats = run_worker(spec, storage, worker="test")
    assert stats.broken is not None and "illegal memory access" in stats.broken
    states = [t.state for t in study.get_trials()]
    assert states.count(TrialState.FAIL) == 3 and states.count(TrialState.WAITING) == 3
    monkeypatch.undo()  # the environment is fixed
    assert retry_failed(study) == [0, 1, 2]
    assert retry_failed(study) == []  # each failed trial is queued once
    stats = run_worker(spec, storage, worker="test")
    assert stats.broken is None and stats.completed == 6
    trials = study.get_trials()
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 6
    assert finished_count(study) == 6  # the retried failures no longer count


def test_divergence_does_not_trip_the_breaker(tmp_path: Path) -> None:
    spec = _spec(
        tmp_path,
        trials=4,
        fixed={"epochs": 2, "optimizer": "sgd", "scheduler": "none"},
        space={"lr": {"type": "float", "low": 1e5, "high": 1e6, "log": True}},
    )
    storage, study, _ = prepare(spec)
    stats = run_worker(spec, storage, worker="test")
    assert stats.broken is None and stats.failed == 4 and stats.all_failed
    assert all(t.user_attrs["fail_reason"].startswith("diverged") for t in study.get_trials())


@pytest.mark.slow
def test_heartbeat_keeps_beating_under_a_cpu_hog(tmp_path: Path, cpu_hog: None) -> None:
    # One trial that cannot finish (100,000 epochs) on a loaded machine; another process
    # checks for stale trials until it has watched the trial run for three grace periods
    # (3 s each), then stops the run: the trial was never found stale, and is queued again
    # as interrupted.
    path = write_study(
        tmp_path,
        budget={"trials": 1},
        fixed={"epochs": 100_000, "batch_size": 16, "scheduler": "none", "optimizer": "adam"},
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpsearch", "run", str(path), "--no-progress", "--threads", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    storage = f"sqlite:///{tmp_path / 'hp.db'}"
    grace = _spec(tmp_path).grace_period
    watched: list[float] = []  # when a check found the trial running
    try:
        while not watched or watched[-1] - watched[0] < 3 * grace:
            assert proc.poll() is None, proc.communicate()
            try:
                study = optuna.load_study(
                    study_name="t", storage=open_spec_storage(_spec(tmp_path))
                )
            except (KeyError, StorageError):  # not created yet
                time.sleep(0.2)
                continue
            assert fail_stale_trials(study) == 0
            if any(t.state == TrialState.RUNNING for t in study.get_trials()):
                watched.append(time.monotonic())
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
    first = open_study("t", storage).get_trials()[0]
    assert first.state == TrialState.FAIL and first.user_attrs["fail_reason"] == "interrupted"


def test_objectives_are_named_and_the_study_labelled_at_creation_and_on_resume(
    tmp_path: Path,
) -> None:
    from hpsearch import storage as db

    spec = parse_study(
        study_doc(tmp_path, pruner={"name": "median", "n_startup_trials": 2}), source="t.yaml"
    )
    prepare(spec)
    study = open_study("t", spec.storage)
    assert study.metric_names == ["val_accuracy"]  # not "Objective 0" in the dashboard
    attrs = study.user_attrs
    assert attrs["sampler"] == "random (seed 0)"
    assert attrs["pruner"].startswith("median (n_startup_trials 2")
    assert attrs["dataset"] == "digits (validation fraction 0.1)"
    assert attrs["objective"] == "val_accuracy (maximize, final epoch)"
    assert attrs["file"] == "t.yaml" and set(attrs) == {
        "sampler",
        "pruner",
        "dataset",
        "objective",
        "file",
    }  # the machine-readable summary is a system attribute, out of the dashboard's table
    assert record.study_summary(study) is not None and record.base_config(study)
    # a study created before names and labels existed gets them when it is resumed
    db.set_study_system_attr(study, "study:metric_names", None)
    writable = open_study("t", spec.storage, read_only=False)
    writable.set_user_attr("sampler", "")
    assert open_study("t", spec.storage).metric_names is None
    prepare(spec)
    study = open_study("t", spec.storage)
    assert study.metric_names == ["val_accuracy"]
    assert study.user_attrs["sampler"] == "random (seed 0)"


def test_a_worker_looks_for_stale_trials_once_a_heartbeat_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stale trial needs a whole grace period of missed beats: a check (a query) before
    # every trial would find none sooner. The first check comes before the first trial.
    from hpsearch import storage as db
    from hpsearch.study import worker as study_module

    checks: list[int] = []
    check = study_module.fail_stale_trials
    monkeypatch.setattr(study_module, "fail_stale_trials", lambda s: checks.append(1) or check(s))
    monkeypatch.setattr(db, "heartbeat_interval", lambda s: 3600)
    stand_in_study(tmp_path, monkeypatch, trials=12)
    study = open_study("t", f"sqlite:///{tmp_path / 'hp.db'}")
    assert len(study.trials) == 12 and all(t.state.is_finished() for t in study.trials)
    assert checks == [1]


def _widths_study(tmp_path: Path, widths: list[int], **budget: Any) -> StudySpec:
    """A grid over one hidden layer's width, queued in the order listed, selecting on the
    parameter count: every trial's value is known before it runs."""
    return _spec(
        tmp_path,
        sampler="grid",
        objective="param_count",
        budget=budget or None,
        fixed={"epochs": 1, "scheduler": "none", "optimizer": "adam", "lr": 0.01},
        space={"hidden_layers": {"values": [[w] for w in widths]}},
    )


def _states(study: optuna.Study) -> list[str]:
    return [t.state.name[0] for t in sorted(study.get_trials(), key=lambda t: t.number)]


def test_a_reached_target_stops_the_study_before_its_budget(tmp_path: Path) -> None:
    # 64 inputs, 10 classes: width 16 has 64 * 16 + 16 + 16 * 10 + 10 = 1,210 params
    spec = _widths_study(tmp_path, [32, 16, 64, 4, 8], target=1210)
    storage, study, _ = prepare(spec)
    stats = run_worker(spec, storage, worker="test")
    assert _states(study) == ["C", "C", "W", "W", "W"]  # the rest stays queued
    assert stats.stopped == "trial 1 reached budget.target (1210 <= 1210)"
    assert budget.stop_reason(study, spec) == stats.stopped  # what a launcher reads after
    assert status(study)["ended"] == stats.stopped  # read without the study file
    again = run_worker(spec, storage, worker="test")  # a resume starts nothing
    assert again.completed == 0 and again.stopped == stats.stopped
    # the file's target loosened: the queued trials run, up to the new target
    lower = _widths_study(tmp_path, [32, 16, 64, 4, 8], target=500)
    ended = run_worker(lower, storage, worker="test")
    assert ended.completed == 2 and status(study)["ended"] == ended.stopped
    assert _states(study) == ["C", "C", "C", "C", "W"]  # width 4: 310 params
    prepare(lower)  # started again: what ended it is forgotten until it ends again
    assert "ended" not in status(study)


def test_a_target_of_a_maximized_objective_is_reached_from_below(tmp_path: Path) -> None:
    spec = _spec(tmp_path, budget={"trials": 4, "target": 0.0})  # any accuracy reaches it
    storage, study, _ = prepare(spec)
    stats = run_worker(spec, storage, worker="test")
    assert _states(study) == ["C", "W", "W", "W"]
    assert stats.stopped is not None and ">= 0)" in stats.stopped


def test_a_plateau_stops_the_study_when_no_trial_beats_the_best(tmp_path: Path) -> None:
    spec = _widths_study(tmp_path, [8, 16, 8 + 1, 4, 32, 64], plateau=2)
    storage, study, _ = prepare(spec)
    stats = run_worker(spec, storage, worker="test")
    # trial 0 (8 units) is best; 1 and 2 do not beat it: two after it, the plateau
    assert _states(study) == ["C", "C", "C", "W", "W", "W"]
    assert stats.stopped == (
        "2 trials after the best (trial 0, 610) finished without beating it (budget.plateau 2)"
    )
    # a larger plateau goes on: trial 3 (4 units) beats the best, then 4 and 5 do not
    assert status(study)["ended"] == stats.stopped
    wider = _widths_study(tmp_path, [8, 16, 8 + 1, 4, 32, 64], plateau=3)
    assert run_worker(wider, storage, worker="test").completed == 3
    assert budget.stop_reason(study, wider) is None  # 2 after the best: the budget ended it
    assert "ended" not in status(study)  # trials finished since: it went on


def test_a_stop_request_ends_every_worker_before_its_next_trial(tmp_path: Path) -> None:
    spec = _spec(tmp_path, trials=4)
    storage, study, _ = prepare(spec)
    asked: list[budget.StopRequest] = []
    stats = run_worker(
        spec, storage, worker="test", on_trial=lambda t: asked.append(budget.ask_to_stop(study))
    )
    assert stats.completed + stats.pruned == 1 and not stats.interrupted
    assert _states(study)[1:] == ["W", "W", "W"]  # the rest stays queued
    assert stats.stopped == asked[0].reason
    assert re.fullmatch(
        r"`hpsearch stop` at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC by .+@.+", asked[0].reason
    )
    assert budget.stop_reason(study, spec) == stats.stopped  # what a launcher reads after
    assert budget.stop_reason(study, spec, requests=False) is None
    assert plan(spec).stopped is None  # starting it again withdraws the request
    assert plan(spec).request == asked[0]  # which `check` names
    later = run_worker(spec, storage, worker="later")  # a worker that joins later
    assert later.completed + later.pruned == 0 and later.stopped == stats.stopped
    _, study, _ = prepare(spec)  # run, launch or create
    assert budget.stop_request(study) is None
    again = run_worker(spec, storage, worker="test")
    assert again.completed + again.pruned == 3 and again.stopped is None


def test_a_stop_request_written_by_hand_is_still_one(tmp_path: Path) -> None:
    from hpsearch import storage as db

    spec = _spec(tmp_path, trials=2)
    storage, study, _ = prepare(spec)
    db.set_study_system_attr(study, record.STOP_REQUEST, {"at": "soon", "now": "yes"})
    request = budget.stop_request(study)
    assert request is not None and not request.now  # only `true` stops running trials
    assert request.reason == "`hpsearch stop` at 1970-01-01 00:00:00 UTC by ?"
    assert run_worker(spec, storage, worker="test").stopped == request.reason
    db.set_study_system_attr(study, record.STOP_REQUEST, "stop")  # not a request's shape
    assert budget.stop_request(study) is None


def test_stop_now_queues_the_running_trials_again_at_their_next_epoch_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Asked in the second epoch of the second population (two trials): both stop there, are
    # failed as stopped and queued again; the worker ends as asked, not as interrupted.
    import hpsearch.study.worker as study_module

    monkeypatch.setattr(study_module, "STOP_POLL_S", 0.0)
    real = study_module.train_population
    epochs: list[int] = []  # the last epoch each population reached

    def asked(configs: Any, on_epoch: Any = None) -> Any:
        epochs.append(0)

        def epoch(i: int, stats: Any) -> bool:
            epochs[-1] = max(epochs[-1], stats.epoch)  # members of other depths train apart
            if len(epochs) == 2 and stats.epoch == 2:
                budget.ask_to_stop(study, now=True)
            return bool(on_epoch(i, stats))

        return real(configs, epoch)

    monkeypatch.setattr(study_module, "train_population", asked)
    spec = _spec(tmp_path, trials=6, population=2, fixed={"epochs": 5, "scheduler": "none"})
    storage, study, _ = prepare(spec)
    stats = run_worker(spec, storage, worker="test")
    assert epochs == [5, 2] and stats.completed + stats.pruned == 2
    assert not stats.interrupted and stats.stopped is not None
    assert stats.stopped.startswith("`hpsearch stop --now` at ")
    cut = study.get_trials()[2:4]
    assert [t.state for t in cut] == [TrialState.FAIL] * 2
    assert {t.user_attrs["fail_reason"] for t in cut} == {"stopped by `hpsearch stop --now`"}
    assert [t.number for t in study.get_trials(states=(TrialState.RUNNING,))] == []
    assert finished_count(study) == 2  # the stopped trials use no budget: queued again
    monkeypatch.setattr(study_module, "train_population", real)
    prepare(spec)
    assert run_worker(spec, storage, worker="test").stopped is None
    assert finished_count(study) == 6
    again = {json.dumps(t.params, sort_keys=True) for t in study.get_trials()[6:]}
    assert {json.dumps(t.params, sort_keys=True) for t in cut} <= again  # they ran again


def test_stop_now_is_read_at_most_once_a_poll_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Read at the first epoch end and then not for an hour: a request made in the trial's
    # second epoch lets it finish, and stops the worker before its next trial.
    import hpsearch.study.worker as study_module

    monkeypatch.setattr(study_module, "STOP_POLL_S", 3600.0)
    real = study_module.train_population

    def asked(configs: Any, on_epoch: Any = None) -> Any:
        def epoch(i: int, stats: Any) -> bool:
            if stats.epoch == 2:
                budget.ask_to_stop(study, now=True)
            return bool(on_epoch(i, stats))

        return real(configs, epoch)

    monkeypatch.setattr(study_module, "train_population", asked)
    spec = _spec(tmp_path, trials=3, fixed={"epochs": 4, "scheduler": "none"})
    storage, study, _ = prepare(spec)
    reads: list[int] = []
    read = budget.stop_request
    monkeypatch.setattr(budget, "stop_request", lambda s: reads.append(1) or read(s))
    stats = run_worker(spec, storage, worker="test")
    assert _states(study)[1:] == ["W", "W"] and study.get_trials()[0].state in FINISHED
    assert stats.stopped is not None and stats.stopped.startswith("`hpsearch stop --now`")
    assert len(reads) == 3  # before the claim, at epoch 1, before the next claim


def test_run_check_and_launch_say_that_a_study_stopped_early(tmp_path: Path) -> None:
    path = write_study(tmp_path, **TARGET_STUDY)
    proc = hpsearch("run", str(path), "--no-progress")
    reason = TARGET_REACHED
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("done: 2 completed, 0 pruned, 0 failed in this run")
    assert f"stopped early: {reason}; 2 trials of the budget left: loosen it" in proc.stderr
    checked = hpsearch("check", str(path), "--no-train")
    assert checked.returncode == 0 and f"; it ends at once: {reason}" in checked.stdout
    shown = hpsearch("status", "t", "--storage", f"sqlite:///{tmp_path / 'hp.db'}")
    assert f"\nended       {reason}: loosen it in the study file to go on\n" in shown.stdout
    assert "budget 4 trials, target 1210, population 1" in checked.stdout
    launched = hpsearch("launch", str(path), "--workers", "2", "--no-progress")
    assert launched.returncode == 0, launched.stderr
    assert f"stopped early: {reason}; 2 trials of the budget left" in launched.stderr
    assert "the budget was not reached" not in launched.stderr
    joined = hpsearch("worker", str(path))
    assert joined.returncode == 0, joined.stderr
    assert joined.stdout.rstrip().endswith(
        f"0 completed, 0 pruned, 0 failed; stopped early: {reason}"
    )


def test_a_target_reached_by_the_last_trial_is_no_early_stop(tmp_path: Path) -> None:
    last = {"hidden_layers": {"values": [[32], [64], [16]]}}
    path = write_study(tmp_path, **{**TARGET_STUDY, "space": last})
    proc = hpsearch("run", str(path), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("done: 3 completed") and "stopped early" not in proc.stderr
    joined = hpsearch("worker", str(path))  # nothing left to run: nothing ended early
    assert joined.returncode == 0, joined.stderr
    assert joined.stdout.rstrip().endswith("0 completed, 0 pruned, 0 failed"), joined.stdout


def test_a_trial_over_budget_trial_timeout_is_pruned_at_the_end_of_that_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # stand-in epochs take 0.30-0.35 s by the trainer's clock: 1.1 s is passed in epoch 4
    def run(epochs: int) -> optuna.Study:
        folder = tmp_path / f"epochs{epochs}"
        folder.mkdir()
        path = stand_in_study(
            folder,
            monkeypatch,
            trials=6,
            pruner={"name": "none"},
            budget={"trials": 6, "trial_timeout": 1.1},
            fixed={"epochs": epochs, "scheduler": "none", "optimizer": "adam"},
        )
        return optuna.load_study(study_name="t", storage=load_spec(str(path)).storage)

    slow = run(epochs=6)
    stopped = [t for t in slow.trials if t.user_attrs.get("outcome") == "timed_out"]
    diverged = [t for t in slow.trials if t.state == TrialState.FAIL]  # the stand-in's 5%
    assert len(stopped) + len(diverged) == 6 and stopped
    for trial in stopped:
        assert trial.state == TrialState.PRUNED
        seconds = trial.user_attrs["curves"]["seconds"]
        assert len(seconds) == 4 and sum(seconds[:3]) <= 1.1 < sum(seconds)
        assert sorted(trial.intermediate_values) == [1, 2, 3, 4]  # every epoch reported
    from hpsearch.results.report import build_report

    page = build_report(slow)
    assert f"({len(stopped)} out of budget.trial_timeout)" in page
    # a trial whose last epoch passes the limit has nothing left to save: it completes
    last = run(epochs=4)
    assert not [t for t in last.trials if t.user_attrs.get("outcome") == "timed_out"]
    assert {t.state for t in last.trials} <= {TrialState.COMPLETE, TrialState.FAIL}


def test_check_shows_the_time_and_size_a_trial_may_take(tmp_path: Path) -> None:
    limits = {"trials": 2, "trial_timeout": 90, "max_params": 100000}
    path = write_study(tmp_path, budget=limits)
    checked = hpsearch("check", str(path), "--no-train")
    assert checked.returncode == 0, checked.stderr
    assert "budget 2 trials, 90 s a trial, at most 100,000 params, population 1" in (
        checked.stdout
    )


def test_a_network_over_budget_max_params_is_pruned_before_it_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hpsearch.study import worker as worker_module

    trained: list[list[int]] = []
    real = worker_module.train_population

    def train(configs: Any, on_epoch: Any = None) -> Any:
        trained.extend(list(c.hidden_layers) for c in configs)
        return real(configs, on_epoch)

    monkeypatch.setattr(worker_module, "train_population", train)
    # digits: width 8 has 64 * 8 + 8 + 8 * 10 + 10 = 610 params, 16 has 1,210, 64 has 4,810
    spec = _widths_study(tmp_path, [8, 64, 16], max_params=1210)
    storage, study, _ = prepare(spec)
    stats = run_worker(spec, storage, worker="test")
    assert (stats.completed, stats.pruned, stats.failed) == (2, 1, 0)
    assert trained == [[8], [16]]  # the large one never reached the trainer
    large = study.trials[1]
    assert large.state == TrialState.PRUNED and large.params == {"hidden_layers": "[64]"}
    assert large.user_attrs["outcome"] == "too_large"
    assert large.user_attrs["param_count"] == 4810 and "curves" not in large.user_attrs
    assert study.trials[2].user_attrs["param_count"] == 1210  # at the limit: trained
    from hpsearch.results.report import build_report

    assert "(1 over budget.max_params, never trained)" in build_report(study)
    from hpsearch.results.reading import trial_rows

    rows = trial_rows(study)  # what `trials` lists and exports
    assert [(r["state"], r["outcome"]) for r in rows] == [
        ("COMPLETE", "completed"),
        ("PRUNED", "too_large"),
        ("COMPLETE", "completed"),
    ]
