"""Saved models: one self-describing file, loaded back as a ready ``nn.Module``.

``hpsearch retrain`` writes ``model.pt``: the weights together with everything needed to
use them without this project's source at hand: the resolved trainer config (architecture),
the preprocessing (raw scale, mean and standard deviation of the training images), the input
shape, the class count, the test metrics and the versions that made it. It is a plain
``torch.save`` dict of tensors, strings and numbers, so it loads with
``torch.load(weights_only=True)`` (no pickled code runs)::

    import hpsearch
    model = hpsearch.load_model("runs/best")      # the directory, or runs/best/model.pt
    classes = model.predict(images)               # raw pixels, as the data set stores them

``hpsearch predict MODEL_DIR INPUT`` does the same from the command line, for a ``.npy`` or
``.pt`` tensor or a directory of PNG images.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from dataclasses import dataclass
import math
from pathlib import Path
import platform
from typing import Any

import torch
from torch import nn

import hpsearch
from hpsearch.errors import ConfigError
from hpsearch.spec.config import make_config
from hpsearch.training.data import Preprocessing
from hpsearch.training.model import build_mlp

FORMAT = "hpsearch.training.model"
FORMAT_VERSION = 1
MODEL_FILE = "model.pt"
PNG_VALUE = 255.0  # an 8-bit PNG's largest pixel value


class Predictor(nn.Module):
    """A trained MLP with its preprocessing: give it raw features, get logits.

    Attributes:
        network: The MLP (``nn.Sequential``), in eval mode.
        preprocessing: What the trainer did to raw features before the first layer.
        image_shape: Height and width of the images it was trained on (``None`` when its
            features are not a square image).
        classes: How many classes it tells apart.
        info: Everything else saved with it: ``config``, ``metrics``, ``versions``,
            ``study`` and ``trial``.
    """

    def __init__(
        self,
        network: nn.Sequential,
        preprocessing: Preprocessing,
        image_shape: tuple[int, int] | None,
        classes: int,
        info: Mapping[str, Any],
    ) -> None:
        super().__init__()
        self.network = network
        self.preprocessing = preprocessing
        self.image_shape = image_shape
        self.classes = classes
        self.info = dict(info)
        self.eval()

    @property
    def num_features(self) -> int:
        first = self.network[0]
        assert isinstance(first, nn.Linear)
        return first.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, classes)`` of raw inputs ``(N, features)`` or ``(N, H, W)``, on the
        data set's raw scale (0-255 for MNIST, 0-16 for the 8x8 digits)."""
        flat = x.reshape(len(x), -1)
        if flat.shape[1] != self.num_features:
            raise ValueError(
                f"inputs have {flat.shape[1]} features per example; this model takes "
                f"{self.num_features}"
                + (f" ({self.image_shape[0]}x{self.image_shape[1]})" if self.image_shape else "")
            )
        device = next(self.network.parameters()).device
        logits: torch.Tensor = self.network(self.preprocessing(flat).to(device))
        return logits

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The predicted class of each input."""
        return self.classify(x)[0]

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The predicted class of each input and its probability (softmax of the logits)."""
        probability, classes = self.forward(x).softmax(dim=-1).max(dim=-1)
        return classes, probability


def save_model(
    network: nn.Module,
    config: Mapping[str, Any],
    preprocessing: Preprocessing,
    num_features: int,
    num_classes: int,
    path: str | Path,
    metrics: Mapping[str, Any] | None = None,
    origin: Mapping[str, Any] | None = None,
) -> Path:
    """Writes a trained network and everything needed to use it to ``path`` (a file).

    Args:
        network: The trained MLP (as :func:`hpsearch.training.model.build_mlp` builds it).
        config: Its resolved trainer config (``TrainConfig.to_dict()``).
        preprocessing: The preprocessing it was trained with.
        num_features: Input features per example.
        num_classes: Output classes.
        path: Where to write.
        metrics: Its test metrics, as recorded.
        origin: Where it came from (``study``, ``trial``).
    """
    side = math.isqrt(num_features)
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "state_dict": {k: v.detach().cpu() for k, v in network.state_dict().items()},
        "config": dict(config),
        "preprocessing": asdict(preprocessing),
        "num_features": num_features,
        "image_shape": [side, side] if side * side == num_features else None,
        "classes": num_classes,
        "metrics": dict(metrics or {}),
        "versions": {
            "hpsearch": hpsearch.__version__,
            "torch": str(torch.__version__),  # a str subclass weights_only refuses
            "python": platform.python_version(),
        },
        **dict(origin or {}),
    }
    out = Path(path)
    torch.save(doc, out)
    return out


def load_model(path: str | Path, device: str = "cpu") -> Predictor:
    """Loads a model that ``hpsearch retrain`` saved, ready to predict (eval mode).

    Args:
        path: The model file, or the directory holding ``model.pt``.
        device: Where to put its weights (``cpu``, ``cuda``, ``cuda:1``, ...).

    Raises:
        ConfigError: The file is missing or is not a model saved by hpsearch.
    """
    file = Path(path)
    if file.is_dir():
        file = file / MODEL_FILE
    if not file.is_file():
        raise ConfigError([f"{file}: no such model file (`hpsearch retrain` writes one)"])
    try:
        doc = torch.load(file, map_location=device, weights_only=True)
    except Exception as e:  # a truncated file, or not a torch file at all
        raise ConfigError([f"{file}: not a model saved by hpsearch ({type(e).__name__})"]) from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ConfigError(
            [f"{file}: not a model saved by hpsearch (a bare state_dict of an older version?)"]
        )
    config = make_config(doc["config"])
    network = build_mlp(
        doc["num_features"],
        doc["classes"],
        config.hidden_layers,
        config.activations(),
        config.dropouts(),
        config.batch_norm,
    )
    network.load_state_dict(doc["state_dict"])
    shape = doc.get("image_shape")
    info = {k: doc.get(k) for k in ("config", "metrics", "versions", "study", "trial")}
    return Predictor(
        network.to(device),
        Preprocessing(**doc["preprocessing"]),
        (int(shape[0]), int(shape[1])) if shape else None,
        int(doc["classes"]),
        info,
    )


@dataclass(frozen=True)
class Inputs:
    """Examples read for prediction, as raw features, with a name for each."""

    names: list[str]
    features: torch.Tensor


def read_inputs(path: str | Path, model: Predictor) -> Inputs:
    """Reads what ``hpsearch predict`` is given: a ``.npy`` or ``.pt`` tensor of examples
    (``(N, features)``, ``(N, H, W)``, or one example), or a directory of PNG images
    (grey or colour, any size: made grey and resized to the model's image shape, and their
    0-255 pixels put on the data set's raw scale; light digits on a dark background, as in
    MNIST).

    Raises:
        ConfigError: The input is missing, of an unknown kind, or of the wrong size.
    """
    source = Path(path)
    if source.is_dir():
        return _read_pngs(source, model)
    if not source.is_file():
        raise ConfigError([f"{source}: no such file or directory"])
    if source.suffix == ".npy":
        import numpy as np

        try:
            array = np.load(source, allow_pickle=False)
        except Exception as e:
            raise ConfigError([f"{source}: not a readable .npy array ({e})"]) from e
        tensor = torch.from_numpy(np.asarray(array, dtype=np.float32))
    elif source.suffix == ".pt":
        try:
            tensor = torch.load(source, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ConfigError([f"{source}: not a readable tensor file ({e})"]) from e
        if not isinstance(tensor, torch.Tensor):
            raise ConfigError([f"{source}: holds a {type(tensor).__name__}, not a tensor"])
    else:
        raise ConfigError(
            [f"{source}: unknown input; give a .npy or .pt tensor or a directory of PNG images"]
        )
    tensor = tensor.float()
    if tensor.numel() == model.num_features:
        tensor = tensor.reshape(1, -1)  # one example
    if tensor.dim() == 0 or tensor[0].numel() != model.num_features:
        raise ConfigError(
            [
                f"{source}: examples of shape {tuple(tensor.shape[1:])}; the model takes "
                f"{model.num_features} features each"
            ]
        )
    return Inputs([f"{source.name}[{i}]" for i in range(len(tensor))], tensor)


def _read_pngs(directory: Path, model: Predictor) -> Inputs:
    import numpy as np
    from PIL import Image  # torchvision's own dependency; its PNG decoder is deprecated

    files = sorted(p for p in directory.iterdir() if p.suffix.lower() == ".png")
    if not files:
        raise ConfigError([f"{directory}: no .png files"])
    if model.image_shape is None:
        raise ConfigError([f"{directory}: this model was not trained on images"])
    height, width = model.image_shape
    images = []
    for file in files:
        try:
            with Image.open(file) as image:
                grey = image.convert("L").resize((width, height), Image.Resampling.BILINEAR)
                pixels = np.asarray(grey, dtype=np.float32)
        except Exception as e:
            raise ConfigError([f"{file}: not a readable PNG ({e})"]) from e
        images.append(torch.from_numpy(pixels) * (model.preprocessing.max_value / PNG_VALUE))
    return Inputs([f.name for f in files], torch.stack(images))


def predict_file(
    model_dir: str | Path, inputs: str | Path, device: str = "cpu"
) -> list[dict[str, Any]]:
    """What ``hpsearch predict`` prints: one row per input of ``inputs`` (see
    :func:`read_inputs`) with its name, predicted class and that class's probability, by the
    model saved in ``model_dir``."""
    model = load_model(model_dir, device)
    examples = read_inputs(inputs, model)
    classes, probabilities = model.classify(examples.features)
    return [
        {"input": name, "class": int(c), "probability": float(p)}
        for name, c, p in zip(examples.names, classes.cpu(), probabilities.cpu(), strict=True)
    ]
