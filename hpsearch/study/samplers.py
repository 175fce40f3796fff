"""A study file's sampler and pruner, as a worker builds them: seeds that move on with the
study, and history windows on large studies (:mod:`hpsearch.study.windows`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from typing import TypeVar

import optuna

from hpsearch.errors import ConfigError
from hpsearch.spec.studyfile import derive_seed
from hpsearch.spec.studyfile import StudySpec
from hpsearch.study.windows import windowed
from hpsearch.study.windows import windowed_pruner

_T = TypeVar("_T")

# The classes behind the names of hpsearch.spec.components (whose options are checked
# against these classes' signatures by tests/spec/test_components.py).
SAMPLERS: dict[str, type[optuna.samplers.BaseSampler]] = {
    "random": optuna.samplers.RandomSampler,
    "tpe": optuna.samplers.TPESampler,
    "gp": optuna.samplers.GPSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "qmc": optuna.samplers.QMCSampler,
    "nsga2": optuna.samplers.NSGAIISampler,
    # a grid's or ofat's points are queued up front: its sampler never samples
    "grid": optuna.samplers.RandomSampler,
    "ofat": optuna.samplers.RandomSampler,
}
PRUNERS: dict[str, type[optuna.pruners.BasePruner]] = {
    "none": optuna.pruners.NopPruner,
    "median": optuna.pruners.MedianPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
}


def make_sampler(spec: StudySpec, started: int = 0) -> optuna.samplers.BaseSampler:
    """The file's sampler, its seed moved on past what the study already drew.

    A sampler rebuilt with the file's seed in a new process would draw the same sequence
    again, so a resumed (or extended) study would repeat its first points. The seed is
    therefore derived from the file's seed, this worker's stream and ``started``, the
    number of trials the study had already started: a study run from scratch in one
    process uses the file's seed unchanged (reproducible), and every resume draws anew.
    A QMC sequence keeps the file's seed and continues where it stopped (Optuna keeps its
    position in the study); only its independent sampler moves on.

    Args:
        spec: The study file.
        started: Trials of the study that are not WAITING when this sampler is built.

    Raises:
        ConfigError: Optuna refuses the options together (each one alone is checked with
            the file, :mod:`hpsearch.spec.components`): `lr_adapt` with `with_margin`.
    """
    options = dict(spec.sampler_options)
    seed = options.get("seed")
    if seed is not None and (spec.seed_stream or started):
        moved = derive_seed(seed, spec.seed_stream, started)
        if spec.sampler == "qmc":
            options["independent_sampler"] = optuna.samplers.RandomSampler(seed=moved)
        else:
            options["seed"] = moved
    sampler = _build("sampler", SAMPLERS[spec.sampler], options, spec)
    return windowed(spec.sampler, sampler)


def _build(section: str, cls: type[_T], options: Mapping[str, Any], spec: StudySpec) -> _T:
    """``cls(**options)``; what Optuna refuses is the study file's error, not a traceback."""
    try:
        return cls(**options)
    except (ValueError, TypeError) as e:
        raise ConfigError([f"{section}: {e}"], spec.path) from e


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    """The file's pruner, in its history window, wrapped in ``PatientPruner`` if asked.

    Raises:
        ConfigError: Optuna refuses the options together (see :func:`make_sampler`).
    """
    built = _build("pruner", PRUNERS[spec.pruner], spec.pruner_options, spec)
    pruner = windowed_pruner(spec.pruner, built)
    if spec.patience:
        return optuna.pruners.PatientPruner(pruner, **spec.patience)
    return pruner
