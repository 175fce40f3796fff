from __future__ import annotations

from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import TrialState

from hpsearch.study.windows import best_trials
from hpsearch.study.windows import window
from hpsearch.study.windows import Windowed
from hpsearch.study.windows import windowed_pruner
from hpsearch.study.windows import WindowedPruner


def _trials(values: list[float | None]) -> list[optuna.trial.FrozenTrial]:
    trials = []
    for number, value in enumerate(values):
        state = TrialState.PRUNED if value is None else TrialState.COMPLETE
        trial = optuna.trial.create_trial(value=value, state=state)
        trial.number = number
        trials.append(trial)
    return trials


def test_window_keeps_the_best_and_the_most_recent_trials() -> None:
    trials = _trials([5.0, 1.0, 9.0, None, 2.0, 7.0, None, 8.0, 6.0, None])
    kept = window(trials, [StudyDirection.MINIMIZE], best=2, recent=3)
    assert [t.number for t in kept] == [1, 4, 7, 8, 9]  # 1.0 and 2.0, then the last three
    kept = window(trials, [StudyDirection.MAXIMIZE], best=2, recent=3)
    assert [t.number for t in kept] == [2, 6, 7, 8, 9]  # 9.0 and 8.0, then the last three
    assert window(trials, [StudyDirection.MINIMIZE], best=6, recent=4) == trials  # fits
    several = [StudyDirection.MINIMIZE, StudyDirection.MAXIMIZE]
    assert [t.number for t in window(trials, several, best=2, recent=3)] == [5, 6, 7, 8, 9]


def test_a_windowed_tpe_models_at_most_its_window_and_still_converges() -> None:
    seen: list[int] = []
    inner = optuna.samplers.TPESampler(seed=0, n_startup_trials=10)
    sample_relative = inner.sample_relative

    def spy(study: optuna.Study, trial: optuna.trial.FrozenTrial, space: Any) -> Any:
        seen.append(len(study._get_trials(deepcopy=False, states=(TrialState.COMPLETE,))))
        return sample_relative(study, trial, space)

    inner.sample_relative = spy  # type: ignore[method-assign]
    study = optuna.create_study(sampler=Windowed(inner, best=5, recent=15))
    study.optimize(lambda t: (t.suggest_float("x", -10, 10) - 2.0) ** 2, n_trials=80)
    # the whole study kept; 20 modelled, the asking (running) trial one of the recent 15
    assert max(seen) == 19 and len(study.trials) == 80
    assert study.best_value < 0.05


def test_the_best_part_of_a_window_is_kept_and_found_again_as_trials_start() -> None:
    trials = _trials([5.0, 1.0, 9.0, None, 2.0, 7.0, None, 8.0, 6.0, None])
    minimize = [StudyDirection.MINIMIZE]
    top = best_trials(trials, minimize, 2)
    assert [t.number for t in top] == [1, 4]
    assert window(trials, minimize, 2, 3, top=top) == window(trials, minimize, 2, 3)
    sampler = Windowed(optuna.samplers.TPESampler(seed=0, n_startup_trials=2), best=2, recent=8)
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: (t.suggest_float("x", -10, 10) - 2.0) ** 2, n_trials=30)
    ((started, kept),) = sampler.tops.values()
    assert 30 - started < 8 // 4  # found again every quarter of ``recent`` trials
    assert kept == best_trials(study.trials[:started], minimize, 2)


def test_a_windowed_pruner_compares_with_the_most_recent_completed_trials() -> None:
    study = optuna.create_study(direction="maximize")
    for value in [0.9] * 6 + [0.1] * 4:  # the first trials did well, the last ones badly
        study.add_trial(optuna.trial.create_trial(value=value, intermediate_values={1: value}))
    running = study.ask()
    running.report(0.5, 1)
    trial = study._storage.get_trial(running._trial_id)
    median = optuna.pruners.MedianPruner(n_startup_trials=0, n_warmup_steps=0)
    assert median.prune(study, trial)  # below the median of all ten (0.9)
    assert not WindowedPruner(median, recent=4).prune(study, trial)  # above the last four's
    assert isinstance(windowed_pruner("median", median), WindowedPruner)
    hyperband = optuna.pruners.HyperbandPruner()
    assert windowed_pruner("hyperband", hyperband) is hyperband  # rungs, not a history
