from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import hpsearch


def test_train_defaults_on_digits() -> None:
    proc = hpsearch("train", "--set", "epochs=3")
    assert proc.returncode == 0, proc.stderr
    assert "epoch   3/3" in proc.stderr
    assert "test_accuracy" in proc.stdout


def test_train_json_and_overrides(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("optimizer: adam\nlr: 3e-3\nscheduler: none\n")
    proc = hpsearch(
        "train",
        "--config",
        str(config),
        "--set",
        "hidden_layers=[32,16]",
        "--set",
        "epochs=4",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["config"]["hidden_layers"] == [32, 16]
    assert result["config"]["optimizer"] == "adam" and result["config"]["lr"] == 0.003
    assert len(result["epochs"]) == 4 and result["epochs"][-1]["val_accuracy"] > 0.8


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "hidden_sizes=[3]"], "hidden_sizes: unknown setting (did you mean"),
        (["--set", "epochs=many"], "epochs: expected an integer, got 'many'"),
        (["--set", "hidden_layers=[64,-2]"], "hidden_layers: widths must be positive"),
        (["--set", "activation=swish"], "activation: unknown 'swish'; allowed: relu, leaky_relu"),
        (["--set", "lr"], "expected KEY=VALUE"),
        (["--dataset", "mnist", "--data-dir", "{tmp}"], "MNIST files missing in {tmp}"),
        (["--config", "{tmp}/none.yaml"], "none.yaml: cannot read file"),
    ],
)
def test_train_bad_input(args: list[str], message: str, tmp_path: Path) -> None:
    proc = hpsearch("train", *[a.format(tmp=tmp_path) for a in args])
    assert proc.returncode == 2
    assert message.format(tmp=tmp_path) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_console_script_and_version() -> None:
    proc = hpsearch("--version")
    assert proc.returncode == 0 and "version" in proc.stdout
