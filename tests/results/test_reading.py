"""Reading results: which of the best trial's parameters lie at an end of their range."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution
import pytest

from hpsearch.results.reading import range_edges

LR = FloatDistribution(1e-4, 0.3, log=True)
DROPOUT = FloatDistribution(0.0, 0.5)
DEPTH = IntDistribution(1, 3)
WIDTH = IntDistribution(16, 256, log=True)


def _edges(params: dict[str, tuple[Any, Any]]) -> list[tuple[str, bool]]:
    trial = optuna.trial.create_trial(
        params={name: value for name, (value, _) in params.items()},
        distributions={name: dist for name, (_, dist) in params.items()},
        value=0.5,
    )
    return [(e.param, e.top) for e in range_edges(trial)]


@pytest.mark.parametrize(
    ("params", "edges"),
    [
        # within 5% of a log range's span of its top: 0.3 / 1.4 is 5% of 3,000x
        ({"lr": (0.21, LR)}, [("lr", True)]),
        ({"lr": (0.2, LR)}, []),
        ({"lr": (1.3e-4, LR)}, [("lr", False)]),
        ({"lr": (3e-3, LR)}, []),
        # no dropout is a floor, not an edge; its top is
        ({"dropout": (0.0, DROPOUT)}, []),
        ({"dropout": (0.49, DROPOUT)}, [("dropout", True)]),
        # an integer range of a few values: only its end values
        ({"hidden_layers.depth": (3, DEPTH)}, [("hidden_layers.depth", True)]),
        ({"hidden_layers.depth": (1, DEPTH)}, [("hidden_layers.depth", False)]),
        ({"hidden_layers.depth": (2, DEPTH)}, []),
        ({"hidden_layers.depth": (2, IntDistribution(1, 2))}, []),  # no inside to leave
        ({"hidden_layers.width_0": (250, WIDTH)}, [("hidden_layers.width_0", True)]),
        ({"hidden_layers.width_0": (128, WIDTH)}, []),
        ({"activation": ("relu", CategoricalDistribution(["relu", "gelu"]))}, []),
        ({"lr": (0.25, FloatDistribution(0.25, 0.25))}, []),  # a fixed value
        (
            {"lr": (0.29, LR), "hidden_layers.depth": (2, DEPTH), "dropout": (0.5, DROPOUT)},
            [("lr", True), ("dropout", True)],
        ),
    ],
)
def test_a_parameter_near_an_end_of_its_range_is_an_edge(
    params: dict[str, tuple[Any, Any]], edges: list[tuple[str, bool]]
) -> None:
    assert _edges(params) == edges
