"""Study files: one YAML file declares a whole study; this module holds its schema.

The schema is a set of pydantic models (:class:`StudyFile` at the top); ``hpsearch schema``
prints it as JSON Schema for editors. Validation reports every violation at once, each as
``FILE: key.path: what is wrong (what is allowed)`` (see :mod:`hpsearch.spec.validation`), and
turns a valid file into a :class:`StudySpec`. Nothing touches a storage before the file is
valid. See ``studies/*.yaml`` and the README for the syntax.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
import dataclasses
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
import functools
import json
import logging
import math
import operator
from pathlib import Path
import re
from typing import Annotated
from typing import Any
from typing import ClassVar
from typing import Literal
from typing import TYPE_CHECKING
import zlib

import pydantic
from pydantic import ConfigDict
from pydantic import Field
from pydantic import WithJsonSchema

from hpsearch.errors import closest
from hpsearch.errors import ConfigError
from hpsearch.errors import shorten
from hpsearch.spec.components import ComponentOption
from hpsearch.spec.components import Options
from hpsearch.spec.components import PRUNER_OPTIONS
from hpsearch.spec.components import RETIRED
from hpsearch.spec.components import SAMPLER_OPTIONS
from hpsearch.spec.config import DatasetChoice
from hpsearch.spec.config import FIELDS
from hpsearch.spec.config import make_config
from hpsearch.spec.config import TrainConfig
from hpsearch.spec.datasource import DataSource
from hpsearch.spec.datasource import missing_files
from hpsearch.spec.defaults import DEFAULT_STORAGE
from hpsearch.spec.space import CategoricalParam
from hpsearch.spec.space import FloatParam
from hpsearch.spec.space import IntParam
from hpsearch.spec.space import LayersParam
from hpsearch.spec.space import MAX_POINTS
from hpsearch.spec.space import Param
from hpsearch.spec.space import point_key
from hpsearch.spec.space import SearchSpace
from hpsearch.spec.space import TooManyPoints
from hpsearch.spec.tasks import CLASS_ONLY
from hpsearch.spec.tasks import DEFAULT_METRIC
from hpsearch.spec.tasks import loss_problems
from hpsearch.spec.tasks import metric_problems
from hpsearch.spec.tasks import UNSET
from hpsearch.spec.tasks import with_task
from hpsearch.spec.validation import describe_fields
from hpsearch.spec.validation import Problems
from hpsearch.spec.validation import problems
from hpsearch.spec.validation import StrictBool
from hpsearch.spec.validation import StrictFloat
from hpsearch.spec.validation import StrictInt
from hpsearch.spec.validation import StrictStr
from hpsearch.spec.validation import Wording
from hpsearch.spec.yamlfile import read_study_yaml

_log = logging.getLogger(__name__)

Point = tuple[str | None, Any, dict[str, Any]]  # (one-factor factor, its value, Optuna params)

# metric -> (natural direction, whether it is measured per epoch)
METRICS: dict[str, tuple[str, bool]] = {
    "val_accuracy": ("maximize", True),
    "val_balanced_accuracy": ("maximize", True),  # each class's recall, averaged
    "val_loss": ("minimize", True),
    "val_rmse": ("minimize", True),  # regression, in the target's units
    "val_mae": ("minimize", True),
    "val_r2": ("maximize", True),
    "train_loss": ("minimize", True),
    "train_seconds": ("minimize", False),
    "param_count": ("minimize", False),
}

FINITE_SAMPLERS = ("grid", "ofat")
MAX_POPULATION = 4096
SINGLE_OBJECTIVE_SAMPLERS = ("cmaes",)
PATIENCE_KEYS = ("patience", "min_delta")  # wrap the pruner in optuna's PatientPruner


@dataclass(frozen=True)
class Objective:
    """One objective: a metric of the trial's result, reduced over epochs, and a direction."""

    metric: str
    direction: str
    reduce: str = "final"

    @property
    def per_epoch(self) -> bool:
        return METRICS[self.metric][1]


@dataclass(frozen=True)
class StudySpec:
    """A validated study file."""

    name: str
    storage: str
    objectives: tuple[Objective, ...]
    sampler: str
    sampler_options: Mapping[str, Any]
    pruner: str
    pruner_options: Mapping[str, Any]
    patience: Mapping[str, Any]
    trials: int | None
    timeout: float | None
    base: TrainConfig
    space: SearchSpace
    heartbeat_interval: int = 5
    grace_period: int = 20
    path: str | None = None
    description: str = ""
    # Grid or one-factor points as (factor, value, optuna params), expanded once at parse time.
    finite_points: tuple[Point, ...] = field(default=())
    # The file's start_with: points the user knows, as Optuna params (some may be left out)
    start_points: tuple[Mapping[str, Any], ...] = field(default=())
    seed_stream: str = ""  # a worker's name: its seeded sampler draws a sequence of its own
    population: int = 1  # trials a worker claims and trains at once
    target: float | None = None  # budget.target: the best value that ends the study early
    plateau: int | None = None  # budget.plateau: trials after the best that end it early
    trial_timeout: float | None = None  # budget.trial_timeout: training seconds a trial may take
    max_params: int | None = None  # budget.max_params: the largest network a trial may train
    bases: tuple[str, ...] = ()  # the files this one extends, nearest first
    # what the file left to the data's task: "loss" (the trainer's), "objective"
    open_defaults: frozenset[str] = frozenset()

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    @property
    def is_finite(self) -> bool:
        return self.sampler in FINITE_SAMPLERS

    def points(self) -> list[Point]:
        """The points of a grid or one-factor study, as ``(factor, value, params)``."""
        return list(self.finite_points)

    def budget(self) -> int:
        """Trials to run: the file's (or override's), capped by a finite study's points."""
        if self.is_finite:
            n = len(self.finite_points)
            return min(n, self.trials) if self.trials else n
        return self.trials or 0

    def for_task(self, task: str) -> StudySpec:
        """The spec fitted to its data's task (given, or inferred from the data): the task's
        default loss and objective where the file gave none.

        Raises:
            ConfigError: A loss (fixed or searched) or an objective that the task cannot
                train with or does not measure, one line each.
        """
        searched = [
            value
            for p in self.space.params
            if p.target == "loss"
            for _, value in p.options() or []
        ]
        problems = loss_problems(searched, task, "space.loss")
        if task == "regression":
            problems += [
                f"space.{p.name}: {CLASS_ONLY[p.target]}"
                for p in self.space.params
                if p.target in CLASS_ONLY and any(v not in UNSET for v in p.extremes())
            ]
        objectives = self.objectives
        if "objective" in self.open_defaults:
            metric = DEFAULT_METRIC[task]
            objectives = (Objective(metric, METRICS[metric][0]),)
        problems += metric_problems([o.metric for o in objectives], task)
        try:
            base = with_task(self.base, task, loss_given="loss" not in self.open_defaults)
        except ConfigError as e:
            problems += [f"fixed.{line}" for line in e.problems]
        if problems:
            raise ConfigError(problems, self.path)
        return dataclasses.replace(self, base=base, objectives=objectives)

    def for_worker(self, worker: str) -> StudySpec:
        """The spec as one of several workers sees it: a seeded sampler draws a stream of its
        own (see :func:`hpsearch.study.samplers.make_sampler`), or every worker would draw
        the same "random" points."""
        return dataclasses.replace(self, seed_stream=worker)

    def definition(self) -> dict[str, Any]:
        """What gives a trial's values their meaning: the data set, the objectives, the search
        space and the trainer settings the space does not set.

        Stored with the study; a resume with a different definition is refused (see
        :func:`definition_changes`). Settings that change how, not what, a study computes
        (budget, timeout, heartbeat, sampler, pruner, start_with, device, data_dir,
        eval_batch_size, precision, cuda_graphs) are left out, so they may change between runs.
        """
        searched = {p.target for p in self.space.params}
        fixed = {
            k: v
            for k, v in self.base.to_dict().items()
            if k not in searched and k not in _HOW_NOT_WHAT and k != "dataset"
        }
        space = {
            p.name: {"type": type(p).__name__.removesuffix("Param").lower(), **asdict(p)}  # type: ignore[call-overload]
            for p in self.space.params
        }
        for entry in space.values():
            entry.pop("name")
        dataset = self.base.dataset
        doc = {
            "dataset": dataset.definition() if isinstance(dataset, DataSource) else dataset,
            "objectives": [vars(o) for o in self.objectives],
            "space": space,
            "fixed": fixed,
        }
        plain: dict[str, Any] = json.loads(json.dumps(doc))  # tuples become lists
        return plain


# A study's name becomes a directory name (worker logs) and a database key: nothing that can
# leave a directory, hide in a listing, forge a line of output or overflow a column.
STUDY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
STUDY_NAME_RULE = (
    "a study name is 1 to 100 letters, digits, '-', '_' and '.', not starting with '.' or '-'"
)

# Trainer settings that change how a trial runs, not what its values mean.
_HOW_NOT_WHAT = ("device", "data_dir", "eval_batch_size", "precision", "cuda_graphs")


def derive_seed(seed: int, stream: str, started: int) -> int:
    """A seed of its own for each (file seed, worker stream, trials already started)."""
    return zlib.crc32(f"{seed}/{stream}/{started}".encode()) % 2**31


def definition_changes(
    old: Mapping[str, Any], new: Mapping[str, Any], path: str = ""
) -> list[str]:
    """Each key path whose value differs, as ``key: old -> new`` (``(absent)`` if missing);
    a parameter added or removed is one line."""
    changes = []
    for key in sorted(old.keys() | new.keys()):
        where = _join(path, str(key))
        a, b = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            changes += definition_changes(a, b, where)
        elif (
            isinstance(a, list)
            and isinstance(b, list)
            and key == "objectives"
            and (len(a) == len(b))
        ):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                changes += definition_changes(x, y, f"{where}[{i}]")
        elif a != b:
            changes.append(f"{where}: {_short(a)} -> {_short(b)}")
    return changes


_ABSENT = "(absent)"


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value)  # (absent) stays bare
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- the study file's schema -------------------------------------------------------------


class _Strict(pydantic.BaseModel):
    """A block of a study file: unknown keys are errors, scalars are strictly typed.

    The docstring under a field describes it in ``hpsearch schema``
    (:func:`study_schema`); pydantic is not asked to read them as each model is defined.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


Metric = Literal[  # the keys of METRICS (tests/spec/test_studyfile.py checks)
    "val_accuracy",
    "val_balanced_accuracy",
    "val_loss",
    "val_rmse",
    "val_mae",
    "val_r2",
    "train_loss",
    "train_seconds",
    "param_count",
]
Direction = Literal["maximize", "minimize"]


class ObjectiveFile(_Strict):
    """One objective: a metric (a name alone is a shorthand for this mapping)."""

    metric: Metric = "val_accuracy"
    """What to optimize (val_rmse, val_mae and val_r2 for a regression task;
    val_balanced_accuracy, each class's recall averaged, for imbalanced classes)."""
    direction: Direction | None = None
    """maximize or minimize; the metric's natural direction when left out."""
    reduce: Literal["final", "best"] = "final"
    """A per-epoch metric's value of the final epoch, or of its best epoch."""

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> ObjectiveFile:
        natural, per_epoch = METRICS[self.metric]
        found = []
        if self.direction is not None and self.direction != natural:
            found.append(
                (
                    "direction",
                    f"{self.direction} does not match {self.metric}, which is {natural}d",
                )
            )
        if self.reduce == "best" and not per_epoch:
            found.append(("reduce", f"{self.metric} has one value per trial: use final"))
        if found:
            raise Problems(found)
        return self


def _named(key: str) -> Callable[[Any], Any]:
    """Reads the shorthand ``sampler: tpe`` as ``sampler: {name: tpe}``."""
    return lambda value: {key: value} if isinstance(value, str) else value


ObjectiveField = Annotated[
    ObjectiveFile,
    pydantic.BeforeValidator(_named("metric"), json_schema_input_type=Metric | ObjectiveFile),
]

_STRICT: dict[str, Any] = {
    "bool": StrictBool,
    "int": StrictInt,
    "float": StrictFloat,
    "str": StrictStr,
}


def _component(
    kind: str, name: str, options: Options, extra: dict[str, Any], base: type[_Strict]
) -> type[_Strict]:
    """The model of one sampler's or pruner's block: ``name`` and its options."""
    fields: dict[str, Any] = {"name": (Literal[name], ...)}
    for option, rule in options.items():
        hint = _option_hint(rule)
        fields[option] = (hint, ...) if rule.required else (hint | None, None)
    fields.update(extra)
    model = pydantic.create_model(f"{kind}_{name}", __base__=base, **fields)
    _RETIRED_BY_MODEL[model] = RETIRED.get(name, {})
    return model


def _option_hint(rule: ComponentOption) -> Any:
    """An option's type, within its bounds; a string option takes only its words."""
    scalars = [_scalar_hint(t, rule) for t in rule.types]
    hint: Any = functools.reduce(operator.or_, scalars)
    if len(scalars) == 1:
        return hint
    # A number or a word (`max_resource: auto`): one message for a value that is neither,
    # not one for each type it is not.
    check = functools.partial(_either, pydantic.TypeAdapter(hint), rule)
    return Annotated[Any, pydantic.PlainValidator(check, json_schema_input_type=hint)]


def _scalar_hint(scalar: str, rule: ComponentOption) -> Any:
    if scalar == "str" and rule.words:
        return Literal[rule.words]
    if scalar in ("int", "float"):
        return Annotated[_STRICT[scalar], Field(ge=rule.ge, le=rule.le)]
    return _STRICT[scalar]


def _either(adapter: pydantic.TypeAdapter[Any], rule: ComponentOption, value: Any) -> Any:
    try:
        return adapter.validate_python(value)
    except pydantic.ValidationError:
        least = f" >= {rule.ge:g}" if rule.ge is not None else ""
        words = " or ".join(repr(w) for w in rule.words)
        message = f"expected an integer{least} or {words}, got {shorten(value)}"
        raise Problems([("", message)]) from None


_RETIRED_BY_MODEL: dict[type[_Strict], Mapping[str, str]] = {}


class _Options(_Strict):
    """A sampler's or pruner's options: built from a constructor's signature."""

    @pydantic.model_validator(mode="before")
    @classmethod
    def _retired(cls, data: Any) -> Any:
        """Names an option Optuna has retired with why, not as an unknown key."""
        retired = _RETIRED_BY_MODEL.get(cls, {})
        if isinstance(data, dict) and retired.keys() & data.keys():
            raise Problems([(k, retired[k]) for k in data if k in retired])
        return data


class _PatienceCheck(_Options):
    @pydantic.model_validator(mode="after")
    def _patience(self) -> _PatienceCheck:
        extra = self.model_dump(exclude_unset=True)
        if "min_delta" in extra and "patience" not in extra:
            raise Problems([("min_delta", "needs pruner.patience")])
        least, most = extra.get("min_resource", 1), extra.get("max_resource", "auto")
        if isinstance(least, int) and isinstance(most, int) and least > most:
            # Optuna takes it and then makes no brackets: a study that never prunes
            raise Problems([("min_resource", f"{least} is more than max_resource {most}")])
        return self


def _by_name(union: Any, names: Mapping[str, Any]) -> Any:
    """A sampler's or pruner's block, which may be its name alone."""
    shorthand: Any = Literal[tuple(names)]
    return Annotated[
        union, pydantic.BeforeValidator(_named("name"), json_schema_input_type=shorthand | union)
    ]


def _union(models: list[type[_Strict]], tag: str) -> Any:
    union: Any = functools.reduce(operator.or_, models)
    return Annotated[union, Field(discriminator=tag)]


_PATIENCE = {
    "patience": (Annotated[StrictInt, Field(ge=0)] | None, None),
    "min_delta": (StrictFloat | None, None),
}
SamplerFile = _union(
    [_component("sampler", n, o, {}, _Options) for n, o in SAMPLER_OPTIONS.items()], "name"
)
PrunerFile = _union(
    [_component("pruner", n, o, _PATIENCE, _PatienceCheck) for n, o in PRUNER_OPTIONS.items()],
    "name",
)


class BudgetFile(_Strict):
    """How much to run."""

    trials: Annotated[StrictInt, Field(ge=1)] | None = None
    """Trials to run in total, across all workers (a grid or ofat study counts its points)."""
    timeout: Annotated[StrictFloat, Field(gt=0)] | None = None
    """Seconds after which each worker stops claiming trials."""
    target: StrictFloat | StrictInt | None = None
    """Start no more trials once the best value reaches this (at least it when the
    objective is maximized, at most it when minimized)."""
    plateau: Annotated[StrictInt, Field(ge=1)] | None = None
    """Start no more trials once this many trials numbered after the best one have finished
    without beating it."""
    trial_timeout: Annotated[StrictFloat | StrictInt, Field(gt=0)] | None = None
    """Seconds of training after which a trial is pruned at the end of its epoch (a slow
    configuration must not eat the budget; the sampler learns to avoid it)."""
    max_params: Annotated[StrictInt, Field(ge=1)] | None = None
    """Trainable parameters a trial's network may have: a larger one is pruned before it
    trains (a model that must fit a device; TPE learns to avoid it)."""


class HeartbeatFile(_Strict):
    """How a dead worker's trial is found (see the README)."""

    interval: Annotated[StrictInt, Field(ge=1)] = 5
    """Seconds between a running trial's heartbeats."""
    grace_period: Annotated[StrictInt, Field(ge=1)] | None = None
    """Seconds without a heartbeat after which a trial is failed and queued again
    [max(20, 4 x interval)]."""


When = dict[str, Any]


class _ParamFile(_Strict):
    when: When | None = None
    """Exists only if each named earlier parameter took one of the given values."""


class _RangeFile(_ParamFile):
    """A number in [low, high]; its subclasses give the number's type."""

    low: float
    high: float
    log: StrictBool = False
    step: float | None = None

    @pydantic.model_validator(mode="after")
    def _range(self) -> _RangeFile:
        _check_range(self.low, self.high, self.log, self.step, isinstance(self, IntParamFile))
        return self


class FloatParamFile(_RangeFile):
    """A float in [low, high], optionally on a log scale or on a step grid."""

    type: Literal["float"]
    low: StrictFloat
    high: StrictFloat
    step: Annotated[StrictFloat, Field(gt=0)] | None = None


class IntParamFile(_RangeFile):
    """An integer in [low, high] in steps of step, optionally on a log scale."""

    type: Literal["int"]
    low: StrictInt
    high: StrictInt
    step: Annotated[StrictInt, Field(gt=0)] | None = None


def _check_range(low: float, high: float, log: bool, step: float | None, integer: bool) -> None:
    found = []
    if low > high:
        found.append(("", f"low ({low}) is above high ({high})"))
    if log and low <= 0:
        found.append(("low", f"log scale needs low > 0, got {low}"))
    if log and step is not None and (not integer or step != 1):
        found.append(("step", "cannot be combined with log scale"))
    elif step is not None and 0 < high - low < step:  # Optuna would draw low alone
        found.append(("step", f"{step} is more than high - low ({high - low:g}): only low fits"))
    if found:
        raise Problems(found)


class CategoricalParamFile(_ParamFile):
    """One of a list of values (a value may itself be a list, e.g. layer widths); a list
    alone is a shorthand for this mapping."""

    type: Literal["categorical"] = "categorical"
    values: Annotated[list[Any], Field(min_length=1)] | None = None
    choices: Annotated[list[Any], Field(min_length=1)] | None = None
    """Another name for values."""

    @pydantic.model_validator(mode="after")
    def _given(self) -> CategoricalParamFile:
        if (self.values is None) == (self.choices is None):
            raise Problems(
                [
                    (
                        "values",
                        "expected a non-empty list of values (give values: or choices:, not both)",
                    )
                ]
            )
        key = "values" if self.values is not None else "choices"
        # A value twice is drawn twice as often, run twice in a grid; Optuna reads 1.0 or
        # true as the equal 1 listed before it.
        seen: dict[Any, int] = {}
        for i, value in enumerate(self.values or self.choices or []):
            first = seen.setdefault(_same_value(value), i)
            if first != i:
                raise Problems([(f"{key}[{i}]", f"{shorten(value)} is {key}[{first}] again")])
        return self


def _same_value(value: Any) -> Any:
    """A key equal for values Optuna cannot tell apart (1, 1.0 and true)."""
    if isinstance(value, int | float):
        return ("number", float(value))
    return ("json", json.dumps(value, sort_keys=True))


class DepthFile(_Strict):
    low: Annotated[StrictInt, Field(ge=0)] = 1
    high: StrictInt = 3


class WidthFile(_Strict):
    low: Annotated[StrictInt, Field(ge=1)] = 16
    high: StrictInt = 256
    log: StrictBool = False
    step: Annotated[StrictInt, Field(gt=0)] = 1


class LayersParamFile(_ParamFile):
    """Hidden layers: a depth, then a width per layer (or one for all)."""

    type: Literal["layers"]
    depth: DepthFile = DepthFile()
    width: WidthFile = WidthFile()
    same_width: StrictBool = False
    """One width for every layer instead of one per layer."""

    @pydantic.model_validator(mode="after")
    def _ranges(self) -> LayersParamFile:
        found = []
        for key, r in (("depth", self.depth), ("width", self.width)):
            try:
                _check_range(
                    r.low, r.high, getattr(r, "log", False), getattr(r, "step", None), True
                )
            except Problems as e:
                found += [(_join(key, k), m) for k, m in e.problems]
        if found:
            raise Problems(found)
        return self


def _param_shorthand(value: Any) -> Any:
    # `activation: [relu, tanh]` and `{values: [...]}` are categorical parameters.
    if isinstance(value, list):
        return {"type": "categorical", "values": value}
    if (
        isinstance(value, dict)
        and "type" not in value
        and ("values" in value or "choices" in value)
    ):
        return {"type": "categorical", **value}
    return value


ParamFile = Annotated[
    FloatParamFile | IntParamFile | CategoricalParamFile | LayersParamFile,
    Field(discriminator="type"),
    pydantic.BeforeValidator(
        _param_shorthand,
        json_schema_input_type=list[Any]
        | FloatParamFile
        | IntParamFile
        | CategoricalParamFile
        | LayersParamFile,
    ),
]


class StudyFile(_Strict):
    """A study file: what to search, how, for how long, and where trials are stored."""

    __wording__: ClassVar[Wording] = Wording(
        unknown_value={"dataset": "; your own data: {path: FILE, target: COLUMN}"}
    )

    name: Annotated[
        Any,
        WithJsonSchema(
            {
                "type": "string",
                "pattern": f"^{STUDY_NAME.pattern}$",
                "description": STUDY_NAME_RULE,
            }
        ),
    ] = None
    description: StrictStr | None = None
    storage: StrictStr | None = None
    """Storage URL: sqlite:///FILE (default sqlite:///hpsearch.db), postgresql+psycopg://...,
    journal:FILE."""
    dataset: DatasetChoice | None = None
    """Shorthand for fixed.dataset: a built-in name, or your own data (path, target, task,
    test; relative paths from this file's folder)."""
    data_dir: StrictStr | None = None
    """Shorthand for fixed.data_dir."""
    objective: ObjectiveField | None = None
    """The one objective [val_accuracy maximized; val_r2 for a regression task]."""
    objectives: Annotated[list[ObjectiveField], Field(min_length=1)] | None = None
    """Several objectives (a multi-objective study, a Pareto front)."""
    if TYPE_CHECKING:  # built from spec.components at import: no static type
        sampler: Any
        pruner: Any
    else:
        sampler: _by_name(SamplerFile, SAMPLER_OPTIONS) | None = Field(
            None, description="A sampler name, or a mapping of name and options [tpe]."
        )
        pruner: _by_name(PrunerFile, PRUNER_OPTIONS) | None = Field(
            None,
            description="A pruner name, or a mapping of name, options, patience and min_delta.",
        )
    budget: BudgetFile | None = None
    fixed: TrainConfig | None = None
    """Trainer settings the space does not search."""
    space: dict[str, ParamFile]
    """The parameters to search, in order: a trainer setting each (or hidden layers)."""
    heartbeat: HeartbeatFile | None = None
    population: Annotated[StrictInt, Field(ge=1, le=MAX_POPULATION)] | None = None
    """Trials a worker claims and trains together on its device, in the same kernels [1];
    16-64 suits a GPU (see the README's Speed)."""
    extends: StrictStr | None = None
    """Another study file (a path from this file's folder) this one is written on top of:
    each key given here replaces that file's, fixed:, space: and budget: a key at a time
    (null removes one). This file names its own study."""
    start_with: (
        Annotated[list[dict[Any, Any]], Field(min_length=1, max_length=MAX_POINTS)] | None
    ) = None
    """Points you know, queued first: values by parameter of space (hidden_layers: [128]);
    those left out are drawn by the sampler."""

    @pydantic.field_validator("name")
    @classmethod
    def _name(cls, name: Any) -> str:
        if not name:
            raise Problems([("", f"required: {STUDY_NAME_RULE}")])
        if not isinstance(name, str) or not STUDY_NAME.fullmatch(name):
            raise Problems([("", f"{shorten(name)} is not allowed: {STUDY_NAME_RULE}")])
        return name

    @pydantic.field_validator("space")
    @classmethod
    def _space(cls, space: dict[str, Any]) -> dict[str, Any]:
        if not space:
            raise Problems([("", "required: at least one parameter to search")])
        found: list[tuple[str, str]] = []
        seen: set[str] = set()
        for name, spec in space.items():
            target = "hidden_layers" if spec.type == "layers" else name
            if target not in FIELDS:
                close = closest(name, FIELDS)
                hint = f"did you mean {close!r}?" if close else "see `hpsearch schema`"
                found.append((name, f"not a trainer setting ({hint})"))
            for key in spec.when or {}:
                if key not in seen:
                    found.append(
                        (f"{name}.when.{key}", "must name a parameter listed earlier in space")
                    )
            seen.add(name)
            if target in FIELDS:
                found += _check_values(_param(name, spec), name)
        if found:
            raise Problems(found)
        return space

    @pydantic.model_validator(mode="after")
    def _together(self) -> StudyFile:
        found = []
        sampler = self.sampler.name if self.sampler else "tpe"
        pruner = self.pruner.name if self.pruner else "none"
        if self.objective is not None and self.objectives is not None:
            found.append(
                ("objectives", "give either objective: (one) or objectives: (a list), not both")
            )
        objectives = self.objectives or [self.objective or ObjectiveFile()]
        given = [(o.metric, o.reduce) for o in objectives]
        for i, objective in enumerate(given):
            if objective in given[:i]:
                first = given.index(objective)
                found.append((f"objectives[{i}]", f"{objective[0]} is objectives[{first}] again"))
        if (self.budget or BudgetFile()).trials is None and sampler not in FINITE_SAMPLERS:
            found.append(
                (
                    "budget.trials",
                    "required: how many trials to run (a grid or ofat study counts its points)",
                )
            )
        if sampler in FINITE_SAMPLERS:
            found.extend(_finite_problems(sampler, self.space))
        found.extend(_stop_problems(self.budget or BudgetFile(), objectives))
        if self.start_with:
            found.extend(_start_problems(self.start_with, self.space, sampler, self.budget))
        if len(objectives) > 1:
            if sampler in SINGLE_OBJECTIVE_SAMPLERS:
                found.append(
                    ("sampler.name", f"{sampler} supports one objective; use nsga2, tpe or random")
                )
            if pruner != "none":
                found.append(
                    ("pruner", "pruning needs a single objective (Optuna prunes on one value)")
                )
        elif pruner != "none" and not METRICS[objectives[0].metric][1]:
            found.append(
                (
                    "pruner",
                    f"{objectives[0].metric} is not measured per epoch: nothing to prune on",
                )
            )
        if found:
            raise Problems(found)
        return self


def _finite_problems(sampler: str, space: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A grid's or one-factor study's parameters: finite, and few enough to queue."""
    found, sizes = [], []
    for name, spec in space.items():
        size = _param(name, spec).size()
        if size is None:
            problem = f"a {sampler} study needs finite values: give values: or a step"
        elif size > MAX_POINTS:
            problem = f"{size:,} values, more than the {MAX_POINTS:,} points a study may queue"
        else:
            sizes.append(size)
            continue
        found.append((f"space.{name}", f"{problem}{_FEWER}"))
    if sampler == "ofat" and not found and 1 + sum(sizes) > MAX_POINTS:
        points = f"{1 + sum(sizes):,} points, more than the {MAX_POINTS:,} a study may queue"
        found.append(("space", f"{points}{_FEWER}"))
    return found


_FEWER = ": fewer values or a larger step, or sample the range with random or tpe"


# metrics whose values lie within bounds: a target beyond them is a typo (99 for 0.99)
BOUNDED = {
    "val_accuracy": (0.0, 1.0),
    "val_balanced_accuracy": (0.0, 1.0),
    "val_r2": (-math.inf, 1.0),
}


def _stop_problems(budget: BudgetFile, objectives: list[ObjectiveFile]) -> list[tuple[str, str]]:
    """A target or plateau needs one best value, and a target one the metric can reach."""
    given = [key for key in ("target", "plateau") if getattr(budget, key) is not None]
    if given and len(objectives) > 1:
        return [
            (
                f"budget.{given[0]}",
                "a study of several objectives has no single best value to stop on",
            )
        ]
    low, high = BOUNDED.get(objectives[0].metric, (-math.inf, math.inf))
    if budget.target is not None and not low <= budget.target <= high:
        within = f"[{low:g}, {high:g}]" if low > -math.inf else f"at most {high:g}"
        return [
            (
                "budget.target",
                f"{objectives[0].metric} is {within}: {budget.target:g} can never be reached",
            )
        ]
    return []


def _start_problems(
    points: list[dict[Any, Any]],
    space: Mapping[str, Any],
    sampler: str,
    budget: BudgetFile | None,
) -> list[tuple[str, str]]:
    """Known points: each one the space can take, once, no more than the budget runs."""
    if sampler in FINITE_SAMPLERS:
        return [("start_with", f"a {sampler} study queues every point of its space itself")]
    trials = (budget or BudgetFile()).trials
    if trials is not None and len(points) > trials:
        return [("start_with", f"{len(points)} points, more than budget.trials ({trials})")]
    found: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    space_ = SearchSpace(tuple(_param(name, spec) for name, spec in space.items()))
    for i, point in enumerate(points):
        try:
            key = point_key(space_.fix(point))
        except Problems as e:
            found += [(f"start_with[{i}]" + (f".{k}" if k else ""), m) for k, m in e.problems]
            continue
        if key in seen:
            found.append((f"start_with[{i}]", f"the same point as start_with[{seen[key]}]"))
        seen.setdefault(key, i)
    return found


def study_schema() -> dict[str, Any]:
    """The JSON Schema of study files (what ``hpsearch schema`` prints)."""
    # a sampler's or pruner's options are made from a signature: no source, no docstrings
    blocks = [c for c in _subclasses(_Strict) if not issubclass(c, _Options)]
    described = (*blocks, TrainConfig, DataSource)
    classes = {("" if c is StudyFile else c.__name__): c for c in described}
    schema = describe_fields(StudyFile.model_json_schema(), classes)
    # a file that extends another may leave its space to that file (checked once merged)
    assert schema.pop("required") == ["space"]
    schema["anyOf"] = [{"required": ["space"]}, {"required": ["extends"]}]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "hpsearch study file",
        **schema,
    }


def _subclasses(cls: type) -> list[type]:
    subs: list[type] = cls.__subclasses__()
    return [c for sub in subs for c in (sub, *_subclasses(sub))]


def _param(name: str, spec: Any) -> Param:
    """The search-space parameter a validated block describes."""
    when = {
        str(k): tuple(v) if isinstance(v, list) else (v,) for k, v in (spec.when or {}).items()
    }
    if isinstance(spec, FloatParamFile):
        return FloatParam(name, spec.low, spec.high, spec.log, spec.step, when)
    if isinstance(spec, IntParamFile):
        return IntParam(name, spec.low, spec.high, spec.log, spec.step or 1, when)
    if isinstance(spec, CategoricalParamFile):
        return CategoricalParam(name, tuple(spec.values or spec.choices or ()), when)
    d, w = spec.depth, spec.width
    return LayersParam(name, d.low, d.high, w.low, w.high, w.log, w.step, spec.same_width, when)


def _check_values(param: Param, path: str) -> list[tuple[str, str]]:
    """Every value the parameter can take must be a valid setting of its field."""
    for i, value in enumerate(param.extremes()):
        try:
            make_config({param.target: value}, cross_field=False)
        except ConfigError as e:
            where = f"{path}.values[{i}]" if isinstance(param, CategoricalParam) else path
            return [(where, e.problems[0])]
    return []


GP_BUDGET = 200  # a larger gp budget is warned about at validation time
GP_COST = (
    "sampler gp: each ask refits a Gaussian process, about 0.25 s on a 2-core CPU once 100 "
    "trials have finished (bench/scale.py), and it then models only the best 100 and the 100 "
    "most recent trials; for budgets of thousands of trials tpe asks take 50 ms at 1,000 "
    "trials and 60 ms at 10,000 (see the README's sampler table)"
)


def _most_epochs(params: list[Param], base: TrainConfig) -> int:
    """The most epochs any trial of the study trains."""
    searched = [p for p in params if p.target == "epochs"]
    return max(searched[0].extremes()) if searched else base.epochs


def _late_pruning(name: str, options: Mapping[str, Any], epochs: int) -> str | None:
    """Why a pruner can never prune a study whose trials train at most ``epochs`` epochs."""
    # the first step (epoch) at which each pruner may prune: warm-up for the
    # median and percentile pruners, the lowest rung for the successive-halving kind
    key = {"median": "n_warmup_steps", "percentile": "n_warmup_steps"}.get(name, "min_resource")
    first = options.get(key, 1 if name == "hyperband" else 0)
    if name == "successive_halving" and isinstance(first, int):
        first *= options.get("reduction_factor", 4) ** options.get("min_early_stopping_rate", 0)
    if name == "none" or not isinstance(first, int) or first <= epochs:
        return None
    return (
        f"pruner {name}: it prunes from epoch {first} on ({key}), and no trial trains more "
        f"than {epochs} epochs: nothing will be pruned"
    )


# --- reading a study file ----------------------------------------------------------------


def load_spec(path: str, storage: str | None = None, trials: int | None = None) -> StudySpec:
    """Reads and validates a study file.

    Args:
        path: The YAML file.
        storage: Overrides the file's storage URL.
        trials: Overrides the file's trial budget.

    Raises:
        ConfigError: Every problem in the file, each with its key path.
    """
    bases: list[str] = []
    doc = read_study_yaml(path, bases)  # with the file its extends: names under it
    spec = parse_study(doc, source=path, storage=storage, trials=trials)
    return dataclasses.replace(spec, bases=tuple(bases)) if bases else spec


def parse_study(
    doc: Any, source: str = "<study>", storage: str | None = None, trials: int | None = None
) -> StudySpec:
    """Validates a parsed study document; see :func:`load_spec`."""
    if not isinstance(doc, dict):
        raise ConfigError(["expected a mapping at the top level (name:, space:, ...)"], source)
    try:
        f = StudyFile.model_validate(doc)
    except pydantic.ValidationError as e:
        raise ConfigError(problems(e, StudyFile), source) from None
    if f.extends is not None:  # load_spec resolves it: a document alone has no folder
        raise ConfigError(["extends: only a study file read by load_spec extends another"], source)
    base = f.fixed or TrainConfig()
    top = {k: v for k, v in (("dataset", f.dataset), ("data_dir", f.data_dir)) if v is not None}
    if top:
        base = make_config(top, base, source)
    base = _own_data(base, source)
    sampler = f.sampler.model_dump(exclude_none=True) if f.sampler else {"name": "tpe"}
    pruner = f.pruner.model_dump(exclude_none=True) if f.pruner else {"name": "none"}
    patience = {k: pruner.pop(k) for k in PATIENCE_KEYS if k in pruner}
    sampler_name, pruner_name = sampler.pop("name"), pruner.pop("name")
    params = [_param(name, spec) for name, spec in f.space.items()]
    if sampler_name == "ofat":
        params = [_one_factor_param(prm, base) for prm in params]
    space = SearchSpace(tuple(params))
    objectives = f.objectives or [f.objective or ObjectiveFile()]
    budget, heartbeat = f.budget or BudgetFile(), f.heartbeat or HeartbeatFile()
    interval = heartbeat.interval
    n_trials = budget.trials if trials is None else trials
    if sampler_name == "gp" and (n_trials or 0) > GP_BUDGET:
        _log.warning("%s: %s", source, GP_COST)
    if late := _late_pruning(pruner_name, pruner, _most_epochs(params, base)):
        _log.warning("%s: %s", source, late)
    fixed_doc = doc.get("fixed")
    given_fixed: dict[str, Any] = fixed_doc if isinstance(fixed_doc, dict) else {}
    open_defaults = frozenset(
        key
        for key, given in (
            ("loss", "loss" in given_fixed or "loss" in f.space),
            ("objective", f.objective is not None or f.objectives is not None),
        )
        if not given
    )
    spec = StudySpec(
        name=f.name,
        storage=storage or f.storage or DEFAULT_STORAGE,
        objectives=tuple(
            Objective(o.metric, o.direction or METRICS[o.metric][0], o.reduce) for o in objectives
        ),
        sampler=sampler_name,
        sampler_options=sampler,
        pruner=pruner_name,
        pruner_options=pruner,
        patience=patience,
        trials=budget.trials if trials is None else trials,
        timeout=budget.timeout,
        base=base,
        space=space,
        heartbeat_interval=interval,
        grace_period=heartbeat.grace_period or max(20, 4 * interval),
        path=source,
        description=f.description or "",
        finite_points=_finite_points(sampler_name, space, base, source),
        start_points=tuple(space.fix(point) for point in f.start_with or ()),
        population=f.population or 1,
        target=None if budget.target is None else float(budget.target),
        plateau=budget.plateau,
        trial_timeout=None if budget.trial_timeout is None else float(budget.trial_timeout),
        max_params=budget.max_params,
        open_defaults=open_defaults,
    )
    # a task the file names is fitted now; one inferred from the data, by the pre-flight
    return spec.for_task(base.task) if base.task is not None else spec


def _own_data(base: TrainConfig, source: str) -> TrainConfig:
    """The base config with a user's data set's paths made absolute (relative paths are
    from the study file's folder), its files checked to exist.

    Raises:
        ConfigError: A file is missing (with a did-you-mean).
    """
    if not isinstance(base.dataset, DataSource):
        return base
    file = Path(source)
    folder = file.parent if file.is_file() else Path.cwd()
    resolved = make_config({"dataset": base.dataset.resolved(folder)}, base, source)
    missing = missing_files(resolved.dataset)  # type: ignore[arg-type]
    if missing:
        raise ConfigError([f"dataset: {line}" for line in missing], source)
    return resolved


def _finite_points(
    sampler: str, space: SearchSpace, base: TrainConfig, source: str
) -> tuple[Point, ...]:
    if sampler == "ofat":
        return tuple(space.one_factor_points(base.to_dict()))
    if sampler != "grid":
        return ()
    try:
        return tuple((None, None, params) for params in space.grid_points())
    except TooManyPoints as e:
        sizes = " x ".join(f"{p.name} {p.size():,}" for p in space.params)
        raise ConfigError(
            [f"space: a grid of {e} ({sizes} values), the most a study may queue{_FEWER}"],
            source,
        ) from None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _one_factor_param(param: Param, base: TrainConfig) -> Param:
    """In a one-factor study each parameter is a choice among its values and the baseline's."""
    baseline = base.to_dict()[param.target]
    values = [baseline]
    for _, value in param.options() or []:
        # compare resolved values: `nll` is the baseline's `cross_entropy`, not a variation
        resolved = make_config({param.target: value}, base, cross_field=False)
        if (v := resolved.to_dict()[param.target]) not in values:
            values.append(v)
    return CategoricalParam(param.target, tuple(values))
