"""Saved models: one self-describing file, loaded back as a ready ``nn.Module``.

``hpsearch retrain`` writes ``model.pt``: the weights together with everything needed to
use them without this project's source at hand: the resolved trainer config (architecture),
the preprocessing (raw scale, mean and standard deviation of the training images; a table's
whole encoding: each column's center, scale, fill value and categories), the input shape,
the classes (their names, for a user's data) or the regression target's mean and scale, the
test metrics and the versions that made it. It is a plain ``torch.save`` dict of tensors,
strings and numbers, so it loads with ``torch.load(weights_only=True)`` (no pickled code
runs)::

    import hpsearch
    model = hpsearch.load_model("runs/best")      # the directory, or runs/best/model.pt
    classes = model.predict(images)               # raw pixels, as the data set stores them
    model.answers(rows)                           # a table's raw rows: labels, values

``hpsearch predict MODEL_DIR INPUT`` does the same from the command line, for a ``.npy`` or
``.pt`` tensor, a directory of PNG/JPEG images, or a table's new rows (.csv/.tsv, .parquet,
.npz: without the target column, in any column order, with missing cells).
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
from hpsearch.spec.choices import IMAGE_SUFFIXES
from hpsearch.spec.choices import table_kind
from hpsearch.spec.config import make_config
from hpsearch.training.data import DeviceData
from hpsearch.training.data import Preprocessing
from hpsearch.training.images import MODES
from hpsearch.training.model import build_mlp
from hpsearch.training.modelfile import model_file
from hpsearch.training.tables import read_rows
from hpsearch.training.tables import TableEncoding
from hpsearch.training.tables import where
from hpsearch.training.trainer import resolve_device

FORMAT = "hpsearch.training.model"
FORMAT_VERSION = 2  # 2: the task, class names, a table's encoding, images' channels
PNG_VALUE = 255.0  # an 8-bit PNG's largest pixel value
# Inputs a forward pass takes at once: a million rows through a 1,024-wide layer would hold
# 4 GB of activations in one pass; in chunks, 32 MB (and a GPU gets them a chunk at a time).
CHUNK = 8192


class Predictor(nn.Module):
    """A trained MLP with its preprocessing: give it raw features (or a table's raw rows),
    get outputs; :meth:`answers` says them in the data's own labels.

    Attributes:
        network: The MLP (``nn.Sequential``), in eval mode.
        preprocessing: What the trainer did to raw features before the first layer.
        image_shape: Height and width of the images it was trained on (``None`` when its
            features are not images).
        classes: How many classes it tells apart (1 output for a regression).
        info: Everything else saved with it: ``config``, ``metrics``, ``versions``,
            ``study`` and ``trial``.
        task: ``classification`` or ``regression``.
        class_names: A user's data set's classes, as its target or folders name them.
        encoding: A table's encoding (its features are read from rows, see :meth:`encode`).
        color: A user's images: ``grey`` or ``rgb``.
    """

    def __init__(
        self,
        network: nn.Sequential,
        preprocessing: Preprocessing,
        image_shape: tuple[int, int] | None,
        classes: int,
        info: Mapping[str, Any],
        task: str = "classification",
        class_names: tuple[Any, ...] = (),
        encoding: TableEncoding | None = None,
        color: str = "grey",
    ) -> None:
        super().__init__()
        self.network = network
        self.preprocessing = preprocessing
        self.image_shape = image_shape
        self.classes = classes
        self.info = dict(info)
        self.task = task
        self.class_names = class_names
        self.encoding = encoding
        self.color = color
        self.eval()

    @property
    def num_features(self) -> int:
        first = self.network[0]
        assert isinstance(first, nn.Linear)
        return first.in_features

    def encode(self, rows: Any, source: str = "input") -> torch.Tensor:
        """A table's raw rows as the network's inputs: a polars or pandas DataFrame, a
        mapping of columns, or a list of row mappings; columns in any order, the target
        and other extra columns ignored, missing cells (``None``, NaN) filled as in
        training.

        Raises:
            DataError: A column the model reads is absent, or holds text where it reads
                numbers.
        """
        assert self.encoding is not None, "encode: this model was not trained on a table"
        return torch.from_numpy(self.encoding.features(as_frame(rows), source))

    def forward(self, x: Any) -> torch.Tensor:
        """Outputs ``(N, classes)`` (logits; a regression's standardized value) of raw
        inputs: ``(N, features)`` or ``(N, H, W)`` on the data set's raw scale (0-255 for
        MNIST, 0-16 for the 8x8 digits), or a table's raw rows (see :meth:`encode`); run
        :data:`CHUNK` inputs at a time."""
        if self.encoding is not None:
            flat = x if isinstance(x, torch.Tensor) else self.encode(x)
        else:
            raw = x.reshape(len(x), -1) if len(x) else x.flatten(1)  # none: (0, H, W) too
            _check_width(raw.shape[1], self.num_features, self.image_shape)
            flat = self.preprocessing(raw)
        device = next(self.network.parameters()).device
        chunks = [self.network(c.float().to(device)) for c in torch.split(flat, CHUNK)]
        outputs: torch.Tensor = torch.cat(chunks) if len(chunks) != 1 else chunks[0]
        return outputs

    @torch.no_grad()
    def predict(self, x: Any) -> torch.Tensor:
        """The predicted class index of each input (a regression: its value, in the
        target's units)."""
        if self.task == "regression":
            return self._values(self.forward(x))
        return self.classify(x)[0]

    @torch.no_grad()
    def classify(self, x: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The predicted class of each input and its probability (softmax of the logits)."""
        probability, classes = self.forward(x).softmax(dim=-1).max(dim=-1)
        return classes, probability

    @torch.no_grad()
    def answers(self, x: Any) -> list[dict[str, Any]]:
        """Each input's answer in the data's own labels: ``{"class": name, "probability":
        p}`` (a built-in data set's class is its index), or a regression's ``{"value": v}``
        in the target's units."""
        if self.task == "regression":
            return [{"value": float(v)} for v in self._values(self.forward(x))]
        classes, probabilities = self.classify(x)
        names = self.class_names
        return [
            {"class": names[int(c)] if names else int(c), "probability": float(p)}
            for c, p in zip(classes.cpu(), probabilities.cpu(), strict=True)
        ]

    def _values(self, outputs: torch.Tensor) -> torch.Tensor:
        scale = self.encoding.target_scale if self.encoding else 1.0
        mean = self.encoding.target_mean if self.encoding else 0.0
        return outputs.squeeze(-1).cpu().double() * scale + mean


def _check_width(width: int, expected: int, image_shape: tuple[int, int] | None) -> None:
    if width != expected:
        raise ValueError(
            f"inputs have {width} features per example; this model takes {expected}"
            + (f" ({image_shape[0]}x{image_shape[1]})" if image_shape else "")
        )


def as_frame(rows: Any) -> Any:
    """Rows as a polars DataFrame: from polars, pandas, a mapping of columns or a list of
    row mappings."""
    import polars as pl

    if isinstance(rows, pl.DataFrame):
        return rows
    if type(rows).__module__.startswith("pandas"):
        return pl.from_pandas(rows)
    return pl.DataFrame(rows)


def save_model(
    network: nn.Module,
    config: Mapping[str, Any],
    data: DeviceData,
    path: str | Path,
    metrics: Mapping[str, Any] | None = None,
    origin: Mapping[str, Any] | None = None,
) -> Path:
    """Writes a trained network and everything needed to use it to ``path`` (a file).

    Args:
        network: The trained MLP (as :func:`hpsearch.training.model.build_mlp` builds it).
        config: Its resolved trainer config (``TrainConfig.to_dict()``).
        data: The data it was trained on (its preprocessing or table encoding, its classes,
            its input shape).
        path: Where to write.
        metrics: Its test metrics, as recorded.
        origin: Where it came from (``study``, ``trial``).
    """
    num_features = data.num_features
    side = math.isqrt(num_features)
    if data.image_shape is not None:
        image_shape: list[int] | None = list(data.image_shape[1:])
    elif data.encoding is None and side * side == num_features:
        image_shape = [side, side]
    else:
        image_shape = None
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "state_dict": {k: v.detach().cpu() for k, v in network.state_dict().items()},
        "config": dict(config),
        "preprocessing": asdict(data.preprocessing),
        "num_features": num_features,
        "image_shape": image_shape,
        "color": "rgb" if data.image_shape and data.image_shape[0] == 3 else "grey",
        "classes": data.num_classes,
        "task": data.task,
        "class_names": list(data.classes),
        "encoding": data.encoding.to_dict() if data.encoding is not None else None,
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
        device: Where to put its weights (``cpu``, ``cuda``, ``cuda:1``, ``mps``, ``auto``).

    Raises:
        ConfigError: The file is missing or is not a model saved by hpsearch.
        DeviceError: The device is unknown, or not on this machine.
    """
    file = model_file(path)
    on = resolve_device(device)  # a GPU this machine lacks is named, not a bad file
    try:
        doc = torch.load(file, map_location=on, weights_only=True)
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
    encoding = doc.get("encoding")  # format 1 had none of these
    return Predictor(
        network.to(on),
        Preprocessing(**doc["preprocessing"]),
        (int(shape[0]), int(shape[1])) if shape else None,
        int(doc["classes"]),
        info,
        task=doc.get("task", "classification"),
        class_names=tuple(doc.get("class_names") or ()),
        encoding=TableEncoding.from_dict(encoding) if encoding else None,
        color=doc.get("color", "grey"),
    )


@dataclass(frozen=True)
class Inputs:
    """Examples read for prediction, as raw features, with a name for each."""

    names: list[str]
    features: torch.Tensor


def read_inputs(path: str | Path, model: Predictor) -> Inputs:
    """Reads what ``hpsearch predict`` is given: for a model of a table, its new rows (a
    .csv/.tsv, .parquet or .npz file: see :meth:`Predictor.encode`); else a ``.npy`` or
    ``.pt`` tensor of examples (``(N, features)``, ``(N, H, W)``, or one example), or a
    directory of PNG/JPEG images (any size: made grey or RGB as the model was trained and
    resized to its image shape, their 0-255 pixels put on the data set's raw scale; light
    digits on a dark background, as in MNIST).

    Raises:
        ConfigError: The input is missing, of an unknown kind, not numbers, NaN or infinite,
            or of the wrong size.
        DataError: A table's rows lack a column the model reads, or hold text in a number
            column.
    """
    source = Path(path)
    if model.encoding is not None:
        return _read_rows(source, model)
    if source.is_dir():
        return _read_images(source, model)
    if not source.is_file():
        raise ConfigError([f"{source}: no such file or directory"])
    if source.suffix == ".npy":
        import numpy as np

        try:
            array = np.load(source, allow_pickle=False)
        except Exception as e:
            raise ConfigError([f"{source}: not a readable .npy array ({e})"]) from e
        if array.dtype.kind not in "biuf":  # text, dates, complex or objects
            what = "text" if array.dtype.kind in "US" else str(array.dtype)
            raise ConfigError([f"{source}: an array of {what}, not of numbers"])
        tensor = torch.from_numpy(np.asarray(array, dtype=np.float32))
    elif source.suffix == ".pt":
        try:
            tensor = torch.load(source, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ConfigError([f"{source}: not a readable tensor file ({e})"]) from e
        if not isinstance(tensor, torch.Tensor):
            raise ConfigError([f"{source}: holds a {type(tensor).__name__}, not a tensor"])
        if tensor.is_complex():
            raise ConfigError([f"{source}: a tensor of {tensor.dtype}, not of real numbers"])
    else:
        raise ConfigError(
            [f"{source}: unknown input; give a .npy or .pt tensor or a directory of images"]
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
    finite = torch.isfinite(tensor.reshape(len(tensor), -1)).all(dim=1)
    if not finite.all():
        first = int((~finite).nonzero()[0])
        raise ConfigError(
            [f"{source}: example {first} ({source.name}[{first}]) holds NaN or inf, not numbers"]
        )
    return Inputs([f"{source.name}[{i}]" for i in range(len(tensor))], tensor)


def rows_kind(source: Path, needs: str = "") -> str:
    """The kind of table file ``source`` is (see :func:`hpsearch.spec.choices.table_kind`),
    for a model of a table; ``needs`` says what it must hold besides.

    Raises:
        ConfigError: It is no table file.
    """
    kind = table_kind(source)
    if kind is None:
        raise ConfigError(
            [
                f"{source}: this model reads a table's rows: give a .csv, .tsv (or .csv.gz, "
                f".tsv.gz), .parquet or .npz{needs}"
            ]
        )
    return kind


def _read_rows(source: Path, model: Predictor) -> Inputs:
    kind = rows_kind(source)
    if not source.is_file():
        raise ConfigError([f"{source}: no such file"])
    frame = read_rows(str(source), kind)
    names = [where(str(source), row) for row in range(frame.height)]
    return Inputs(names, model.encode(frame, str(source)))


def _read_images(directory: Path, model: Predictor) -> Inputs:
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError([f"{directory}: no images ({', '.join(IMAGE_SUFFIXES)})"])
    if model.image_shape is None:
        raise ConfigError([f"{directory}: this model was not trained on images"])
    return Inputs([f.name for f in files], image_pixels(files, model))


def image_pixels(files: list[Path], model: Predictor) -> torch.Tensor:
    """Image files as ``model`` takes them, ``(N, features)`` on its data's raw scale: made
    grey or RGB as it was trained, resized to its image shape (any size read).

    Raises:
        ConfigError: A file is not a readable image.
    """
    import numpy as np
    from PIL import Image  # torchvision's own dependency; its PNG decoder is deprecated

    assert model.image_shape is not None
    height, width = model.image_shape
    images = []
    for file in files:
        try:
            with Image.open(file) as image:
                resized = image.convert(MODES[model.color]).resize(
                    (width, height), Image.Resampling.BILINEAR
                )
                pixels = np.asarray(resized, dtype=np.float32).reshape(height, width, -1)
        except Exception as e:
            raise ConfigError([f"{file}: not a readable image ({e})"]) from e
        flat = torch.from_numpy(pixels.transpose(2, 0, 1).reshape(-1).copy())  # channels first
        images.append(flat * (model.preprocessing.max_value / PNG_VALUE))
    return torch.stack(images)


def predict_file(
    model_dir: str | Path, inputs: str | Path, device: str = "cpu"
) -> list[dict[str, Any]]:
    """What ``hpsearch predict`` prints: one row per input of ``inputs`` (see
    :func:`read_inputs`) with its name and its answer in the data's own labels (a class and
    its probability, or a regression's value in the target's units; see
    :meth:`Predictor.answers`), by the model saved in ``model_dir``."""
    model = load_model(model_dir, device)
    examples = read_inputs(inputs, model)
    answers = model.answers(examples.features)
    return [
        {"input": name, **answer} for name, answer in zip(examples.names, answers, strict=True)
    ]
