"""The written-out sampler and pruner options against the pinned Optuna's signatures."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys

import pytest

from hpsearch.spec.components import PRUNER_OPTIONS
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


@pytest.mark.parametrize(
    ("table", "classes"), [(SAMPLER_OPTIONS, SAMPLERS), (PRUNER_OPTIONS, PRUNERS)]
)
def test_every_option_matches_the_pinned_optunas_signature(
    table: dict[str, dict[str, tuple[tuple[str, ...], bool]]], classes: dict[str, type]
) -> None:
    assert set(table) == set(classes)
    for name, cls in classes.items():
        expected = {"seed": (("int",), False)} if name in FINITE_SAMPLERS else scalar_options(cls)
        assert dict(table[name]) == expected, name


def test_a_study_file_is_checked_without_importing_optuna() -> None:
    code = (
        "import sys; from hpsearch.spec.studyfile import parse_study; "
        "parse_study({'name': 's', 'sampler': {'name': 'tpe', 'seed': 1}, "
        "'pruner': 'median', 'budget': {'trials': 2}, "
        "'space': {'lr': {'type': 'float', 'low': 0.001, 'high': 0.1}}}); "
        "print(sorted(m for m in ('optuna', 'torch') if m in sys.modules))"
    )
    assert subprocess.check_output([sys.executable, "-c", code], text=True).strip() == "[]"
