"""The configurable MLP: built from a list of widths, one activation and dropout per layer."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

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
