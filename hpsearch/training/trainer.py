"""The trainer: training runs of the configurable MLP, one trial's work or many at once.

One trainer for one run and for a population: :func:`train` is a population of one, and
:func:`train_population` trains K configs in the same kernels (:class:`StackedMLP`, the
update rules of :mod:`hpsearch.training.optim`), each member exactly as it would train alone.

Fast by design: the data set lives on the training device as tensors (loaded once per
process), a batch is an index slice of a per-epoch permutation shared by the members, and
the batch loop has no host-device synchronisation; losses are summed on the device and read
once per epoch. On a CUDA GPU every full batch is one replay of a captured CUDA graph
(:class:`_Batches`), and a population is sized from the memory a member is measured to take
(:func:`max_members`).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
import contextlib
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
import logging
import math
import re
import time
from typing import Any
from typing import Literal

import torch
from torch import nn

from hpsearch.errors import DeviceError
from hpsearch.errors import PreflightError
from hpsearch.spec.config import DEVICE_PATTERN
from hpsearch.spec.config import TrainConfig
from hpsearch.spec.defaults import MEMORY_SHARE
from hpsearch.training.data import device_data
from hpsearch.training.data import DeviceData
from hpsearch.training.data import shift_images
from hpsearch.training.model import MemberShape
from hpsearch.training.model import param_count
from hpsearch.training.model import StackedMLP
from hpsearch.training.optim import loss_function
from hpsearch.training.optim import PopulationOptimizer
from hpsearch.training.optim import schedule
from hpsearch.training.optim import Slot
from hpsearch.training.tables import available_ram
from hpsearch.training.tables import memory_text

Outcome = Literal["completed", "early_stopped", "diverged", "stopped"]
FINISHED_OUTCOMES = ("completed", "early_stopped")  # runs whose test metrics are read


@dataclass(frozen=True)
class EpochStats:
    """Metrics of one epoch; ``epoch`` counts from 1."""

    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    seconds: float
    val_loss_se: float = math.nan  # standard error of val_loss: its spread over samples / sqrt(n)
    # a classification's mean recall over the classes (robust to imbalanced classes)
    val_balanced_accuracy: float = math.nan
    val_balanced_accuracy_se: float = math.nan
    # a regression's, in the target's units (val_accuracy is then NaN), with standard errors
    val_rmse: float = math.nan
    val_mae: float = math.nan
    val_r2: float = math.nan
    val_rmse_se: float = math.nan
    val_mae_se: float = math.nan
    val_r2_se: float = math.nan


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced.

    Attributes:
        outcome: ``completed``; ``early_stopped`` (its validation loss stopped improving
            for ``early_stopping`` epochs: completed there); ``diverged`` (a non-finite loss
            stopped it early); or ``stopped`` (the epoch callback asked to stop, e.g. a
            pruner).
        epochs: Per-epoch metrics, as many as were run.
        test_loss: Test-set loss of the final model (``None`` unless completed, early or
            not).
        test_accuracy: Test-set accuracy of the final model (``None`` unless completed).
        train_seconds: Wall time of the epochs, evaluation included, data loading excluded.
        param_count: Number of trainable parameters.
        device: The device the run used.
        config: The fully resolved config, enough to repeat the run exactly.
        val_size: Validation images: the standard error of an accuracy ``p`` measured on
            them is ``sqrt(p * (1 - p) / val_size)``.
        task: ``classification`` or ``regression``.
        test_rmse: A regression's test root mean squared error, in the target's units.
        test_mae: A regression's test mean absolute error, in the target's units.
        test_r2: A regression's test coefficient of determination.
        test_balanced_accuracy: A classification's test accuracy per class, averaged over
            the classes.
    """

    outcome: Outcome
    epochs: tuple[EpochStats, ...]
    test_loss: float | None
    test_accuracy: float | None
    train_seconds: float
    param_count: int
    device: str
    config: dict[str, Any]
    val_size: int = 0
    task: str = "classification"
    test_rmse: float | None = None
    test_mae: float | None = None
    test_r2: float | None = None
    test_balanced_accuracy: float | None = None

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
        DeviceError: A name that is no device (``tpu``), or a CUDA or MPS device that this
            process cannot see.
    """
    if not re.fullmatch(DEVICE_PATTERN, name):
        raise DeviceError(f"device {name!r}: allowed: auto, cpu, cuda, cuda:N, mps")
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
    """Trains the MLP that ``config`` describes, evaluates it, and returns it too: a
    population of one (see :func:`train_population`).

    Args:
        config: A validated config (see :func:`hpsearch.spec.config.make_config`).
        on_epoch: Called after every epoch with its metrics; returning ``True`` stops the run
            (outcome ``stopped``). This is how an Optuna objective reports and prunes.

    Returns:
        The result (per-epoch curves, test metrics when completed, the resolved config) and
        the trained model.
    """
    check_fits(config)
    callback = None if on_epoch is None else lambda member, stats: on_epoch(stats)
    job = _Job([config], callback, [None], models=[None])
    _train_group(job, [0])
    result, model = job.results[0], job.models[0] if job.models else None
    assert result is not None and model is not None
    return result, model


MemberCallback = Callable[[int, EpochStats], bool | None]


@dataclass
class _Job:
    """The configs one call trains, its callback, and where each member's outcome goes."""

    configs: Sequence[TrainConfig]
    on_epoch: MemberCallback | None
    results: list[TrainResult | None]
    models: list[nn.Module | None] | None = None  # the trained modules, kept for fit only


def train_population(
    configs: Sequence[TrainConfig], on_epoch: MemberCallback | None = None
) -> list[TrainResult]:
    """Trains many configs at once: each group of configs that can share kernels (see
    :func:`group_key`) as one population on its device, groups one after the other.

    Every member trains exactly as it would alone (the same initial weights, batches and
    update rules; only dropout draws other random masks). A member that is stopped (the
    callback returns ``True``), diverges or completes its epochs leaves the stacks at that
    epoch's end, freeing its compute. A group larger than the device's memory holds is
    split, before training or when it runs out of memory.

    Args:
        configs: Validated configs.
        on_epoch: Called as ``on_epoch(i, stats)`` after each epoch of ``configs[i]``.

    Returns:
        One result per config, in order.
    """
    job = _Job(configs, on_epoch, [None] * len(configs))
    for group in plan_groups(configs):
        _train_group(job, group)
    assert all(r is not None for r in job.results)
    return job.results  # type: ignore[return-value]


def group_key(config: TrainConfig) -> tuple[Any, ...]:
    """Configs with equal keys train as one population: they share the data, its batches
    (batch size, seed and their images' shifts), the loss, batch norm, the device, its
    precision and whether CUDA graphs replay the steps; on a CPU also the depth (on a GPU
    only whether there is a hidden layer, see :data:`MERGE_DEPTHS`). Everything else
    (widths, activations, dropout, optimizer and its settings, schedule, epochs, L1, label
    smoothing) may differ between members."""
    return (
        config.dataset,
        config.data_dir,
        config.val_fraction,
        config.train_subset,
        config.preprocess,
        config.augment_shift,
        config.batch_size,
        config.seed,
        config.loss,
        config.batch_norm,
        config.device,
        config.eval_batch_size,
        config.precision,
        config.cuda_graphs,
        _depth_key(config),
    )


# Device types where members of any depth (one hidden layer or more) share a population:
# on a GPU a step costs its kernel launches, and the layers a shallow member passes through
# cost little; on a CPU every padded element costs its arithmetic.
MERGE_DEPTHS = ("cuda",)


def _depth_key(config: TrainConfig) -> int:
    depth = len(config.hidden_layers)
    return min(depth, 1) if resolve_device(config.device).type in MERGE_DEPTHS else depth


def plan_groups(configs: Sequence[TrainConfig]) -> list[list[int]]:
    """The indices of ``configs`` in groups that may train together (equal
    :func:`group_key`); a group larger than its device holds is split when it trains
    (:func:`max_members`)."""
    by_key: dict[tuple[Any, ...], list[int]] = {}
    for i, config in enumerate(configs):
        by_key.setdefault(group_key(config), []).append(i)
    return list(by_key.values())


def member_bytes(config: TrainConfig, num_features: int, num_classes: int, width: int) -> int:
    """An estimate of the memory one member takes in a population padded to ``width``: its
    stacks (weights, gradients, up to three optimizer states) and the activations of a
    training and an evaluation batch. Where no allocator counts (a CPU), this sizes a
    population; on a CUDA GPU :func:`measure_member_bytes` does."""
    depth = len(config.hidden_layers)
    params = num_features * width + max(depth - 1, 0) * width * width + width * num_classes
    rows = config.batch_size * 6 + config.eval_batch_size * 2
    return 4 * (params * 5 + rows * width * max(depth, 1))


def count_params(config: TrainConfig) -> int:
    """The trainable parameters of the network ``config`` builds on its data set (read,
    and cached, for its input width and class count), without building it."""
    data = load_data(config, resolve_device(config.device))
    return param_count(
        data.num_features, data.num_classes, config.hidden_layers, config.batch_norm
    )


def check_fits(config: TrainConfig) -> None:
    """Refuses, on a CPU, a model whose weights and gradients alone exceed the available RAM.

    Allocating it would fail in the middle of a population or, where Linux overcommits
    memory, get the worker killed once the pages are touched (and the trial, queued again
    as stale, kill the next worker). Optimizer states and activations come on top, so a
    model refused here could never train; one that passes may still be refused by the
    allocator, as an error. A CUDA GPU raises its own out-of-memory error (see
    :func:`_train_within_memory`).

    Raises:
        DeviceError: Naming the widths, the parameter count and the memory there is.
    """
    device = resolve_device(config.device)
    ram = available_ram() if device.type == "cpu" else None
    if not ram:
        return
    params = count_params(config)
    need = 2 * 4 * params  # float32 weights and their gradients
    if need > ram:
        raise DeviceError(
            f"hidden_layers {list(config.hidden_layers)}: {params:,} parameters need "
            f"{memory_text(need)} for their weights and gradients alone; {memory_text(ram)} "
            "of RAM is available: narrower or fewer layers"
        )


def max_members(configs: Sequence[TrainConfig]) -> int:
    """How many of these configs (one group, see :func:`group_key`) one population may hold
    on their device: this process's share of the device's memory (:func:`set_memory_share`)
    over what one member takes, measured on a CUDA GPU (:func:`measure_member_bytes`),
    estimated elsewhere (:func:`member_bytes`, against the available RAM)."""
    device = resolve_device(configs[0].device)
    data = load_data(configs[0], device)
    if device.type == "cuda":
        return max(1, _gpu_budget(device) // measure_member_bytes(configs, data, device))
    ram = available_ram()
    if not ram:  # unknown: no limit
        return len(configs)
    width = max((w for c in configs for w in c.hidden_layers), default=16)
    per_member = member_bytes(configs[0], data.num_features, data.num_classes, width)
    return max(1, int(ram * RAM_SHARE) // per_member)


RAM_SHARE = 0.5  # of the available RAM one population may plan to use (an estimate's margin)
_memory_share = MEMORY_SHARE  # of its GPU's memory, for this process (set_memory_share)


def set_memory_share(share: float) -> None:
    """The share of its GPU's memory this process's populations may fill (``0 < share <=
    1``): :data:`~hpsearch.spec.defaults.MEMORY_SHARE` for a worker alone on its GPU, that
    divided by K for each of K workers sharing one (a launch passes it on)."""
    global _memory_share
    assert 0 < share <= 1
    _memory_share = share


def _gpu_budget(device: torch.device) -> int:
    """Bytes this process may plan for one population on ``device``: its share of the
    whole memory, within what is free now (free on the device, or cached by this process's
    allocator, which it reuses)."""
    free, total = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return int(min(total * _memory_share, free + cached))


def probe_members(configs: Sequence[TrainConfig]) -> list[int]:
    """A few of ``configs`` (one group) whose population is padded as the whole group's
    and keeps the same optimizer states: the widest member of every layer, the deepest and
    the shallowest, and one member of each optimizer. A member of it takes the memory of
    a member of the whole (a little more: the batch's own memory is shared by fewer)."""
    picks = {
        max(range(len(configs)), key=lambda i: _width(configs[i], j))
        for j in range(max(len(c.hidden_layers) for c in configs))
    }
    picks.add(max(range(len(configs)), key=lambda i: len(configs[i].hidden_layers)))
    picks.add(min(range(len(configs)), key=lambda i: len(configs[i].hidden_layers)))
    kinds: dict[str, int] = {}
    for i, config in enumerate(configs):
        kinds.setdefault(config.optimizer, i)
    return sorted(picks | set(kinds.values()))


def _width(config: TrainConfig, layer: int) -> int:
    return config.hidden_layers[layer] if layer < len(config.hidden_layers) else 0


def measure_member_bytes(
    configs: Sequence[TrainConfig], data: DeviceData, device: torch.device
) -> int:
    """The device memory one member of ``configs`` (one group) takes, measured: the peak
    that the population of :func:`probe_members` allocates while it trains one batch and
    evaluates one evaluation batch, per member. Its data set was loaded before: shared by
    every population, it counts against no member. CUDA only (its allocator counts)."""
    probe = [configs[i] for i in probe_members(configs)]
    first = probe[0]
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    with numerics(first.precision, device):
        pop = _Population(probe, data, device)
        _first_step(pop, data)
        rows = slice(0, first.eval_batch_size)
        evaluate(pop, data.train_x[rows], data.train_y[rows], first.eval_batch_size)
    peak = torch.cuda.max_memory_allocated(device) - before
    del pop
    return max(1, math.ceil(peak / len(probe)))


class _Population:
    """One group's members on one device: the stacked model, the optimizer and the
    per-member settings, in the order of the stacks (sorted by optimizer)."""

    def __init__(
        self, configs: Sequence[TrainConfig], data: DeviceData, device: torch.device
    ) -> None:
        first = configs[0]
        self.configs = list(configs)
        self.device = device
        self.model = StackedMLP(
            data.num_features,
            data.num_classes,
            [MemberShape(c.hidden_layers, c.activations(), c.dropouts()) for c in configs],
            first.batch_norm,
            [c.seed for c in configs],
            device,
        )
        self.task = data.task
        self.loss_fn = loss_function(first.loss, data.task)
        # a classification's training labels, for class weights (made when a member asks)
        self.labels = None if data.task == "regression" else data.train_y
        self.num_classes = data.num_classes
        self.balanced: torch.Tensor | None = None
        # bf16: the forward pass and the loss under autocast (the loss itself in float32,
        # by autocast's own rules); weights, gradients and optimizer states stay float32
        # (no cache of cast weights: a CUDA graph must not keep one from its capture)
        self.autocast: contextlib.AbstractContextManager[Any] = (
            torch.autocast(device.type, torch.bfloat16, cache_enabled=False)
            if first.precision == "bf16"
            else contextlib.nullcontext()
        )
        self._set_member_values()
        n_used = _batches_used(len(data.train_y), first.batch_size)
        self.steps = math.ceil(n_used / first.batch_size)
        lrs, momenta = zip(*(schedule(c, self.steps) for c in configs), strict=True)
        total = max(len(x) for x in lrs)
        # every step's learning rate and momentum, one column per member, on the device (a
        # step reads a row, with no host-device copy) and on the host
        self.optimizer = PopulationOptimizer(
            [
                Slot(p, d, {})
                for p, d in zip(self.model.parameters(), self.model.member_dims(), strict=True)
            ],
            configs,
            _table(lrs, total, device),
            _table(momenta, total, device),
            [_padded(x, total) for x in lrs],
            [_padded(x, total) for x in momenta],
        )

    def _set_member_values(self) -> None:
        smoothing = [c.label_smoothing for c in self.configs]
        # one value for all members: a float, and torch's fused loss
        self.smoothing: float | torch.Tensor = (
            smoothing[0]
            if len(set(smoothing)) == 1
            else torch.tensor(smoothing, device=self.device).view(-1, 1, 1)
        )
        l1 = [c.l1 for c in self.configs]
        self.l1 = torch.tensor(l1, device=self.device) if any(l1) else None
        # (K, C): each member's weight of each class, where some member weighs them
        weighted = [c.class_weight == "balanced" for c in self.configs]
        self.class_weights: torch.Tensor | None = None
        if any(weighted) and self.labels is not None:
            if self.balanced is None:
                self.balanced = balanced_weights(self.labels, self.num_classes)
            ones = torch.ones_like(self.balanced)
            self.class_weights = torch.stack([self.balanced if w else ones for w in weighted])

    def step(self, x: torch.Tensor, y: torch.Tensor, t: int | None) -> torch.Tensor:
        """Training step ``t`` on the shared batch (``None``: the step the optimizer's
        device counters name, see :meth:`PopulationOptimizer.step_on_device`); returns each
        member's loss (K,)."""
        with self.autocast:
            losses = self.loss_fn(self.model(x, train=True), y, self.smoothing)  # (K, B)
        if self.class_weights is not None:  # weights of mean 1 over the training rows
            losses = losses * self.class_weights[:, y]
        losses = losses.mean(dim=1)
        if self.l1 is not None:
            losses = losses + self.l1 * self.model.l1_norms()
        self.model.zero_grad()
        losses.sum().backward()  # type: ignore[no-untyped-call]
        if t is None:
            self.optimizer.step_on_device()
        else:
            self.optimizer.step(t)
        return losses.detach()

    def keep(self, members: list[int]) -> None:
        """Keeps only ``members`` (positions in the stacks, in order)."""
        self.model.keep(torch.tensor(members, device=self.device))
        self.optimizer.keep(members)
        for slot, p in zip(self.optimizer.slots, self.model.parameters(), strict=True):
            slot.param = p  # the stacks are new tensors
        self.configs = [self.configs[i] for i in members]
        self._set_member_values()


def balanced_weights(y: torch.Tensor, classes: int) -> torch.Tensor:
    """Each class's weight that makes every class count alike: rows / (classes x its rows),
    as scikit-learn's ``class_weight="balanced"`` (their mean over the rows is 1; a class
    without rows, which no example asks for, weighs 0)."""
    counts = torch.bincount(y, minlength=classes).float()
    present = int((counts > 0).sum())
    weights = len(y) / (present * counts)
    return torch.where(counts > 0, weights, torch.zeros_like(weights))


def _padded(column: Sequence[float], rows: int) -> list[float]:
    # a member with fewer epochs has left the population before its rows run out
    return list(column) + [column[-1] if column else 0.0] * (rows - len(column))


def _table(columns: Sequence[Sequence[float]], rows: int, device: torch.device) -> torch.Tensor:
    padded = [_padded(c, rows) for c in columns]
    return torch.tensor(padded, dtype=torch.float32, device=device).T.contiguous()


def _train_group(job: _Job, members: list[int]) -> None:
    """Trains ``job.configs[i]`` for ``i`` in ``members`` (one group): as one population,
    or as several in turn where the device holds fewer (:func:`max_members`)."""
    cap = max_members([job.configs[i] for i in members]) if len(members) > 1 else 1
    for a in range(0, len(members), cap):
        _train_within_memory(job, members[a : a + cap])


def _train_within_memory(job: _Job, members: list[int]) -> None:
    """Trains these members as one population; on running out of device memory, as two
    halves instead (each member from its first epoch again: see the worker's reports)."""
    first = job.configs[members[0]]
    try:
        with numerics(first.precision, resolve_device(first.device)):
            _run_population(job, members)
    except torch.OutOfMemoryError:
        if len(members) == 1:
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        half = len(members) // 2
        _train_within_memory(job, members[:half])
        _train_within_memory(job, members[half:])


@contextlib.contextmanager
def numerics(precision: str, device: torch.device) -> Iterator[None]:
    """Float32 matrix products as ``precision`` asks while it lasts: on TF32 tensor cores
    for ``tf32`` on a CUDA device, else exact. The setting is the process's, so it is put
    back after: a population of another precision may train next in the same worker."""
    if precision != "tf32" or device.type != "cuda":
        yield
        return
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def _run_population(job: _Job, members: list[int]) -> None:
    configs, on_epoch = job.configs, job.on_epoch
    # stacks sorted by optimizer, so that each optimizer updates one contiguous slice, then
    # by activations, so that each activation runs on a few contiguous slices
    order = sorted(members, key=lambda i: (configs[i].optimizer, configs[i].activations()))
    first = configs[order[0]]
    device = resolve_device(first.device)
    data = load_data(first, device)
    pop = _Population([configs[i] for i in order], data, device)
    shuffle = torch.Generator().manual_seed(first.seed)  # CPU: same order on every device
    moves = _Shifts(first, data, device)
    n_train = len(data.train_y)
    n_used = _batches_used(n_train, first.batch_size)
    batches = _Batches(pop, data, moves, n_used)
    alive = list(order)  # original index of each member, in stack order
    histories: dict[int, list[EpochStats]] = {i: [] for i in order}
    start = time.perf_counter()
    for epoch in range(1, max(configs[i].epochs for i in order) + 1):
        epoch_start = time.perf_counter()
        perm = torch.randperm(n_train, generator=shuffle)
        moves.draw(n_used)
        loss_sum = batches.epoch(perm, (epoch - 1) * pop.steps)
        train_loss = (loss_sum / n_used).tolist()  # note: a CPU-GPU sync, once per epoch
        val = evaluate(pop, data.val_x, data.val_y, first.eval_batch_size, data.target_scale)
        seconds = time.perf_counter() - epoch_start
        outcomes: dict[int, Outcome] = {}
        for k, i in enumerate(alive):
            stats = EpochStats(
                epoch,
                train_loss[k],
                val.loss[k],
                val.accuracy[k],
                seconds,
                val.loss_se[k],
                **{f"val_{name}": values[k] for name, values in val.by_task.items()},
            )
            histories[i].append(stats)
            if not math.isfinite(train_loss[k]) or (
                len(data.val_y) and not math.isfinite(val.loss[k])
            ):
                outcomes[i] = "diverged"
            elif on_epoch is not None and on_epoch(i, stats):
                outcomes[i] = "stopped"
            elif epoch == configs[i].epochs:
                outcomes[i] = "completed"
            elif stalled(histories[i], configs[i].early_stopping):
                outcomes[i] = "early_stopped"
        if not outcomes:
            continue
        test = None
        if any(o in FINISHED_OUTCOMES for o in outcomes.values()):
            test = evaluate(
                pop, data.test_x, data.test_y, first.eval_batch_size, data.target_scale
            )
        for k, i in enumerate(alive):
            if i not in outcomes:
                continue
            done = outcomes[i] in FINISHED_OUTCOMES
            by_task = {
                f"test_{name}": values[k] if test and done else None
                for name, values in (test.by_task if test else {}).items()
                if not name.endswith("_se")
            }
            classes = data.task != "regression"
            job.results[i] = TrainResult(
                outcome=outcomes[i],
                epochs=tuple(histories[i]),
                test_loss=test.loss[k] if test and done else None,
                test_accuracy=test.accuracy[k] if test and done and classes else None,
                train_seconds=time.perf_counter() - start,
                param_count=pop.model.param_counts[k],
                device=str(device),
                config=configs[i].to_dict(),
                val_size=len(data.val_y),
                task=data.task,
                **by_task,
            )
            if job.models is not None:
                job.models[i] = pop.model.export(k)
        kept = [k for k, i in enumerate(alive) if i not in outcomes]
        alive = [alive[k] for k in kept]
        if not alive:
            return
        pop.keep(kept)
        batches.members_left()


def stalled(history: Sequence[EpochStats], patience: int) -> bool:
    """Whether the validation loss has not improved on its best for ``patience`` epochs
    (never with ``patience`` 0)."""
    losses = [s.val_loss for s in history]
    if not patience or len(losses) <= patience:
        return False
    return min(losses[-patience:]) >= min(losses[:-patience])


# Device types where a population steps from counters on the device, each full batch replayed
# from a CUDA graph: on a GPU a step costs its launches (dozens of small kernels, each a few
# microseconds of the host's time), and a graph launches them all at once.
GRAPH_DEVICES = ("cuda",)

_log = logging.getLogger(__name__)


class _Batches:
    """An epoch's batches through a population. Eager: each batch an index slice of the
    epoch's permutation, each step given its schedule row by the host. Where
    :data:`GRAPH_DEVICES` says and the config allows (``cuda_graphs``): everything a full
    batch reads (its indices, shifts, schedule row) at counters on the device, so that one
    CUDA graph, captured after a few warm-up steps, replays every full batch; the last,
    partial batch runs eagerly. Members leaving change the stacks: the graph is captured
    again."""

    WARM_UP = 2  # eager steps on a side stream before a capture, as CUDA graphs ask

    def __init__(self, pop: _Population, data: DeviceData, moves: _Shifts, n_used: int) -> None:
        config, device = pop.configs[0], pop.device
        self.pop, self.data, self.moves, self.n_used = pop, data, moves, n_used
        self.size = config.batch_size
        self.on_device = device.type in GRAPH_DEVICES and config.cuda_graphs
        self.capture = self.on_device and device.type == "cuda"
        self.perm = torch.zeros(n_used, dtype=torch.long, device=device)
        self.position = torch.zeros(1, dtype=torch.long, device=device)  # of the next batch
        self.rows = torch.arange(self.size, device=device)
        self.loss_sum = torch.zeros(len(pop.configs), device=device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.warm = 0

    def epoch(self, perm: torch.Tensor, first_step: int) -> torch.Tensor:
        """Trains one epoch in the order ``perm`` (on the host) whose first step is
        ``first_step``; returns each member's summed training loss, on the device."""
        self.loss_sum.zero_()
        if not self.on_device:
            perm = perm.to(self.pop.device, non_blocking=True)
            for s, i in enumerate(range(0, self.n_used, self.size)):
                at = slice(i, min(i + self.size, self.n_used))
                self._step(perm[at], at, first_step + s)
            return self.loss_sum
        self.perm.copy_(perm[: self.n_used])
        self.position.zero_()
        full = self.n_used // self.size
        for _ in range(full):
            self._full_batch()
        if full * self.size < self.n_used:
            at = slice(full * self.size, self.n_used)
            self._step(self.perm[at], at, None)
        return self.loss_sum

    def _step(self, idx: torch.Tensor, at: slice | torch.Tensor, t: int | None) -> None:
        """One step on the images ``idx``, at positions ``at`` of the epoch (for their
        shifts), with step ``t``'s schedule (``None``: the device counters')."""
        x = self.moves.apply(self.data.train_x.index_select(0, idx), at)
        losses = self.pop.step(x, self.data.train_y.index_select(0, idx), t)
        self.loss_sum += losses * len(idx)

    def _body(self) -> None:
        """The full batch at the device's position: nothing in it changes between steps."""
        at = self.position * self.size + self.rows
        self._step(self.perm.index_select(0, at), at, None)
        self.position += 1

    def _full_batch(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        elif not self.capture:
            self._body()
        elif self.warm < self.WARM_UP:
            self._warm_up()
        else:
            self._capture()

    def _warm_up(self) -> None:
        main = torch.cuda.current_stream(self.pop.device)
        side = torch.cuda.Stream(self.pop.device)  # type: ignore[no-untyped-call]
        side.wait_stream(main)
        with torch.cuda.stream(side):
            self._body()
        main.wait_stream(side)
        self.warm += 1

    def _capture(self) -> None:
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):  # records the step, runs nothing
                self._body()
        except RuntimeError as e:  # an operation capture refuses: eager, as before
            _log.warning("CUDA graph capture failed, stepping eagerly: %s", e)
            self.capture = False
            self._body()
            return
        graph.replay()
        self.graph = graph

    def members_left(self) -> None:
        """After :meth:`_Population.keep`: the stacks are new tensors, the graph stale."""
        self.graph, self.warm = None, 0
        self.loss_sum = torch.zeros(len(self.pop.configs), device=self.pop.device)


class _Shifts:
    """A population's augmentation: every training image's move for an epoch, drawn at its
    start on the host (the same on every device) and kept on the device, so that a step
    reads its batch's moves with no host-device copy. Nothing when ``augment_shift`` is 0."""

    def __init__(self, config: TrainConfig, data: DeviceData, device: torch.device) -> None:
        self.most = config.augment_shift
        self.shape = data.image_shape
        assert self.shape is not None or not self.most  # the config refuses shifts of points
        self.device = device
        # a generator of its own: the batches are the same as without augmentation
        self.generator = torch.Generator().manual_seed(config.seed + 1)
        self.offsets: torch.Tensor | None = None

    def draw(self, n: int) -> None:
        """This epoch's moves, one per image in the order of the epoch's batches (into the
        same device tensor every epoch: a CUDA graph reads it)."""
        if not self.most:
            return
        offsets = torch.randint(-self.most, self.most + 1, (n, 2), generator=self.generator)
        if self.offsets is None:
            self.offsets = offsets.to(self.device)
        else:
            self.offsets.copy_(offsets)

    def apply(self, x: torch.Tensor, at: slice | torch.Tensor) -> torch.Tensor:
        """The batch at positions ``at`` of the epoch (a slice, or a device tensor of them),
        its images moved."""
        if self.offsets is None or self.shape is None:  # no shifts
            return x
        offsets = self.offsets[at] if isinstance(at, slice) else self.offsets.index_select(0, at)
        return shift_images(x, self.shape, offsets, self.most)


def _batches_used(n_train: int, batch_size: int) -> int:
    # A last batch of one sample is dropped: batch norm cannot normalise a single row.
    return n_train - 1 if n_train % batch_size == 1 else n_train


def _first_step(pop: _Population, data: DeviceData) -> torch.Tensor:
    """Trains ``pop`` on the first training batch (step 0); each member's loss."""
    batch = slice(0, min(pop.configs[0].batch_size, len(data.train_y)))
    return pop.step(data.train_x[batch], data.train_y[batch], 0)


def preflight(config: TrainConfig, train: bool = True) -> None:
    """Checks that runs of ``config`` can start here: the device exists, the data set loads,
    and one batch trains to a finite loss. Cheap (the data set stays cached for the trials).

    Args:
        config: The fixed settings.
        train: ``False``: only that the data set loads, on the CPU (a machine without the
            study's device, such as a cluster's login node).

    Raises:
        DeviceError: The device does not exist on this machine, or the fixed settings'
            model cannot fit its memory (:func:`check_fits`).
        DataError: The data set cannot be loaded.
        PreflightError: Training one batch raised, or gave a non-finite loss.
    """
    if not train:
        load_data(config, torch.device("cpu"))
        return
    device = resolve_device(config.device)
    data = load_data(config, device)
    check_fits(config)
    try:
        pop = _Population([config], data, device)
        with numerics(config.precision, device):
            value = float(_first_step(pop, data)[0])
    except Exception as e:
        raise PreflightError(
            f"pre-flight: one training batch on {device} failed: {type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}"
        ) from e
    if not math.isfinite(value):
        raise PreflightError(f"pre-flight: one training batch on {device} gave loss {value}")


@dataclass(frozen=True)
class Evaluation:
    """Each member's mean loss, accuracy and the standard error of its mean loss, and the
    metrics of its task by name: a classification's ``balanced_accuracy``, a regression's
    ``rmse``, ``mae`` (in the target's units) and ``r2`` (its accuracy NaN), each with its
    standard error (``rmse_se``, ...)."""

    loss: list[float]
    accuracy: list[float]
    loss_se: list[float]
    by_task: dict[str, list[float]] = field(default_factory=dict)


_BY_TASK = {
    "classification": ("balanced_accuracy", "balanced_accuracy_se"),
    "regression": ("rmse", "mae", "r2", "rmse_se", "mae_se", "r2_se"),
}


@torch.no_grad()
def evaluate(
    pop: _Population, x: torch.Tensor, y: torch.Tensor, batch_size: int, scale: float = 1.0
) -> Evaluation:
    """Each member's loss and accuracy (or regression metrics) on ``(x, y)``, in evaluation
    batches; ``scale`` is a regression target's standard deviation (its units)."""
    k, n = len(pop.configs), len(y)
    regression = pop.task == "regression"
    if n == 0:  # no validation split (retraining on train + validation)
        nan = [math.nan] * k
        names = _BY_TASK["regression" if regression else "classification"]
        return Evaluation(nan, nan, nan, {name: nan for name in names})
    # per member: loss, loss², correct (classes) or squared error, its square, absolute
    # error, its square (regression); then a classification's hits in each class; read
    # once, after the last batch
    sums = torch.zeros(6, k, device=x.device)
    hits: torch.Tensor | None = None
    for i in range(0, n, batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        out = pop.model(xb, train=False)
        losses = pop.loss_fn(out, yb, pop.smoothing)  # (K, B)
        sums[0] += losses.sum(dim=1)
        sums[1] += (losses * losses).sum(dim=1)
        if regression:
            error = out.squeeze(-1) - yb
            squared, absolute = error * error, error.abs()
            sums[2] += squared.sum(dim=1)
            sums[3] += (squared * squared).sum(dim=1)
            sums[4] += absolute.sum(dim=1)
            sums[5] += (absolute * absolute).sum(dim=1)
        else:
            right = (out.argmax(dim=-1) == yb).to(sums.dtype)  # (K, B)
            sums[2] += right.sum(dim=1)
            if hits is None:
                hits = torch.zeros(out.shape[-1], k, device=x.device)
            hits.index_add_(0, yb, right.T)
    if regression:  # the spread R² compares against, read in the same sync
        spread_sum = ((y - y.mean()) ** 2).sum().expand(1, k)
        sums = torch.cat([sums, spread_sum])
    elif hits is not None:  # and each class's size: the same column for every member
        sizes = torch.bincount(y, minlength=len(hits)).to(sums.dtype).unsqueeze(1)
        sums = torch.cat([sums, hits, sizes.expand(-1, k)])
    total = sums.tolist()  # one sync
    loss = [_mean_se(s, sq, n) for s, sq in zip(total[0], total[1], strict=True)]
    if not regression:
        c = (len(total) - 6) // 2
        counts = [column[0] for column in total[6 + c :]]  # alike for every member
        balanced = [_balanced(total[6 : 6 + c], counts, m) for m in range(k)]
        return Evaluation(
            [m for m, _ in loss],
            [right / n for right in total[2]],
            [se for _, se in loss],
            {
                "balanced_accuracy": [b for b, _ in balanced],
                "balanced_accuracy_se": [se for _, se in balanced],
            },
        )
    spread = total[6][0] / n  # the target's variance on this split
    mse = [_mean_se(s, sq, n) for s, sq in zip(total[2], total[3], strict=True)]
    mae = [_mean_se(s, sq, n) for s, sq in zip(total[4], total[5], strict=True)]
    nan = [math.nan] * k
    return Evaluation(
        [m for m, _ in loss],
        nan,
        [se for _, se in loss],
        {
            "rmse": [math.sqrt(m) * scale for m, _ in mse],
            "mae": [m * scale for m, _ in mae],
            "r2": [1.0 - m / spread if spread else math.nan for m, _ in mse],
            # the delta method: d sqrt(m) = dm / (2 sqrt(m))
            "rmse_se": [se * scale / (2 * math.sqrt(m)) if m else 0.0 for m, se in mse],
            "mae_se": [se * scale for _, se in mae],
            "r2_se": [se / spread if spread else math.nan for _, se in mse],
        },
    )


def _balanced(hits: list[list[float]], sizes: list[float], m: int) -> tuple[float, float]:
    """Member ``m``'s balanced accuracy (its recall of each class present, averaged) and its
    standard error: the recalls' binomial errors, averaged as independent estimates.
    ``hits[c][m]``: member ``m``'s right answers in class ``c``, of ``sizes[c]`` examples."""
    recalls = [(h[m], s) for h, s in zip(hits, sizes, strict=True) if s]
    mean = sum(h / s for h, s in recalls) / len(recalls)
    # (k + 1) / (n + 2), as for the accuracy: a perfect recall of a small class is not certain
    spread = sum((p := (h + 1) / (s + 2)) * (1 - p) / s for h, s in recalls)
    return mean, math.sqrt(spread) / len(recalls)


def _mean_se(total: float, square_total: float, n: int) -> tuple[float, float]:
    """The mean of ``n`` values from their sum and sum of squares, and its standard error."""
    mean = total / n
    variance = max(square_total / n - mean * mean, 0.0) * n / max(n - 1, 1)
    return mean, math.sqrt(variance / n)


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


def set_threads(threads: int | None) -> None:
    """Limits torch's intra-op threads in this process (``None`` keeps torch's default)."""
    if threads:
        torch.set_num_threads(threads)
