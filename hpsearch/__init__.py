"""hpsearch: hyperparameter search for PyTorch MLPs, built on Optuna.

The package reads as its architecture (see ARCHITECTURE.md), one folder per layer, each
importing only the layers below it: :mod:`~hpsearch.spec` (what a user asks for, validated),
:mod:`~hpsearch.training` (all the torch code), :mod:`~hpsearch.storage` (storages, outages,
Optuna's private API behind one door), :mod:`~hpsearch.study` (records, the budget, the
worker loop), :mod:`~hpsearch.launch` (worker processes, pools, Slurm),
:mod:`~hpsearch.results` (reading, the report, the dashboard) and :mod:`~hpsearch.cli`."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def __getattr__(name: str) -> Any:
    # the version is read when asked for: importlib.metadata costs every command 40 ms
    if name != "__version__":
        raise AttributeError(f"module 'hpsearch' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version

    try:
        return version("hpsearch")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


def load_model(path: str | Path, device: str = "cpu") -> Any:
    """Loads a model that ``hpsearch retrain`` saved as a ready ``nn.Module`` with its
    preprocessing: ``load_model("runs/best").predict(raw_images)`` gives classes (see
    :func:`hpsearch.training.saved.load_model`; torch is imported only when this is called).

    Args:
        path: The model file, or the directory holding ``model.pt``.
        device: Where to put its weights.

    Returns:
        A :class:`hpsearch.training.saved.Predictor`.
    """
    from hpsearch.training.saved import load_model as load

    return load(path, device)


__all__ = ["__version__", "load_model"]
