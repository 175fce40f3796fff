"""hpsearch: hyperparameter search for PyTorch MLPs, built on Optuna.

The package reads as its architecture (see ARCHITECTURE.md): :mod:`~hpsearch.choices` and
:mod:`~hpsearch.config` (the trainer's settings), :mod:`~hpsearch.data`,
:mod:`~hpsearch.model`, :mod:`~hpsearch.optim` and :mod:`~hpsearch.trainer` (one training
run), :mod:`~hpsearch.space` and :mod:`~hpsearch.studyfile` (study definitions),
:mod:`~hpsearch.record` (what is stored per trial), :mod:`~hpsearch.storage` and
:mod:`~hpsearch.internals`, :mod:`~hpsearch.study` (running trials), :mod:`~hpsearch.workers`
(pools of worker processes), :mod:`~hpsearch.results` (the reading API),
:mod:`~hpsearch.predict` (saved models), :mod:`~hpsearch.report`, :mod:`~hpsearch.dashboard`
and :mod:`~hpsearch.cli`."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version

try:
    __version__ = version("hpsearch")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

from pathlib import Path
from typing import Any


def load_model(path: str | Path, device: str = "cpu") -> Any:
    """Loads a model that ``hpsearch retrain`` saved as a ready ``nn.Module`` with its
    preprocessing: ``load_model("runs/best").predict(raw_images)`` gives classes (see
    :func:`hpsearch.predict.load_model`; torch is imported only when this is called).

    Args:
        path: The model file, or the directory holding ``model.pt``.
        device: Where to put its weights.

    Returns:
        A :class:`hpsearch.predict.Predictor`.
    """
    from hpsearch.predict import load_model as load

    return load(path, device)


__all__ = ["__version__", "load_model"]
