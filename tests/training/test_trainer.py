from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace
import typing

import pytest
from sklearn.metrics import balanced_accuracy_score
import torch

from hpsearch.errors import ConfigError
from hpsearch.spec import choices
from hpsearch.spec.config import make_config
from hpsearch.spec.config import TrainConfig
from hpsearch.spec.studyfile import Metric
from hpsearch.spec.studyfile import METRICS
from hpsearch.spec.tasks import TASK_METRICS
from hpsearch.training.data import DATASETS
from hpsearch.training.data import PREPROCESSING
from hpsearch.training.model import ACTIVATIONS
from hpsearch.training.optim import LOSSES
from hpsearch.training.optim import OPTIMIZERS
from hpsearch.training.optim import REGRESSION_LOSSES
from hpsearch.training.trainer import EpochStats
from hpsearch.training.trainer import evaluate
from hpsearch.training.trainer import fit
from hpsearch.training.trainer import numerics
from hpsearch.training.trainer import stalled
from hpsearch.training.trainer import train
from hpsearch.training.trainer import TrainResult

CHANCE = 0.1  # ten classes


def test_every_name_a_config_accepts_has_its_torch_code() -> None:
    # hpsearch.spec.choices lists the names without torch; the tables beside the trainer hold the
    # code: the two must name the same things
    assert set(DATASETS) == set(choices.DATASETS)
    assert set(PREPROCESSING) == set(choices.PREPROCESSING)
    assert set(ACTIVATIONS) == set(choices.ACTIVATIONS)
    assert set(LOSSES) | set(REGRESSION_LOSSES) == set(choices.LOSSES)
    assert set(choices.LOSSES) == set(typing.get_args(choices.Loss)) - {"nll"}
    for task, losses in choices.TASK_LOSSES.items():
        assert set(losses) == set(REGRESSION_LOSSES if task == "regression" else LOSSES)
    assert set(OPTIMIZERS) == set(choices.OPTIMIZERS)
    assert choices.PRECISIONS == ("fp32", "tf32", "bf16")  # what the trainer knows of


def test_every_metric_an_objective_may_name_is_one_the_trainer_measures() -> None:
    assert set(typing.get_args(Metric)) == set(METRICS)
    epoch = {f.name for f in dataclasses.fields(EpochStats)}
    result = {f.name for f in dataclasses.fields(TrainResult)}
    for metric, (_, per_epoch) in METRICS.items():
        assert metric in (epoch if per_epoch else result), metric
    for task, metrics in TASK_METRICS.items():
        assert set(metrics) <= set(METRICS), task


def test_default_config_learns_digits() -> None:
    result = train(make_config({}))
    assert result.outcome == "completed"
    assert len(result.epochs) == 14
    assert result.epochs[-1].val_accuracy >= 0.90
    assert result.test_accuracy is not None and result.test_accuracy >= 0.90
    assert result.epochs[-1].train_loss < result.epochs[0].train_loss
    assert result.param_count == 64 * 128 + 128 + 128 * 10 + 10
    assert result.device == "cpu"
    assert result.config["hidden_layers"] == [128]


def _learns(**values: object) -> float:
    result = train(make_config({"epochs": 4, **values}))
    assert result.outcome == "completed", values
    accuracy = result.epochs[-1].val_accuracy
    assert accuracy > 3 * CHANCE, (values, accuracy)
    return accuracy


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_every_activation_learns(activation: str) -> None:
    _learns(activation=activation, optimizer="adam", lr=0.01, scheduler="none")


@pytest.mark.parametrize("loss", [*sorted(LOSSES), "nll"])
def test_every_loss_learns(loss: str) -> None:
    _learns(loss=loss, optimizer="adam", lr=0.01, scheduler="none")


@pytest.mark.parametrize(
    ("optimizer", "lr", "extra"),
    [
        ("sgd", 0.1, {"momentum": 0.9, "nesterov": True}),
        ("sgd", 0.2, {}),
        ("adam", 0.01, {}),
        ("adamw", 0.01, {"weight_decay": 0.01}),
        ("adagrad", 0.05, {}),
        ("adadelta", 1.0, {}),
        ("rmsprop", 0.003, {"momentum": 0.5}),
    ],
)
def test_every_optimizer_learns(optimizer: str, lr: float, extra: dict[str, object]) -> None:
    _learns(optimizer=optimizer, lr=lr, **extra)


def test_optimizer_table_is_covered() -> None:
    assert set(OPTIMIZERS) == {"sgd", "adam", "adamw", "adagrad", "adadelta", "rmsprop"}


@pytest.mark.parametrize("scheduler", sorted(choices.SCHEDULERS))
@pytest.mark.parametrize("optimizer", ["adadelta", "adam"])
def test_every_scheduler_learns(scheduler: str, optimizer: str) -> None:
    _learns(scheduler=scheduler, optimizer=optimizer, lr=1.0 if optimizer == "adadelta" else 0.01)


@pytest.mark.parametrize(
    "values",
    [
        {"weight_decay": 1e-3},
        {"l1": 1e-4},
        {"dropout": 0.3},
        {"label_smoothing": 0.1},
        {"batch_norm": True},
        {"hidden_layers": [64, 32], "activation": ["tanh", "relu"], "dropout": [0.1, 0.2]},
        {"hidden_layers": []},
        {"preprocess": "scale"},
        {"preprocess": "raw", "optimizer": "adam", "lr": 0.001},
        {"batch_size": 17, "batch_norm": True},
    ],
)
def test_regularizers_and_architectures_learn(values: dict[str, object]) -> None:
    _learns(**values)


def _l1_norm(config: TrainConfig) -> float:
    _, model = fit(config)
    return sum(float(p.detach().abs().sum()) for n, p in model.named_parameters() if "weight" in n)


def test_l1_penalty_shrinks_weights() -> None:
    plain = _l1_norm(make_config({"epochs": 3, "optimizer": "adam", "lr": 1e-2}))
    sparse = _l1_norm(make_config({"epochs": 3, "optimizer": "adam", "lr": 1e-2, "l1": 1e-3}))
    # the same seed and steps; only the penalty differs, and it must pull the weights in
    assert sparse < 0.7 * plain  # 0.47 here


def _curve(result: TrainResult) -> list[tuple[float, float, float]]:
    return [(e.train_loss, e.val_loss, e.val_accuracy) for e in result.epochs]


def test_same_seed_same_result_and_other_seed_differs() -> None:
    config = make_config({"epochs": 3, "dropout": 0.2})
    a, b = train(config), train(config)
    assert _curve(a) == _curve(b)
    assert a.test_accuracy == b.test_accuracy
    c = train(make_config({"epochs": 3, "dropout": 0.2, "seed": 2}))
    assert _curve(c) != _curve(a)


def test_diverging_learning_rate_stops_with_outcome() -> None:
    result = train(make_config({"optimizer": "sgd", "lr": 1e4, "epochs": 10}))
    assert result.outcome == "diverged"
    assert len(result.epochs) < 10
    last = result.epochs[-1]
    assert last.train_loss != last.train_loss or last.train_loss == float("inf")  # NaN or inf
    assert result.test_accuracy is None


def test_callback_can_stop_the_run() -> None:
    seen: list[int] = []

    def stop_after_two(stats: EpochStats) -> bool:
        seen.append(stats.epoch)
        return stats.epoch == 2

    result = train(make_config({"epochs": 5}), on_epoch=stop_after_two)
    assert result.outcome == "stopped"
    assert seen == [1, 2]
    assert len(result.epochs) == 2


def test_synthetic_dataset_learns() -> None:
    assert _learns(dataset="synthetic", optimizer="adam", lr=0.01) > 0.9


def test_bf16_autocasts_training_and_learns_as_float32_does() -> None:
    settings = {"epochs": 4, "hidden_layers": [48, 24], "batch_norm": True, "device": "cpu"}
    exact, (half, model) = (
        train(make_config(settings)),
        fit(make_config({**settings, "precision": "bf16"})),
    )
    # bfloat16 products: other losses (the setting took effect) ...
    assert _curve(half) != _curve(exact)
    # ... that learn as well (digits' test split: one image is 0.28 points) ...
    assert half.outcome == "completed" and half.test_accuracy is not None
    assert exact.test_accuracy is not None
    assert abs(half.test_accuracy - exact.test_accuracy) <= 0.02
    # ... into float32 weights and batch statistics, as a saved model keeps them
    assert {t.dtype for t in model.state_dict().values() if t.is_floating_point()} == {
        torch.float32
    }
    assert half.config["precision"] == "bf16"


def test_tf32_is_exact_float32_off_a_cuda_gpu() -> None:
    settings = {"epochs": 2, "device": "cpu"}
    assert _curve(train(make_config({**settings, "precision": "tf32"}))) == _curve(
        train(make_config(settings))
    )


def test_tf32_holds_only_while_its_population_trains() -> None:
    # the setting is the process's: the next population in a worker may want float32
    assert torch.get_float32_matmul_precision() == "highest"
    with numerics("tf32", torch.device("cuda")):
        assert torch.get_float32_matmul_precision() == "high"
    with pytest.raises(RuntimeError), numerics("tf32", torch.device("cuda")):
        raise RuntimeError("a failed run")
    assert torch.get_float32_matmul_precision() == "highest"
    with numerics("tf32", torch.device("cpu")), numerics("bf16", torch.device("cuda")):
        assert torch.get_float32_matmul_precision() == "highest"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_tf32_run_on_a_gpu_uses_tensor_cores_then_restores_float32() -> None:
    seen: list[str] = []

    def record(stats: EpochStats) -> None:
        seen.append(torch.get_float32_matmul_precision())

    settings = {"epochs": 2, "device": "cuda"}
    tf32 = train(make_config({**settings, "precision": "tf32"}), on_epoch=record)
    assert seen == ["high", "high"] and torch.get_float32_matmul_precision() == "highest"
    assert tf32.outcome == "completed" and tf32.test_accuracy is not None
    exact = train(make_config(settings))
    assert exact.test_accuracy is not None
    assert abs(tf32.test_accuracy - exact.test_accuracy) <= 0.02


def test_a_model_whose_weights_exceed_the_ram_is_refused_before_allocating(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hpsearch.errors import DeviceError
    from hpsearch.training import trainer

    monkeypatch.setattr(trainer, "available_ram", lambda: 2_000_000)
    small = make_config({"dataset": "digits", "hidden_layers": [8], "epochs": 1})
    assert train(small).outcome == "completed"
    big = make_config({"dataset": "digits", "hidden_layers": [512, 512], "epochs": 1})
    with pytest.raises(DeviceError, match=r"\[512, 512\]: 301,066 parameters need 2.4 MB"):
        train(big)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_the_balanced_accuracy_is_each_classs_recall_averaged_as_scikit_learns() -> None:
    # 3 members, 50 rows of classes 0-2 (mostly 0); outputs of 4 classes: one never true
    gen = torch.Generator().manual_seed(0)
    y = torch.tensor([0] * 40 + [1] * 7 + [2] * 3)[torch.randperm(50, generator=gen)]
    logits = torch.randn(3, 50, 4, generator=gen)
    logits[0, :, 0] += 10.0  # member 0 always answers the large class
    batches = iter([slice(i, i + 16) for i in range(0, 50, 16)])  # 4, the last short

    def model(xb: torch.Tensor, train: bool) -> torch.Tensor:
        return logits[:, next(batches)]

    def loss_fn(out: torch.Tensor, yb: torch.Tensor, smoothing: float) -> torch.Tensor:
        labels = yb.expand(len(out), -1)
        return torch.nn.functional.cross_entropy(out.transpose(1, 2), labels, reduction="none")

    pop = SimpleNamespace(
        configs=[None] * 3, task="classification", model=model, loss_fn=loss_fn, smoothing=0.0
    )
    found = evaluate(pop, torch.zeros(50, 1), y, batch_size=16)  # type: ignore[arg-type]
    for m in range(3):
        answers = logits[m].argmax(dim=-1).numpy()
        expected = balanced_accuracy_score(y.numpy(), answers)
        assert found.by_task["balanced_accuracy"][m] == pytest.approx(expected, abs=1e-6)
        assert found.accuracy[m] == pytest.approx(float((answers == y.numpy()).mean()))
    assert found.accuracy[0] == 0.8 and found.by_task["balanced_accuracy"][0] == pytest.approx(
        1 / 3
    )
    # its standard error: the recalls' binomial errors, (k + 1) / (n + 2), over 3 classes
    p = [41 / 42, 1 / 9, 1 / 5]
    se = math.sqrt(sum(q * (1 - q) / n for q, n in zip(p, (40, 7, 3), strict=True))) / 3
    assert found.by_task["balanced_accuracy_se"][0] == pytest.approx(se)


def test_a_classification_records_its_balanced_accuracy_each_epoch_and_on_test() -> None:
    result = train(make_config({"epochs": 2, "optimizer": "adam", "lr": 0.01}))
    assert all(0.5 < e.val_balanced_accuracy <= 1.0 for e in result.epochs)
    assert all(0.0 < e.val_balanced_accuracy_se < 0.1 for e in result.epochs)
    assert result.test_balanced_accuracy is not None
    # the digits' classes are near equal in size: near the accuracy, not equal to it
    assert result.test_balanced_accuracy == pytest.approx(result.test_accuracy, abs=0.02)
    assert result.test_balanced_accuracy != result.test_accuracy


# Overfits: 100 training images and a wide layer; its validation loss turns up within epochs.
OVERFITS = {
    "hidden_layers": [256],
    "optimizer": "adam",
    "lr": 0.01,
    "scheduler": "none",
    "train_subset": 100,
    "batch_size": 32,
}


def test_a_run_whose_validation_loss_stalls_stops_early_as_completed() -> None:
    result = train(make_config({**OVERFITS, "epochs": 300, "early_stopping": 3}))
    assert result.outcome == "early_stopped"
    losses = [s.val_loss for s in result.epochs]
    assert 3 < len(losses) < 300
    best = min(losses[:-3])
    assert min(losses[-3:]) >= best  # three epochs without a better loss ...
    assert all(min(losses[: k - 3]) > min(losses[k - 3 : k]) for k in range(4, len(losses)))
    assert result.test_accuracy is not None and result.test_loss is not None  # ... completed
    plain = train(make_config({**OVERFITS, "epochs": len(losses)}))  # the same run, unwatched
    assert plain.outcome == "completed"
    assert [s.val_loss for s in plain.epochs] == pytest.approx(losses, rel=1e-5)


def test_stalled_counts_epochs_since_the_best_validation_loss() -> None:
    def epochs(*losses: float) -> list[EpochStats]:
        return [EpochStats(k + 1, 1.0, v, 0.5, 0.1) for k, v in enumerate(losses)]

    assert not stalled(epochs(3, 2, 1, 2, 2), 0)  # never
    assert not stalled(epochs(3, 2, 1, 2), 2)  # one epoch since the best
    assert stalled(epochs(3, 2, 1, 2, 1), 2)  # equal is no better
    assert not stalled(epochs(3, 2, 1, 2, 0.5), 2)
    assert not stalled(epochs(3, 4), 2)  # fewer epochs than the patience
    with pytest.raises(ConfigError, match="early_stopping: watches the validation loss"):
        make_config({"early_stopping": 2, "val_fraction": 0.0})


@pytest.mark.parametrize(
    ("layers", "batch_norm"), [((), False), ((16,), False), ((32, 8, 24), True), ((5, 5), True)]
)
def test_a_networks_parameters_are_counted_without_building_it(
    layers: tuple[int, ...], batch_norm: bool
) -> None:
    from hpsearch.training.model import build_mlp
    from hpsearch.training.model import param_count
    from hpsearch.training.trainer import count_params

    built = build_mlp(64, 10, layers, ["relu"] * len(layers), [0.1] * len(layers), batch_norm)
    counted = sum(p.numel() for p in built.parameters() if p.requires_grad)
    assert param_count(64, 10, layers, batch_norm) == counted
    config = make_config(
        {"dataset": "digits", "hidden_layers": list(layers), "batch_norm": batch_norm}
    )
    assert count_params(config) == counted  # digits: 64 inputs, 10 classes
    trained = train(dataclasses.replace(config, epochs=1, scheduler="none"))
    assert trained.param_count == counted
