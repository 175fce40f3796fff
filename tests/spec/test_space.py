from __future__ import annotations

import re

import optuna
import pytest

from hpsearch.spec.space import CategoricalParam
from hpsearch.spec.space import FloatParam
from hpsearch.spec.space import IntParam
from hpsearch.spec.space import LayersParam
from hpsearch.spec.space import SearchSpace
from hpsearch.spec.space import TooManyPoints
from hpsearch.spec.validation import Problems


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


KNOWN_POINTS = [
    (FloatParam("lr", 1e-4, 0.3, log=True), 0.01, {"lr": 0.01}),
    (FloatParam("dropout", 0.0, 0.5, step=0.125), 0.375, {"dropout": 0.375}),
    (IntParam("epochs", 2, 20, step=2), 8, {"epochs": 8}),
    (CategoricalParam("activation", ("relu", "gelu")), "gelu", {"activation": "gelu"}),
    (
        CategoricalParam("hidden_layers", ([64], [128, 64])),
        [128, 64],
        {"hidden_layers": "[128, 64]"},
    ),
    (CategoricalParam("batch_norm", (1, True)), True, {"batch_norm": True}),  # not 1
    (
        LayersParam("net", 1, 3, 16, 256, width_log=True),
        [200, 17],
        {"net.depth": 2, "net.width_0": 200, "net.width_1": 17},
    ),
    (LayersParam("net", 0, 3, 16, 256), [], {"net.depth": 0}),
    (
        LayersParam("net", 1, 3, 16, 256, same_width=True),
        [64, 64],
        {"net.depth": 2, "net.width": 64},
    ),
]


@pytest.mark.parametrize(("param", "value", "params"), KNOWN_POINTS)
def test_a_known_point_is_what_a_trial_queued_with_its_params_suggests(
    param: object, value: object, params: dict[str, object]
) -> None:
    space = SearchSpace((param,))  # type: ignore[arg-type]
    assert space.fix({param.name: value}) == params  # type: ignore[attr-defined]
    study = optuna.create_study()
    study.enqueue_trial(params)
    assert space.suggest(study.ask()) == {param.target: value}  # type: ignore[attr-defined]


def test_a_known_value_on_a_step_is_the_grid_value_a_sampler_draws() -> None:
    param = FloatParam("dropout", 0.1, 0.5, step=0.1)
    fixed = param.fix(0.3)["dropout"]
    assert fixed != 0.3 and fixed == 0.1 + 2 * 0.1  # 0.30000000000000004
    assert {"dropout": fixed} in [params for params, _ in param.options() or []]


def test_a_known_point_leaves_the_rest_to_the_sampler_and_meets_its_conditions() -> None:
    space = SearchSpace(
        (
            CategoricalParam("optimizer", ("adam", "sgd")),
            FloatParam("momentum", 0.0, 0.9, when={"optimizer": ("sgd",)}),
            FloatParam("lr", 1e-4, 0.3, log=True),
        )
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(space.fix({"optimizer": "sgd", "momentum": 0.5}))
    values = space.suggest(study.ask())
    assert values["optimizer"] == "sgd" and values["momentum"] == 0.5
    assert 1e-4 <= values["lr"] <= 0.3
    with pytest.raises(Problems) as err:
        space.fix({"momentum": 0.5, "lr": 1.0, "optimiser": "sgd"})
    assert err.value.problems == [
        (
            "optimiser",
            "not a parameter of space (did you mean 'optimizer'?); "
            "allowed: optimizer, momentum, lr",
        ),
        ("momentum", "exists only when optimizer is sgd: give optimizer too"),
        ("lr", "must be in [0.0001, 0.3], got 1"),
    ]


@pytest.mark.parametrize(
    ("param", "value", "message"),
    [
        (FloatParam("lr", 1e-4, 0.3), "fast", "must be a number in [0.0001, 0.3], got 'fast'"),
        (FloatParam("lr", 1e-4, 0.3), True, "must be a number in [0.0001, 0.3], got True"),
        (FloatParam("lr", 1e-4, 0.3), float("nan"), "must be in [0.0001, 0.3], got nan"),
        (FloatParam("d", 0.1, 0.5, step=0.1), 0.25, "must be 0.1 plus a multiple of the step 0.1"),
        (IntParam("epochs", 2, 20), 2.5, "must be a whole number in [2, 20], got 2.5"),
        (IntParam("epochs", 2, 20, step=2), 5, "must be 2 plus a multiple of the step 2, got 5"),
        (CategoricalParam("act", ("relu", "gelu")), "elu", "one of its values: 'relu', 'gelu'"),
        (CategoricalParam("bn", (1, 0)), True, "must be one of its values: 1, 0; got True"),
        (LayersParam("net", 1, 2, 16, 256), [64] * 3, "must be a list of 1 to 2 layer widths"),
        (LayersParam("net", 1, 2, 16, 256), 64, "must be a list of 1 to 2 layer widths"),
        (LayersParam("net", 1, 2, 16, 256), [64, 8], "width 1: must be in [16, 256], got 8"),
        (LayersParam("net", 1, 2, 16, 256, same_width=True), [32, 64], "one width for every"),
    ],
)
def test_a_value_the_parameter_cannot_take_says_what_it_can(
    param: object, value: object, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        param.fix(value)  # type: ignore[attr-defined]
