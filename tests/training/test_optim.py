"""The per-member update rules and schedules are torch.optim's, member by member."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from hpsearch.spec.choices import OPTIMIZERS
from hpsearch.spec.choices import SCHEDULERS
from hpsearch.spec.config import make_config
from hpsearch.spec.config import TrainConfig
from hpsearch.training.optim import LOSSES
from hpsearch.training.optim import PopulationOptimizer
from hpsearch.training.optim import schedule
from hpsearch.training.optim import Slot

STEPS = 8


def _torch_optimizer(kind: str, params: list[torch.Tensor], c: TrainConfig) -> Any:
    cls = {
        "sgd": torch.optim.SGD,
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "adagrad": torch.optim.Adagrad,
        "adadelta": torch.optim.Adadelta,
        "rmsprop": torch.optim.RMSprop,
    }[kind]
    options: dict[str, Any] = {"lr": c.lr, "weight_decay": c.weight_decay}
    if kind == "sgd":
        options.update(momentum=c.momentum, nesterov=c.nesterov)
    if kind == "rmsprop":
        options.update(momentum=c.momentum)
    return cls(params, **options)


def _members(kind: str) -> list[TrainConfig]:
    lr = {"sgd": 0.1, "adam": 0.01, "adamw": 0.01, "adagrad": 0.1, "adadelta": 1.0}.get(kind, 0.01)
    momentum = kind in ("sgd", "rmsprop")
    return [
        make_config(
            {
                "optimizer": kind,
                "lr": lr * (1 + i),
                "weight_decay": [0.0, 1e-2, 1e-3][i],
                "momentum": [0.0, 0.9, 0.5][i] if momentum else 0.0,
                "nesterov": kind == "sgd" and i == 1,
            }
        )
        for i in range(3)
    ]


@pytest.mark.parametrize("kind", OPTIMIZERS)
@pytest.mark.parametrize("size", [1, 3], ids=["alone", "three"])
def test_update_rules_are_torch_optims(kind: str, size: int) -> None:
    torch.manual_seed(0)
    configs = _members(kind)[:size]
    start = torch.randn(size, 5, 4)
    grads = torch.randn(STEPS, size, 5, 4)
    # each member with its own torch optimizer
    expected = []
    for i, c in enumerate(configs):
        p = start[i].clone().requires_grad_(True)
        opt = _torch_optimizer(kind, [p], c)
        for t in range(STEPS):
            p.grad = grads[t, i].clone()
            opt.step()
        expected.append(p.detach())
    # all members as one stack
    stack = start.clone().requires_grad_(True)
    lr = torch.tensor([[c.lr for c in configs]] * STEPS)
    momentum = torch.tensor(
        [[c.momentum if kind in ("sgd", "rmsprop") else 0.9] * 1 for c in configs]
    ).T
    optimizer = PopulationOptimizer(
        [Slot(stack, 0, {})],
        configs,
        lr,
        momentum.expand(STEPS, size).contiguous(),
        [[c.lr] * STEPS for c in configs],
        [[float(momentum[0, i])] * STEPS for i in range(size)],
    )
    for t in range(STEPS):
        stack.grad = grads[t].clone()
        optimizer.step(t)
    for i in range(size):
        assert torch.allclose(stack[i].detach(), expected[i], rtol=1e-5, atol=1e-6), i


def _torch_schedule(c: TrainConfig, steps: int) -> tuple[list[float], list[float]]:
    p = torch.zeros(1, requires_grad=True)
    opt = _torch_optimizer(c.optimizer, [p], c)
    if c.scheduler == "step":
        sched: Any = torch.optim.lr_scheduler.StepLR(opt, c.step_size, c.gamma)
    elif c.scheduler == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=c.epochs)
    elif c.scheduler == "onecycle":
        cycle = "betas" in opt.defaults or opt.defaults.get("momentum", 0.0) > 0.0
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=c.lr, total_steps=c.epochs * steps, cycle_momentum=cycle
        )
    else:
        sched = None
    lrs, momenta = [], []
    group = opt.param_groups[0]
    for _ in range(c.epochs):
        for _ in range(steps):
            lrs.append(group["lr"])
            momenta.append(group["betas"][0] if "betas" in group else group.get("momentum", 0.0))
            opt.step()
            if sched is not None and c.scheduler == "onecycle":
                sched.step()
        if sched is not None and c.scheduler != "onecycle":
            sched.step()
    return lrs, momenta


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adadelta"])
def test_schedules_are_torch_schedulers(scheduler: str, optimizer: str) -> None:
    c = make_config(
        {
            "scheduler": scheduler,
            "optimizer": optimizer,
            "lr": 0.1,
            "momentum": 0.9 if optimizer == "sgd" else 0.0,
            "epochs": 6,
            "step_size": 2,
            "gamma": 0.5,
        }
    )
    lrs, momenta = schedule(c, steps_per_epoch=5)
    want_lrs, want_momenta = _torch_schedule(c, 5)
    assert lrs == pytest.approx(want_lrs, rel=1e-12)
    assert momenta == pytest.approx(want_momenta, rel=1e-12)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse", "bce"])
def test_losses_are_torch_losses_member_by_member(loss: str) -> None:
    torch.manual_seed(0)
    logits, y = torch.randn(3, 16, 10), torch.randint(0, 10, (16,))
    smoothing = torch.tensor([0.0, 0.1, 0.3]).view(3, 1, 1)
    per_sample = LOSSES[loss](logits, y, smoothing)
    assert per_sample.shape == (3, 16)
    got = per_sample.mean(dim=1)
    for i, e in enumerate([0.0, 0.1, 0.3]):
        target = F.one_hot(y, 10).float() * (1 - e) + e / 10
        if loss == "cross_entropy":
            want = F.cross_entropy(logits[i], y, label_smoothing=e)
        elif loss == "mse":
            want = F.mse_loss(logits[i].softmax(1), target)
        else:
            want = F.binary_cross_entropy_with_logits(logits[i], target)
        assert float(got[i]) == pytest.approx(float(want), rel=1e-5)
    # one value for all members: the fused path gives the same
    same = LOSSES[loss](logits, y, 0.1)
    assert torch.allclose(same, LOSSES[loss](logits, y, torch.full((3, 1, 1), 0.1)), rtol=1e-5)
