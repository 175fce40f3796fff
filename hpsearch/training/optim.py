"""Losses, optimizers and learning-rate schedules for a population of models trained at once.

Every member of a population (see :mod:`hpsearch.training.trainer`) has its own
hyperparameters, held as tensors with one entry per member, so that one kernel updates all
members. Each rule here is the per-member equivalent of its ``torch.optim`` /
``torch.optim.lr_scheduler`` / ``torch.nn.functional`` namesake with that library's defaults
(``tests/training/test_optim.py`` checks them against it): the same formula, the same order of
operations.

Parameters are stacks with the member dimension at ``member_dim``; members are ordered by
optimizer kind, so that each kind updates one contiguous slice (a view, nothing copied).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
import math
from typing import Any
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from hpsearch.spec.config import TrainConfig

# --- losses ------------------------------------------------------------------------------

# (logits (K, B, C), targets (B,), label smoothing: one float for all members, or one per
# member shaped (K, 1, 1)) -> each member's loss per sample (K, B): the mean is the training
# loss, the spread over validation samples the standard error of the validation loss
LossFn = Callable[[torch.Tensor, torch.Tensor, float | torch.Tensor], torch.Tensor]


def _soft_one_hot(
    y: torch.Tensor, num_classes: int, smoothing: float | torch.Tensor
) -> torch.Tensor:
    one_hot = F.one_hot(y, num_classes).float()  # (B, C), broadcast over members
    return one_hot * (1.0 - smoothing) + smoothing / num_classes


def _cross_entropy(
    logits: torch.Tensor, y: torch.Tensor, smoothing: float | torch.Tensor
) -> torch.Tensor:
    k, b, c = logits.shape
    if isinstance(smoothing, float):  # one value for all members: torch's fused kernel
        per_row = F.cross_entropy(
            logits.reshape(k * b, c), y.repeat(k), reduction="none", label_smoothing=smoothing
        )
        return per_row.view(k, b)
    # F.cross_entropy(label_smoothing=e): (1 - e) * NLL + e * mean over classes of -log p
    logp = logits.log_softmax(dim=-1)
    nll = -logp.gather(-1, y.expand(k, -1).unsqueeze(-1)).squeeze(-1)
    e = smoothing.view(-1, 1)
    return (1.0 - e) * nll + e * -logp.mean(dim=-1)


def _mse(logits: torch.Tensor, y: torch.Tensor, smoothing: float | torch.Tensor) -> torch.Tensor:
    # Mean squared error between class probabilities and the (smoothed) one-hot target.
    target = _soft_one_hot(y, logits.shape[-1], smoothing)
    return ((logits.softmax(dim=-1) - target) ** 2).mean(dim=2)


def _bce(logits: torch.Tensor, y: torch.Tensor, smoothing: float | torch.Tensor) -> torch.Tensor:
    target = _soft_one_hot(y, logits.shape[-1], smoothing).expand_as(logits)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return bce.mean(dim=2)


LOSSES: dict[str, LossFn] = {
    "cross_entropy": _cross_entropy,  # log-softmax + NLL (nll is an alias, see choices)
    "mse": _mse,
    "bce": _bce,  # BCE-with-logits against one-hot targets
}


# A regression network has one output, trained against the standardized target (B,);
# label smoothing means nothing there.
def _squared(out: torch.Tensor, y: torch.Tensor, smoothing: float | torch.Tensor) -> torch.Tensor:
    return (out.squeeze(-1) - y) ** 2


def _huber(out: torch.Tensor, y: torch.Tensor, smoothing: float | torch.Tensor) -> torch.Tensor:
    prediction = out.squeeze(-1)
    return F.huber_loss(prediction, y.expand_as(prediction), reduction="none")  # delta 1


def _absolute(out: torch.Tensor, y: torch.Tensor, smoothing: float | torch.Tensor) -> torch.Tensor:
    return (out.squeeze(-1) - y).abs()


REGRESSION_LOSSES: dict[str, LossFn] = {"mse": _squared, "huber": _huber, "l1": _absolute}


def loss_function(name: str, task: str) -> LossFn:
    """The loss ``name`` of a task (``mse`` is one of each).

    Raises:
        ValueError: The task has no such loss (a config not fitted to its data's task; see
            :func:`hpsearch.spec.tasks.with_task`).
    """
    table = REGRESSION_LOSSES if task == "regression" else LOSSES
    if name not in table:
        raise ValueError(f"loss {name} is not a {task} loss; allowed: {', '.join(table)}")
    return table[name]


# --- optimizers --------------------------------------------------------------------------


@dataclass
class Slot:
    """One parameter stack and its optimizer state.

    Attributes:
        param: The stack (a leaf tensor that requires grad).
        member_dim: The dimension that indexes members.
        state: Optimizer state tensors of the same shape, by name.
    """

    param: torch.Tensor
    member_dim: int
    state: dict[str, torch.Tensor]

    def per_member(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` (one per member) shaped to broadcast against :attr:`param`."""
        shape = [1] * self.param.dim()
        shape[self.member_dim] = -1
        return values.view(shape)


Tensors = list[torch.Tensor] | tuple[torch.Tensor, ...]  # what foreach operations take and give

# A hyperparameter of one step for the stacks one rule updates: a float (a single member's
# value from the host: torch.optim's own arithmetic), a 0-dim tensor (a single member's value
# read on the device), or one tensor per stack, shaped to broadcast against it (a value per
# member). Rules update all their stacks at once (torch's foreach operations: on a GPU one
# kernel for every stack where the values are scalars).
Hyper = float | torch.Tensor | list[torch.Tensor]


@dataclass(frozen=True)
class StepHyper:
    """One kind's hyperparameters for one step (see :data:`Hyper`)."""

    neg_lr: Hyper  # minus the learning rate
    weight_decay: Hyper | None  # None: 0 for every member (nothing to compute)
    momentum: Hyper  # SGD and RMSprop momentum, or Adam's beta1 (cycled by onecycle)
    nesterov: bool | torch.Tensor | list[torch.Tensor] | None  # None: no member uses it
    step: int | torch.Tensor  # 1 for the first update (a device counter, see step_on_device)


UpdateRule = Callable[[Tensors, Tensors, dict[str, Tensors], StepHyper], None]


def _entries(h: Any, n: int) -> list[Any]:
    """A hyperparameter's value for each of ``n`` stacks."""
    return h if isinstance(h, list) else [h] * n


def _combine(fn: Callable[[Any, Any], Any], a: Hyper, b: Hyper) -> Hyper:
    """``fn`` of two hyperparameters, stack by stack where either is one per stack."""
    if isinstance(a, list) or isinstance(b, list):
        n = len(a) if isinstance(a, list) else len(b)  # type: ignore[arg-type]
        return [fn(x, y) for x, y in zip(_entries(a, n), _entries(b, n), strict=True)]
    value: Hyper = fn(a, b)
    return value


def _axpy(p: Tensors, x: Tensors, coef: Hyper) -> None:
    """``p += coef * x`` in place, stack by stack."""
    if isinstance(coef, float):
        torch._foreach_add_(p, x, alpha=coef)
    elif isinstance(coef, list):
        torch._foreach_addcmul_(p, x, coef)
    else:  # a device scalar
        torch._foreach_add_(p, torch._foreach_mul(x, coef))


def _decayed(g: Tensors, p: Tensors, h: StepHyper) -> Tensors:
    # torch: grad.add(param, alpha=weight_decay), skipped when it is 0
    if h.weight_decay is None:
        return g
    if isinstance(h.weight_decay, float):
        return torch._foreach_add(g, p, alpha=h.weight_decay)
    return torch._foreach_add(g, torch._foreach_mul(p, h.weight_decay))


def _sgd(p: Tensors, g: Tensors, s: dict[str, Tensors], h: StepHyper) -> None:
    g = _decayed(g, p, h)
    buf = s["momentum_buffer"]
    # torch starts the buffer as a copy of the first gradient: from zeros, 0 * m + g is g,
    # exactly, with no branch on the step (a CUDA graph replays one path)
    torch._foreach_mul_(buf, h.momentum)
    torch._foreach_add_(buf, g)
    # momentum 0: the buffer is the gradient itself
    direction = buf
    if isinstance(h.nesterov, list):  # members with and without
        momenta = _entries(h.momentum, len(buf))
        direction = [
            torch.where(n, gi + m * b, b)
            for n, gi, m, b in zip(h.nesterov, g, momenta, buf, strict=True)
        ]
    elif h.nesterov:
        direction = torch._foreach_add(g, torch._foreach_mul(buf, h.momentum))
    _axpy(p, direction, h.neg_lr)


def _adam(decoupled: bool) -> UpdateRule:
    beta2, eps = 0.999, 1e-8

    def update(p: Tensors, g: Tensors, s: dict[str, Tensors], h: StepHyper) -> None:
        if decoupled:  # AdamW
            if h.weight_decay is not None:
                torch._foreach_mul_(
                    p, _combine(lambda a, b: 1.0 + a * b, h.neg_lr, h.weight_decay)
                )
        else:
            g = _decayed(g, p, h)
        beta1 = h.momentum
        # lerp's weight: a float, or a tensor per stack (a device scalar repeated)
        weights = (
            1.0 - beta1 if isinstance(beta1, float) else [1.0 - b for b in _entries(beta1, len(g))]
        )
        torch._foreach_lerp_(s["exp_avg"], g, weights)
        torch._foreach_mul_(s["exp_avg_sq"], beta2)
        torch._foreach_addcmul_(s["exp_avg_sq"], g, g, value=1.0 - beta2)
        step_size = _combine(lambda lr, b: lr / (1.0 - b**h.step), h.neg_lr, beta1)
        denom = torch._foreach_sqrt(s["exp_avg_sq"])
        torch._foreach_div_(denom, (1.0 - beta2**h.step) ** 0.5)
        torch._foreach_add_(denom, eps)
        if isinstance(step_size, float):
            torch._foreach_addcdiv_(p, s["exp_avg"], denom, value=step_size)
        else:
            _axpy(p, torch._foreach_div(s["exp_avg"], denom), step_size)

    return update


def _adagrad(p: Tensors, g: Tensors, s: dict[str, Tensors], h: StepHyper) -> None:
    g = _decayed(g, p, h)
    torch._foreach_addcmul_(s["sum"], g, g, value=1.0)
    std = torch._foreach_sqrt(s["sum"])
    torch._foreach_add_(std, 1e-10)
    _axpy(p, torch._foreach_div(g, std), h.neg_lr)


def _adadelta(p: Tensors, g: Tensors, s: dict[str, Tensors], h: StepHyper) -> None:
    rho, eps = 0.9, 1e-6
    g = _decayed(g, p, h)
    square_avg, acc_delta = s["square_avg"], s["acc_delta"]
    torch._foreach_mul_(square_avg, rho)
    torch._foreach_addcmul_(square_avg, g, g, value=1.0 - rho)
    std = torch._foreach_add(square_avg, eps)
    torch._foreach_sqrt_(std)
    delta = torch._foreach_add(acc_delta, eps)
    torch._foreach_sqrt_(delta)
    torch._foreach_div_(delta, std)
    torch._foreach_mul_(delta, g)
    torch._foreach_mul_(acc_delta, rho)
    torch._foreach_addcmul_(acc_delta, delta, delta, value=1.0 - rho)
    _axpy(p, delta, h.neg_lr)


def _rmsprop(p: Tensors, g: Tensors, s: dict[str, Tensors], h: StepHyper) -> None:
    alpha, eps = 0.99, 1e-8
    g = _decayed(g, p, h)
    square_avg, buf = s["square_avg"], s["momentum_buffer"]
    torch._foreach_mul_(square_avg, alpha)
    torch._foreach_addcmul_(square_avg, g, g, value=1.0 - alpha)
    avg = torch._foreach_sqrt(square_avg)
    torch._foreach_add_(avg, eps)
    torch._foreach_mul_(buf, h.momentum)  # momentum 0: g / avg, plain RMSprop
    torch._foreach_addcdiv_(buf, g, avg)
    _axpy(p, buf, h.neg_lr)


@dataclass(frozen=True)
class OptimizerKind:
    """An optimizer: its update rule, the state it keeps, and its default momentum (Adam's
    beta1), which a onecycle schedule cycles if ``has_momentum``."""

    update: UpdateRule
    state: tuple[str, ...]
    has_momentum: Callable[[TrainConfig], bool]
    momentum: Callable[[TrainConfig], float]


OPTIMIZERS: dict[str, OptimizerKind] = {
    "sgd": OptimizerKind(
        _sgd, ("momentum_buffer",), lambda c: c.momentum > 0.0, lambda c: c.momentum
    ),
    "adam": OptimizerKind(_adam(False), ("exp_avg", "exp_avg_sq"), lambda c: True, lambda c: 0.9),
    "adamw": OptimizerKind(_adam(True), ("exp_avg", "exp_avg_sq"), lambda c: True, lambda c: 0.9),
    "adagrad": OptimizerKind(_adagrad, ("sum",), lambda c: False, lambda c: 0.0),
    "adadelta": OptimizerKind(
        _adadelta, ("square_avg", "acc_delta"), lambda c: False, lambda c: 0.0
    ),
    "rmsprop": OptimizerKind(
        _rmsprop,
        ("square_avg", "momentum_buffer"),
        lambda c: c.momentum > 0.0,
        lambda c: c.momentum,
    ),
}


def _per_stack(h: StepHyper, slots: Sequence[Slot]) -> StepHyper:
    """The hyperparameters for these stacks: a value per member (a 1-dim tensor) shaped
    to broadcast against each stack; floats and device scalars (0-dim) as they are."""

    def shape(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.dim() == 1:
            return [slot.per_member(value) for slot in slots]
        return value

    return StepHyper(
        neg_lr=shape(h.neg_lr),
        weight_decay=shape(h.weight_decay),
        momentum=shape(h.momentum),
        nesterov=shape(h.nesterov),
        step=h.step,
    )


@dataclass(frozen=True)
class _Range:
    """The members ``[a, b)`` of one optimizer kind, with their constant hyperparameters as
    a step takes them (a float or bool for one member, a tensor for several; ``None``: no
    member uses it), resolved once, not at every step."""

    kind: str
    a: int
    b: int
    weight_decay: float | torch.Tensor | None
    nesterov: bool | torch.Tensor | None

    @property
    def single(self) -> bool:
        """Whether one member has this kind: its values are host floats (or device
        scalars), as ``torch.optim`` computes."""
        return self.b - self.a == 1


class PopulationOptimizer:
    """The optimizers of all members: one update per kind per step, of all its stacks at once.

    A kind with a single member updates with Python floats, exactly as ``torch.optim``
    does; several members use tensors of their hyperparameters. The learning rate and the
    momentum of every step come from tables (one column per member), on the device for
    tensors and on the host for floats, so that no step waits for the device.
    :meth:`step_on_device` reads them at counters kept on the device instead, so that a
    CUDA graph can replay the same update at every step.

    Args:
        slots: The parameter stacks.
        configs: Each member's config; members of one optimizer must be contiguous.
        lr: Each step's learning rates, shape (steps, K), on the device.
        momentum: Each step's momentum (or beta1), shape (steps, K), on the device.
        lr_host: ``lr`` per member, on the host.
        momentum_host: ``momentum`` per member, on the host.
    """

    def __init__(
        self,
        slots: Sequence[Slot],
        configs: Sequence[TrainConfig],
        lr: torch.Tensor,
        momentum: torch.Tensor,
        lr_host: Sequence[Sequence[float]],
        momentum_host: Sequence[Sequence[float]],
    ) -> None:
        self.slots = list(slots)
        self.steps = 0
        self.lr, self.momentum = lr, momentum
        # step_on_device's counters: the next step's row of the tables, the updates so far
        self._row = torch.zeros(1, dtype=torch.long, device=lr.device)
        self._count = torch.zeros((), device=lr.device)
        self.lr_host, self.momentum_host = list(lr_host), list(momentum_host)
        self.weight_decay = [c.weight_decay for c in configs]
        self.nesterov = [c.nesterov for c in configs]
        self.kinds = [c.optimizer for c in configs]
        device = lr.device
        self._wd = torch.tensor(self.weight_decay, device=device)
        self._nesterov = torch.tensor(self.nesterov, device=device)
        self._ranges = self._make_ranges()
        names = {n for k in set(self.kinds) for n in OPTIMIZERS[k].state}
        for slot in self.slots:
            slot.state = {n: torch.zeros_like(slot.param) for n in sorted(names)}

    def _make_ranges(self) -> list[_Range]:
        ranges: list[_Range] = []
        start = 0
        for i in range(1, len(self.kinds) + 1):
            if i == len(self.kinds) or self.kinds[i] != self.kinds[start]:
                ranges.append(self._range(start, i))
                start = i
        return ranges

    def _range(self, a: int, b: int) -> _Range:
        kind, decays, nesterov = self.kinds[a], self.weight_decay[a:b], self.nesterov[a:b]
        if b - a == 1:
            return _Range(kind, a, b, decays[0] or None, nesterov[0] or None)
        return _Range(
            kind,
            a,
            b,
            self._wd[a:b] if any(decays) else None,
            self._nesterov[a:b] if any(nesterov) else None,
        )

    def _hyper(self, r: _Range, t: int) -> StepHyper:
        """The hyperparameters of step ``t`` for one kind's members, from the host's tables
        for a single member (plain floats, torch.optim's own arithmetic)."""
        if r.single:
            neg_lr, momentum = -self.lr_host[r.a][t], self.momentum_host[r.a][t]
            return StepHyper(neg_lr, r.weight_decay, momentum, r.nesterov, self.steps)
        lr, momenta = self.lr[t, r.a : r.b], self.momentum[t, r.a : r.b]
        return StepHyper(-lr, r.weight_decay, momenta, r.nesterov, self.steps)

    def _device_hyper(self, r: _Range, lr: torch.Tensor, momentum: torch.Tensor) -> StepHyper:
        """The hyperparameters of the step the device counters name: what changes between
        steps as tensors, device scalars for one member (a float would be baked into a
        captured graph)."""
        at = r.a if r.single else slice(r.a, r.b)
        return StepHyper(-lr[at], r.weight_decay, momentum[at], r.nesterov, self._count)

    @torch.no_grad()
    def step(self, t: int) -> None:
        """Updates every member with the learning rate and momentum of step ``t``."""
        self.steps += 1
        self._update([self._hyper(r, t) for r in self._ranges])

    @torch.no_grad()
    def step_on_device(self) -> None:
        """Updates every member with the learning rate and momentum of the next step, read
        at a counter on the device, with no host value that changes between steps: what a
        CUDA graph captures once and replays. Tensor arithmetic for a single member too, so
        it equals :meth:`step` to float rounding, not bit for bit."""
        self._count += 1
        lr = self.lr.index_select(0, self._row).view(-1)
        momentum = self.momentum.index_select(0, self._row).view(-1)
        self._row += 1
        self._update([self._device_hyper(r, lr, momentum) for r in self._ranges])

    def _update(self, hypers: list[StepHyper]) -> None:
        slots = [slot for slot in self.slots if slot.param.grad is not None]
        whole = len(self._ranges) == 1
        for r, hyper in zip(self._ranges, hypers, strict=True):
            kind = OPTIMIZERS[r.kind]

            def part(t: torch.Tensor, slot: Slot, r: _Range = r) -> torch.Tensor:
                # one kind: the stacks themselves, no views
                return t if whole else t.narrow(slot.member_dim, r.a, r.b - r.a)

            kind.update(
                [part(slot.param, slot) for slot in slots],
                [part(slot.param.grad, slot) for slot in slots],  # type: ignore[arg-type]
                {n: [part(slot.state[n], slot) for slot in slots] for n in kind.state},
                _per_stack(hyper, slots),
            )

    def keep(self, members: list[int]) -> None:
        """Drops every member not in ``members`` (indices, in order)."""
        index = torch.tensor(members, device=self.lr.device)
        self.kinds = [self.kinds[i] for i in members]
        self.weight_decay = [self.weight_decay[i] for i in members]
        self.nesterov = [self.nesterov[i] for i in members]
        self.lr_host = [self.lr_host[i] for i in members]
        self.momentum_host = [self.momentum_host[i] for i in members]
        self.lr, self.momentum = self.lr[:, index], self.momentum[:, index]
        self._wd, self._nesterov = self._wd[index], self._nesterov[index]
        self._ranges = self._make_ranges()
        for slot in self.slots:
            slot.state = {k: v.index_select(slot.member_dim, index) for k, v in slot.state.items()}


# --- learning-rate schedules -------------------------------------------------------------


def schedule(config: TrainConfig, steps_per_epoch: int) -> tuple[list[float], list[float]]:
    """One member's learning rate and momentum (or Adam's beta1) for each of its steps, as
    ``torch.optim.lr_scheduler`` would set them (the same recursions, in double precision)."""
    kind = OPTIMIZERS[config.optimizer]
    total = config.epochs * steps_per_epoch
    momentum = [kind.momentum(config)] * total
    if config.scheduler == "onecycle":
        return _one_cycle(config.lr, total, momentum if not kind.has_momentum(config) else None)
    lrs: list[float] = []
    lr = config.lr
    for epoch in range(config.epochs):  # the scheduler steps after each epoch
        if epoch > 0:
            lr = _next_epoch_lr(config, epoch, lr)
        lrs += [lr] * steps_per_epoch
    return lrs, momentum


def _next_epoch_lr(config: TrainConfig, epoch: int, lr: float) -> float:
    if config.scheduler == "step":
        return lr * config.gamma if epoch % config.step_size == 0 else lr
    if config.scheduler == "cosine":  # CosineAnnealingLR's recursive form, eta_min 0
        t = config.epochs
        if (epoch - 1 - t) % (2 * t) == 0:
            return lr + config.lr * (1 - math.cos(math.pi / t)) / 2
        return (1 + math.cos(math.pi * epoch / t)) / (1 + math.cos(math.pi * (epoch - 1) / t)) * lr
    return lr


def _one_cycle(
    max_lr: float, total: int, fixed_momentum: list[float] | None
) -> tuple[list[float], list[float]]:
    # OneCycleLR's defaults: pct_start 0.3, cosine annealing, div_factor 25, final 1e4,
    # momentum cycled between 0.95 and 0.85 when the optimizer has one.
    initial = max_lr / 25.0
    phases = [
        (float(0.3 * total) - 1, initial, max_lr, 0.95, 0.85),
        (total - 1, max_lr, initial / 1e4, 0.85, 0.95),
    ]
    lrs, momenta = [], []
    for step in range(total):
        start = 0.0
        for i, (end, lr0, lr1, m0, m1) in enumerate(phases):
            if step <= end or i == len(phases) - 1:
                pct = (step - start) / (end - start)
                lrs.append(_anneal(lr0, lr1, pct))
                momenta.append(_anneal(m0, m1, pct))
                break
            start = end
    return lrs, fixed_momentum if fixed_momentum is not None else momenta


def _anneal(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
