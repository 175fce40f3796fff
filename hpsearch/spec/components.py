"""The samplers and pruners a study file may name, and the options of each that a YAML
scalar can set, with the values Optuna accepts.

Written out rather than read from Optuna's constructor signatures: importing Optuna costs
every command a tenth of a second, and a bad study file must be refused before that.
``tests/spec/test_components.py`` reads the pinned Optuna's signatures and checks this
table against them (every option a scalar can set is here, with its type, or in
:data:`RETIRED`, and no other; every bound admits the value at its edge), so a new Optuna
that adds or retypes an option fails a test, not a user's study. Options typed as
callables, sequences or objects (``gamma``, ``search_space``) cannot come from a file and
are left out, so naming one is an unknown key.

The bounds are the ones Optuna checks when it builds the sampler or pruner (a traceback
there, after torch had loaded) and the ones it does not check but fails on later, in the
middle of a study: a negative seed, ``n_ei_candidates: 0``, ``reduction_factor: 1``.
"""

from __future__ import annotations

from collections.abc import Mapping
import dataclasses

from hpsearch.spec.choices import MAX_SEED


@dataclasses.dataclass(frozen=True)
class ComponentOption:
    """One constructor option a study file may set.

    Attributes:
        types: The YAML scalar types it takes (``bool``, ``int``, ``float``, ``str``).
        required: Whether the block must set it.
        ge: The least number allowed.
        le: The greatest number allowed.
        words: The strings allowed, for an option that takes a string.
    """

    types: tuple[str, ...]
    required: bool = False
    ge: float | None = None
    le: float | None = None
    words: tuple[str, ...] = ()


Options = Mapping[str, ComponentOption]

_BOOL = ComponentOption(("bool",))
_SEED = ComponentOption(("int",), ge=0, le=MAX_SEED)
_COUNT = ComponentOption(("int",), ge=0)
_POSITIVE = ComponentOption(("int",), ge=1)
_PROBABILITY = ComponentOption(("float",), ge=0.0, le=1.0)

SAMPLER_OPTIONS: Mapping[str, Options] = {
    "random": {"seed": _SEED},
    "tpe": {
        "n_startup_trials": _COUNT,
        "n_ei_candidates": _POSITIVE,
        "seed": _SEED,
        "multivariate": _BOOL,
        "group": _BOOL,
        "constant_liar": _BOOL,
    },
    "gp": {
        "seed": _SEED,
        "n_startup_trials": _COUNT,
        "deterministic_objective": _BOOL,
        "warn_independent_sampling": _BOOL,
    },
    "cmaes": {
        "n_startup_trials": _COUNT,
        "warn_independent_sampling": _BOOL,
        "seed": _SEED,
        "consider_pruned_trials": _BOOL,
        # CMA-ES's update needs two samples a generation (one fails every trial)
        "popsize": ComponentOption(("int",), ge=2),
        "use_separable_cma": _BOOL,
        "with_margin": _BOOL,
        "lr_adapt": _BOOL,
    },
    "qmc": {
        "qmc_type": ComponentOption(("str",), words=("halton", "sobol")),
        "scramble": _BOOL,
        "seed": _SEED,
        "warn_asynchronous_seeding": _BOOL,
        "warn_independent_sampling": _BOOL,
    },
    "nsga2": {
        "population_size": ComponentOption(("int",), ge=2),
        "mutation_prob": _PROBABILITY,
        "crossover_prob": _PROBABILITY,
        "swapping_prob": _PROBABILITY,
        "seed": _SEED,
    },
    # Finite studies: every point is queued up front and claimed exactly once by a worker,
    # so the sampler (Optuna's random sampler) never samples; only the seed means something.
    "grid": {"seed": _SEED},
    "ofat": {"seed": _SEED},
}

_STEPS: Options = {
    "n_startup_trials": _COUNT,
    "n_warmup_steps": _COUNT,
    "interval_steps": _POSITIVE,
    "n_min_trials": _POSITIVE,
}
_REDUCTION = ComponentOption(("int",), ge=2)  # 1 never reduces: every trial goes on
# a resource is a number of epochs, or "auto" (Optuna reads it from the first trials)
_RESOURCE = ComponentOption(("int", "str"), ge=1, words=("auto",))

PRUNER_OPTIONS: Mapping[str, Options] = {
    "none": {},
    "median": _STEPS,
    "percentile": {
        "percentile": ComponentOption(("float",), required=True, ge=0.0, le=100.0),
        **_STEPS,
    },
    "successive_halving": {
        "min_resource": _RESOURCE,
        "reduction_factor": _REDUCTION,
        "min_early_stopping_rate": _COUNT,
        "bootstrap_count": _COUNT,
    },
    "hyperband": {
        "min_resource": _POSITIVE,
        "max_resource": _RESOURCE,
        "reduction_factor": _REDUCTION,
        "bootstrap_count": _COUNT,
    },
}

# Options the pinned Optuna still takes but has retired, and why a study file may not set
# them: a file that relies on one would change meaning, or break, with the next Optuna.
_REMOVED = "deprecated by Optuna {} and removed in 6.0; leave it out"
RETIRED: Mapping[str, Mapping[str, str]] = {
    "tpe": {
        "consider_prior": _REMOVED.format("4.3"),
        "prior_weight": _REMOVED.format("4.9"),
        "consider_magic_clip": _REMOVED.format("4.9"),
        "consider_endpoints": _REMOVED.format("4.9"),
        "warn_independent_sampling": _REMOVED.format("4.9"),
    },
    "cmaes": {
        "sigma0": _REMOVED.format("4.9"),
        "restart_strategy": "ignored since Optuna 4.4 (it falls back to none); leave it out",
        "inc_popsize": "ignored since Optuna 4.4, as restart_strategy; leave it out",
    },
}
