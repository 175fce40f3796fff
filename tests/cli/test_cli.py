from __future__ import annotations

import json
import math
import os
from pathlib import Path
import re
import socket
import subprocess
import sys
from typing import Any
from typing import cast

import click
import optuna
from optuna.trial import TrialState
import pytest
import torch
import yaml

from hpsearch import __version__ as hpsearch_version
from hpsearch.cli.options import precision_option
from hpsearch.results.reading import open_study
from hpsearch.spec.choices import PRECISIONS
from hpsearch.study.record import records
from tests.helpers import BROKEN_SPACE
from tests.helpers import CONDITIONAL_SPACE
from tests.helpers import EDGE
from tests.helpers import EDGE_STUDY
from tests.helpers import hpsearch
from tests.helpers import stand_in_study
from tests.helpers import study_doc
from tests.helpers import write_study


def test_train_defaults_on_digits() -> None:
    proc = hpsearch("train", "--set", "epochs=3")
    assert proc.returncode == 0, proc.stderr
    assert "epoch   3/3" in proc.stderr
    assert "test_accuracy" in proc.stdout


def test_train_json_and_overrides(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("optimizer: adam\nlr: 3e-3\nscheduler: none\n")
    proc = hpsearch(
        "train",
        "--config",
        str(config),
        "--set",
        "hidden_layers=[32,16]",
        "--set",
        "epochs=4",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["config"]["hidden_layers"] == [32, 16]
    assert result["config"]["optimizer"] == "adam" and result["config"]["lr"] == 0.003
    assert len(result["epochs"]) == 4 and result["epochs"][-1]["val_accuracy"] > 0.8


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "hidden_sizes=[3]"], "hidden_sizes: unknown setting (did you mean"),
        (["--set", "epochs=many"], "epochs: expected an integer, got 'many'"),
        (["--set", "hidden_layers=[64,-2]"], "hidden_layers: widths must be positive"),
        (["--set", "activation=swish"], "activation: unknown 'swish'; allowed: relu, leaky_relu"),
        (["--set", "lr"], "expected KEY=VALUE"),
        (["--dataset", "mnist", "--data-dir", "{tmp}"], "MNIST files missing in {tmp}"),
        (
            ["--dataset", "data/my.csv"],
            "unknown 'data/my.csv'; allowed: digits, mnist, fashion-mnist, synthetic; your own "
            "data: {{path: FILE, target: COLUMN}} in a study file, --data FILE --target COLUMN",
        ),
        (["--config", "{tmp}/none.yaml"], "none.yaml: cannot read file"),
    ],
)
def test_train_bad_input(args: list[str], message: str, tmp_path: Path) -> None:
    proc = hpsearch("train", *[a.format(tmp=tmp_path) for a in args])
    assert proc.returncode == 2
    assert message.format(tmp=tmp_path) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_console_script_and_version() -> None:
    # the `hpsearch` entry point that pip installed beside this interpreter, as a user runs it
    script = Path(sys.executable).parent / "hpsearch"
    assert script.is_file(), f"no console script at {script}"
    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and f"version {hpsearch_version}" in proc.stdout
    proc = subprocess.run([str(script), "trials"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Missing argument 'STUDY'" in proc.stderr


def _imported_modules(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Runs the CLI with ``-X importtime``; returns the process and every module it imported."""
    env = {**os.environ, "HPSEARCH_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "hpsearch", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return proc, modules


def test_reading_commands_start_without_torch_or_plotly(tmp_path: Path) -> None:
    path = write_study(tmp_path, budget={"trials": 1}, fixed={"epochs": 1})
    other = tmp_path / "other.yaml"  # another study in the same storage, to compare with
    doc = {**study_doc(tmp_path, budget={"trials": 1}, fixed={"epochs": 1}), "name": "u"}
    other.write_text(yaml.safe_dump(doc))
    for study in (path, other):
        assert hpsearch("run", str(study), "--no-progress").returncode == 0
    commands = [
        ["compare", str(path), str(other)],
        ["--help"],
        ["studies", "--storage", f"sqlite:///{tmp_path / 'hp.db'}"],
        ["status", str(path)],
        ["best", str(path)],
        ["trials", str(path)],
        ["trial", str(path), "0"],
        ["schema"],
        ["stop", str(path)],
        ["delete", str(path), "--yes"],
    ]
    for args in commands:
        proc, modules = _imported_modules(*args, cwd=tmp_path)
        assert proc.returncode == 0, (args, proc.stderr[-2000:])
        assert "optuna" in modules or args in (["--help"], ["schema"])  # the probe works
        heavy = {m for m in modules if m.split(".")[0] in ("torch", "plotly", "sklearn")}
        assert not heavy, (args, sorted(heavy)[:5])
        if args[0] not in ("schema", "delete"):  # read by name and storage, no schema
            assert "hpsearch.spec.studyfile" not in modules, args


def test_init_reads_the_data_and_writes_a_study_file_without_torch(tmp_path: Path) -> None:
    table = tmp_path / "rows.csv"
    table.write_text("a,b,y\n" + "".join(f"{i % 5},{i % 3},{i % 2}\n" for i in range(40)))
    proc, modules = _imported_modules("init", str(table), "--target", "y", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "polars" in modules and (tmp_path / "rows.yaml").is_file()  # the probe works
    assert not {m for m in modules if m.split(".")[0] in ("torch", "plotly", "sklearn")}


@pytest.mark.parametrize("command", ["run", "create", "worker", "launch"])
def test_a_bad_study_file_is_refused_before_torch_loads(command: str, tmp_path: Path) -> None:
    path = write_study(tmp_path, sampler={"name": "bayes"})
    proc, modules = _imported_modules(command, str(path), cwd=tmp_path)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("import time")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {path}: sampler.name: unknown")
    # neither torch nor Optuna: a bad file is refused in a tenth of the time torch takes
    assert not {m for m in modules if m.split(".")[0] in ("torch", "optuna")}, command
    assert not (tmp_path / "hp.db").exists()


BAD_INPUTS = {
    "launch --gpus": (["launch", "{study}", "--gpus", "x"], "--gpus: expected all, none"),
    "worker --device": (["worker", "{study}", "--device", "tpu"], "device: allowed: auto"),
    "run --storage": (["run", "{study}", "--storage", "nosuch://x"], "storage nosuch://x:"),
    "run on bad data": (["run", "{labels}"], "no column 'nope'"),
    "launch on bad data": (["launch", "{labels}"], "no column 'nope'"),
    "train --data": (["train", "--data", "missing.csv", "--target", "y"], "no such train"),
    "train --target": (["train", "--data", "{table}", "--target", "nope"], "no column 'nope'"),
    "predict": (["predict", "{tmp}", "{table}"], "no such model file"),
    "evaluate": (["evaluate", "{tmp}"], "no such model file"),
    "evaluate DATA": (["evaluate", "{tmp}", "held.csv"], "error: held.csv: no such file or"),
    "retrain --trial": (["retrain", "{study}", "--trial", "7"], "has no trial 7"),
    "init --target": (["init", "{table}", "--target", "nope"], "no column 'nope'"),
    "init, no --target": (["init", "{table}"], "error: --target: required for a table"),
    "init DATA": (["init", "rows.xls", "--target", "y"], "error: DATA: '{tmp}/rows.xls': unknown"),
    "init -o": (["init", "{table}", "--target", "y", "-o", "{study}"], "--force replaces it"),
    # click's own checks, one line too
    "run --precision": (["run", "{study}", "--precision", "fp16"], "is not one of 'fp32', 'tf32'"),
    "run --threads": (["run", "{study}", "--threads", "0"], "'--threads': 0 is not in the range"),
    "evaluate --mistakes": (
        ["evaluate", "{tmp}", "--mistakes", "-1"],
        "'--mistakes': -1 is not in the range x>=0",
    ),
    "worker --memory-share": (
        ["worker", "{study}", "--memory-share", "0"],
        "'--memory-share': 0.0 is not in the range 0<x<=1",
    ),
    "no study file": (["worker"], "error: Missing argument 'STUDY_FILE'."),
    "no such option": (["launch", "{study}", "--gpu", "0"], "error: No such option '--gpu'."),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_a_bad_option_or_data_is_refused_before_torch_loads(case: str, tmp_path: Path) -> None:
    table = tmp_path / "rows.csv"
    table.write_text("a,b,y\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(40)))
    paths = {
        "study": write_study(tmp_path, budget={"trials": 1}),
        "labels": write_study(
            tmp_path, name="own.yaml", dataset={"path": str(table), "target": "nope"}
        ),
        "table": table,
        "tmp": tmp_path,
    }
    if case.startswith("retrain"):  # a study to read, with one trial
        assert hpsearch("run", str(paths["study"]), "--no-progress").returncode == 0
    if case == "evaluate DATA":  # a model file: the data is looked for before torch loads
        (tmp_path / "model.pt").write_bytes(b"")
    args, message = BAD_INPUTS[case]
    message = message.format(**paths)
    proc, modules = _imported_modules(*[a.format(**paths) for a in args], cwd=tmp_path)
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("import time")]
    assert proc.returncode == 2 and len(errors) == 1 and message in errors[0], errors
    assert not {m for m in modules if m.split(".")[0] == "torch"}, case


def test_a_launch_refuses_a_taken_dashboard_port_before_it_starts(tmp_path: Path) -> None:
    path = write_study(tmp_path, budget={"trials": 1})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ("launch", str(path), "--dashboard", "--dashboard-port", str(port))
        proc, modules = _imported_modules(*args, cwd=tmp_path)
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("import time")]
    assert proc.returncode == 2, proc.stderr
    assert errors == [
        f"error: --dashboard-port: cannot listen on 127.0.0.1:{port}: "
        + ("Address already in use")
    ]
    assert "torch" not in modules and not (tmp_path / "hp.db").exists()  # nothing started


def _study(tmp_path: Path, **overrides: Any) -> tuple[Path, str]:
    path = write_study(tmp_path, **overrides)
    return path, f"sqlite:///{tmp_path / 'hp.db'}"


def _states(url: str) -> list[TrialState]:
    return [t.state for t in open_study("t", url).get_trials()]


no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")


@no_gpu
def test_train_on_a_device_this_machine_lacks() -> None:
    proc = hpsearch("train", "--set", "device=cuda", "--set", "epochs=1")
    assert proc.returncode == 2
    assert proc.stderr == "error: device cuda: no CUDA GPU is visible to this process\n"


@pytest.mark.slow
def test_a_closed_or_full_stdout_ends_cleanly(tmp_path: Path) -> None:
    path, _ = _study(tmp_path, budget={"trials": 2})
    assert hpsearch("run", str(path), "--no-progress").returncode == 0
    for command in ("status", "trials"):
        proc = subprocess.Popen(
            [sys.executable, "-m", "hpsearch", command, str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # as `| head -0` does, before anything was written
        err = proc.stderr.read()
        assert proc.wait(timeout=120) == 0, err
        assert err == ""
    if Path("/dev/full").exists():  # a full disk under standard output: one line, no "None:"
        with open("/dev/full", "w") as full:
            proc = subprocess.run(
                [sys.executable, "-m", "hpsearch", "trials", str(path), "--format", "csv"],
                stdout=full,
                stderr=subprocess.PIPE,
                text=True,
                timeout=120,
            )
        assert proc.returncode == 2 and proc.stderr == "error: No space left on device\n"


# hpsearch's main, run with the garbage collector watched: the collections before `run`'s
# last start-up import (hpsearch.study.worker) and after it, and whether it exits frozen
_WATCHED_MAIN = """\
import atexit, gc, sys
from hpsearch.cli import main
early = []
def seen(phase, info):
    if phase == "start":
        early.append(not hasattr(sys.modules.get("hpsearch.study.worker"), "run_study"))
gc.callbacks.append(seen)
atexit.register(  # registered before main's own: runs last
    lambda: print("collections", sum(early), len(early) - sum(early), gc.get_freeze_count() > 0)
)
main(sys.argv[1:])
"""


def _watched(*args: str) -> tuple[int, int, bool]:
    """Runs ``hpsearch ARGS`` under :data:`_WATCHED_MAIN`: the collections during the start-up
    and after it, and whether the objects were frozen at exit."""
    proc = subprocess.run(
        [sys.executable, "-c", _WATCHED_MAIN, *args], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    _, early, late, frozen = proc.stdout.splitlines()[-1].split()
    return int(early), int(late), frozen == "True"


@pytest.mark.slow
def test_a_command_exits_without_collecting_yet_closes_its_databases(tmp_path: Path) -> None:
    # the exit's garbage collections cost a launch 0.9 s (bench/startup.py): the CLI freezes
    # what is left instead, once it has closed the connections that only a collection would
    # (an unclosed SQLite file keeps its write-ahead log beside it: a copy of the file alone
    # would lack the last trials)
    path, url = _study(tmp_path, budget={"trials": 2})
    for args in (["run", str(path), "--no-progress"], ["status", str(path)]):
        *_, frozen = _watched(*args)
        assert frozen
        assert sorted(p.name for p in tmp_path.glob("hp.db*")) == ["hp.db"]
    assert _states(url) == [TrialState.COMPLETE] * 2


@pytest.mark.slow
def test_a_commands_start_up_imports_without_garbage_collections(tmp_path: Path) -> None:
    # importing torch and Optuna makes objects, never garbage: the collections it triggered
    # cost a launch a third of a second; the collector is back on for the trials
    path, _ = _study(tmp_path, budget={"trials": 2})
    early, late, _ = _watched("run", str(path), "--no-progress")
    assert early == 0 and late > 0


@pytest.mark.slow
def test_messages_name_the_absolute_path_of_a_relative_sqlite_url(tmp_path: Path) -> None:
    path, _ = _study(tmp_path, budget={"trials": 1}, storage="sqlite:///rel.db")
    proc = hpsearch("run", str(path), "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"study t in sqlite:///{tmp_path / 'rel.db'}:" in proc.stderr
    missing = hpsearch("studies", "--storage", "sqlite:///other.db", cwd=tmp_path)
    assert f"{tmp_path / 'other.db'} does not exist" in missing.stderr


@pytest.mark.slow
def test_retrain_writes_valid_json(tmp_path: Path) -> None:
    path, _ = _study(tmp_path, budget={"trials": 2})
    assert hpsearch("run", str(path), "--no-progress").returncode == 0
    out = tmp_path / "model"
    proc = hpsearch("retrain", str(path), "-o", str(out))
    assert proc.returncode == 0, proc.stderr

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    result = json.loads((out / "result.json").read_text(), parse_constant=refuse)
    # no validation split when retraining: the per-epoch validation metrics are null
    assert result["epochs"][0]["val_loss"] is None and result["test_accuracy"] > 0.5
    # a model saved there earlier (another study's, by the default -o) is not lost silently
    saved = {p.name: p.read_bytes() for p in out.iterdir()}
    again = hpsearch("retrain", str(path), "-o", str(out), "--trial", "1")
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert again.stderr.splitlines() == [
        f"error: {out} holds a saved model already: -o another folder, or --force replaces it"
    ]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == saved
    forced = hpsearch("retrain", str(path), "-o", str(out), "--trial", "1", "--force")
    assert forced.returncode == 0, forced.stderr
    assert (out / "model.pt").read_bytes() != saved["model.pt"]


@pytest.mark.slow
def test_run_checks_its_environment_before_writing_anything(tmp_path: Path) -> None:
    empty = tmp_path / "nodata"
    empty.mkdir()
    path, _ = _study(tmp_path, dataset="mnist", data_dir=str(empty))
    proc = hpsearch("run", str(path), "--no-progress")
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1 and "MNIST files missing" in proc.stderr
    assert not (tmp_path / "hp.db").exists()  # nothing queued, nothing failed


@pytest.mark.slow
@no_gpu
def test_a_worker_without_its_gpu_claims_nothing(tmp_path: Path) -> None:
    path, url = _study(tmp_path, budget={"trials": 3})
    assert hpsearch("create", str(path)).returncode == 0
    again = hpsearch("create", str(path))  # Optuna's "[I ...] Using an existing study": not ours
    assert again.returncode == 0 and "[I " not in again.stderr + again.stdout, again.stderr
    proc = hpsearch("worker", str(path), "--device", "cuda:0")
    assert proc.returncode == 2
    assert "device cuda:0: no CUDA GPU is visible" in proc.stderr
    assert _states(url) == [TrialState.WAITING] * 3


@pytest.mark.slow
def test_run_with_fewer_trials_than_queued_runs_that_many_and_says_so(tmp_path: Path) -> None:
    path, url = _study(tmp_path, budget={"trials": 4}, fixed={"epochs": 1})
    create = hpsearch("create", str(path))
    assert create.returncode == 0 and "budget 4, 4 trials queued now" in create.stdout
    proc = hpsearch("run", str(path), "--trials", "1", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "budget 1, 3 queued trials beyond it taken off the queue" in proc.stderr
    assert len(_states(url)) == 1 and _states(url)[0].is_finished()


@pytest.mark.slow
def test_check_says_what_a_start_would_do_and_writes_nothing(tmp_path: Path) -> None:
    path, url = _study(tmp_path, budget={"trials": 3})
    fresh = hpsearch("check", str(path))
    assert fresh.returncode == 0, fresh.stderr
    lines = fresh.stdout.splitlines()
    assert lines[0] == "search    sampler random, pruner none, budget 3 trials, population 1"
    assert lines[1] == "space     2 params: lr, hidden_layers"
    assert lines[2] == "data      digits (built-in)"
    assert f"{url}: no study t yet; a start creates it and queues 3 trials" in lines[3]
    assert lines[4] == "trains    one batch of the fixed settings on cpu"
    assert lines[5].startswith(f"ok        {path} would start as it is")
    assert not (tmp_path / "hp.db").exists()
    assert hpsearch("create", str(path)).returncode == 0
    lower = hpsearch("check", str(path), "--trials", "1", "--no-train")
    assert lower.returncode == 0, lower.stderr
    assert (
        "holds study t: 3 trials (waiting 3); a start takes 2 queued trials beyond the budget off"
        in lower.stdout
    )
    assert "trains" not in lower.stdout
    assert _states(url) == [TrialState.WAITING] * 3
    bad = write_study(tmp_path, "bad.yaml", objective={"metric": "val_loss"})
    refused = hpsearch("check", str(bad))
    assert refused.returncode == 2 and "with directions ['maximize']" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1 and "Traceback" not in refused.stderr


def test_a_run_trains_the_known_points_first_and_draws_what_they_leave_out(
    tmp_path: Path,
) -> None:
    known = [{"lr": 0.05, "hidden_layers": [32, 16]}, {"hidden_layers": []}]
    path, url = _study(tmp_path, budget={"trials": 3}, population=2, start_with=known)
    checked = hpsearch("check", str(path), "--no-train")
    assert "queues 3 trials (2 start_with points first)" in checked.stdout, checked.stderr
    tight = hpsearch("check", str(path), "--no-train", "--trials", "1").stdout
    assert "(1 start_with point first); 1 start_with point not: the budget has no room" in tight
    ran = hpsearch("run", str(path), "--no-progress")
    assert ran.returncode == 0, ran.stderr
    first, second, third = open_study("t", url).get_trials()
    assert first.params == {
        "lr": 0.05,
        "hidden_layers.depth": 2,
        "hidden_layers.width_0": 32,
        "hidden_layers.width_1": 16,
    }
    assert second.params["hidden_layers.depth"] == 0 and 1e-3 <= second.params["lr"] <= 0.1
    assert third.state == TrialState.COMPLETE and "hidden_layers.depth" in third.params
    again = hpsearch("check", str(path), "--no-train", "--trials", "4")
    assert "a start queues 1 more" in again.stdout and "start_with" not in again.stdout


@pytest.mark.slow
def test_run_stops_on_repeated_errors_and_retry_requeues(tmp_path: Path) -> None:
    path, url = _study(tmp_path, budget={"trials": 6}, **BROKEN_SPACE)
    proc = hpsearch("run", str(path), "--no-progress")
    assert proc.returncode == 3
    assert "the last ones all with: ConfigError: trial 2: activation: 2 values" in proc.stderr
    assert f"`hpsearch retry {path}`" in proc.stderr
    assert _states(url) == [TrialState.FAIL] * 3 + [TrialState.WAITING] * 3
    retried = hpsearch("retry", str(path))
    assert retried.returncode == 0
    assert "queued 3 failed trials again (0, 1, 2)" in retried.stdout
    status = json.loads(hpsearch("status", str(path), "--json").stdout)
    assert status["states"]["WAITING"] == 6
    assert "no failed trial to retry" in hpsearch("retry", str(path)).stdout


@pytest.mark.slow
def test_run_whose_trials_all_fail_exits_non_zero(tmp_path: Path) -> None:
    path, url = _study(tmp_path, budget={"trials": 4}, **BROKEN_SPACE)
    proc = hpsearch("-v", "run", str(path), "--no-progress", "--max-same-failures", "0")
    assert proc.returncode == 1
    assert "every trial of this run failed" in proc.stderr
    assert _states(url) == [TrialState.FAIL] * 4
    # each trial's start and failure is logged with the study, its number, worker and device
    assert re.search(r"INFO trial 0 of t started on worker \S+:\d+, device cpu", proc.stderr)
    assert re.search(r"WARNING trial 3 of t failed on worker \S+:\d+: ConfigError", proc.stderr)
    # the table keeps the one-line reason; `hpsearch trial` shows the stored traceback
    rows = json.loads(hpsearch("trials", str(path), "--format", "json").stdout)
    assert [r["fail_reason"].split(":")[0] for r in rows] == ["ConfigError"] * 4
    assert all("\n" not in r["fail_reason"] for r in rows)
    shown = hpsearch("trial", str(path), "1").stdout
    assert "fail_reason    ConfigError: trial 1: activation: 2 values for 1 hidden" in shown
    assert "Traceback (most recent call last)" in shown and "in make_config" in shown


@pytest.mark.slow
def test_a_changed_study_file_is_refused(tmp_path: Path) -> None:
    path, url = _study(
        tmp_path,
        budget={"trials": 2},
        objective={"metric": "val_accuracy", "reduce": "best"},
        space={"activation": ["relu", "gelu", "tanh"]},
    )
    assert hpsearch("run", str(path)).returncode == 0
    _study(
        tmp_path,
        budget={"trials": 12},
        objective={"metric": "val_accuracy", "reduce": "final"},
        space={"activation": ["relu", "silu"]},
    )
    proc = hpsearch("run", str(path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert f"error: {path}:   objectives[0].reduce: best -> final" in lines
    assert (
        f'error: {path}:   space.activation.choices: ["relu", "gelu", "tanh"] -> ["relu", "silu"]'
        in lines
    )
    assert "new `name:`" in lines[-1]
    assert len(_states(url)) == 2


@pytest.mark.slow
def test_threads_are_set_and_recorded(tmp_path: Path) -> None:
    path, url = _study(tmp_path, budget={"trials": 2})
    assert hpsearch("run", str(path), "--no-progress", "--threads", "2").returncode == 0
    assert hpsearch("run", str(path), "--trials", "3", "--threads", "1").returncode == 0
    proc = hpsearch("run", str(path), "--threads", "0")
    assert proc.returncode == 2 and "--threads" in proc.stderr
    assert hpsearch("create", str(path), "--trials", "4").returncode == 0
    assert hpsearch("worker", str(path)).returncode == 0  # by hand: 1 thread by default
    trials = open_study("t", url).get_trials()
    assert [t.user_attrs["threads"] for t in trials] == [2, 2, 1, 1]


@pytest.mark.slow
def test_trials_sort_top_and_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = stand_in_study(tmp_path, monkeypatch, trials=30)

    def rows(*args: str) -> list[dict[str, Any]]:
        proc = hpsearch("trials", str(path), "--format", "json", *args)
        assert proc.returncode == 0, proc.stderr
        return list(json.loads(proc.stdout))

    every = rows()
    assert sorted(r["number"] for r in every) == list(range(30))
    done = [r for r in every if r["state"] == "COMPLETE"]
    assert 3 <= len(done) < 30  # some pruned or failed: they follow, by number
    assert every[: len(done)] == done  # best first
    assert [r["value"] for r in done] == sorted((r["value"] for r in done), reverse=True)
    rest = [r["number"] for r in every[len(done) :]]
    assert rest == sorted(rest)
    assert rows("--top", "3") == every[:3]  # read directly, the same rows
    lrs = [r["param.lr"] for r in rows("--sort", "param.lr")]
    assert lrs == sorted(lrs)
    assert [r["number"] for r in rows("--sort", "number", "--top", "4")] == [0, 1, 2, 3]
    csv = hpsearch(
        "trials", str(path), "--top", "2", "--columns", "number,value", "--format", "csv"
    )
    assert csv.stdout.splitlines()[0] == "number,value" and len(csv.stdout.splitlines()) == 3
    # --state keeps the order and the rows of those states alone, however the rows are read
    kept = [r for r in every if r["state"] in ("PRUNED", "FAIL")]
    assert kept and rows("--state", "pruned", "--state", "FAIL") == kept
    assert rows("--state", "complete", "--top", "2") == done[:2]
    pruned = [r for r in every if r["state"] == "PRUNED"]
    assert rows("--state", "pruned", "--top", "1") == pruned[:1]
    assert [r["number"] for r in rows("--state", "complete", "--sort", "number")] == sorted(
        r["number"] for r in done
    )
    assert hpsearch("trials", str(path), "--state", "running").stdout == (
        "no RUNNING trials in this study\n"
    )
    for args, key in (
        (["--sort", "nosuch"], "--sort 'nosuch': no such column; columns: value, number"),
        (["--columns", "number,bogus"], "--columns: no column 'bogus'"),
        (["--state", "done"], "'done' is not one of 'complete', 'pruned', 'fail'"),
    ):
        bad = hpsearch("trials", str(path), *args)
        assert bad.returncode == 2 and key in bad.stderr, bad.stderr
        assert "Traceback" not in bad.stderr
    status = json.loads(hpsearch("status", str(path), "--json").stdout)
    assert status["trials"] == 30 and status["states"]["COMPLETE"] == len(done)
    assert status["best"][0]["number"] == every[0]["number"]
    total = sum(r["train_seconds"] or 0 for r in every)
    assert status["train_seconds"] == pytest.approx(total, rel=1e-6)


@pytest.mark.slow
def test_the_default_trials_table_fits_120_columns_and_rounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = stand_in_study(tmp_path, monkeypatch, trials=20, space=CONDITIONAL_SPACE)
    table = hpsearch("trials", str(path)).stdout.splitlines()
    assert max(len(line) for line in table) <= 120
    header = table[0].split()
    assert header[:3] == ["number", "state", "value"]
    assert {"lr", "depth", "width_0", "act", "optim", "momentum", "wd"} <= set(header)
    assert not [h for h in header if "." in h]  # no param. or hidden_layers. prefixes
    legend = next(line for line in table if line.startswith("short names: "))
    assert {"act=activation", "optim=optimizer", "wd=weight_decay"} <= set(legend[13:].split(", "))
    assert any(line.startswith("not shown: ") for line in table)
    exact = json.loads(hpsearch("trials", str(path), "--format", "json").stdout)
    best = exact[0]
    row = table[1].split()
    assert row[0] == str(best["number"]) and row[2] == f"{best['value']:.4g}"
    lr = row[header.index("lr")]
    assert lr == f"{best['param.lr']:.4g}" and len(lr.replace("0.", "").lstrip("0")) <= 5
    csv = hpsearch("trials", str(path), "--format", "csv").stdout.splitlines()
    cells = dict(zip(csv[0].split(","), csv[1].split(","), strict=True))
    assert float(cells["param.lr"]) == best["param.lr"]  # full precision in csv
    # short names work where columns are named
    assert hpsearch("trials", str(path), "--columns", "number,wd", "--top", "1").returncode == 0
    wds = json.loads(hpsearch("trials", str(path), "--sort", "wd", "--format", "json").stdout)
    assert [r["param.weight_decay"] for r in wds] == sorted(r["param.weight_decay"] for r in wds)
    status = hpsearch("status", str(path)).stdout
    value = re.search(r"best +trial \d+: \[([^\]]+)\]", status)
    assert value and value.group(1) == f"{best['value']:.4g}"
    rounded = float(f"{best['param.lr']:.4g}")
    assert f'"lr": {rounded}' in status


LISTED_LAYERS = {
    "hidden_layers": {"values": [[16], [32, 16], [64]]},
    "lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
}


@pytest.mark.parametrize("space", [CONDITIONAL_SPACE, LISTED_LAYERS], ids=["ranges", "lists"])
def test_the_best_trials_as_start_with_start_another_study_at_their_exact_params(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, space: dict[str, Any]
) -> None:
    from hpsearch.spec.studyfile import load_spec

    path = stand_in_study(tmp_path, monkeypatch, trials=12, space=space)
    proc = hpsearch("best", str(path), "--top", "3", "--format", "start_with")
    assert proc.returncode == 0, proc.stderr
    best = open_study("t", f"sqlite:///{tmp_path / 'hp.db'}").best_trials
    top = json.loads(hpsearch("best", str(path), "--top", "3", "--format", "json").stdout)
    numbers = ", ".join(str(row["number"]) for row in top)
    assert proc.stdout.splitlines()[0] == f"start_with:  # study t, trials {numbers}"
    assert all(line.startswith("  - {") for line in proc.stdout.splitlines()[1:])
    points = yaml.safe_load(proc.stdout)["start_with"]
    assert len(points) == 3 and best
    # the next study's file, with the same space: its known points are those trials' params
    other = write_study(tmp_path, "next.yaml", space=space, start_with=points)
    trials = {t.number: t for t in open_study("t", f"sqlite:///{tmp_path / 'hp.db'}").trials}
    assert list(load_spec(str(other)).start_points) == [
        trials[row["number"]].params for row in top
    ]


def test_best_says_when_the_top_trials_are_within_validation_noise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hpsearch.results.reading import selection_noise
    from hpsearch.spec.studyfile import load_spec

    # one width and learning rates close together: the stand-in's levels differ by its noise
    narrow = {"lr": {"type": "float", "low": 4e-3, "high": 6e-3, "log": True}}
    fixed = {"epochs": 6, "scheduler": "none", "optimizer": "adam", "hidden_layers": [64]}
    path = stand_in_study(tmp_path, monkeypatch, trials=20, space=narrow, fixed=fixed)
    study = open_study("t", load_spec(str(path)).storage)
    noise = selection_noise(study)
    assert noise is not None and noise.metric == "val_accuracy"
    n = noise.val_size
    assert n == 144  # digits: 10% of the 1,437 training images
    p = (noise.value * n + 1) / (n + 2)
    assert noise.standard_error == pytest.approx(math.sqrt(p * (1 - p) / n))
    values = {t.number: t.value for t in study.get_trials() if t.value is not None}
    near = [k for k, v in values.items() if abs(v - noise.value) <= noise.standard_error]
    assert sorted(noise.within) == sorted(near) and len(near) > 1  # stand-in values are close
    out = hpsearch("best", str(path)).stdout
    others = ", ".join(str(k) for k in noise.within[1:])
    assert f"noise: trials {others} are within one standard error" in out
    assert "which of these is best is chance" in out
    top = hpsearch("best", str(path), "--top", "3").stdout
    assert len(re.findall(r"^  trial \d+", top, re.M)) == 3


@pytest.mark.slow
def test_multi_objective_best_lists_the_pareto_set_and_asks_which_to_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = stand_in_study(
        tmp_path,
        monkeypatch,
        trials=20,
        objective=None,
        objectives=["val_accuracy", "param_count"],
        pruner="none",
    )
    front = json.loads(hpsearch("best", str(path), "--format", "json").stdout)
    assert len(front) > 1
    out = hpsearch("best", str(path)).stdout
    assert out.startswith(f"Pareto set: {len(front)} trials, best first by objective 0")
    assert len(re.findall(r"^  trial \d+", out, re.M)) == len(front)
    one = hpsearch("best", str(path), "--top", "1").stdout
    assert f"Pareto set: {len(front)} trials; the first 1" in one
    assert len(re.findall(r"^  trial \d+", one, re.M)) == 1
    target = tmp_path / "best.yaml"
    refused = hpsearch("best", str(path), "--write-config", str(target))
    assert refused.returncode == 2 and "choose one with --trial N" in refused.stderr
    assert f"Pareto set has {len(front)} trials" in refused.stderr and not target.exists()
    chosen = front[-1]["number"]
    ok = hpsearch("best", str(path), "--write-config", str(target), "--trial", str(chosen))
    assert ok.returncode == 0 and yaml.safe_load(target.read_text())["trial"] == chosen


def test_delete_counts_the_trials_it_asks_about_without_loading_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from hpsearch.cli import main
    from hpsearch.storage import open_storage

    url = f"sqlite:///{tmp_path / 'hp.db'}"
    study = optuna.create_study(study_name="s", storage=open_storage(url, create=True))
    for value in (1.0, 2.0, 3.0):
        study.add_trial(optuna.trial.create_trial(value=value))

    def load(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("delete loaded every trial to count them")

    monkeypatch.setattr(optuna.Study, "_get_trials", load)
    runner = CliRunner()
    kept = runner.invoke(main, ["delete", "s", "--storage", url], input="n\n")
    assert "delete study 's' (3 trials)?" in kept.output and kept.exit_code == 1
    assert runner.invoke(main, ["delete", "s", "--storage", url, "--yes"]).exit_code == 0
    monkeypatch.undo()
    assert optuna.get_all_study_names(url) == []


@pytest.mark.slow
def test_precision_is_chosen_per_run_and_recorded_with_each_trial(tmp_path: Path) -> None:
    path, url = _study(tmp_path, budget={"trials": 3}, fixed={"epochs": 1})
    assert hpsearch("run", str(path), "--trials", "1", "--precision", "bf16").returncode == 0
    # how, not what, a study computes: a resume may change it (as it may change the device)
    assert hpsearch("run", str(path), "--trials", "2").returncode == 0
    assert hpsearch("create", str(path), "--trials", "3").returncode == 0
    assert hpsearch("worker", str(path), "--precision", "tf32").returncode == 0
    study = open_study("t", url)
    done = records(study, study.get_trials())
    assert [r.state for r in done] == ["COMPLETE"] * 3
    assert [r.config and r.config["precision"] for r in done] == ["bf16", "fp32", "tf32"]
    bad = hpsearch("run", str(path), "--precision", "fp16")
    assert bad.returncode == 2 and "'fp16' is not one of 'fp32', 'tf32', 'bf16'" in bad.stderr


def test_the_precision_flag_offers_what_a_config_accepts() -> None:
    # the flag names the choices itself: the command line parses without pydantic
    (flag,) = precision_option(click.Command("probe")).params
    assert isinstance(flag.type, click.Choice) and tuple(flag.type.choices) == PRECISIONS


def test_copy_moves_a_study_to_another_storage_and_says_how_to_resume_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = stand_in_study(tmp_path, monkeypatch, trials=12)
    to = f"sqlite:///{tmp_path / 'moved.db'}"
    proc = hpsearch("copy", str(path), "--to", to)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"copied study t (12 trials) from sqlite:///{tmp_path / 'hp.db'} to {to}",
        "resume it there: the study file and --storage URL (or its `storage:`); the source is "
        "as it was",
    ]
    moved = json.loads(hpsearch("trials", "t", "--storage", to, "--format", "json").stdout)
    assert moved == json.loads(hpsearch("trials", str(path), "--format", "json").stdout)
    again = hpsearch("copy", str(path), "--to", to)
    assert again.returncode == 2 and again.stdout == ""
    assert again.stderr == (
        f"error: {to} already holds a study 't': copy it under another name with --name, or "
        "delete that one first\n"
    )
    renamed = hpsearch("copy", str(path), "--to", to, "--name", "t2")
    assert "to " + to + " as t2\n" in renamed.stdout and "with `name: t2`" in renamed.stdout
    assert {
        r["study"]
        for r in json.loads(hpsearch("studies", "--storage", to, "--format", "json").stdout)
    } == {"t", "t2"}


def test_a_copy_killed_half_way_is_named_as_such_with_how_to_remove_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hpsearch import storage as db
    from hpsearch.study import lifecycle

    path = write_study(tmp_path, budget={"trials": 5})
    assert hpsearch("create", str(path)).returncode == 0
    to = f"sqlite:///{tmp_path / 'moved.db'}"

    def killed(study: Any, trials: Any) -> list[int]:
        raise SystemExit("killed")  # and, as under SIGKILL, nothing cleans up

    monkeypatch.setattr(lifecycle, "_discard", lambda copy, file: None)
    monkeypatch.setattr(db, "add_trials", killed)
    with pytest.raises(SystemExit):
        lifecycle.copy_study(open_study("t", f"sqlite:///{tmp_path / 'hp.db'}"), to)
    listed = hpsearch("studies", "--storage", to)
    (left,) = [line.split()[0] for line in listed.stdout.splitlines()[1:]]
    assert re.fullmatch(r"t\.copying-[0-9a-f]{8}", left)
    assert listed.stderr == (
        f"note: {left} is a copy still being written, or one stopped before it was whole; if no "
        f"copy runs, `hpsearch delete {left} --storage {to} --yes` removes it\n"
    )
    assert hpsearch("delete", left, "--storage", to, "--yes").returncode == 0
    assert hpsearch("studies", "--storage", to).stdout.startswith("no studies in")
    whole = hpsearch("studies", "--storage", f"sqlite:///{tmp_path / 'hp.db'}")
    assert whole.returncode == 0 and whole.stderr == ""  # a whole study is not one


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--to", "nope://x"], "error: storage nope://x: unknown kind of database 'nope'"),
        (["--to", "sqlite:///{tmp}/no/x.db"], "error: storage sqlite:///{tmp}/no/x.db: no folder"),
        (
            ["--to", "postgresql+psycopg://hp:s3cret@127.0.0.1:9/hp"],
            "error: storage postgresql+psycopg://hp:***@127.0.0.1:9/hp: cannot open",
        ),
        (["--to", "sqlite:///{tmp}/x.db", "--name", "../up"], "error: Invalid value for '--name'"),
        ([], "error: Missing option '--to'"),
    ],
    ids=["kind", "folder", "password", "name", "missing"],
)
def test_copy_refuses_a_bad_destination_in_one_line_writing_nothing(
    tmp_path: Path, flags: list[str], said: str
) -> None:
    path = write_study(tmp_path, budget={"trials": 3})
    assert hpsearch("create", str(path)).returncode == 0
    flags = [f.replace("{tmp}", str(tmp_path)) for f in flags]
    proc = hpsearch("copy", str(path), *flags, env={"HPSEARCH_STORAGE_WAIT": "0"})
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(said.replace("{tmp}", str(tmp_path)))
    assert len(proc.stderr.splitlines()) == 1 and "s3cret" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hp.db", "study.yaml"]


def test_copys_summary_hides_passwords_and_names_the_trials_queued_again() -> None:
    from types import SimpleNamespace

    from hpsearch.cli.output import copied_lines
    from hpsearch.study.lifecycle import Copied

    copied = Copied(cast(Any, SimpleNamespace(study_name="t")), trials=5, requeued=(3, 4))
    lines = copied_lines("t", "sqlite:////a/hp.db", "postgresql+psycopg://hp:s3cret@db/hp", copied)
    assert lines[:2] == [
        "copied study t (5 trials) from sqlite:////a/hp.db to postgresql+psycopg://hp:***@db/hp",
        "  trials 3, 4 were running in the source: failed in the copy and queued again there "
        "(their workers still write to the source)",
    ]


def test_run_and_best_say_when_the_best_lies_at_an_end_of_its_range(tmp_path: Path) -> None:
    path = write_study(tmp_path, **EDGE_STUDY)
    edge = f"edge: {EDGE}: better values may lie beyond it (widen space.hidden_layers)"
    ran = hpsearch("run", str(path), "--no-progress")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines()[-1] == edge
    shown = hpsearch("best", str(path)).stdout.splitlines()
    assert shown[0].startswith("  trial 0: values [610]") and shown[-1] == edge
    assert not any(line.startswith("edge: lr") for line in shown)  # 0.01: mid-range
