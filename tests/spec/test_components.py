"""The written-out sampler and pruner options against the pinned Optuna's signatures."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import warnings

import pytest

from hpsearch.spec.components import ComponentOption
from hpsearch.spec.components import PRUNER_OPTIONS
from hpsearch.spec.components import RETIRED
from hpsearch.spec.components import SAMPLER_OPTIONS
from hpsearch.spec.studyfile import FINITE_SAMPLERS
from hpsearch.study.samplers import PRUNERS
from hpsearch.study.samplers import SAMPLERS

# a constructor option a YAML scalar cannot set: a callable, a sequence, a mapping, a generic
NOT_A_SCALAR = r"Callable|Sequence|Mapping|dict|list|\["


def scalar_options(cls: type) -> dict[str, tuple[tuple[str, ...], bool]]:
    """What a study file may set of ``cls``, read from its signature."""
    found = {}
    for name, prm in inspect.signature(cls).parameters.items():
        hint = str(prm.annotation)
        if prm.kind not in (prm.POSITIONAL_OR_KEYWORD, prm.KEYWORD_ONLY) or re.search(
            NOT_A_SCALAR, hint
        ):
            continue
        types = tuple(t for t in ("bool", "int", "float", "str") if re.search(rf"\b{t}\b", hint))
        if types:
            found[name] = (types, prm.default is inspect.Parameter.empty)
    return found


TABLES = [(SAMPLER_OPTIONS, SAMPLERS), (PRUNER_OPTIONS, PRUNERS)]


@pytest.mark.parametrize(("table", "classes"), TABLES)
def test_every_option_matches_the_pinned_optunas_signature(
    table: dict[str, dict[str, ComponentOption]], classes: dict[str, type]
) -> None:
    assert set(table) == set(classes)
    for name, cls in classes.items():
        expected = {"seed": (("int",), False)} if name in FINITE_SAMPLERS else scalar_options(cls)
        written = {k: (o.types, o.required) for k, o in table[name].items()}
        retired = RETIRED.get(name, {})
        assert not written.keys() & retired.keys(), name
        # a retired option is still one of the constructor's, or it needs no words
        assert {**written, **{k: expected[k] for k in retired}} == expected, name


def values(option: ComponentOption) -> list[object]:
    """Values ``option`` allows: those at the edges of its bounds, each word it takes."""
    if option.types == ("bool",):
        return [True, False]
    if option.types == ("str",):
        return list(option.words)
    numbers = [b for b in (option.ge, option.le) if b is not None]
    cast = int if "int" in option.types else float
    return [*(cast(n) for n in numbers or [1]), *option.words]


@pytest.mark.parametrize(("table", "classes"), TABLES)
def test_every_option_takes_its_edges_and_none_is_deprecated(
    table: dict[str, dict[str, ComponentOption]], classes: dict[str, type]
) -> None:
    """A bound written too tight would refuse a study file that Optuna runs; an option
    Optuna deprecates belongs in RETIRED, not in a study file that the next Optuna breaks."""
    required = {"percentile": {"percentile": 50.0}}
    for name, options in table.items():
        for option, rule in options.items():
            for value in values(rule):
                with warnings.catch_warnings():
                    warnings.simplefilter("error", FutureWarning)
                    classes[name](**{**required.get(name, {}), option: value})


def test_a_study_file_is_checked_without_importing_optuna() -> None:
    code = (
        "import sys; from hpsearch.spec.studyfile import parse_study; "
        "parse_study({'name': 's', 'sampler': {'name': 'tpe', 'seed': 1}, "
        "'pruner': 'median', 'budget': {'trials': 2}, "
        "'space': {'lr': {'type': 'float', 'low': 0.001, 'high': 0.1}}}); "
        "print(sorted(m for m in ('optuna', 'torch') if m in sys.modules))"
    )
    assert subprocess.check_output([sys.executable, "-c", code], text=True).strip() == "[]"
