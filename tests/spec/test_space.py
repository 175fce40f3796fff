from __future__ import annotations

import optuna
import pytest

from hpsearch.spec.space import CategoricalParam
from hpsearch.spec.space import FloatParam
from hpsearch.spec.space import IntParam
from hpsearch.spec.space import LayersParam
from hpsearch.spec.space import SearchSpace
from hpsearch.spec.space import TooManyPoints


def _drawn(space: SearchSpace, n: int) -> set[str]:
    """Values the random sampler draws from ``space`` (as JSON keys)."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(n):
        trial = study.ask()
        seen.add(repr(sorted(space.suggest(trial).items())))
        study.tell(trial, 0.0)
    return seen


def _grid(space: SearchSpace) -> set[str]:
    study = optuna.create_study()
    seen = set()
    for point in space.grid_points():
        study.enqueue_trial(point)
        trial = study.ask()
        seen.add(repr(sorted(space.suggest(trial).items())))
        study.tell(trial, 0.0)
    return seen


@pytest.mark.parametrize(
    "param",
    [
        FloatParam("lr", 0.1, 0.5, step=0.1),
        FloatParam("dropout", 0.0, 0.45, step=0.15),
        IntParam("batch_size", 16, 64, step=16),
        IntParam("epochs", 1, 5),
        CategoricalParam("hidden_layers", ([64], [128, 64])),
        LayersParam("hidden_layers", 0, 2, 8, 24, width_step=8),
        LayersParam("hidden_layers", 1, 3, 8, 16, width_step=8, same_width=True),
    ],
    ids=lambda p: type(p).__name__,
)
def test_grid_expansion_equals_what_samplers_draw(param: object) -> None:
    space = SearchSpace((param,))  # type: ignore[arg-type]
    grid = _grid(space)
    assert len(grid) == len(space.grid_points())  # no duplicates among grid points
    assert _drawn(space, 400) == grid
    # counted without listing: how a grid too large to list is refused
    assert param.size() == len(param.options() or [])  # type: ignore[attr-defined]


def test_a_grid_past_its_limit_stops_as_it_passes_it() -> None:
    space = SearchSpace(
        (IntParam("epochs", 1, 10), IntParam("batch_size", 1, 10), IntParam("seed", 1, 10))
    )
    assert len(space.grid_points(most=1000)) == 1000
    with pytest.raises(TooManyPoints, match="more than 999 points"):
        space.grid_points(most=999)


def test_float_step_is_inclusive() -> None:
    values = [v for _, v in FloatParam("x", 0.1, 0.5, step=0.1).options() or []]
    assert values == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert values[-1] <= 0.5


def test_layers_widths_exist_only_up_to_depth() -> None:
    space = SearchSpace((LayersParam("hidden_layers", 0, 3, 4, 32),))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(30):
        trial = study.ask()
        layers = space.suggest(trial)["hidden_layers"]
        widths = [k for k in trial.params if k.startswith("hidden_layers.width_")]
        assert len(widths) == len(layers) == trial.params["hidden_layers.depth"]
        study.tell(trial, 0.0)


def test_conditional_parameter_exists_only_when_parent_matches() -> None:
    space = SearchSpace(
        (
            CategoricalParam("optimizer", ("adam", "sgd")),
            FloatParam("momentum", 0.1, 0.9, when={"optimizer": ("sgd",)}),
        )
    )
    points = space.grid_points() if space.is_finite() else []
    assert points == []  # momentum is continuous: not a grid
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        values = space.suggest(trial)
        assert ("momentum" in values) == (values["optimizer"] == "sgd")
        study.tell(trial, 0.0)


def test_conditional_grid_skips_inactive_combinations() -> None:
    space = SearchSpace(
        (
            CategoricalParam("optimizer", ("adam", "sgd")),
            FloatParam("momentum", 0.0, 0.9, step=0.45, when={"optimizer": ("sgd",)}),
        )
    )
    assert len(space.grid_points()) == 1 + 3  # adam alone, sgd with three momenta


def test_one_factor_points() -> None:
    space = SearchSpace(
        (
            CategoricalParam("activation", ("relu", "tanh", "sigmoid")),
            CategoricalParam("batch_size", (64, 16, 256)),
        )
    )
    points = space.one_factor_points({"activation": "relu", "batch_size": 64})
    assert [(f, v) for f, v, _ in points] == [
        ("baseline", None),
        ("activation", "tanh"),
        ("activation", "sigmoid"),
        ("batch_size", 16),
        ("batch_size", 256),
    ]
    assert points[2][2] == {"activation": "sigmoid", "batch_size": 64}
