"""Repeating a study's best trials with other seeds (``hpsearch repeat``): how much of their
lead is the luck of one initialisation and one order of batches.

A trial's value is one draw: another seed gives its network other initial weights and its
epochs another order of batches, and among trials close together the best is often the
luckiest. Each of the best trials is trained again with its own seed and the next ones, the
data and its splits unchanged (they are fixed for the study), and the trials are ranked by
their mean value. Nothing is written to the study. torch is imported when called.
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
from dataclasses import dataclass
import math
import statistics
from typing import TYPE_CHECKING

import optuna

from hpsearch.errors import ConfigError
from hpsearch.results.reading import best_trials
from hpsearch.results.reading import require_best
from hpsearch.spec.choices import MAX_SEED
from hpsearch.study.record import base_config
from hpsearch.study.record import objectives
from hpsearch.study.record import records
from hpsearch.study.record import scoring

if TYPE_CHECKING:
    from hpsearch.spec.config import TrainConfig
    from hpsearch.spec.studyfile import Objective
    from hpsearch.training.trainer import TrainResult

MIN_SEEDS = 2  # one seed repeats the trial: no spread to measure


@dataclass(frozen=True)
class Repeated:
    """One trial trained again with several seeds.

    Attributes:
        number: The trial.
        stored: Its value in the study (of its own seed, as it was trained then).
        seeds: The seeds, its own first.
        values: The objective's value with each seed (``None``: that run diverged).
        tests: The test score with each seed (accuracy, balanced accuracy or R²).
    """

    number: int
    stored: float
    seeds: tuple[int, ...]
    values: tuple[float | None, ...]
    tests: tuple[float | None, ...]

    @property
    def mean(self) -> float | None:
        """The mean value over the seeds that did not diverge."""
        return _mean(self.values)

    @property
    def sd(self) -> float | None:
        """The values' standard deviation over the seeds (``None`` below two values)."""
        return _sd(self.values)

    @property
    def test_mean(self) -> float | None:
        return _mean(self.tests)

    @property
    def test_sd(self) -> float | None:
        return _sd(self.tests)


@dataclass(frozen=True)
class Repeats:
    """What :func:`repeat_best` found: the trials best first by their mean value.

    Attributes:
        metric: The objective's metric.
        direction: ``minimize`` or ``maximize``.
        score: The test score reported (``accuracy``, ``balanced_accuracy``, ``r2``).
        trials: The repeated trials, ranked by their mean value (diverged last).
        best: The study's best trial (the first repeated, before ranking).
    """

    metric: str
    direction: str
    score: str
    trials: tuple[Repeated, ...]
    best: int


def check_repeat(study: optuna.Study, seeds: int, device: str | None = None) -> Objective:
    """The objective :func:`repeat_best` ranks by, once it is sure it can (before torch
    loads).

    Raises:
        ConfigError: See :func:`repeat_best`.
    """
    from hpsearch.spec.config import make_config
    from hpsearch.spec.studyfile import Objective

    if seeds < MIN_SEEDS:
        raise ConfigError([f"--seeds: at least {MIN_SEEDS}, to measure a spread; got {seeds}"])
    goals = objectives(study)
    if len(study.directions) != 1 or len(goals) != 1:
        raise ConfigError(
            [
                f"study {study.study_name!r}: repeat ranks trials by one objective; this study "
                f"has {len(study.directions)}"
                + ("" if goals else " and no objective stored by hpsearch")
            ]
        )
    if device is not None:
        make_config({"device": device})
    require_best(study)
    return Objective(**goals[0])


def repeat_best(
    study: optuna.Study, top: int = 5, seeds: int = 3, device: str | None = None
) -> Repeats:
    """Trains the ``top`` best trials of ``study`` again with ``seeds`` seeds each (their
    own, then the next ones), as one population where they can share one, and ranks them
    by their mean value.

    Args:
        study: A study of one objective, created by hpsearch.
        top: How many of its best completed trials.
        seeds: Runs per trial (at least 2).
        device: Where to train (``None``: where each trial's config says, ``auto`` by
            default).

    Raises:
        ConfigError: The study has several objectives, no completed trial, or no stored
            objective; ``seeds`` below 2.
    """
    from hpsearch.spec.config import make_config
    from hpsearch.study.worker import metric_value

    objective = check_repeat(study, seeds, device)
    chosen = records(study, best_trials(study, top))
    base = base_config(study)
    configs = []
    for trial in chosen:
        config = make_config(trial.config or base or {})
        if device is not None:
            config = make_config({"device": device}, config)
        configs += [
            dataclasses.replace(config, seed=(config.seed + i) % (MAX_SEED + 1))
            for i in range(seeds)
        ]
    results = _train(configs)
    score = scoring(study).score
    repeated = []
    for i, trial in enumerate(chosen):
        runs = results[i * seeds : (i + 1) * seeds]
        ran = [r if r.outcome != "diverged" else None for r in runs]
        assert trial.values
        repeated.append(
            Repeated(
                trial.number,
                trial.values[0],
                tuple(c.seed for c in configs[i * seeds : (i + 1) * seeds]),
                tuple(None if r is None else metric_value(r, objective) for r in ran),
                tuple(None if r is None else getattr(r, f"test_{score}") for r in ran),
            )
        )
    sign = -1.0 if objective.direction == "maximize" else 1.0
    ranked = sorted(repeated, key=lambda r: (r.mean is None, sign * (r.mean or 0.0), r.number))
    return Repeats(objective.metric, objective.direction, score, tuple(ranked), chosen[0].number)


def _train(configs: list[TrainConfig]) -> list[TrainResult]:
    """Each config's result: those without dropout in populations (where each member trains
    exactly as alone), each with dropout alone, as a trial of population 1 trained: a
    population draws other dropout masks, and its own seed would not give its value."""
    from hpsearch.training.trainer import train_population

    alone = [i for i, c in enumerate(configs) if any(d > 0 for d in c.dropouts())]
    shared = [i for i in range(len(configs)) if i not in set(alone)]
    results: dict[int, TrainResult] = {}
    for i in alone:
        results[i] = train_population([configs[i]])[0]
    together = train_population([configs[i] for i in shared])
    results.update(zip(shared, together, strict=True))
    return [results[i] for i in range(len(configs))]


def _finite(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def _mean(values: Sequence[float | None]) -> float | None:
    kept = _finite(values)
    return statistics.fmean(kept) if kept else None


def _sd(values: Sequence[float | None]) -> float | None:
    kept = _finite(values)
    return statistics.stdev(kept) if len(kept) >= MIN_SEEDS else None
