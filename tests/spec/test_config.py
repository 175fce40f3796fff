from __future__ import annotations

from pathlib import Path

import pytest

from hpsearch.errors import ConfigError
from hpsearch.spec.config import load_config_file
from hpsearch.spec.config import make_config
from hpsearch.spec.config import parse_assignment
from hpsearch.spec.config import TrainConfig


def test_defaults_are_the_reference_configuration() -> None:
    c = TrainConfig()
    assert (c.hidden_layers, c.optimizer, c.lr, c.scheduler, c.gamma) == (
        (128,),
        "adadelta",
        1.0,
        "step",
        0.7,
    )
    assert (c.batch_size, c.epochs, c.preprocess) == (64, 14, "standardize")


def test_values_are_coerced() -> None:
    c = make_config({"hidden_layers": [256, 128], "lr": 1, "activation": ["relu", "tanh"]})
    assert c.hidden_layers == (256, 128)
    assert c.lr == 1.0 and isinstance(c.lr, float)
    assert c.activations() == ("relu", "tanh")
    assert c.dropouts() == (0.0, 0.0)


def test_nll_is_cross_entropy() -> None:
    assert make_config({"loss": "nll"}).loss == "cross_entropy"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"activaton": "relu"}, "activaton: unknown setting (did you mean 'activation'?)"),
        ({"lr": "fast"}, "lr: expected a number"),
        ({"lr": -1.0}, "lr: must be > 0"),
        ({"hidden_layers": [128, -4]}, "hidden_layers: widths must be positive"),
        ({"hidden_layers": 128}, "hidden_layers: expected a list of integers"),
        ({"activation": "swish"}, "activation: unknown 'swish'; allowed: relu"),
        ({"loss": "hinge"}, "loss: unknown 'hinge'"),
        ({"optimizer": "lbfgs"}, "optimizer: unknown 'lbfgs'; allowed: sgd"),
        ({"scheduler": "plateau"}, "scheduler: unknown 'plateau'"),
        ({"dataset": "cifar"}, "dataset: unknown 'cifar'"),
        ({"dropout": 1.5}, "dropout: must be in [0, 1)"),
        ({"hidden_layers": [8, 8], "activation": ["relu"]}, "activation: 1 values for 2"),
        ({"nesterov": True}, "nesterov: needs momentum > 0"),
        ({"epochs": 0}, "epochs: must be >= 1"),
        # torch fails past 64 bits, numpy (which a study's sampler seeds) past 32 or below 0
        ({"seed": 2**70}, "seed: must be in [0, 4294967295], got 1180591620717411303424"),
        ({"seed": -1}, "seed: must be in [0, 4294967295], got -1"),
        ({"batch_size": True}, "batch_size: expected an integer"),
        ({"device": "tpu"}, "device: allowed: auto, cpu"),
        # YAML's .inf and .nan: an infinite rate trains to NaN; NaN passes every bound
        ({"lr": float("inf")}, "lr: must be a finite number, got inf"),
        ({"weight_decay": float("nan")}, "weight_decay: must be a finite number, got nan"),
        ({"dropout": float("nan")}, "dropout: must be a finite number, got nan"),
    ],
)
def test_bad_values_name_the_key(values: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        make_config(values)
    assert expected in str(err.value)


def test_all_problems_reported_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        make_config({"lr": 0.0, "epochs": 0, "batch_size": 0})
    assert len(err.value.problems) == 3


def test_parse_assignment_reads_yaml_values() -> None:
    assert parse_assignment("hidden_layers=[256,128]") == ("hidden_layers", [256, 128])
    assert parse_assignment("lr=3e-4") == ("lr", 3e-4)
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_assignment("lr")


def test_config_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("hidden_layers: [32]\noptimizer: adam\nlr: 0.001\n")
    c = load_config_file(str(path))
    assert c.hidden_layers == (32,) and c.optimizer == "adam"
    path.write_text("hidden_layers: [32\n")
    with pytest.raises(ConfigError, match=r"c.yaml: YAML syntax error at line 2"):
        load_config_file(str(path))
