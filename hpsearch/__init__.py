"""hpsearch: hyperparameter search for PyTorch MLPs, built on Optuna.

The package reads as its architecture (see ARCHITECTURE.md): :mod:`~hpsearch.choices` and
:mod:`~hpsearch.config` (the trainer's settings), :mod:`~hpsearch.data`,
:mod:`~hpsearch.model`, :mod:`~hpsearch.optim` and :mod:`~hpsearch.trainer` (one training
run), :mod:`~hpsearch.space` and :mod:`~hpsearch.studyfile` (study definitions),
:mod:`~hpsearch.record` (what is stored per trial), :mod:`~hpsearch.storage` and
:mod:`~hpsearch.internals`, :mod:`~hpsearch.study` (running trials), :mod:`~hpsearch.workers`
(pools of worker processes), :mod:`~hpsearch.results` (the reading API),
:mod:`~hpsearch.report`, :mod:`~hpsearch.dashboard` and :mod:`~hpsearch.cli`."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version

try:
    __version__ = version("hpsearch")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
