"""History windows: a model-based sampler, or a median or percentile pruner, sees a bounded
number of a large study's trials.

TPE's ask grows with every trial it models (about 33 ms at 1,000 trials, 250 ms at 10,000 on a
2-core CPU) and a Gaussian process's much faster (seconds at a few hundred finished trials,
its fit is cubic). :class:`Windowed` wraps such a sampler so that, once a study is larger than
its window, it models the best trials (which locate the optimum) plus the most recent ones
(which carry the running and just-finished trials a parallel search must not repeat), and
nothing else. Small studies are untouched. The window sizes are in :data:`WINDOWS` and the
README's sampler table. :class:`WindowedPruner` does the same for the pruners that compare a
trial with every completed one (:data:`PRUNER_WINDOWS`).
"""

from __future__ import annotations

from collections.abc import Container
from collections.abc import Sequence
import copy
import heapq
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from hpsearch import storage as db
from hpsearch.storage.states import best_first

# sampler name -> (best trials, most recent trials) it models at most
WINDOWS: dict[str, tuple[int, int]] = {"tpe": (100, 400), "gp": (100, 100)}
# pruner name -> the most recent completed trials it compares a trial with
PRUNER_WINDOWS: dict[str, int] = {"median": 1000, "percentile": 1000}


def window(
    trials: Sequence[FrozenTrial],
    directions: Sequence[StudyDirection],
    best: int,
    recent: int,
    top: Sequence[FrozenTrial] | None = None,
) -> list[FrozenTrial]:
    """The ``best`` completed trials by the first objective (none for several objectives,
    where no order is "best") and the ``recent`` last others, in their order (Optuna's: by
    number); all of them when there are no more than that.

    Args:
        trials: The study's trials, by number.
        directions: The study's directions.
        best: How many of the best to keep.
        recent: How many of the most recent others to keep.
        top: The best trials, if the caller has them (:func:`best_trials` of an earlier,
            shorter list: the cut then costs ``best + recent``, not a pass over ``trials``).
    """
    if len(trials) <= best + recent:
        return list(trials)
    picked = list(best_trials(trials, directions, best) if top is None else top)
    keep = {t.number for t in picked}
    more = best + recent - len(keep)  # at least ``recent``: fewer completed trials, more recent
    for t in reversed(trials):
        if more == 0:
            break
        if t.number not in keep:
            keep.add(t.number)
            picked.append(t)
            more -= 1
    return sorted(picked, key=lambda t: t.number)


def best_trials(
    trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection], n: int
) -> list[FrozenTrial]:
    """The ``n`` best completed trials by the first objective; none for several objectives."""
    if len(directions) != 1:
        return []
    done = (t for t in trials if t.state == TrialState.COMPLETE and t.values)
    return heapq.nsmallest(n, done, key=best_first(directions))


class _Window:
    """What the wrapped sampler sees of a study: its started trials cut to the window. A
    worker's storage that says when its trials changed (:func:`hpsearch.storage.cache_version`)
    lets the window be kept until then: one cut per change, whatever states the sampler asks
    for."""

    def __init__(self, study: optuna.Study, owner: Windowed) -> None:
        self._study, self._owner = study, owner

    def trials(
        self, deepcopy: bool, states: Container[TrialState] | None, use_cache: bool
    ) -> list[FrozenTrial]:
        version = db.cache_version(self._study)
        key = db.study_key(self._study)
        kept = self._owner.windows.get(key)
        if version is not None and kept is not None and kept[0] == version:
            cut = kept[1]
        else:
            # WAITING trials (a queued budget) are never "recent": the window is cut from
            # the trials that started. A worker's cache keeps them listed: read from it, not
            # through Optuna's per-thread copy of every trial (a pass over the study).
            cached = use_cache and version is None
            started = db.started_trials(self._study, use_cache=cached)
            cut = window(
                started,
                self._study.directions,
                self._owner.best,
                self._owner.recent,
                top=self._top(key, started),
            )
            if version is not None:
                self._owner.windows[key] = (version, cut)
        if states is not None:
            cut = [t for t in cut if t.state in states]
        return copy.deepcopy(cut) if deepcopy else list(cut)

    def _top(self, key: Any, started: Sequence[FrozenTrial]) -> list[FrozenTrial]:
        """The window's best trials, found again once a quarter of ``recent`` trials more
        started (a pass over every trial; completed trials never change, and those that
        finished since are in the recent part)."""
        owner = self._owner
        found = owner.tops.get(key)
        if found is None or len(started) - found[0] >= max(1, owner.recent // 4):
            found = (len(started), best_trials(started, self._study.directions, owner.best))
            owner.tops[key] = found
        return found[1]


class Windowed(BaseSampler):
    """``sampler``, modelling at most ``best`` + ``recent`` trials of a study (see the module
    docstring). Search spaces, and the hooks before and after a trial, see the whole study."""

    def __init__(self, sampler: BaseSampler, best: int, recent: int) -> None:
        self.sampler, self.best, self.recent = sampler, best, recent
        self.windows: dict[Any, tuple[int, list[FrozenTrial]]] = {}
        self.tops: dict[Any, tuple[int, list[FrozenTrial]]] = {}

    def _view(self, study: optuna.Study) -> optuna.Study:
        return db.as_study(db.TrialListView(study, _Window(study, self).trials))

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self.sampler.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self.sampler.sample_relative(self._view(study), trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self.sampler.sample_independent(
            self._view(study), trial, param_name, param_distribution
        )

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.sampler.before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self.sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.sampler.reseed_rng()


def windowed(name: str, sampler: BaseSampler) -> BaseSampler:
    """The sampler named ``name``, in its window if it has one (see :data:`WINDOWS`)."""
    if name not in WINDOWS:
        return sampler
    return Windowed(sampler, *WINDOWS[name])


class WindowedPruner(BasePruner):
    """``pruner``, comparing a trial with at most the ``recent`` most recent completed trials.

    Median and percentile pruners compare each epoch's value with every completed trial's
    at that epoch: a pass over all of them per epoch of every trial (3 ms at 7,000 completed
    trials on a 2-core CPU, 20 ms of a 10-epoch trial). A window of the most recent keeps it
    bounded, and follows the study where it now searches. Small studies are untouched.
    """

    def __init__(self, pruner: BasePruner, recent: int) -> None:
        self.pruner, self.recent = pruner, recent

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        recent = self.recent

        def trials(
            deepcopy: bool, states: Container[TrialState] | None, use_cache: bool
        ) -> list[FrozenTrial]:
            cut = study.get_trials(deepcopy=False, states=states)[-recent:]
            return copy.deepcopy(cut) if deepcopy else cut

        return self.pruner.prune(db.as_study(db.TrialListView(study, trials)), trial)


def windowed_pruner(name: str, pruner: BasePruner) -> BasePruner:
    """The pruner named ``name``, in its window if it has one (see :data:`PRUNER_WINDOWS`)."""
    if name not in PRUNER_WINDOWS:
        return pruner
    return WindowedPruner(pruner, PRUNER_WINDOWS[name])
