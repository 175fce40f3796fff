"""The names a trainer config may choose from, without the torch code behind them.

The command line, the study-file schema and the JSON Schema read these names; the tables
that map each name to torch code live beside the trainer (:mod:`hpsearch.training.data`,
:mod:`hpsearch.training.model`, :mod:`hpsearch.training.optim`) and are tested to hold
exactly these keys. So ``hpsearch --help`` and every reading command start without
importing torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import get_args
from typing import Literal

Dataset = Literal["digits", "mnist", "fashion-mnist", "synthetic"]
Preprocess = Literal["raw", "scale", "standardize"]
Activation = Literal["relu", "leaky_relu", "elu", "gelu", "silu", "tanh", "sigmoid"]
Loss = Literal["cross_entropy", "mse", "bce", "nll", "huber", "l1"]
Optimizer = Literal["sgd", "adam", "adamw", "adagrad", "adadelta", "rmsprop"]
Scheduler = Literal["none", "step", "cosine", "onecycle"]
Task = Literal["classification", "regression"]
Color = Literal["grey", "rgb"]
# float32 throughout; TF32 tensor cores for a CUDA device's float32 matrix products; bfloat16
# autocast of the training steps
Precision = Literal["fp32", "tf32", "bf16"]
ClassWeight = Literal["none", "balanced"]

# numpy's generators take 32-bit seeds: Optuna's samplers fail on a larger or a negative one
# at their first draw, torch on one past 64 bits; one range for every seed a file sets
MAX_SEED = 2**32 - 1

DATASETS: tuple[str, ...] = get_args(Dataset)
# the built-in data sets that are images (the rest, synthetic, are points): what may be shifted
IMAGE_DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist", "digits")
PREPROCESSING: tuple[str, ...] = get_args(Preprocess)
ACTIVATIONS: tuple[str, ...] = get_args(Activation)
# NLL over a log-softmax output *is* cross-entropy on the logits: one choice, two names.
LOSS_ALIASES = {"nll": "cross_entropy"}
LOSSES: tuple[str, ...] = tuple(n for n in get_args(Loss) if n not in LOSS_ALIASES)
OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)
SCHEDULERS: tuple[str, ...] = get_args(Scheduler)
PRECISIONS: tuple[str, ...] = get_args(Precision)
# mse is both: against one-hot class probabilities, or against a standardized target value
TASK_LOSSES: dict[str, tuple[str, ...]] = {
    "classification": ("cross_entropy", "mse", "bce"),
    "regression": ("mse", "huber", "l1"),
}
# a user's data set: suffix -> the kind of table file; a folder holds images of these suffixes
TABLE_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".csv.gz": "csv",  # gzipped: read as they are, never unpacked to disk
    ".tsv.gz": "tsv",
    ".parquet": "parquet",
    ".npz": "npz",
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def table_kind(path: str | Path) -> str | None:
    """The kind of table file ``path`` names by its suffix (``data.csv.gz``: ``csv``), or
    ``None``."""
    name = Path(path).name.lower()
    return next((kind for suffix, kind in TABLE_SUFFIXES.items() if name.endswith(suffix)), None)
