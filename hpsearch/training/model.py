"""The configurable MLP: one as an ``nn.Sequential``, or many trained at once as stacks.

:func:`build_mlp` builds one model from a list of widths, one activation and dropout per
layer; :class:`StackedMLP` holds a population of such models in shared tensors, so that one
kernel computes every member's layer.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
import itertools

import torch
from torch import nn
import torch.nn.functional as F

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}


def build_mlp(
    num_features: int,
    num_classes: int,
    hidden_layers: Sequence[int],
    activations: Sequence[str],
    dropouts: Sequence[float],
    batch_norm: bool = False,
) -> nn.Sequential:
    """Builds ``Linear -> [BatchNorm] -> activation -> [Dropout]`` per hidden layer, then a
    linear head that outputs one logit per class.

    Args:
        num_features: Input width (784 for MNIST).
        num_classes: Output width.
        hidden_layers: Width of each hidden layer; empty for a linear model.
        activations: Activation name per hidden layer (keys of :data:`ACTIVATIONS`).
        dropouts: Dropout probability per hidden layer (0 adds no layer).
        batch_norm: Whether to normalize each hidden layer's pre-activation.
    """
    layers: list[nn.Module] = []
    width = num_features
    for out, act, p in zip(hidden_layers, activations, dropouts, strict=True):
        layers.append(nn.Linear(width, out))
        if batch_norm:
            layers.append(nn.BatchNorm1d(out))
        layers.append(ACTIVATIONS[act]())
        if p > 0:
            layers.append(nn.Dropout(p))
        width = out
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def param_count(
    num_features: int, num_classes: int, hidden_layers: Sequence[int], batch_norm: bool = False
) -> int:
    """The trainable parameters :func:`build_mlp` gives these layers, counted without
    building them: each linear layer's weights and biases, and a scale and a shift per
    hidden unit under batch norm."""
    sizes = [num_features, *hidden_layers, num_classes]
    linear = sum(a * b + b for a, b in itertools.pairwise(sizes))
    return linear + (2 * sum(hidden_layers) if batch_norm else 0)


# Each activation as a function, for the stacked model (same defaults as the modules above).
ACTIVATION_FNS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "leaky_relu": F.leaky_relu,
    "elu": F.elu,
    "gelu": F.gelu,
    "silu": F.silu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
}
BN_EPS, BN_MOMENTUM = 1e-5, 0.1  # nn.BatchNorm1d's defaults


@dataclass(frozen=True)
class MemberShape:
    """One member's architecture."""

    widths: tuple[int, ...]
    activations: tuple[str, ...]
    dropouts: tuple[float, ...]


class StackedMLP:
    """K MLPs of one depth trained at once, each weight a stack with one slice per member.

    Each layer is padded to its widest member, so members of any widths share every kernel.
    A padded unit is zero and stays zero: its weights start at zero and its activation is
    masked, so its gradients are zero. The first layer multiplies the shared batch by all
    members' weights at once, ``x @ [W_1|...|W_K]``. Each member starts from exactly the
    weights :func:`build_mlp` gives it under its seed, and :meth:`export` gives it back as
    such a module.

    Args:
        num_features: Input width.
        num_classes: Output width.
        shapes: Each member's widths (all of one depth), activations and dropouts.
        batch_norm: BatchNorm after each hidden linear layer (all members or none).
        seeds: Each member's initialisation seed.
        device: Where the stacks live.
    """

    def __init__(
        self,
        num_features: int,
        num_classes: int,
        shapes: Sequence[MemberShape],
        batch_norm: bool,
        seeds: Sequence[int],
        device: torch.device,
    ) -> None:
        self.num_features, self.num_classes = num_features, num_classes
        self.shapes = list(shapes)
        self.batch_norm = batch_norm
        depths = [len(s.widths) for s in shapes]
        self.depth = max(depths)
        assert min(depths) > 0 or self.depth == 0, "a linear model trains with its own kind"
        k = len(shapes)
        # padded width of each layer's output, the head's included; a shallower member
        # passes its activations through the layers it does not have, which needs one width
        self.sizes = [
            max((s.widths[j] for s in shapes if len(s.widths) > j), default=0)
            for j in range(self.depth)
        ]
        if min(depths) < self.depth:
            self.sizes = [max(self.sizes)] * self.depth
        self.sizes.append(num_classes)
        ins = [num_features, *self.sizes[:-1]]
        # the first layer as (F, K, out): viewed as (F, K*out) it takes the shared batch
        self.w0 = torch.zeros(num_features, k, self.sizes[0])
        self.b0 = torch.zeros(k, self.sizes[0])
        self.ws = [torch.zeros(k, ins[j], self.sizes[j]) for j in range(1, self.depth + 1)]
        self.bs = [torch.zeros(k, 1, self.sizes[j]) for j in range(1, self.depth + 1)]
        hidden = self.sizes[:-1] if batch_norm else []
        self.gamma = [torch.ones(k, 1, h) for h in hidden]
        self.beta = [torch.zeros(k, 1, h) for h in hidden]
        self.running_mean = [torch.zeros(k, 1, h) for h in hidden]
        self.running_var = [torch.ones(k, 1, h) for h in hidden]
        self.param_counts = [
            self._load_initial(i, s, seed)
            for i, (s, seed) in enumerate(zip(shapes, seeds, strict=True))
        ]
        self.device = device
        self._move(lambda t: t.to(device))
        for t in self.parameters():
            t.requires_grad_(True)
        self._masks()

    def _linears(self, module: nn.Sequential) -> list[nn.Linear]:
        return [m for m in module if isinstance(m, nn.Linear)]

    def _module(self, shape: MemberShape) -> nn.Sequential:
        """A member's architecture as :func:`build_mlp` builds it alone."""
        return build_mlp(
            self.num_features,
            self.num_classes,
            shape.widths,
            shape.activations,
            shape.dropouts,
            self.batch_norm,
        )

    def _load_initial(self, i: int, shape: MemberShape, seed: int) -> int:
        torch.manual_seed(seed)  # on the CPU: the same initial weights on every device
        module = self._module(shape)
        first, *rest = self._linears(module)
        with torch.no_grad():
            self.w0[:, i, : first.out_features] = first.weight.T
            self.b0[i, : first.out_features] = first.bias
            for w, b, lin in self._placed(rest):
                w[i, : lin.in_features, : lin.out_features] = lin.weight.T
                b[i, 0, : lin.out_features] = lin.bias
        return sum(p.numel() for p in module.parameters() if p.requires_grad)

    def _placed(
        self, linears: list[nn.Linear]
    ) -> list[tuple[torch.Tensor, torch.Tensor, nn.Linear]]:
        """The stacks that hold a member's linear layers after its first: its hidden ones
        in order, its head in the last (layers between are the ones it passes through)."""
        stacks = list(zip(self.ws, self.bs, strict=True))
        places = stacks[: len(linears) - 1] + stacks[-1:] if linears else []
        return [(w, b, lin) for (w, b), lin in zip(places, linears, strict=True)]

    def _move(self, change: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Replaces every stack (and running statistic) by ``change(stack)``."""
        self.w0, self.b0 = change(self.w0), change(self.b0)
        for group in ("ws", "bs", "gamma", "beta", "running_mean", "running_var"):
            setattr(self, group, [change(t) for t in getattr(self, group)])

    def _masks(self) -> None:
        """Per-member masks and settings, rebuilt whenever members leave."""
        k, dev = len(self.shapes), self.device
        self.unit_mask: list[torch.Tensor | None] = []
        self.active = [
            torch.tensor([len(s.widths) > j for s in self.shapes], device=dev).view(k, 1, 1)
            for j in range(self.depth)
        ]
        self.all_active = [all(len(s.widths) > j for s in self.shapes) for j in range(self.depth)]
        for j, size in enumerate(self.sizes[:-1]):
            widths = [s.widths[j] if len(s.widths) > j else size for s in self.shapes]
            units = torch.arange(size, device=dev).view(1, 1, size)
            full = all(w == size for w in widths)  # nothing to mask
            limit = torch.tensor(widths, device=dev).view(k, 1, 1)
            self.unit_mask.append(None if full else (units < limit).float())
        rates = [
            [s.dropouts[j] if len(s.dropouts) > j else 0.0 for s in self.shapes]
            for j in range(self.depth)
        ]
        self.dropout = [torch.tensor(r, device=dev).view(k, 1, 1) for r in rates]
        # one rate for all members: a float, and torch's own dropout
        self.dropout_value = [r[0] if len(set(r)) == 1 else None for r in rates]
        self.any_dropout = [any(r) for r in rates]
        # runs of members with the same activation, in stack order: (name, start, end)
        self.activation: list[list[tuple[str, int, int]]] = []
        for j in range(self.depth):
            runs: list[tuple[str, int, int]] = []
            for i, s in enumerate(self.shapes):
                name = s.activations[j] if len(s.activations) > j else "relu"
                if runs and runs[-1][0] == name:
                    runs[-1] = (name, runs[-1][1], i + 1)
                else:
                    runs.append((name, i, i + 1))
            self.activation.append(runs)

    def parameters(self) -> list[torch.Tensor]:
        """Every trainable stack."""
        return [self.w0, self.b0, *self.ws, *self.bs, *self.gamma, *self.beta]

    def member_dims(self) -> list[int]:
        """The member dimension of each of :meth:`parameters`."""
        return [1] + [0] * (len(self.parameters()) - 1)

    def weights(self) -> list[tuple[torch.Tensor, int]]:
        """The linear layers' weight stacks (what L1 penalises), with their member dims."""
        return [(self.w0, 1), *((w, 0) for w in self.ws)]

    def l1_norms(self) -> torch.Tensor:
        """Each member's sum of absolute linear weights, shape (K,)."""
        total = torch.zeros(len(self.shapes), device=self.device)
        for w, dim in self.weights():
            total = total + w.abs().sum(dim=[d for d in range(w.dim()) if d != dim])
        return total

    def __call__(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        """Logits of every member for the shared batch ``x`` (B, F): shape (K, B, C)."""
        k, out0 = len(self.shapes), self.w0.shape[2]
        z = (x @ self.w0.reshape(self.num_features, k * out0)).view(len(x), k, out0)
        z = z.transpose(0, 1) + self.b0.unsqueeze(1)
        h = z
        for j in range(self.depth):
            hidden = self._hidden(z, j, train)
            # a member without layer j passes its activations through
            h = hidden if self.all_active[j] else torch.where(self.active[j], hidden, h)
            z = torch.baddbmm(self.bs[j], h, self.ws[j])
        return z

    def _hidden(self, z: torch.Tensor, j: int, train: bool) -> torch.Tensor:
        if self.batch_norm:
            z = self._normalize(z, j, train)
        runs = self.activation[j]
        if len(runs) == 1:
            h = ACTIVATION_FNS[runs[0][0]](z)
        else:  # members sorted by optimizer, then activation: a few contiguous runs
            h = torch.cat([ACTIVATION_FNS[name](z[a:b]) for name, a, b in runs])
        mask = self.unit_mask[j]
        if mask is not None:
            h = h * mask
        if train and self.any_dropout[j]:
            p = self.dropout_value[j]
            if p is not None:
                return F.dropout(h, p, training=True)
            rate = self.dropout[j]
            h = h * (torch.rand_like(h) >= rate) / (1.0 - rate)
        return h

    def _normalize(self, z: torch.Tensor, j: int, train: bool) -> torch.Tensor:
        if train:
            mean = z.mean(dim=1, keepdim=True)
            var = z.var(dim=1, unbiased=False, keepdim=True)
            with torch.no_grad():
                n = z.shape[1]
                unbiased = var * (n / max(n - 1, 1))
                # float32 statistics, also of a bfloat16 (autocast) batch
                self.running_mean[j].lerp_(mean.float(), BN_MOMENTUM)
                self.running_var[j].lerp_(unbiased.float(), BN_MOMENTUM)
        else:
            mean, var = self.running_mean[j], self.running_var[j]
        return (z - mean) / torch.sqrt(var + BN_EPS) * self.gamma[j] + self.beta[j]

    def zero_grad(self) -> None:
        for t in self.parameters():
            t.grad = None

    def keep(self, members: torch.Tensor) -> None:
        """Keeps only ``members`` (indices, in order); the rest leave the stacks."""
        with torch.no_grad():
            w0 = self.w0.index_select(1, members)
            self._move(lambda t: t.index_select(0, members))
            self.w0 = w0
        for t in self.parameters():
            t.requires_grad_(True)
        kept = members.tolist()
        self.shapes = [self.shapes[i] for i in kept]
        self.param_counts = [self.param_counts[i] for i in kept]
        self._masks()

    def export(self, i: int) -> nn.Sequential:
        """Member ``i`` as an ordinary ``nn.Sequential`` (as :func:`build_mlp` builds it)."""
        module = self._module(self.shapes[i]).to(self.device)
        first, *rest = self._linears(module)
        norms = [m for m in module if isinstance(m, nn.BatchNorm1d)]
        with torch.no_grad():
            first.weight.copy_(self.w0[:, i, : first.out_features].T)
            first.bias.copy_(self.b0[i, : first.out_features])
            for w, b, lin in self._placed(rest):
                lin.weight.copy_(w[i, : lin.in_features, : lin.out_features].T)
                lin.bias.copy_(b[i, 0, : lin.out_features])
            for j, bn in enumerate(norms):
                n = bn.num_features
                bn.weight.copy_(self.gamma[j][i, 0, :n])
                bn.bias.copy_(self.beta[j][i, 0, :n])
                assert bn.running_mean is not None and bn.running_var is not None
                bn.running_mean.copy_(self.running_mean[j][i, 0, :n])
                bn.running_var.copy_(self.running_var[j][i, 0, :n])
        return module
