"""Scoring a saved model on labelled examples: what ``hpsearch evaluate`` prints.

A model is scored on data in the forms training reads (a table with the target column, a
folder with one subfolder of images per class, an ``.npz`` of arrays ``x`` and ``y``) or,
given none, on the test split of the data it was trained on: the same rows its recorded test
metrics came from. scikit-learn's metrics do the measuring: accuracy (with its standard
error), balanced accuracy, log loss, each class's recall and precision and the confusion
matrix; for a regression RMSE, MAE and R² in the target's units. The examples it gets most
wrong are named (a table's line, an image's file) to be looked at.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
import math
from pathlib import Path
from typing import Any
import warnings

import numpy as np
import torch

from hpsearch.errors import ConfigError
from hpsearch.spec.choices import IMAGE_SUFFIXES
from hpsearch.spec.config import make_config
from hpsearch.spec.datasource import DataSource
from hpsearch.training import tables
from hpsearch.training.data import load_raw
from hpsearch.training.images import class_folders
from hpsearch.training.modelfile import model_file
from hpsearch.training.saved import image_pixels
from hpsearch.training.saved import load_model
from hpsearch.training.saved import Predictor
from hpsearch.training.saved import rows_kind
from hpsearch.training.sources import carve
from hpsearch.training.sources import read_source

MISTAKES = 10  # the examples listed by default, worst first
TEST_SPLIT = "the test split"


@dataclass(frozen=True)
class Labelled:
    """Examples with their right answers: ``inputs`` as the model takes them (raw features,
    or a table's rows), each one's name, and ``truth``: class indices into the model's
    classes, or a regression's values in the target's units."""

    source: str
    names: list[str]
    inputs: Any
    truth: np.ndarray


@dataclass(frozen=True)
class Scores:
    """How a model did on labelled examples.

    Attributes:
        task: ``classification`` or ``regression``.
        source: What was read: a path, or the test split of the model's data.
        examples: How many examples.
        metrics: ``accuracy``, ``accuracy_se``, ``balanced_accuracy`` and ``log_loss``; or
            ``rmse``, ``mae`` and ``r2``.
        classes: Per class (a classification): its name, its examples (``rows``), its
            ``recall`` and ``precision`` (``None`` where there is nothing to divide by).
        confusion: ``confusion[i][j]``: examples of ``classes[i]`` answered as ``classes[j]``.
        mistakes: The worst answers, worst first: a wrong class given with the highest
            probability, or the largest error of a regression.
        wrong: How many answers were wrong (a classification), of ``examples``.
        recorded: The test metrics saved with the model (what they were on its test split).
        model: Where the model came from: its ``file``, ``study`` and ``trial``.
        test_split: Whether the examples were the test split of the model's own data (where
            ``recorded`` was measured).
    """

    task: str
    source: str
    examples: int
    metrics: dict[str, float]
    classes: list[dict[str, Any]]
    confusion: list[list[int]]
    mistakes: list[dict[str, Any]]
    wrong: int
    recorded: dict[str, float] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    test_split: bool = False


def evaluate_model(
    model_dir: str | Path,
    data: str | Path | None = None,
    device: str = "cpu",
    mistakes: int = MISTAKES,
) -> Scores:
    """Scores the model ``hpsearch retrain`` saved in ``model_dir`` on ``data`` (see
    :func:`read_labelled`; ``None``: the test split of the data it was trained on).

    Raises:
        ConfigError: The model or the data cannot be read, or the data has no labels.
        DataError: A row's label is missing or not among the model's classes, or a column
            the model reads is absent.
    """
    model = load_model(model_dir, device)
    scores = score(model, read_labelled(data, model), mistakes)
    return replace(
        scores, model={"file": str(model_file(model_dir)), **scores.model}, test_split=data is None
    )


def read_labelled(path: str | Path | None, model: Predictor) -> Labelled:
    """Reads labelled examples for ``model``: for a model of a table, a table file holding
    its target column (.csv/.tsv, .parquet, .npz); for a model of images, a folder with a
    subfolder per class named as the model's classes (some may be absent); else an ``.npz``
    of ``x`` (raw features) and ``y`` (class indices). ``None`` reads the test split of the
    data the model was trained on.

    Raises:
        ConfigError: A missing path, a kind of input the model cannot take, no labels.
        DataError: A label missing or unknown, or a column the model reads absent.
    """
    if path is None:
        return _test_split(model)
    source = Path(path)
    if not source.exists():
        raise ConfigError([f"{source}: no such file or directory"])
    if model.encoding is not None:
        return _table(source, model)
    if source.is_dir():
        return _image_folder(source, model)
    if source.suffix == ".npz":
        return _arrays(source, model)
    folder = "a folder of class subfolders or " if model.image_shape else ""
    raise ConfigError(
        [f"{source}: examples with labels are needed here: {folder}an .npz of arrays x and y"]
    )


def score(model: Predictor, labelled: Labelled, mistakes: int = MISTAKES) -> Scores:
    """Measures ``model``'s answers for ``labelled`` (see :class:`Scores`)."""
    with torch.no_grad():
        outputs = model(labelled.inputs).float().cpu()
    recorded = {k: float(v) for k, v in (model.info.get("metrics") or {}).items() if _number(v)}
    about = {"study": model.info.get("study"), "trial": model.info.get("trial")}
    measure = _regression if model.task == "regression" else _classification
    return replace(measure(model, labelled, outputs, mistakes), recorded=recorded, model=about)


def _classification(
    model: Predictor,
    labelled: Labelled,
    outputs: torch.Tensor,
    top: int,
) -> Scores:
    from sklearn import metrics

    n, truth, labels = len(labelled.truth), labelled.truth, list(range(model.classes))
    probabilities = outputs.softmax(dim=-1).double().numpy()
    answers = probabilities.argmax(axis=1)
    right = int((answers == truth).sum())
    p = (right + 1.0) / (n + 2.0)  # as hpsearch best's noise: a perfect score is not certain
    with warnings.catch_warnings():  # classes the examples lack: their recall is undefined
        warnings.simplefilter("ignore")
        precision, recall, _, support = metrics.precision_recall_fscore_support(
            truth, answers, labels=labels, zero_division=np.nan
        )
        scores = {
            "accuracy": right / n,
            "accuracy_se": math.sqrt(p * (1.0 - p) / n),
            "balanced_accuracy": float(metrics.balanced_accuracy_score(truth, answers)),
            "log_loss": float(metrics.log_loss(truth, probabilities, labels=labels)),
        }
    names = _class_names(model)
    # the classes among the examples or the answers: others' rows and columns are all 0
    shown = [c for c in labels if support[c] or (answers == c).any()]
    classes = [
        {"class": names[c], "rows": int(support[c]), "recall": _or_none(recall[c]),
         "precision": _or_none(precision[c])}
        for c in shown
    ]  # fmt: skip
    confusion = metrics.confusion_matrix(truth, answers, labels=labels)[np.ix_(shown, shown)]
    wrong = np.flatnonzero(answers != truth)
    worst = wrong[np.argsort(-probabilities[wrong, answers[wrong]], kind="stable")][:top]
    return Scores(
        "classification",
        labelled.source,
        n,
        scores,
        classes,
        confusion.tolist(),
        [
            {
                "input": labelled.names[i],
                "class": names[int(truth[i])],
                "answer": names[int(answers[i])],
                "probability": float(probabilities[i, answers[i]]),
            }
            for i in worst
        ],
        len(wrong),
    )


def _regression(
    model: Predictor,
    labelled: Labelled,
    outputs: torch.Tensor,
    top: int,
) -> Scores:
    from sklearn import metrics

    encoding = model.encoding
    assert encoding is not None  # a regression is a table's
    truth = labelled.truth
    answers = outputs.squeeze(-1).double().numpy() * encoding.target_scale + encoding.target_mean
    errors = answers - truth
    with warnings.catch_warnings():  # R² of one example is undefined: NaN
        warnings.simplefilter("ignore")
        r2 = float(metrics.r2_score(truth, answers)) if len(truth) > 1 else math.nan
    scores = {
        "rmse": math.sqrt(float(metrics.mean_squared_error(truth, answers))),
        "mae": float(metrics.mean_absolute_error(truth, answers)),
        "r2": r2,
    }
    worst = np.argsort(-np.abs(errors), kind="stable")[:top]
    return Scores(
        "regression",
        labelled.source,
        len(truth),
        scores,
        [],
        [],
        [
            {
                "input": labelled.names[i],
                "value": float(truth[i]),
                "answer": float(answers[i]),
                "error": float(errors[i]),
            }
            for i in worst
        ],
        0,
    )


def _class_names(model: Predictor) -> list[Any]:
    """The model's classes as its data names them (a built-in data set's: their indices)."""
    return list(model.class_names) if model.class_names else list(range(model.classes))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _or_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


# --- reading ------------------------------------------------------------------------------


def _table(source: Path, model: Predictor) -> Labelled:
    encoding = model.encoding
    assert encoding is not None
    kind = rows_kind(source, f" with its target column {encoding.target!r}")
    file = str(source)
    frame = tables.read_table(file, kind, encoding.target)
    return _rows(frame, file, model, [tables.where(file, row) for row in range(frame.height)])


def _rows(frame: Any, file: str, model: Predictor, names: list[str]) -> Labelled:
    """Labelled rows of a table: its features as the model encodes them, its target as
    class indices or values."""
    encoding = model.encoding
    assert encoding is not None
    tables.check_target(frame, file, encoding.target)
    if encoding.task == "regression":
        truth = tables.regression_values(frame, file, encoding.target)
    else:
        truth = encoding.labels(frame, file)
    return Labelled(file, names, model.encode(frame, file), truth)


def _image_folder(folder: Path, model: Predictor) -> Labelled:
    if model.image_shape is None:
        raise ConfigError([f"{folder}: this model was not trained on images"])
    names = [str(c) for c in _class_names(model)]
    found, listed = class_folders(folder)  # a folder's classes: some of the model's, or all
    unknown = [name for name in found if name not in names]
    if unknown:
        raise ConfigError(
            [
                f"{folder / unknown[0]}: no class {unknown[0]!r} in the model; a subfolder per "
                f"class, named as its classes: {', '.join(names[:20])}"
            ]
        )
    files = [(file, names.index(found[i])) for file, i in listed]
    if not files:
        raise ConfigError(
            [
                f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in class subfolders; "
                "labelled images are a subfolder per class, as training reads them"
            ]
        )
    pixels = image_pixels([f for f, _ in files], model)
    truth = np.array([c for _, c in files], dtype=np.int64)
    return Labelled(str(folder), [str(f.relative_to(folder)) for f, _ in files], pixels, truth)


def _arrays(source: Path, model: Predictor) -> Labelled:
    try:
        with np.load(source, allow_pickle=False) as arrays:
            missing = [a for a in ("x", "y") if a not in arrays]
            if missing:
                raise ConfigError(
                    [
                        f"{source}: no array {missing[0]!r}; it holds "
                        f"{', '.join(arrays.files) or 'nothing'} (expected x and y)"
                    ]
                )
            x, y = arrays["x"], arrays["y"]
    except ConfigError:
        raise
    except Exception as e:  # not a zip, a damaged member, a pickled array
        raise ConfigError([f"{source}: not a readable .npz file ({type(e).__name__})"]) from e
    if x.dtype.kind not in "biuf" or x.ndim == 0 or x[0].size != model.num_features:
        raise ConfigError(
            [
                f"{source}: x of shape {x.shape} ({x.dtype}); the model takes rows of "
                f"{model.num_features} numbers"
            ]
        )
    if y.shape != (len(x),) or y.dtype.kind not in "iu":
        raise ConfigError(
            [f"{source}: y of shape {y.shape} ({y.dtype}); expected {len(x)} class indices"]
        )
    outside = np.flatnonzero((y < 0) | (y >= model.classes))
    if len(outside):
        first = int(outside[0])
        raise ConfigError(
            [
                f"{source}: y[{first}] is {int(y[first])}: the model's classes are 0 to "
                f"{model.classes - 1}"
            ]
        )
    features = torch.from_numpy(np.asarray(x, dtype=np.float32).reshape(len(x), -1))
    if not torch.isfinite(features).all():
        first = int((~torch.isfinite(features).all(dim=1)).nonzero()[0])
        raise ConfigError([f"{source}: x[{first}] holds NaN or inf, not numbers"])
    return Labelled(
        str(source), [f"{source.name}[{i}]" for i in range(len(x))], features, y.astype(np.int64)
    )


def _test_split(model: Predictor) -> Labelled:
    """The test split of the data ``model`` was trained on, carved as training carved it."""
    config = make_config(model.info["config"])
    dataset = config.dataset
    if not isinstance(dataset, DataSource):
        raw = load_raw(dataset, config.data_dir)
        names = [f"{dataset} test[{i}]" for i in range(len(raw.test_y))]
        return Labelled(f"{TEST_SPLIT} of {dataset}", names, raw.test_x, raw.test_y.numpy())
    own = read_source(dataset)
    held = carve(own.rows, own.strata, not dataset.test, config.val_fraction, dataset.path)[2]
    source = f"{TEST_SPLIT} of {dataset.test or dataset.path}"
    if own.images is not None:
        images = own.test_images or own.images
        picked = held if own.test_images is None else np.arange(len(images.labels))
        root = Path(dataset.test or dataset.path)
        return Labelled(
            source,
            [str(images.files[i].relative_to(root)) for i in picked],
            torch.from_numpy(images.pixels[picked]).float(),
            images.labels[picked],
        )
    if own.test is not None:
        frame, file = own.test, str(dataset.test)
        names = [tables.where(file, row) for row in range(frame.height)]
    else:
        frame, file = own.frame[held], dataset.path
        names = [tables.where(file, int(row)) for row in held]
    return replace(_rows(frame, file, model, names), source=source)
