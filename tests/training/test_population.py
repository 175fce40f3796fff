"""A population trains each member exactly as it would train alone."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
import signal
from typing import Any

import optuna
from optuna.trial import TrialState
import pytest
import torch

from hpsearch.results.reading import open_study
from hpsearch.spec.choices import ACTIVATIONS
from hpsearch.spec.choices import OPTIMIZERS
from hpsearch.spec.choices import SCHEDULERS
from hpsearch.spec.config import make_config
from hpsearch.spec.config import TrainConfig
from hpsearch.spec.defaults import MEMORY_SHARE
from hpsearch.training import trainer
from hpsearch.training.trainer import fit
from hpsearch.training.trainer import group_key
from hpsearch.training.trainer import plan_groups
from hpsearch.training.trainer import train
from hpsearch.training.trainer import train_population
from hpsearch.training.trainer import TrainResult
from tests.helpers import Gate
from tests.helpers import hpsearch
from tests.helpers import start
from tests.helpers import wait_running
from tests.helpers import write_study

# Short trials, held at their epoch ends by a Gate until the test opens it.
GATED = {"epochs": 3, "batch_size": 16, "scheduler": "none", "optimizer": "adam", "lr": 0.01}

LR = {"sgd": 0.05, "adam": 3e-3, "adamw": 3e-3, "adagrad": 0.03, "adadelta": 1.0, "rmsprop": 1e-3}


def _config(**values: Any) -> TrainConfig:
    return make_config({"epochs": 3, "hidden_layers": [32], **values})


def _neighbours(member: TrainConfig) -> list[TrainConfig]:
    """Three others in the same population: other rates, widths and weight decay, and
    other optimizers, activations and schedules."""
    others = []
    for i, (optimizer, activation) in enumerate(
        [("adam", "tanh"), ("sgd", "relu"), ("rmsprop", "gelu")]
    ):
        others.append(
            make_config(
                {
                    "epochs": 3,
                    "hidden_layers": [16 + 24 * i],
                    "optimizer": optimizer,
                    "lr": LR[optimizer] * (1.5 + i),
                    "activation": activation,
                    "weight_decay": 1e-3 * i,
                    "momentum": 0.5 if optimizer != "adam" else 0.0,
                    "scheduler": ["none", "cosine", "step"][i],
                }
            )
        )
    return [*others[:2], member, others[2]]


def _assert_same_run(alone: TrainResult, member: TrainResult) -> None:
    assert member.outcome == alone.outcome == "completed"
    first, again = alone.epochs[0].train_loss, member.epochs[0].train_loss
    assert abs(first - again) <= 1e-4 * abs(first)
    assert abs(alone.epochs[-1].val_accuracy - member.epochs[-1].val_accuracy) <= 0.003
    balanced = alone.epochs[-1].val_balanced_accuracy, member.epochs[-1].val_balanced_accuracy
    assert abs(balanced[0] - balanced[1]) <= 0.01
    assert member.param_count == alone.param_count and member.config == alone.config


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_trains_in_a_population_as_alone(optimizer: str) -> None:
    config = _config(optimizer=optimizer, lr=LR[optimizer], weight_decay=1e-4)
    population = _neighbours(config)
    results = train_population(population)
    _assert_same_run(train(config), results[2])
    assert results[2].epochs[-1].val_accuracy > 0.8  # and it learns


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_trains_in_a_population_as_alone(activation: str) -> None:
    config = _config(activation=activation, optimizer="adam", lr=3e-3)
    _assert_same_run(train(config), train_population(_neighbours(config))[2])


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_every_schedule_trains_in_a_population_as_alone(scheduler: str) -> None:
    config = _config(scheduler=scheduler, optimizer="sgd", lr=0.05, momentum=0.9)
    _assert_same_run(train(config), train_population(_neighbours(config))[2])


@pytest.mark.parametrize(
    "settings",
    [
        {"loss": "mse", "optimizer": "adam", "lr": 3e-3},
        {"loss": "bce", "optimizer": "adam", "lr": 3e-3, "label_smoothing": 0.1},
        {"label_smoothing": 0.2},
        {"l1": 1e-4},
        {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True},
        {"hidden_layers": [48, 24], "activation": ["tanh", "elu"]},
        {"batch_norm": True, "optimizer": "adamw", "lr": 3e-3, "weight_decay": 0.05},
        {"augment_shift": 2},
    ],
    ids=["mse", "bce", "smoothing", "l1", "nesterov", "two-layers", "batch-norm", "shifts"],
)
def test_other_settings_train_in_a_population_as_alone(settings: dict[str, Any]) -> None:
    config = _config(**settings)
    # neighbours that share what a population must share (loss, batch norm, depth)
    shared = {k: settings[k] for k in ("loss", "batch_norm", "augment_shift") if k in settings}
    depth = len(config.hidden_layers)
    others = [
        _config(**shared, hidden_layers=[20 + 8 * i] * depth, lr=0.5 + i, l1=1e-5 * i)
        for i in range(3)
    ]
    results = train_population([others[0], config, *others[1:]])
    assert len(plan_groups([others[0], config, *others[1:]])) == 1  # really one population
    _assert_same_run(train(config), results[1])


def test_dropout_members_match_alone_in_distribution() -> None:
    # Dropout masks come from another random stream in a population: compare outcomes over
    # several seeds instead of one curve.
    configs = [
        _config(dropout=0.3, epochs=4, lr=0.6 + 0.1 * i, hidden_layers=[32 + 4 * i])
        for i in range(6)
    ]
    alone = [train(c).epochs[-1].val_accuracy for c in configs]
    together = [r.epochs[-1].val_accuracy for r in train_population(configs)]
    assert together != alone  # other masks
    assert abs(sum(alone) / 6 - sum(together) / 6) < 0.02


def test_members_leave_alone_when_pruned_diverged_or_done() -> None:
    overfits = {"hidden_layers": [256], "optimizer": "adam", "lr": 0.01}  # the same batches
    configs = [
        _config(optimizer="sgd", lr=1e8),  # diverges at once
        _config(lr=1.0),
        _config(lr=0.5, epochs=2),  # completes early
        _config(lr=0.8),  # stopped by the callback after epoch 1
        _config(**overfits, epochs=300, early_stopping=2),  # its validation loss stalls
    ]
    seen: dict[int, list[int]] = {i: [] for i in range(5)}

    def on_epoch(i: int, stats: Any) -> bool:
        seen[i].append(stats.epoch)
        return i == 3

    results = train_population(configs, on_epoch)
    assert [r.outcome for r in results] == [
        "diverged",
        "completed",
        "completed",
        "stopped",
        "early_stopped",
    ]
    assert seen == {0: [], 1: [1, 2, 3], 2: [1, 2], 3: [1], 4: seen[4]}
    assert 2 < len(seen[4]) < 300
    assert results[2].test_accuracy is not None and results[3].test_accuracy is None
    assert results[4].test_accuracy is not None
    # the others trained exactly as alone
    for i in (1, 2, 4):
        assert [e.train_loss for e in results[i].epochs] == pytest.approx(
            [e.train_loss for e in train(configs[i]).epochs], rel=1e-5
        )


def test_groups_split_by_what_members_must_share() -> None:
    configs = [  # on a CPU, where each depth is a group of its own
        _config(batch_size=32, device="cpu"),
        _config(batch_size=64, device="cpu"),
        _config(batch_size=32, hidden_layers=[8, 8], device="cpu"),
        _config(batch_size=32, optimizer="adam", lr=1e-3, hidden_layers=[99], device="cpu"),
    ]
    assert group_key(configs[0]) == group_key(configs[3]) != group_key(configs[1])
    # the images' shifts, and the precision: bf16 members cannot share float32 kernels
    assert group_key(configs[0]) != group_key(
        _config(batch_size=32, device="cpu", augment_shift=1)
    )
    assert group_key(configs[0]) != group_key(
        _config(batch_size=32, device="cpu", precision="bf16")
    )
    assert sorted(map(sorted, plan_groups(configs))) == [[0, 3], [1], [2]]


def test_a_population_beyond_memory_is_split_not_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    configs = [_config(lr=0.2 * (i + 1)) for i in range(4)]
    expected = [train(c) for c in configs]
    assert plan_groups(configs) == [[0, 1, 2, 3]]  # one group: they may share kernels
    real = trainer._run_population
    sizes = []

    def counted(configs: Any, members: list[int], *args: Any) -> None:
        sizes.append(len(members))
        real(configs, members, *args)

    monkeypatch.setattr(trainer, "_run_population", counted)
    # planned: no more than two members fit, so the group trains as two populations
    monkeypatch.setattr(trainer, "max_members", lambda configs: 2)
    for got, want in zip(train_population(configs), expected, strict=True):
        assert got.epochs[-1].val_loss == pytest.approx(want.epochs[-1].val_loss, rel=1e-4)
    assert sizes == [2, 2]
    # found out: the device runs out of memory while more than one member trains
    monkeypatch.setattr(trainer, "max_members", lambda configs: len(configs))
    sizes.clear()

    def tight(configs: Any, members: list[int], *args: Any) -> None:
        if len(members) > 1:
            sizes.append(len(members))
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        counted(configs, members, *args)

    monkeypatch.setattr(trainer, "_run_population", tight)
    results = train_population(configs)
    assert sizes == [4, 2, 1, 1, 2, 1, 1]
    assert [r.outcome for r in results] == ["completed"] * 4
    for got, want in zip(results, expected, strict=True):
        assert got.epochs[-1].val_loss == pytest.approx(want.epochs[-1].val_loss, rel=1e-4)


def test_a_population_is_sized_from_the_memory_one_member_takes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configs = [_config(hidden_layers=[8 * (i + 1)], device="cpu") for i in range(6)]
    data = trainer.load_data(configs[0], torch.device("cpu"))
    one = trainer.member_bytes(configs[0], data.num_features, data.num_classes, 48)
    # where no allocator counts: the estimate for the widest member, against half the RAM
    monkeypatch.setattr(trainer, "available_ram", lambda: 2 * one * 4)
    assert trainer.max_members(configs) == 4
    monkeypatch.setattr(trainer, "available_ram", lambda: None)  # unknown: no limit
    assert trainer.max_members(configs) == 6
    monkeypatch.setattr(trainer, "available_ram", lambda: one)  # never fewer than one
    assert trainer.max_members(configs) == 1


def test_a_probe_of_a_few_members_is_padded_and_kept_as_the_whole_group() -> None:
    """What one probe member takes is what one member of the whole group takes: the same
    padded stacks, the same optimizer states (measured on a GPU, see below)."""
    configs = [
        _config(hidden_layers=[16], optimizer="sgd", lr=0.1),
        _config(hidden_layers=[64, 8], optimizer="sgd", lr=0.1),
        _config(hidden_layers=[24, 40], optimizer="adam", lr=1e-3),
        _config(hidden_layers=[8, 8, 8], optimizer="sgd", lr=0.1),
        _config(hidden_layers=[32, 16], optimizer="rmsprop", lr=1e-3),
        _config(hidden_layers=[16, 16], optimizer="adam", lr=1e-3),
    ]
    probe = trainer.probe_members(configs)
    assert len(probe) < len(configs)
    device = torch.device("cpu")
    data = trainer.load_data(configs[0], device)

    def per_member(members: list[TrainConfig]) -> tuple[Any, ...]:
        pop = trainer._Population(members, data, device)
        stacks = [p.numel() for p in pop.model.parameters()]
        states = {name for slot in pop.optimizer.slots for name in slot.state}
        return pop.model.sizes, sum(stacks) / len(members), states

    assert per_member([configs[i] for i in probe]) == per_member(configs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_a_population_is_sized_from_measured_memory() -> None:
    configs = [_config(hidden_layers=[256 * (1 + i % 4)], device="cuda") for i in range(16)]
    device = torch.device("cuda")
    data = trainer.load_data(configs[0], device)
    trainer.measure_member_bytes(configs, data, device)  # cuBLAS's workspace, once a process
    measured = trainer.measure_member_bytes(configs, data, device)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    train_population(configs)
    real = (torch.cuda.max_memory_allocated() - before) / len(configs)
    # the probe's own batch counts against fewer members: an upper bound, and a close one
    assert real <= measured * 1.05 and measured <= real * 3
    total = torch.cuda.mem_get_info()[1]
    try:
        trainer.set_memory_share(0.01)
        assert trainer.max_members(configs) == max(1, int(total * 0.01) // measured)
    finally:
        trainer.set_memory_share(MEMORY_SHARE)


def _every_kind(dropout: float = 0.0, **shared: Any) -> list[TrainConfig]:
    """A population of every kind of member: each optimizer, schedules, momentum and
    Nesterov, weight decay and L1, shifts; 1,293 digits in batches of 50 leave a last,
    partial batch; one member completes early and one diverges. (No batch norm: with it,
    the 144 validation images' loss turns a float's rounding into 1e-3.)"""
    settings = {"augment_shift": 1, "batch_size": 50, **shared}
    kinds: list[dict[str, Any]] = [
        {"optimizer": "adam", "lr": 3e-3, "scheduler": "onecycle", "l1": 1e-5},
        {"optimizer": "adamw", "lr": 3e-3, "weight_decay": 0.05, "dropout": dropout},
        {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "epochs": 2},
        {"optimizer": "sgd", "lr": 1e8},
        {"optimizer": "rmsprop", "lr": 1e-3, "momentum": 0.5, "scheduler": "cosine"},
        {"optimizer": "adagrad", "lr": 0.03, "label_smoothing": 0.1},
        {"optimizer": "adadelta", "lr": 1.0, "hidden_layers": [48]},
    ]
    return [_config(**settings, **kind) for kind in kinds]


def _assert_same_curves(
    got: list[TrainResult], want: list[TrainResult], rel: float, adam_rel: float | None = None
) -> None:
    """The same outcomes and per-epoch losses; ``adam_rel`` for Adam's members, whose bias
    correction a member alone computes in double precision on the host, else in float32."""
    assert [r.outcome for r in got] == [r.outcome for r in want]
    assert [r.outcome for r in got].count("completed") == 6
    for a, b in zip(got, want, strict=True):
        tolerance = adam_rel if adam_rel and "adam" in a.config["optimizer"] else rel
        for metric in ("train_loss", "val_loss"):
            assert [getattr(e, metric) for e in a.epochs] == pytest.approx(
                [getattr(e, metric) for e in b.epochs], rel=tolerance, nan_ok=True
            ), (a.config["optimizer"], metric)


def test_steps_read_at_device_counters_train_as_steps_given_by_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a CUDA graph replays (every full batch read at counters on the device), run
    eagerly on the CPU: the same training as the host's indices and schedule rows."""
    configs = _every_kind(dropout=0.2)
    host = train_population(configs)
    bodies = []
    real = trainer._Batches._body

    def body(self: Any) -> None:
        bodies.append(1)
        real(self)

    monkeypatch.setattr(trainer._Batches, "_body", body)
    _assert_same_curves(train_population(configs), host, rel=0)
    assert not bodies  # eager here by default: the same run
    monkeypatch.setattr(trainer, "GRAPH_DEVICES", ("cpu",))
    counted = train_population(configs)
    assert len(bodies) == 3 * (1293 // 50)  # every full batch of three epochs
    _assert_same_curves(counted, host, rel=1e-6, adam_rel=1e-4)
    bodies.clear()
    assert train_population([dataclasses.replace(c, cuda_graphs=False) for c in configs])
    assert not bodies  # a config may turn it off


# What reads a tensor's value on the host: on a GPU each waits for the device, which a CUDA
# graph's capture refuses (and an eager step would pay for at every batch).
_HOST_READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "nonzero")


def test_the_step_a_graph_captures_reads_nothing_back_from_the_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every full batch of every kind of member (dropout per member and batch norm too),
    on the CPU as a GPU runs it: no tensor's value is read on the host inside the step."""
    monkeypatch.setattr(trainer, "GRAPH_DEVICES", ("cpu",))
    reads: list[str] = []
    inside = [False]
    real_body = trainer._Batches._body

    def body(self: Any) -> None:
        inside[0] = True
        try:
            real_body(self)
        finally:
            inside[0] = False

    def watched(name: str) -> Any:
        real = getattr(torch.Tensor, name)

        def read(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if inside[0]:
                reads.append(name)
            return real(self, *args, **kwargs)

        return read

    def getitem(self: torch.Tensor, index: Any) -> Any:
        keys = index if isinstance(index, tuple) else (index,)
        if inside[0] and any(isinstance(k, torch.Tensor) and k.dtype == torch.bool for k in keys):
            reads.append("a boolean mask")  # its result's size is read from the device
        return real_getitem(self, index)

    real_getitem = torch.Tensor.__getitem__
    monkeypatch.setattr(trainer._Batches, "_body", body)
    for name in _HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, watched(name))
    monkeypatch.setattr(torch.Tensor, "__getitem__", getitem)
    mixed = [*_every_kind(dropout=0.2), *_every_kind(dropout=0.1, batch_norm=True)]
    results = train_population(mixed)
    assert [r.outcome for r in results].count("completed") == 12
    assert not reads


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_full_batches_replay_one_captured_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    configs = _every_kind(device="cuda")
    eager = train_population([dataclasses.replace(c, cuda_graphs=False) for c in configs])
    replays = []
    real = torch.cuda.CUDAGraph.replay

    def replay(self: torch.cuda.CUDAGraph) -> None:
        replays.append(1)
        real(self)

    monkeypatch.setattr(torch.cuda.CUDAGraph, "replay", replay)
    graphed = train_population(configs)
    # each epoch (a member left after the first and the second): warm-up steps, then one
    # replay a full batch
    assert len(replays) == 3 * (1293 // 50 - trainer._Batches.WARM_UP)
    _assert_same_curves(graphed, eager, rel=1e-4, adam_rel=1e-3)


def test_fit_returns_the_trained_member_as_a_module() -> None:
    config = _config(hidden_layers=[24, 12], batch_norm=True, dropout=0.1)
    result, model = fit(config)
    data = trainer.load_data(config, trainer.resolve_device(config.device))
    model.eval()
    with torch.no_grad():
        accuracy = (model(data.test_x).argmax(1) == data.test_y).float().mean().item()
    assert accuracy == pytest.approx(result.test_accuracy, abs=2 / len(data.test_y))  # GPU sums
    assert sum(p.numel() for p in model.parameters()) == result.param_count


# --- studies run by populations ----------------------------------------------------------

POPULATION_SPACE = {
    "lr": {"type": "float", "low": 1e-4, "high": 0.5, "log": True},
    "hidden_layers": {
        "type": "layers",
        "depth": {"low": 1, "high": 1},
        "width": {"low": 8, "high": 64},
    },
}


def _states(path: Path, url: str) -> list[optuna.trial.FrozenTrial]:
    return open_study("t", url).get_trials()


@pytest.mark.slow
def test_a_population_study_reports_and_prunes_each_member(tmp_path: Path) -> None:
    path = write_study(
        tmp_path,
        budget={"trials": 12},
        sampler={"name": "random", "seed": 0},
        pruner={"name": "median", "n_startup_trials": 2, "n_warmup_steps": 1},
        fixed={"epochs": 6, "optimizer": "adam", "scheduler": "none"},
        space=POPULATION_SPACE,
        population=4,
    )
    proc = hpsearch("-v", "run", str(path), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "population 4" in proc.stderr
    trials = _states(path, f"sqlite:///{tmp_path / 'hp.db'}")
    assert len(trials) == 12 and {t.state for t in trials} == {
        TrialState.COMPLETE,
        TrialState.PRUNED,
    }
    assert sum(t.state == TrialState.PRUNED for t in trials) >= 1
    for t in trials:
        epochs = len(t.user_attrs["curves"]["val_accuracy"])
        assert sorted(t.intermediate_values) == list(range(1, epochs + 1))  # every epoch
        assert epochs == 6 if t.state == TrialState.COMPLETE else 1 <= epochs <= 6
        last = t.user_attrs["curves"]["val_accuracy"][-1]  # stored to 5 digits
        assert t.intermediate_values[epochs] == pytest.approx(last, rel=1e-4)
    # three populations of four, one after the other, in one worker: every member of a
    # population started before any of them ended, and after the last one before it ended
    assert len({t.user_attrs["worker"] for t in trials}) == 1
    ordered = sorted(trials, key=lambda t: t.number)
    batches = [ordered[i : i + 4] for i in range(0, 12, 4)]
    ended_before = None
    for batch in batches:
        starts = [t.datetime_start for t in batch]
        ends = [t.datetime_complete for t in batch]
        assert None not in starts and None not in ends
        assert max(starts) <= min(ends)  # type: ignore[type-var]  # trained together
        if ended_before is not None:
            assert min(starts) >= ended_before  # type: ignore[operator]  # after the last
        ended_before = max(ends)  # type: ignore[type-var]


@pytest.mark.slow
def test_ctrl_c_stops_a_population_and_queues_every_member_again(tmp_path: Path) -> None:
    path = write_study(tmp_path, budget={"trials": 6}, fixed=GATED, space=POPULATION_SPACE)
    url = f"sqlite:///{tmp_path / 'hp.db'}"
    proc = start("run", str(path), "--no-progress", "--population", "3", env=Gate(tmp_path).env)
    running = [t.number for t in wait_running(url, 3)]  # held at an epoch end until the stop
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    trials = _states(path, url)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    stopped = [t for t in trials if t.number in running]
    assert [t.state for t in stopped] == [TrialState.FAIL] * 3
    assert all(t.user_attrs["fail_reason"] == "interrupted" for t in stopped)
    queued = [t for t in trials if t.system_attrs.get("failed_trial") in running]
    assert sorted(t.system_attrs["failed_trial"] for t in queued) == sorted(running)


@pytest.mark.slow
def test_a_killed_population_worker_has_all_its_trials_retried(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hp.db'}"
    path = write_study(tmp_path, budget={"trials": 8}, fixed=GATED, space=POPULATION_SPACE)
    gate = Gate(tmp_path)
    log_dir = str(tmp_path / "logs")
    launcher = start(
        "launch",
        str(path),
        "--no-progress",
        "--workers",
        "2",
        "--population",
        "3",
        "--log-dir",
        log_dir,
        env=gate.env,
    )
    # both workers' first populations whole (3 + 3 running, held at an epoch end: none can
    # finish): with 3 running, one worker might still be claiming its third
    running = wait_running(url, 6)
    pid = running[0].user_attrs["pid"]
    assert sum(t.user_attrs["pid"] == pid for t in running) == 3
    os.kill(pid, signal.SIGKILL)  # in its first population: 3 trials running
    gate.open()
    _, err = launcher.communicate(timeout=600)
    assert launcher.returncode == 0, err
    trials = _states(path, url)
    killed = [t for t in trials if t.user_attrs.get("pid") == pid]
    assert len(killed) == 3 and all(t.state == TrialState.FAIL for t in killed)
    for number in [t.number for t in killed]:  # each one queued again once, run to the end
        retries = [t for t in trials if t.system_attrs.get("failed_trial") == number]
        assert [t.state for t in retries] == [TrialState.COMPLETE]
    counted = [t for t in trials if t.state != TrialState.FAIL]
    assert len(counted) == 8 and all(t.state == TrialState.COMPLETE for t in counted)


@pytest.mark.slow
def test_members_of_other_depths_share_a_population_where_depths_merge(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configs = [
        _config(hidden_layers=[40], device="cpu"),
        _config(hidden_layers=[24, 16, 8], activation=["tanh", "relu", "gelu"], device="cpu"),
        _config(hidden_layers=[32, 12], weight_decay=1e-3, lr=0.9, device="cpu"),
    ]
    alone = [train(c) for c in configs]
    assert len(plan_groups(configs)) == 3  # on a CPU, one group per depth
    monkeypatch.setattr(trainer, "MERGE_DEPTHS", ("cuda", "cpu"))  # as on a GPU
    assert plan_groups(configs) == [[0, 1, 2]]
    for got, want in zip(train_population(configs), alone, strict=True):
        _assert_same_run(want, got)
    result, model = fit(configs[1])  # a population of one exports as it was built
    assert result.param_count == sum(p.numel() for p in model.parameters())
