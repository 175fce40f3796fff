"""The trainer: one training run of the configurable MLP, i.e. one trial's work.

Fast by design: the data set lives on the training device as tensors (loaded once per
process), a batch is an index slice of a per-epoch permutation, and the batch loop has no
host-device synchronisation; losses are summed on the device and read once per epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from dataclasses import dataclass
import math
import time
from typing import Any
from typing import Literal

import torch
from torch import nn

from hpsearch.config import TrainConfig
from hpsearch.data import device_data
from hpsearch.data import DeviceData
from hpsearch.errors import DeviceError
from hpsearch.errors import PreflightError
from hpsearch.model import build_mlp
from hpsearch.optim import LOSSES
from hpsearch.optim import LossFn
from hpsearch.optim import OPTIMIZERS
from hpsearch.optim import SCHEDULERS

Outcome = Literal["completed", "diverged", "stopped"]


@dataclass(frozen=True)
class EpochStats:
    """Metrics of one epoch; ``epoch`` counts from 1."""

    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    seconds: float


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced.

    Attributes:
        outcome: ``completed``; ``diverged`` (a non-finite loss stopped it early); or
            ``stopped`` (the epoch callback asked to stop, e.g. a pruner).
        epochs: Per-epoch metrics, as many as were run.
        test_loss: Test-set loss of the final model (``None`` unless completed).
        test_accuracy: Test-set accuracy of the final model (``None`` unless completed).
        train_seconds: Wall time of the epochs, evaluation included, data loading excluded.
        param_count: Number of trainable parameters.
        device: The device the run used.
        config: The fully resolved config, enough to repeat the run exactly.
    """

    outcome: Outcome
    epochs: tuple[EpochStats, ...]
    test_loss: float | None
    test_accuracy: float | None
    train_seconds: float
    param_count: int
    device: str
    config: dict[str, Any]

    @property
    def final(self) -> EpochStats | None:
        """The last epoch run, if any."""
        return self.epochs[-1] if self.epochs else None

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-friendly values."""
        return asdict(self)


EpochCallback = Callable[[EpochStats], bool | None]


def resolve_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; anything else must exist on this machine.

    Raises:
        DeviceError: A CUDA or MPS device was named that this process cannot see.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(f"device {name}: no CUDA GPU is visible to this process")
        if device.index is not None and device.index >= count:
            raise DeviceError(f"device {name}: only {count} CUDA GPU(s) visible (0..{count - 1})")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device {name}: Apple MPS is not available on this machine")
    return device


def train(config: TrainConfig, on_epoch: EpochCallback | None = None) -> TrainResult:
    """Trains the MLP that ``config`` describes and evaluates it.

    See :func:`fit`, which also returns the trained model.
    """
    return fit(config, on_epoch)[0]


def fit(
    config: TrainConfig, on_epoch: EpochCallback | None = None
) -> tuple[TrainResult, nn.Module]:
    """Trains the MLP that ``config`` describes, evaluates it, and returns it too.

    Args:
        config: A validated config (see :func:`hpsearch.config.make_config`).
        on_epoch: Called after every epoch with its metrics; returning ``True`` stops the run
            (outcome ``stopped``). This is how an Optuna objective reports and prunes.

    Returns:
        The result (per-epoch curves, test metrics when completed, the resolved config) and
        the trained model.
    """
    device = resolve_device(config.device)
    data = load_data(config, device)
    model, loss_fn, optimizer, scheduler, spec = _set_up(config, data, device)
    shuffle = torch.Generator().manual_seed(config.seed)  # CPU: same order on every device
    n_train = len(data.train_y)
    n_used = _batches_used(n_train, config.batch_size)

    history: list[EpochStats] = []
    outcome: Outcome = "completed"
    start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        perm = torch.randperm(n_train, generator=shuffle).to(device, non_blocking=True)
        loss_sum = torch.zeros((), device=device)  # read once per epoch: no per-batch sync
        for i in range(0, n_used, config.batch_size):
            idx = perm[i : min(i + config.batch_size, n_used)]
            loss = loss_fn(model(data.train_x[idx]), data.train_y[idx], config.label_smoothing)
            if config.l1 > 0:
                loss = loss + config.l1 * _l1_norm(model)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            if scheduler is not None and spec.per_batch:
                scheduler.step()
            loss_sum += loss.detach() * len(idx)
        if scheduler is not None and not spec.per_batch:
            scheduler.step()
        train_loss = (loss_sum / n_used).item()  # note: a CPU-GPU sync, once per epoch
        val_loss, val_acc = evaluate(model, data.val_x, data.val_y, loss_fn, config)
        history.append(
            EpochStats(epoch, train_loss, val_loss, val_acc, time.perf_counter() - epoch_start)
        )
        if not math.isfinite(train_loss) or (len(data.val_y) and not math.isfinite(val_loss)):
            outcome = "diverged"
            break
        if on_epoch is not None and on_epoch(history[-1]):
            outcome = "stopped"
            break

    test_loss = test_acc = None
    if outcome == "completed":
        test_loss, test_acc = evaluate(model, data.test_x, data.test_y, loss_fn, config)
    result = TrainResult(
        outcome=outcome,
        epochs=tuple(history),
        test_loss=test_loss,
        test_accuracy=test_acc,
        train_seconds=time.perf_counter() - start,
        param_count=sum(p.numel() for p in model.parameters() if p.requires_grad),
        device=str(device),
        config=config.to_dict(),
    )
    return result, model


def _batches_used(n_train: int, batch_size: int) -> int:
    # A last batch of one sample is dropped: batch norm cannot normalise a single row.
    return n_train - 1 if n_train % batch_size == 1 else n_train


def _set_up(
    config: TrainConfig, data: DeviceData, device: torch.device
) -> tuple[nn.Module, LossFn, torch.optim.Optimizer, Any, Any]:
    """The model, loss, optimizer and scheduler (with its table entry) of a run."""
    torch.manual_seed(config.seed)  # on the CPU: the same initial weights on every device
    model = build_mlp(
        data.num_features,
        data.num_classes,
        config.hidden_layers,
        config.activations(),
        config.dropouts(),
        config.batch_norm,
    ).to(device)
    optimizer = OPTIMIZERS[config.optimizer](model.parameters(), config)
    spec = SCHEDULERS[config.scheduler]
    steps = math.ceil(_batches_used(len(data.train_y), config.batch_size) / config.batch_size)
    return model, LOSSES[config.loss], optimizer, spec.make(optimizer, config, steps), spec


def preflight(config: TrainConfig) -> None:
    """Checks that runs of ``config`` can start here: the device exists, the data set loads,
    and one batch trains to a finite loss. Cheap (the data set stays cached for the trials).

    Raises:
        DeviceError: The device does not exist on this machine.
        DataError: The data set cannot be loaded.
        PreflightError: Training one batch raised, or gave a non-finite loss.
    """
    device = resolve_device(config.device)
    data = load_data(config, device)
    try:
        model, loss_fn, optimizer, _, _ = _set_up(config, data, device)
        model.train()
        batch = slice(0, min(config.batch_size, len(data.train_y)))
        loss = loss_fn(model(data.train_x[batch]), data.train_y[batch], config.label_smoothing)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        value = loss.item()
    except Exception as e:
        raise PreflightError(
            f"pre-flight: one training batch on {device} failed: {type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}"
        ) from e
    if not math.isfinite(value):
        raise PreflightError(f"pre-flight: one training batch on {device} gave loss {value}")


def _l1_norm(model: nn.Module) -> torch.Tensor:
    # Weights only: penalising biases and norm scales is not what "L1 regularization" means.
    weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
    return torch.stack([w.abs().sum() for w in weights]).sum()


@torch.no_grad()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn, config: TrainConfig
) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``(x, y)``, in evaluation batches."""
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.int64)
    for i in range(0, len(y), config.eval_batch_size):
        xb, yb = x[i : i + config.eval_batch_size], y[i : i + config.eval_batch_size]
        logits = model(xb)
        loss_sum += loss_fn(logits, yb, config.label_smoothing) * len(yb)
        correct += (logits.argmax(dim=1) == yb).sum()
    if len(y) == 0:  # no validation split (retraining on train + validation)
        return math.nan, math.nan
    loss, right = torch.stack([loss_sum, correct.to(loss_sum.dtype)]).tolist()  # one sync
    return loss / len(y), right / len(y)


def load_data(config: TrainConfig, device: torch.device) -> DeviceData:
    """Loads (or fetches from the per-process cache) the tensors a run of ``config`` uses."""
    return device_data(
        config.dataset,
        config.data_dir,
        config.val_fraction,
        config.train_subset,
        config.preprocess,
        str(device),
    )
