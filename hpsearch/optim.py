"""Tables of losses, optimizers and learning-rate schedulers, keyed by the names a config uses
(:mod:`hpsearch.choices` lists them without torch).

Each table maps a name to a small factory, so that the trainer has no if/elif chains and a
new choice is one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from typing import NamedTuple
from typing import TYPE_CHECKING

import torch
from torch import nn
import torch.nn.functional as F

if TYPE_CHECKING:
    from hpsearch.config import TrainConfig

LossFn = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


def _soft_one_hot(targets: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    one_hot = F.one_hot(targets, num_classes).float()
    return one_hot * (1.0 - smoothing) + smoothing / num_classes


def _cross_entropy(logits: torch.Tensor, y: torch.Tensor, smoothing: float) -> torch.Tensor:
    return F.cross_entropy(logits, y, label_smoothing=smoothing)


def _mse(logits: torch.Tensor, y: torch.Tensor, smoothing: float) -> torch.Tensor:
    # Mean squared error between class probabilities and the (smoothed) one-hot target.
    target = _soft_one_hot(y, logits.shape[1], smoothing)
    return F.mse_loss(logits.softmax(dim=1), target)


def _bce(logits: torch.Tensor, y: torch.Tensor, smoothing: float) -> torch.Tensor:
    target = _soft_one_hot(y, logits.shape[1], smoothing)
    return F.binary_cross_entropy_with_logits(logits, target)


LOSSES: dict[str, LossFn] = {
    "cross_entropy": _cross_entropy,  # log-softmax + NLL in one numerically stable op
    "mse": _mse,
    "bce": _bce,  # BCE-with-logits against one-hot targets
}


def _sgd(params: Iterable[nn.Parameter], c: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        params, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov, weight_decay=c.weight_decay
    )


def _rmsprop(params: Iterable[nn.Parameter], c: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)


def _plain(cls: type[torch.optim.Optimizer]) -> OptimizerFactory:
    def make(params: Iterable[nn.Parameter], c: TrainConfig) -> torch.optim.Optimizer:
        return cls(params, lr=c.lr, weight_decay=c.weight_decay)  # type: ignore[call-arg]

    return make


OptimizerFactory = Callable[[Iterable[nn.Parameter], "TrainConfig"], torch.optim.Optimizer]

OPTIMIZERS: dict[str, OptimizerFactory] = {
    "sgd": _sgd,
    "adam": _plain(torch.optim.Adam),
    "adamw": _plain(torch.optim.AdamW),
    "adagrad": _plain(torch.optim.Adagrad),
    "adadelta": _plain(torch.optim.Adadelta),
    "rmsprop": _rmsprop,
}

Scheduler = torch.optim.lr_scheduler.LRScheduler


def _has_momentum(opt: torch.optim.Optimizer) -> bool:
    # OneCycleLR can only cycle a momentum the optimizer has (Adam's betas, SGD's momentum).
    return "betas" in opt.defaults or opt.defaults.get("momentum", 0.0) > 0.0


class SchedulerSpec(NamedTuple):
    """How to build a scheduler and whether it steps after every batch or every epoch."""

    make: Callable[[torch.optim.Optimizer, TrainConfig, int], Scheduler | None]
    per_batch: bool


SCHEDULERS: dict[str, SchedulerSpec] = {
    "none": SchedulerSpec(lambda opt, c, steps: None, per_batch=False),
    "step": SchedulerSpec(
        lambda opt, c, steps: torch.optim.lr_scheduler.StepLR(opt, c.step_size, c.gamma),
        per_batch=False,
    ),
    "cosine": SchedulerSpec(
        lambda opt, c, steps: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=c.epochs),
        per_batch=False,
    ),
    "onecycle": SchedulerSpec(
        lambda opt, c, steps: torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=c.lr, total_steps=c.epochs * steps, cycle_momentum=_has_momentum(opt)
        ),
        per_batch=True,
    ),
}
