"""Search spaces: typed parameters that suggest trainer settings through an Optuna trial.

A parameter suggests the value of one :class:`~hpsearch.spec.config.TrainConfig` field. Ranges are
inclusive, as in Optuna. ``LayersParam`` samples a depth and then one width per layer, so the
widths of layers beyond the sampled depth do not exist. A parameter with ``when`` exists only
if an earlier parameter took one of the listed values. Finite spaces expand into points for
grid and one-factor-at-a-time studies (:meth:`SearchSpace.grid_points`); a point the user
knows (a study file's ``start_with:``) becomes the Optuna params that fix it
(:meth:`SearchSpace.fix`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
import itertools
import json
from typing import Any
from typing import Protocol
from typing import TYPE_CHECKING

from hpsearch.errors import shorten
from hpsearch.spec.validation import did_you_mean
from hpsearch.spec.validation import Problems

if TYPE_CHECKING:  # a trial is only suggested to; importing Optuna costs a command 0.1 s
    import optuna

# A grid option: the Optuna params that select it, and the config value it gives.
Option = tuple[dict[str, Any], Any]


class Param(Protocol):
    """What every kind of parameter provides."""

    @property
    def name(self) -> str:
        """The parameter's name in Optuna (and in the study file)."""

    @property
    def target(self) -> str:
        """The :class:`~hpsearch.spec.config.TrainConfig` field it sets."""

    @property
    def when(self) -> Mapping[str, tuple[Any, ...]]:
        """Earlier parameters and the values under which this one exists."""

    def suggest(self, trial: optuna.Trial) -> Any:
        """Suggests a value through ``trial`` and returns the config value."""

    @property
    def finite(self) -> bool:
        """Whether :meth:`options` lists every value (a float range needs a step)."""

    def size(self) -> int | None:
        """How many values :meth:`options` lists (counted, not listed), or ``None``."""

    def options(self) -> list[Option] | None:
        """Every value the parameter can take, or ``None`` for a continuous range."""

    def extremes(self) -> list[Any]:
        """A few config values that span the parameter's range, for validation."""

    def fix(self, value: Any) -> dict[str, Any]:
        """The Optuna params that make the parameter take the config value ``value``.

        Raises:
            ValueError: ``value`` is not one the parameter can take; the message says what
                it can.
        """


class _OwnField:
    """A parameter named after the config field it sets; finite unless it says otherwise."""

    name: str

    @property
    def target(self) -> str:
        return self.name

    @property
    def finite(self) -> bool:
        return True


# The most points a grid or one-factor study may have: each is a queued trial, and a step
# too fine for its range (1e-9 over [0.001, 1]) would otherwise hang the reading of the file.
MAX_POINTS = 100_000


def _steps(low: float, high: float, step: float) -> int:
    return int(round((high - low) / step, 8) // 1)


def _frange(low: float, high: float, step: float) -> list[float]:
    # The values Optuna's FloatDistribution(step=...) can draw: low + k * step, up to high.
    # (k * step + low, the same float arithmetic as Optuna's samplers, so that a grid point
    # and a drawn value compare equal).
    return [float(k * step + low) for k in range(_steps(low, high, step) + 1)]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _within(value: Any, low: float, high: float, integer: bool) -> None:
    kind = "a whole number" if integer else "a number"
    if not (isinstance(value, int) if integer else _is_number(value)) or isinstance(value, bool):
        raise ValueError(f"must be {kind} in [{low:g}, {high:g}], got {shorten(value)}")
    if not low <= value <= high:
        raise ValueError(f"must be in [{low:g}, {high:g}], got {value:g}")


def _on_step(value: float, low: float, step: float) -> float:
    """``value`` as the grid value ``k * step + low`` it is, as a sampler would draw it."""
    k = (value - low) / step
    if abs(k - round(k)) > 1e-8:
        raise ValueError(f"must be {low:g} plus a multiple of the step {step:g}, got {value:g}")
    return round(k) * step + low


@dataclass(frozen=True)
class FloatParam(_OwnField):
    """A float in ``[low, high]``, optionally on a log scale or on a ``step`` grid."""

    name: str
    low: float
    high: float
    log: bool = False
    step: float | None = None
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    @property
    def finite(self) -> bool:
        return self.step is not None

    def extremes(self) -> list[Any]:
        return [self.low, self.high]

    def suggest(self, trial: optuna.Trial) -> Any:
        return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)

    def fix(self, value: Any) -> dict[str, Any]:
        _within(value, self.low, self.high, integer=False)
        if self.step is not None:
            value = _on_step(value, self.low, self.step)
        return {self.name: float(value)}

    def size(self) -> int | None:
        return None if self.step is None else _steps(self.low, self.high, self.step) + 1

    def options(self) -> list[Option] | None:
        if self.step is None:
            return None
        return [({self.name: v}, v) for v in _frange(self.low, self.high, self.step)]


@dataclass(frozen=True)
class IntParam(_OwnField):
    """An integer in ``[low, high]`` in steps of ``step``, optionally on a log scale."""

    name: str
    low: int
    high: int
    log: bool = False
    step: int = 1
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def extremes(self) -> list[Any]:
        return [self.low, self.high]

    def suggest(self, trial: optuna.Trial) -> Any:
        return trial.suggest_int(self.name, self.low, self.high, log=self.log, step=self.step)

    def fix(self, value: Any) -> dict[str, Any]:
        _within(value, self.low, self.high, integer=True)
        return {self.name: int(_on_step(value, self.low, self.step))}

    def size(self) -> int | None:
        return len(range(self.low, self.high + 1, self.step))

    def options(self) -> list[Option] | None:
        return [({self.name: v}, v) for v in range(self.low, self.high + 1, self.step)]


def encode_choice(value: Any) -> Any:
    """Optuna's categorical choices are scalars: lists are stored as their JSON text."""
    return json.dumps(value) if isinstance(value, list | tuple | dict) else value


@dataclass(frozen=True)
class CategoricalParam(_OwnField):
    """One of ``choices``; a choice may be a list (e.g. layer widths)."""

    name: str
    choices: tuple[Any, ...]
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def extremes(self) -> list[Any]:
        return list(self.choices)

    def suggest(self, trial: optuna.Trial) -> Any:
        encoded = [encode_choice(c) for c in self.choices]
        picked = trial.suggest_categorical(self.name, encoded)
        return self.choices[encoded.index(picked)]

    def size(self) -> int | None:
        return len(self.choices)

    def options(self) -> list[Option] | None:
        return [({self.name: encode_choice(c)}, c) for c in self.choices]

    def fix(self, value: Any) -> dict[str, Any]:
        # `true` is not the choice 1, nor 1 the choice `true` (Python's True == 1)
        for choice in self.choices:
            if choice == value and isinstance(choice, bool) == isinstance(value, bool):
                return {self.name: encode_choice(choice)}
        allowed = ", ".join(shorten(c) for c in self.choices)
        raise ValueError(f"must be one of its values: {allowed}; got {shorten(value)}")


@dataclass(frozen=True)
class LayersParam:
    """Hidden layers: a depth in ``[depth_low, depth_high]``, then a width per layer."""

    name: str
    depth_low: int
    depth_high: int
    width_low: int
    width_high: int
    width_log: bool = False
    width_step: int = 1
    same_width: bool = False  # one width for every layer instead of one per layer
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    @property
    def target(self) -> str:
        return "hidden_layers"

    finite = True

    def extremes(self) -> list[Any]:
        return [[self.width_low] * self.depth_low, [self.width_high] * self.depth_high]

    def _width_names(self, depth: int) -> list[str]:
        if self.same_width:
            return [f"{self.name}.width"] * depth
        return [f"{self.name}.width_{i}" for i in range(depth)]

    def suggest(self, trial: optuna.Trial) -> Any:
        depth = trial.suggest_int(f"{self.name}.depth", self.depth_low, self.depth_high)
        return [
            trial.suggest_int(
                n, self.width_low, self.width_high, log=self.width_log, step=self.width_step
            )
            for n in self._width_names(depth)
        ]

    def fix(self, value: Any) -> dict[str, Any]:
        low, high = self.depth_low, self.depth_high
        if not isinstance(value, list) or not low <= len(value) <= high:
            count = str(low) if low == high else f"{low} to {high}"
            widths = "width" if high == 1 else "widths"
            raise ValueError(
                f"must be a list of {count} layer {widths} ([128, 64]), got {shorten(value)}"
            )
        if self.same_width and len(set(value)) > 1:
            raise ValueError(f"must be one width for every layer (same_width), got {value}")
        params: dict[str, Any] = {f"{self.name}.depth": len(value)}
        for i, (name, width) in enumerate(zip(self._width_names(len(value)), value, strict=True)):
            try:
                _within(width, self.width_low, self.width_high, integer=True)
                params[name] = int(_on_step(width, self.width_low, self.width_step))
            except ValueError as e:
                raise ValueError(f"width {i}: {e}") from None
        return params

    def size(self) -> int | None:
        widths = len(range(self.width_low, self.width_high + 1, self.width_step))
        depths = range(self.depth_low, self.depth_high + 1)
        return sum(widths if self.same_width and d else widths**d for d in depths)

    def options(self) -> list[Option] | None:
        widths = list(range(self.width_low, self.width_high + 1, self.width_step))
        result: list[Option] = []
        for depth in range(self.depth_low, self.depth_high + 1):
            names = self._width_names(depth)
            combos = (
                [[w] * depth for w in widths]
                if self.same_width
                else [list(c) for c in itertools.product(widths, repeat=depth)]
            )
            for combo in combos:
                params: dict[str, Any] = {f"{self.name}.depth": depth}
                params.update(zip(names, combo, strict=True))
                result.append((params, combo))
        return result


class TooManyPoints(ValueError):
    """A grid of more points than a study may queue."""

    def __init__(self, most: int) -> None:
        self.most = most
        super().__init__(f"more than {most:,} points")


def point_key(params: Mapping[str, Any]) -> str:
    """One text for equal points of Optuna params, whatever their keys' order."""
    return json.dumps(params, sort_keys=True)


def _either(values: tuple[Any, ...]) -> str:
    return " or ".join(str(v) for v in values)


def _active(param: Param, values: Mapping[str, Any]) -> bool:
    return all(values.get(k, _MISSING) in allowed for k, allowed in param.when.items())


_MISSING = object()


@dataclass(frozen=True)
class SearchSpace:
    """An ordered set of parameters; conditions refer to parameters listed earlier."""

    params: tuple[Param, ...]

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Suggests every active parameter; returns ``{config field: value}``."""
        values: dict[str, Any] = {}
        by_name: dict[str, Any] = {}
        for param in self.params:
            if _active(param, by_name):
                by_name[param.name] = values[param.target] = param.suggest(trial)
        return values

    def is_finite(self) -> bool:
        """Whether every parameter has a finite list of values (needed for a grid)."""
        return all(p.finite for p in self.params)

    def fix(self, point: Mapping[str, Any]) -> dict[str, Any]:
        """The Optuna params that fix a known point; its parameters left out are drawn.

        Args:
            point: Config values by parameter name, e.g. ``{"lr": 0.01, "hidden_layers":
                [128]}``: some or all of the space's parameters.

        Raises:
            Problems: Each parameter the space lacks, each value it cannot take, each
                conditional parameter whose condition the point does not meet.
        """
        by_name = {p.name: p for p in self.params}
        found = [
            (key, f"not a parameter of space{did_you_mean(str(key), by_name)}")
            for key in point
            if key not in by_name
        ]
        if not point:
            found.append(("", "empty: give at least one parameter of space"))
        params: dict[str, Any] = {}
        for param in self.params:
            if param.name not in point:
                continue
            for key, allowed in param.when.items():
                if key not in point or point[key] not in allowed:
                    given = (
                        f"; this point's is {shorten(point[key])}"
                        if key in point
                        else f": give {key} too"
                    )
                    found.append(
                        (param.name, f"exists only when {key} is {_either(allowed)}{given}")
                    )
            try:
                params.update(param.fix(point[param.name]))
            except ValueError as e:
                found.append((param.name, str(e)))
        if found:
            raise Problems(found)
        return params

    def grid_points(self, most: int = MAX_POINTS) -> list[dict[str, Any]]:
        """Every combination of values, as Optuna params, inactive parameters left out.

        Args:
            most: The most points to make; a grid of more stops as it passes them.

        Raises:
            TooManyPoints: The grid has more than ``most`` points.
        """
        points: list[tuple[dict[str, Any], dict[str, Any]]] = [({}, {})]
        for param in self.params:
            options = param.options()
            assert options is not None, f"{param.name} has no finite values"
            grown = []
            for optuna_params, by_name in points:
                if not _active(param, by_name):
                    grown.append((optuna_params, by_name))
                    continue
                if len(grown) + len(options) > most:
                    raise TooManyPoints(most)
                for extra, value in options:
                    grown.append(({**optuna_params, **extra}, {**by_name, param.name: value}))
            points = grown
        unique = {point_key(p): p for p, _ in points}
        return list(unique.values())

    def one_factor_points(
        self, baseline: Mapping[str, Any]
    ) -> list[tuple[str, Any, dict[str, Any]]]:
        """The baseline, then each listed value of each parameter with the rest at baseline.

        Args:
            baseline: Config values of the baseline (every parameter's target must be there).

        Returns:
            ``(factor, value, optuna_params)`` per point; the baseline's factor is
            ``"baseline"``. Values equal to the baseline's are not repeated.
        """

        def params_for(overrides: Mapping[str, Any]) -> dict[str, Any]:
            return {
                p.name: encode_choice(overrides.get(p.target, baseline[p.target]))
                for p in self.params
            }

        points: list[tuple[str, Any, dict[str, Any]]] = [("baseline", None, params_for({}))]
        for param in self.params:
            for _, value in param.options() or []:
                if value != baseline[param.target]:
                    points.append((param.name, value, params_for({param.target: value})))
        return points
