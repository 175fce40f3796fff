"""The samplers and pruners a study file may name, and the options of each that a YAML
scalar can set.

Written out rather than read from Optuna's constructor signatures: importing Optuna costs
every command a tenth of a second, and a bad study file must be refused before that.
``tests/spec/test_components.py`` reads the pinned Optuna's signatures and checks this
table against them (every option a scalar can set is here, with its type, and no other),
so a new Optuna that adds or retypes an option fails a test, not a user's study. Options
typed as callables, sequences or objects (``gamma``, ``search_space``) cannot come from a
file and are left out, so naming one is an unknown key.
"""

from __future__ import annotations

from collections.abc import Mapping

# option -> (the scalar types it takes, required)
Options = Mapping[str, tuple[tuple[str, ...], bool]]

_SEED: Options = {"seed": (("int",), False)}

SAMPLER_OPTIONS: Mapping[str, Options] = {
    "random": _SEED,
    "tpe": {
        "consider_prior": (("bool",), False),
        "prior_weight": (("float",), False),
        "consider_magic_clip": (("bool",), False),
        "consider_endpoints": (("bool",), False),
        "n_startup_trials": (("int",), False),
        "n_ei_candidates": (("int",), False),
        "seed": (("int",), False),
        "multivariate": (("bool",), False),
        "group": (("bool",), False),
        "warn_independent_sampling": (("bool",), False),
        "constant_liar": (("bool",), False),
    },
    "gp": {
        "seed": (("int",), False),
        "n_startup_trials": (("int",), False),
        "deterministic_objective": (("bool",), False),
        "warn_independent_sampling": (("bool",), False),
    },
    "cmaes": {
        "sigma0": (("float",), False),
        "n_startup_trials": (("int",), False),
        "warn_independent_sampling": (("bool",), False),
        "seed": (("int",), False),
        "consider_pruned_trials": (("bool",), False),
        "restart_strategy": (("str",), False),
        "popsize": (("int",), False),
        "inc_popsize": (("int",), False),
        "use_separable_cma": (("bool",), False),
        "with_margin": (("bool",), False),
        "lr_adapt": (("bool",), False),
    },
    "qmc": {
        "qmc_type": (("str",), False),
        "scramble": (("bool",), False),
        "seed": (("int",), False),
        "warn_asynchronous_seeding": (("bool",), False),
        "warn_independent_sampling": (("bool",), False),
    },
    "nsga2": {
        "population_size": (("int",), False),
        "mutation_prob": (("float",), False),
        "crossover_prob": (("float",), False),
        "swapping_prob": (("float",), False),
        "seed": (("int",), False),
    },
    # Finite studies: every point is queued up front and claimed exactly once by a worker,
    # so the sampler (Optuna's random sampler) never samples; only the seed means something.
    "grid": _SEED,
    "ofat": _SEED,
}

_STEPS: Options = {
    "n_startup_trials": (("int",), False),
    "n_warmup_steps": (("int",), False),
    "interval_steps": (("int",), False),
    "n_min_trials": (("int",), False),
}

PRUNER_OPTIONS: Mapping[str, Options] = {
    "none": {},
    "median": _STEPS,
    "percentile": {"percentile": (("float",), True), **_STEPS},
    "successive_halving": {
        "min_resource": (("int", "str"), False),
        "reduction_factor": (("int",), False),
        "min_early_stopping_rate": (("int",), False),
        "bootstrap_count": (("int",), False),
    },
    "hyperband": {
        "min_resource": (("int",), False),
        "max_resource": (("int", "str"), False),
        "reduction_factor": (("int",), False),
        "bootstrap_count": (("int",), False),
    },
}
