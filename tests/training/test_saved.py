"""Saved models: a retrained model loads back alone and predicts as it was measured."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
import pytest
import torch

import hpsearch
from hpsearch.results.retrain import retrain_best
from hpsearch.spec.studyfile import load_spec
from hpsearch.study.lifecycle import prepare
from hpsearch.study.worker import run_worker
from hpsearch.training.data import load_raw
from hpsearch.training.saved import Predictor
from tests.helpers import hpsearch as cli
from tests.helpers import write_study


def _retrained(tmp_path: Path, **overrides: object) -> tuple[Path, Predictor]:
    path = write_study(tmp_path, budget={"trials": 2}, **overrides)  # type: ignore[arg-type]
    spec = load_spec(str(path))
    storage, _, _ = prepare(spec)
    run_worker(spec, storage)
    out = tmp_path / "best"
    proc = cli("retrain", str(path), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    return out, hpsearch.load_model(out)


def _accuracy(model: Predictor, x: torch.Tensor, y: torch.Tensor) -> float:
    return int((model.predict(x) == y).sum()) / len(y)


@pytest.mark.slow
def test_a_retrained_model_loads_back_and_scores_its_recorded_test_accuracy(
    tmp_path: Path,
) -> None:
    out, model = _retrained(
        tmp_path,
        fixed={"epochs": 8, "scheduler": "none", "optimizer": "adam", "lr": 0.01},
        space={"dropout": {"type": "float", "low": 0.0, "high": 0.2}},
    )
    assert not model.training and model.classes == 10 and model.image_shape == (8, 8)
    assert model.info["study"] == "t" and model.info["config"]["dataset"] == "digits"
    assert model.info["versions"]["torch"] == str(torch.__version__)
    raw = load_raw("digits")
    # raw pixels in, as the data set stores them: the preprocessing travels with the model
    accuracy = _accuracy(model, raw.test_x, raw.test_y)
    assert accuracy == pytest.approx(model.info["metrics"]["test_accuracy"], abs=1e-9)
    assert accuracy > 0.9
    # the same through `hpsearch predict`: a .npy array, a .pt tensor, a PNG directory
    np.save(tmp_path / "x.npy", raw.test_x[:20].numpy())
    torch.save(raw.test_x[20:25].reshape(5, 8, 8).clone(), tmp_path / "x.pt")
    pngs = tmp_path / "png"
    pngs.mkdir()
    for i in range(4):  # 8-bit greyscale at 4x the size: scaled back to 8x8 and 0-16
        image = (raw.test_x[i].reshape(8, 8) * (255 / 16)).round().to(torch.uint8).numpy()
        Image.fromarray(image).resize((32, 32), Image.Resampling.NEAREST).save(
            pngs / f"digit{i}.png"
        )
    want = model.predict(raw.test_x[:25]).tolist()
    for source, first, names in (("x.npy", 0, "x.npy[0]"), ("x.pt", 20, "x.pt[0]")):
        proc = cli("predict", str(out), str(tmp_path / source), "--format", "csv")
        assert proc.returncode == 0, proc.stderr
        rows = [line.split(",") for line in proc.stdout.splitlines()[1:]]
        assert rows[0][0] == names
        assert [int(r[1]) for r in rows] == want[first : first + len(rows)]
    proc = cli("predict", str(out), str(pngs), "--format", "csv")
    rows = [line.split(",") for line in proc.stdout.splitlines()[1:]]
    assert [r[0] for r in rows] == [f"digit{i}.png" for i in range(4)]
    assert sum(int(r[1]) == w for r, w in zip(rows, want, strict=False)) >= 3  # resampled


def _with(array: np.ndarray, row: int, value: float) -> np.ndarray:
    array[row, 7] = value
    return array


@pytest.mark.slow
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: np.save(d / "in.npy", np.zeros((3, 5), np.float32)), "the model takes 64"),
        (lambda d: (d / "in.txt").write_text("1 2 3"), "unknown input"),
        (lambda d: (d / "in.npy").write_text("not numpy"), "not a readable .npy"),
        (lambda d: (d / "in").mkdir(), "no images (.png, .jpg, .jpeg)"),
        (lambda d: np.save(d / "in.npy", np.array([["a"] * 64])), "an array of text"),
        (lambda d: torch.save(torch.zeros(2, 64, dtype=torch.cfloat), d / "in.pt"), "complex"),
        (lambda d: np.save(d / "in.npy", _with(np.zeros((3, 64)), 2, np.nan)), "example 2 "),
        (lambda d: np.save(d / "in.npy", _with(np.zeros((3, 64)), 0, np.inf)), "NaN or inf"),
    ],
)
def test_bad_inputs_are_one_line_naming_the_file(
    tmp_path: Path, make: object, message: str
) -> None:
    out, _ = _retrained(tmp_path)
    make(tmp_path)  # type: ignore[operator]
    source = next(p for p in tmp_path.iterdir() if p.name.startswith("in"))
    proc = cli("predict", str(out), str(source))
    assert proc.returncode == 2 and message in proc.stderr and str(source) in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_output_folder_that_cannot_be_made_is_refused_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_study(tmp_path, budget={"trials": 1})
    spec = load_spec(str(path))
    storage, study, _ = prepare(spec)
    run_worker(spec, storage)
    (tmp_path / "taken").write_text("a file where the folder would go")

    def no_training(*args: object) -> None:
        raise AssertionError("trained before its output folder was made")

    monkeypatch.setattr("hpsearch.training.trainer.fit", no_training)
    with pytest.raises(NotADirectoryError):
        retrain_best(study, tmp_path / "taken" / "model")


def test_a_file_that_is_not_a_saved_model_is_refused(tmp_path: Path) -> None:
    bare = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(64, 10).state_dict(), bare)  # what 0.3 saved: weights alone
    proc = cli("predict", str(tmp_path), str(bare))
    assert proc.returncode == 2 and "not a model saved by hpsearch" in proc.stderr
    missing = cli("predict", str(tmp_path / "none"), str(bare))
    assert missing.returncode == 2 and "no such model file" in missing.stderr


@pytest.mark.slow
@pytest.mark.mnist
def test_a_retrained_mnist_model_scores_its_recorded_test_accuracy(
    tmp_path: Path, mnist_dir: str
) -> None:
    _, model = _retrained(
        tmp_path,
        dataset="mnist",
        data_dir=mnist_dir,
        fixed={"epochs": 2, "train_subset": 3000, "scheduler": "none", "optimizer": "adam"},
        space={"lr": {"type": "float", "low": 1e-3, "high": 3e-3, "log": True}},
    )
    assert model.image_shape == (28, 28)
    raw = load_raw("mnist", mnist_dir)
    accuracy = _accuracy(model, raw.test_x.reshape(-1, 28, 28), raw.test_y)  # uint8 images
    assert accuracy == pytest.approx(model.info["metrics"]["test_accuracy"], abs=1e-9)
    assert accuracy > 0.85


def test_a_model_answers_many_inputs_a_chunk_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hpsearch.training import saved

    _, model = _retrained(tmp_path, fixed={"epochs": 1, "scheduler": "none"})
    x = load_raw("digits").test_x
    whole = model(x)
    monkeypatch.setattr(saved, "CHUNK", 64)
    seen: list[int] = []
    model.network.register_forward_hook(lambda _m, inputs, _o: seen.append(len(inputs[0])))
    chunked = model(x)
    assert seen == [64] * (len(x) // 64) + [len(x) % 64]  # never more than a chunk at once
    assert torch.allclose(chunked, whole, atol=1e-6) and chunked.shape == whole.shape
    assert model(x[:0]).shape == (0, 10)  # no input: no output, not an error
