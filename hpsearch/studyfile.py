"""Study files: one YAML file declares a whole study; this module validates it.

Validation reads the whole file and reports every violation at once, each as
``FILE: key.path: what is wrong (what is allowed)``. Nothing touches a storage before the
file is valid. See ``studies/*.yaml`` and the README for the syntax.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
import dataclasses
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
import difflib
import functools
import inspect
import json
import re
from typing import Any
from typing import NamedTuple
import zlib

import optuna

from hpsearch.config import FIELDS
from hpsearch.config import make_config
from hpsearch.config import read_yaml
from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError
from hpsearch.errors import MAX_QUOTE
from hpsearch.errors import shorten
from hpsearch.space import CategoricalParam
from hpsearch.space import FloatParam
from hpsearch.space import IntParam
from hpsearch.space import LayersParam
from hpsearch.space import Param
from hpsearch.space import SearchSpace
from hpsearch.storage import DEFAULT_STORAGE

Point = tuple[str | None, Any, dict[str, Any]]  # (one-factor factor, its value, Optuna params)

# metric -> (natural direction, whether it is measured per epoch)
METRICS: dict[str, tuple[str, bool]] = {
    "val_accuracy": ("maximize", True),
    "val_loss": ("minimize", True),
    "train_loss": ("minimize", True),
    "train_seconds": ("minimize", False),
    "param_count": ("minimize", False),
}
REDUCTIONS = ("final", "best")

SAMPLERS: dict[str, type[optuna.samplers.BaseSampler]] = {
    "random": optuna.samplers.RandomSampler,
    "tpe": optuna.samplers.TPESampler,
    "gp": optuna.samplers.GPSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "qmc": optuna.samplers.QMCSampler,
    "nsga2": optuna.samplers.NSGAIISampler,
    # Finite studies: every point is queued up front and claimed exactly once by a worker,
    # so the sampler never samples (see hpsearch.study.top_up).
    "grid": optuna.samplers.RandomSampler,
    "ofat": optuna.samplers.RandomSampler,
}
FINITE_SAMPLERS = ("grid", "ofat")
SINGLE_OBJECTIVE_SAMPLERS = ("cmaes",)

PRUNERS: dict[str, type[optuna.pruners.BasePruner]] = {
    "none": optuna.pruners.NopPruner,
    "median": optuna.pruners.MedianPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
}
PATIENCE_KEYS = ("patience", "min_delta")  # wrap the pruner in optuna's PatientPruner

TOP_KEYS = (
    "name",
    "description",
    "storage",
    "dataset",
    "data_dir",
    "objective",
    "objectives",
    "sampler",
    "pruner",
    "budget",
    "fixed",
    "space",
    "heartbeat",
)


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
    seed_stream: str = ""  # a worker's name: its seeded sampler draws a sequence of its own

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

    def for_worker(self, worker: str) -> StudySpec:
        """The spec as one of several workers sees it: a seeded sampler draws a stream of its
        own (see :meth:`make_sampler`), or every worker would draw the same "random" points."""
        return dataclasses.replace(self, seed_stream=worker)

    def make_sampler(self, started: int = 0) -> optuna.samplers.BaseSampler:
        """The file's sampler, its seed moved on past what the study already drew.

        A sampler rebuilt with the file's seed in a new process would draw the same sequence
        again, so a resumed (or extended) study would repeat its first points. The seed is
        therefore derived from the file's seed, this worker's stream and ``started``, the
        number of trials the study had already started: a study run from scratch in one
        process uses the file's seed unchanged (reproducible), and every resume draws anew.
        A QMC sequence keeps the file's seed and continues where it stopped (Optuna keeps its
        position in the study); only its independent sampler moves on.

        Args:
            started: Trials of the study that are not WAITING when this sampler is built.
        """
        options = dict(self.sampler_options)
        seed = options.get("seed")
        if seed is not None and (self.seed_stream or started):
            moved = derive_seed(seed, self.seed_stream, started)
            if self.sampler == "qmc":
                options["independent_sampler"] = optuna.samplers.RandomSampler(seed=moved)
            else:
                options["seed"] = moved
        return SAMPLERS[self.sampler](**options)

    def definition(self) -> dict[str, Any]:
        """What gives a trial's values their meaning: the data set, the objectives, the search
        space and the trainer settings the space does not set.

        Stored with the study; a resume with a different definition is refused (see
        :func:`definition_changes`). Settings that change how, not what, a study computes
        (budget, timeout, heartbeat, sampler, pruner, device, data_dir, eval_batch_size) are
        left out, so they may change between runs.
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
        doc = {
            "dataset": self.base.dataset,
            "objectives": [vars(o) for o in self.objectives],
            "space": space,
            "fixed": fixed,
        }
        plain: dict[str, Any] = json.loads(json.dumps(doc))  # tuples become lists
        return plain

    def make_pruner(self) -> optuna.pruners.BasePruner:
        pruner = PRUNERS[self.pruner](**self.pruner_options)
        if self.patience:
            return optuna.pruners.PatientPruner(pruner, **self.patience)
        return pruner


# A study's name becomes a directory name (worker logs) and a database key: nothing that can
# leave a directory, hide in a listing, forge a line of output or overflow a column.
STUDY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
STUDY_NAME_RULE = (
    "a study name is 1 to 100 letters, digits, '-', '_' and '.', not starting with '.' or '-'"
)

# Trainer settings that change how a trial runs, not what its values mean.
_HOW_NOT_WHAT = ("device", "data_dir", "eval_batch_size")


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


class _Problems:
    """Collects ``key.path: message`` lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, path: str, message: str) -> None:
        if len(path) > MAX_QUOTE:  # a key is user input too
            path = f"{path[: MAX_QUOTE - 3]}..."
        self.lines.append(f"{path}: {message}")

    def keys(self, value: Mapping[str, Any], path: str, allowed: tuple[str, ...]) -> None:
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(str(key)[:MAX_QUOTE], allowed, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(allowed)}"
                self.add(_join(path, str(key)), f"unknown key ({hint})")

    def mapping(self, value: Any, path: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(path, f"expected a mapping, got {type(value).__name__}")
            return {}
        return value

    def number(self, value: Any, path: str, integer: bool = False) -> Any:
        ok = isinstance(value, int) if integer else isinstance(value, int | float)
        if not ok or isinstance(value, bool):
            self.add(
                path, f"expected {'an integer' if integer else 'a number'}, got {shorten(value)}"
            )
            return None
        return value

    def choice(self, value: Any, path: str, allowed: Mapping[str, Any] | tuple[str, ...]) -> bool:
        if value not in allowed:
            close = difflib.get_close_matches(str(value), list(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.add(path, f"unknown {shorten(value)}{hint}; allowed: {', '.join(allowed)}")
            return False
        return True


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def load_study(path: str, storage: str | None = None, trials: int | None = None) -> StudySpec:
    """Reads and validates a study file.

    Args:
        path: The YAML file.
        storage: Overrides the file's storage URL.
        trials: Overrides the file's trial budget.

    Raises:
        ConfigError: Every problem in the file, each with its key path.
    """
    doc = read_yaml(path)
    return parse_study(doc, source=path, storage=storage, trials=trials)


def parse_study(
    doc: Any, source: str = "<study>", storage: str | None = None, trials: int | None = None
) -> StudySpec:
    """Validates a parsed study document; see :func:`load_study`."""
    p = _Problems()
    if not isinstance(doc, dict):
        raise ConfigError(["expected a mapping at the top level (name:, space:, ...)"], source)
    p.keys(doc, "", TOP_KEYS)
    name = doc.get("name")
    if not name:
        p.add("name", f"required: {STUDY_NAME_RULE}")
    elif not isinstance(name, str) or not STUDY_NAME.fullmatch(name):
        p.add("name", f"{shorten(name)} is not allowed: {STUDY_NAME_RULE}")
    url = storage or doc.get("storage") or DEFAULT_STORAGE
    if not isinstance(url, str):
        p.add("storage", f"expected a URL string, got {shorten(url)}")

    base = _parse_fixed(doc, p)
    objectives = _parse_objectives(doc, p)
    sampler, sampler_options = _parse_component(doc.get("sampler", "tpe"), "sampler", SAMPLERS, p)
    pruner, pruner_options = _parse_component(doc.get("pruner", "none"), "pruner", PRUNERS, p)
    patience = {k: pruner_options.pop(k) for k in PATIENCE_KEYS if k in pruner_options}
    if "patience" not in patience and patience:
        p.add("pruner.min_delta", "needs pruner.patience")
    budget_trials, timeout = _parse_budget(doc, p, sampler)
    if trials is not None:
        budget_trials = trials
    heartbeat = p.mapping(doc.get("heartbeat"), "heartbeat")
    p.keys(heartbeat, "heartbeat", ("interval", "grace_period"))
    interval = heartbeat.get("interval", 5)
    grace = heartbeat.get(
        "grace_period", max(20, 4 * interval) if isinstance(interval, int) else 20
    )
    for key, value in (("interval", interval), ("grace_period", grace)):
        if p.number(value, f"heartbeat.{key}", integer=True) is not None and value < 1:
            p.add(f"heartbeat.{key}", f"must be >= 1 second, got {value}")

    space = _parse_space(doc.get("space"), p, base, sampler)
    if len(objectives) > 1:
        if sampler in SINGLE_OBJECTIVE_SAMPLERS:
            p.add("sampler.name", f"{sampler} supports one objective; use nsga2, tpe or random")
        if pruner != "none":
            p.add("pruner", "pruning needs a single objective (Optuna prunes on one value)")
    if objectives and pruner != "none" and not objectives[0].per_epoch:
        p.add("pruner", f"{objectives[0].metric} is not measured per epoch: nothing to prune on")
    if p.lines or base is None or space is None:
        raise ConfigError(p.lines, source)
    return StudySpec(
        name=str(name),
        storage=url,
        objectives=tuple(objectives),
        sampler=sampler,
        sampler_options=sampler_options,
        pruner=pruner,
        pruner_options=pruner_options,
        patience=patience,
        trials=budget_trials,
        timeout=timeout,
        base=base,
        space=space,
        heartbeat_interval=interval,
        grace_period=grace,
        path=source,
        description=str(doc.get("description") or ""),
        finite_points=_finite_points(sampler, space, base),
    )


def _finite_points(sampler: str, space: SearchSpace, base: TrainConfig) -> tuple[Point, ...]:
    if sampler == "ofat":
        return tuple(space.one_factor_points(base.to_dict()))
    if sampler == "grid":
        return tuple((None, None, params) for params in space.grid_points())
    return ()


def _parse_fixed(doc: Mapping[str, Any], p: _Problems) -> TrainConfig | None:
    fixed = dict(p.mapping(doc.get("fixed"), "fixed"))
    for key in ("dataset", "data_dir"):
        if doc.get(key) is not None:
            fixed[key] = doc[key]
    try:
        return make_config(fixed)
    except ConfigError as e:
        for line in e.problems:
            key, _, message = line.partition(": ")
            p.add(key if key in ("dataset", "data_dir") else f"fixed.{key}", message)
        return None


def _parse_objectives(doc: Mapping[str, Any], p: _Problems) -> list[Objective]:
    if "objective" in doc and "objectives" in doc:
        p.add("objectives", "give either objective: (one) or objectives: (a list), not both")
    if "objectives" in doc:
        raw = doc["objectives"]
        if not isinstance(raw, list) or not raw:
            p.add("objectives", "expected a non-empty list of {metric, direction}")
            return []
        items = [(f"objectives[{i}]", item) for i, item in enumerate(raw)]
    else:
        items = [("objective", doc.get("objective") or {"metric": "val_accuracy"})]
    result = []
    for path, item in items:
        if isinstance(item, str):
            item = {"metric": item}
        item = p.mapping(item, path)
        p.keys(item, path, ("metric", "direction", "reduce"))
        metric = item.get("metric", "val_accuracy")
        if not p.choice(metric, f"{path}.metric", METRICS):
            continue
        natural = METRICS[metric][0]
        direction = item.get("direction", natural)
        if p.choice(direction, f"{path}.direction", ("maximize", "minimize")) and (
            direction != natural
        ):
            p.add(f"{path}.direction", f"{direction} does not match {metric}, which is {natural}d")
        reduce = item.get("reduce", "final")
        p.choice(reduce, f"{path}.reduce", REDUCTIONS)
        if reduce == "best" and not METRICS[metric][1]:
            p.add(f"{path}.reduce", f"{metric} has one value per trial: use final")
        result.append(Objective(metric, direction, reduce))
    return result


def _parse_component(
    raw: Any, path: str, table: Mapping[str, type], p: _Problems
) -> tuple[str, dict[str, Any]]:
    """A sampler or pruner: a name, or a mapping with ``name`` and constructor options."""
    spec = {"name": raw} if isinstance(raw, str) else p.mapping(raw, path)
    options = {k: v for k, v in spec.items() if k != "name"}
    name = str(spec.get("name"))
    if not p.choice(name, f"{path}.name", table):
        return "none", {}
    allowed = _scalar_options(table[name])
    extra = PATIENCE_KEYS if path == "pruner" else ()
    p.keys(options, path, (*allowed, *extra))
    for key, value in options.items():
        expected = allowed.get(key)
        if expected is not None and not _same_kind(value, expected):
            kinds = " or ".join(t.__name__ for t in expected if t is not type(None))
            p.add(f"{path}.{key}", f"expected {kinds}, got {shorten(value)}")
    if name in ("grid", "ofat"):  # their points come from the space, not the sampler
        options = {k: v for k, v in options.items() if k == "seed"}
    required = [
        n
        for n, prm in inspect.signature(table[name]).parameters.items()
        if prm.default is inspect.Parameter.empty
        and prm.kind is prm.POSITIONAL_OR_KEYWORD
        and n != "self"
        and n not in options
    ]
    for missing in required:
        p.add(f"{path}.{missing}", f"required by the {name} {path}")
    return name, options


_SCALARS = {"bool": (bool,), "int": (int,), "float": (int, float), "str": (str,)}


def _scalar_options(cls: type) -> dict[str, tuple[type, ...]]:
    """Constructor options that a YAML scalar can set, with the types their hints allow.

    Options typed as callables, sequences or objects (``gamma``, ``search_space``) cannot
    come from a file and are left out, so naming one is an unknown key.
    """
    result: dict[str, tuple[type, ...]] = {}
    for name, prm in inspect.signature(cls).parameters.items():
        hint = str(prm.annotation)
        if prm.kind not in (prm.POSITIONAL_OR_KEYWORD, prm.KEYWORD_ONLY) or re.search(
            r"Callable|Sequence|Mapping|dict|list|\[", hint
        ):
            continue
        types = tuple(
            t for word, ts in _SCALARS.items() if re.search(rf"\b{word}\b", hint) for t in ts
        )
        if types:
            result[name] = types + ((type(None),) if "None" in hint else ())
    return result


def _same_kind(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)


def _parse_budget(
    doc: Mapping[str, Any], p: _Problems, sampler: str
) -> tuple[int | None, float | None]:
    budget = p.mapping(doc.get("budget"), "budget")
    p.keys(budget, "budget", ("trials", "timeout"))
    trials = budget.get("trials")
    timeout = budget.get("timeout")
    if trials is not None and p.number(trials, "budget.trials", integer=True) is not None:
        if trials < 1:
            p.add("budget.trials", f"must be >= 1, got {trials}")
    elif trials is None and sampler not in FINITE_SAMPLERS:
        p.add(
            "budget.trials",
            "required: how many trials to run (a grid or ofat study counts its points)",
        )
    if timeout is not None and p.number(timeout, "budget.timeout") is not None and timeout <= 0:
        p.add("budget.timeout", f"must be > 0 seconds, got {timeout}")
    return trials, timeout


def _parse_space(
    raw: Any, p: _Problems, base: TrainConfig | None, sampler: str
) -> SearchSpace | None:
    space = p.mapping(raw, "space")
    if not space:
        p.add("space", "required: at least one parameter to search")
        return None
    params: list[Param] = []
    seen: set[str] = set()
    for name, spec in space.items():
        path = f"space.{name}"
        param = _parse_param(str(name), spec, path, p, seen)
        if param is None:
            continue
        seen.add(param.name)
        if base is not None:
            _check_values(param, path, base, p)
        if sampler in FINITE_SAMPLERS and not param.finite:
            p.add(path, f"a {sampler} study needs finite values: give values: or a step")
        params.append(param)
    if len(params) != len(space):
        return None
    if sampler == "ofat" and base is not None:
        params = [_one_factor_param(prm, base) for prm in params]
    return SearchSpace(tuple(params))


def _parse_param(name: str, spec: Any, path: str, p: _Problems, seen: set[str]) -> Param | None:
    if isinstance(spec, list):
        spec = {"values": spec}
    spec = p.mapping(spec, path)
    kind = spec.get("type", "categorical" if "values" in spec or "choices" in spec else None)
    if kind is None:
        p.add(f"{path}.type", f"required (allowed: {', '.join(PARAM_TYPES)}) or give values:")
        return None
    if not p.choice(kind, f"{path}.type", PARAM_TYPES):
        return None
    before = len(p.lines)
    p.keys(spec, path, PARAM_KINDS[kind].keys)
    target = "hidden_layers" if kind == "layers" else name
    if target not in FIELDS:
        close = difflib.get_close_matches(name, list(FIELDS), n=1)
        hint = f"did you mean {close[0]!r}?" if close else "see hpsearch.config.TrainConfig"
        p.add(path, f"not a trainer setting ({hint})")
    when = _parse_when(spec.get("when"), f"{path}.when", p, seen)
    param = PARAM_KINDS[kind].parse(name, spec, path, p, when)
    return param if len(p.lines) == before else None


def _parse_when(raw: Any, path: str, p: _Problems, seen: set[str]) -> dict[str, tuple[Any, ...]]:
    when = p.mapping(raw, path)
    result = {}
    for key, value in when.items():
        if key not in seen:
            p.add(f"{path}.{key}", "must name a parameter listed earlier in space")
        result[str(key)] = tuple(value) if isinstance(value, list) else (value,)
    return result


def _parse_range(
    name: str,
    spec: Mapping[str, Any],
    path: str,
    p: _Problems,
    when: dict[str, tuple[Any, ...]],
    integer: bool,
) -> Param | None:
    low = p.number(spec.get("low"), f"{path}.low", integer)
    high = p.number(spec.get("high"), f"{path}.high", integer)
    log = spec.get("log", False)
    step = spec.get("step")
    if not isinstance(log, bool):
        p.add(f"{path}.log", f"expected true/false, got {shorten(log)}")
    if step is not None and p.number(step, f"{path}.step", integer) is not None and step <= 0:
        p.add(f"{path}.step", f"must be > 0, got {step}")
    if low is None or high is None:
        return None
    if low > high:
        p.add(path, f"low ({low}) is above high ({high})")
    if log and low <= 0:
        p.add(f"{path}.low", f"log scale needs low > 0, got {low}")
    if log and step is not None and (not integer or step != 1):
        p.add(f"{path}.step", "cannot be combined with log scale")
    if integer:
        return IntParam(name, low, high, bool(log), step or 1, when)
    return FloatParam(name, float(low), float(high), bool(log), step, when)


def _parse_categorical(
    name: str,
    spec: Mapping[str, Any],
    path: str,
    p: _Problems,
    when: dict[str, tuple[Any, ...]],
) -> Param | None:
    key = "values" if "values" in spec else "choices"
    choices = spec.get(key)
    if not isinstance(choices, list) or not choices:
        p.add(f"{path}.{key}", "expected a non-empty list of values")
        return None
    return CategoricalParam(name, tuple(choices), when)


def _parse_layers(
    name: str,
    spec: Mapping[str, Any],
    path: str,
    p: _Problems,
    when: dict[str, tuple[Any, ...]],
) -> Param | None:
    depth = p.mapping(spec.get("depth"), f"{path}.depth")
    width = p.mapping(spec.get("width"), f"{path}.width")
    p.keys(depth, f"{path}.depth", ("low", "high"))
    p.keys(width, f"{path}.width", ("low", "high", "log", "step"))
    d = _parse_range("depth", {"low": 1, "high": 3, **depth}, f"{path}.depth", p, {}, True)
    w = _parse_range("width", {"low": 16, "high": 256, **width}, f"{path}.width", p, {}, True)
    if isinstance(d, IntParam) and d.low < 0:
        p.add(f"{path}.depth.low", f"must be >= 0, got {d.low}")
    if isinstance(w, IntParam) and w.low < 1:
        p.add(f"{path}.width.low", f"must be >= 1, got {w.low}")
    if not (isinstance(d, IntParam) and isinstance(w, IntParam)):
        return None
    same = spec.get("same_width", False)
    return LayersParam(name, d.low, d.high, w.low, w.high, w.log, w.step, bool(same), when)


ParamParser = Callable[
    [str, Mapping[str, Any], str, _Problems, dict[str, tuple[Any, ...]]], Param | None
]


class ParamKind(NamedTuple):
    """A ``type:`` of search-space parameter: the keys it takes and its parser."""

    keys: tuple[str, ...]
    parse: ParamParser


PARAM_KINDS: dict[str, ParamKind] = {
    "float": ParamKind(
        ("type", "low", "high", "log", "step", "when"),
        functools.partial(_parse_range, integer=False),
    ),
    "int": ParamKind(
        ("type", "low", "high", "log", "step", "when"),
        functools.partial(_parse_range, integer=True),
    ),
    "categorical": ParamKind(("type", "choices", "values", "when"), _parse_categorical),
    "layers": ParamKind(("type", "depth", "width", "same_width", "when"), _parse_layers),
}
PARAM_TYPES = tuple(PARAM_KINDS)


def _check_values(param: Param, path: str, base: TrainConfig, p: _Problems) -> None:
    """Every value the parameter can take must be a valid setting of its field."""
    for i, value in enumerate(param.extremes()):
        try:
            make_config({param.target: value}, base, cross_field=False)
        except ConfigError as e:
            where = f"{path}.values[{i}]" if isinstance(param, CategoricalParam) else path
            p.add(where, e.problems[0])
            return


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
