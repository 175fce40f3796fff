"""A study whose trial lists are cut: how a model-based sampler is shown a window of a large
study (:mod:`hpsearch.study.windows` chooses the window).

Optuna's samplers read a study's trials through the private ``Study._get_trials``; the view
overrides it (a use of Optuna's private API, listed in :mod:`hpsearch.storage._optuna`).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Container
import copy
from typing import Any

import optuna
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from hpsearch.storage._optuna.trials import storage_of
from hpsearch.storage._optuna.trials import study_id
from hpsearch.storage.states import STARTED

# (deepcopy, states, use_cache) -> the trials the view shows
TrialLister = Callable[[bool, Container[TrialState] | None, bool], list[FrozenTrial]]


class TrialListView:
    """``study`` with every attribute its own, but its trial lists those ``trials`` gives."""

    def __init__(self, study: optuna.Study, trials: TrialLister) -> None:
        self._study, self._trials = study, trials

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(
        self,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
        use_cache: bool = False,
    ) -> list[FrozenTrial]:
        return self._trials(deepcopy, states, use_cache)

    def get_trials(
        self, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        return self._trials(deepcopy, states, False)


class _TrialListStudy(TrialListView, optuna.Study):
    """A :class:`TrialListView` that is an ``optuna.Study`` to every ``isinstance`` check
    (Optuna's plots take nothing else); ``Study.__init__`` is never run: what its methods
    read of the instance comes from the study the view stands in for."""


def study_of_trials(study: optuna.Study, trials: list[FrozenTrial]) -> optuna.Study:
    """``study``, its trial lists ``trials`` (of the states asked for): how a report draws
    a sample of a large study with Optuna's plots, trial numbers and all."""

    def listed(
        deepcopy: bool, states: Container[TrialState] | None, use_cache: bool
    ) -> list[FrozenTrial]:
        chosen = [t for t in trials if states is None or t.state in states]
        return copy.deepcopy(chosen) if deepcopy else chosen

    return _TrialListStudy(study, listed)


def as_study(view: TrialListView) -> optuna.Study:
    """The view, typed as the study it stands in for."""
    return view  # type: ignore[return-value]


def started_trials(study: optuna.Study, use_cache: bool = False) -> list[FrozenTrial]:
    """The study's trials that are not WAITING, by number, not copied (as a sampler reads
    them: through Optuna's trial cache when ``use_cache``)."""
    return study._get_trials(deepcopy=False, states=STARTED, use_cache=use_cache)


def study_key(study: optuna.Study) -> tuple[int, int]:
    """Tells apart the studies (and the storages they are read through) a sampler serves."""
    return id(storage_of(study)), study_id(study)


def cache_version(study: optuna.Study) -> int | None:
    """The version of a worker's trial cache (it counts changes: see
    :func:`~hpsearch.storage._optuna.trials.worker_storage`); ``None`` on other storages."""
    version = getattr(storage_of(study), "version", None)
    return None if version is None else int(version)
