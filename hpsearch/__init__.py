"""hpsearch: hyperparameter search for PyTorch MLPs, built on Optuna.

The package reads as its architecture: :mod:`~hpsearch.config` (the trainer's settings),
:mod:`~hpsearch.data`, :mod:`~hpsearch.model`, :mod:`~hpsearch.optim` and
:mod:`~hpsearch.trainer` (one training run), :mod:`~hpsearch.space` and
:mod:`~hpsearch.studyfile` (study definitions), :mod:`~hpsearch.study` (running trials),
:mod:`~hpsearch.workers` (pools of worker processes), :mod:`~hpsearch.report`, and
:mod:`~hpsearch.cli`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version

try:
    __version__ = version("hpsearch")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
