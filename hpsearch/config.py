"""The trainer's configuration: one frozen dataclass, and its parsing and validation.

Every hyperparameter is a plain value (a number, a name or a tuple of them), never code, so
that a search space can set it and a batched trainer could later hold it as a tensor.
"""

from __future__ import annotations

from collections.abc import Mapping
import dataclasses
from dataclasses import dataclass
import difflib
import re
import types
import typing
from typing import Any

import yaml

from hpsearch.data import DATASETS
from hpsearch.data import PREPROCESSING
from hpsearch.errors import ConfigError
from hpsearch.errors import MAX_QUOTE
from hpsearch.errors import shorten
from hpsearch.model import ACTIVATIONS
from hpsearch.optim import LOSS_ALIASES
from hpsearch.optim import LOSSES
from hpsearch.optim import OPTIMIZERS
from hpsearch.optim import SCHEDULERS


class YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``1e-4`` as a float as YAML 1.2 does (1.1 reads a string)."""


YamlLoader.yaml_implicit_resolvers = {
    k: [r for r in v if r[0] != "tag:yaml.org,2002:float"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


MAX_YAML_CHARS = 1_000_000  # a study file is a few KB: more is a mistake, or an attack
MAX_YAML_VALUES = 100_000  # values after expanding aliases (the "billion laughs" file)
MAX_YAML_DEPTH = 50  # nesting levels; a study file needs about 5


class YamlLimitError(yaml.YAMLError):
    """A YAML document beyond the size, alias-expansion or nesting bounds."""


def load_yaml(text: str) -> Any:
    """Parses YAML text safely: plain data only, nothing constructed or evaluated, and within
    bounds of size, nesting and alias expansion, checked before anything is built.

    Raises:
        yaml.YAMLError: Invalid YAML, or a :class:`YamlLimitError`.
    """
    if len(text) > MAX_YAML_CHARS:
        raise YamlLimitError(f"larger than {MAX_YAML_CHARS:,} characters")
    _check_depth(text)
    loader = YamlLoader(text)  # a SafeLoader subclass: safe
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise YamlLimitError(f"nested deeper than {MAX_YAML_DEPTH} levels") from None
        if node is None:
            return None
        _check_bounds(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


_OPEN = (
    yaml.FlowSequenceStartToken,
    yaml.FlowMappingStartToken,
    yaml.BlockSequenceStartToken,
    yaml.BlockMappingStartToken,
)
_CLOSE = (yaml.FlowSequenceEndToken, yaml.FlowMappingEndToken, yaml.BlockEndToken)


def _check_depth(text: str) -> None:
    # PyYAML's scanner slows down with every open bracket (10,000 of them take seconds) and
    # its composer recurses: stop at the first token past the bound, before either happens.
    depth = 0
    for token in yaml.scan(text, Loader=YamlLoader):
        if isinstance(token, _OPEN):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise YamlLimitError(f"nested deeper than {MAX_YAML_DEPTH} levels")
        elif isinstance(token, _CLOSE):
            depth -= 1


def _check_bounds(root: yaml.Node) -> None:
    # Walks the composed graph, where an alias is a second reference to its anchor's node, so
    # the count is what construction would build. Iterative: no recursion to exhaust.
    stack: list[tuple[yaml.Node, int]] = [(root, 1)]
    count = 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_YAML_VALUES:
            raise YamlLimitError(f"more than {MAX_YAML_VALUES:,} values once aliases are expanded")
        if depth > MAX_YAML_DEPTH:
            raise YamlLimitError(f"nested deeper than {MAX_YAML_DEPTH} levels")
        if isinstance(node, yaml.MappingNode):
            stack.extend((child, depth + 1) for pair in node.value for child in pair)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((child, depth + 1) for child in node.value)


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run depends on; defaults are the classic PyTorch MNIST setup."""

    # data
    dataset: str = "digits"  # offline default; mnist / fashion-mnist are read from data_dir
    data_dir: str | None = None  # None: $HPSEARCH_DATA_DIR, else ./data
    val_fraction: float = 0.1  # carved from the training set (fixed seed): what a search optimizes
    train_subset: int | None = None  # first N training images only (quick checks on MNIST)
    preprocess: str = "standardize"  # raw | scale (to [0,1]) | standardize (train mean/std)
    # architecture
    hidden_layers: tuple[int, ...] = (128,)  # widths; () is a linear model, (128,) is 784-128-10
    activation: str | tuple[str, ...] = "relu"  # one for all layers, or one per layer
    dropout: float | tuple[float, ...] = 0.0  # one for all layers, or one per layer
    batch_norm: bool = False  # BatchNorm1d after each hidden linear layer
    # loss and regularization
    loss: str = "cross_entropy"  # = NLL over log-softmax; mse / bce use one-hot targets
    label_smoothing: float = 0.0  # mixes the one-hot target with uniform, for every loss
    weight_decay: float = 0.0  # L2, through the optimizer
    l1: float = 0.0  # coefficient of the sum of |weights| added to the loss
    # optimization
    optimizer: str = "adadelta"  # the classic example's choice
    lr: float = 1.0  # Adadelta's customary rate; ~1e-3 for adam
    momentum: float = 0.0  # sgd and rmsprop only
    nesterov: bool = False  # sgd only; needs momentum > 0
    scheduler: str = "step"  # none | step | cosine | onecycle
    step_size: int = 1  # epochs between StepLR decays
    gamma: float = 0.7  # StepLR decay factor, as in the classic example
    epochs: int = 14  # the classic example's count
    batch_size: int = 64
    eval_batch_size: int = 1000  # evaluation only: larger is faster and changes nothing
    seed: int = 1  # initialisation, shuffling and dropout
    device: str = "auto"  # auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON/YAML-friendly values (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(self).items()}

    def activations(self) -> tuple[str, ...]:
        """The activation of each hidden layer."""
        return _per_layer(self.activation, len(self.hidden_layers))

    def dropouts(self) -> tuple[float, ...]:
        """The dropout probability of each hidden layer."""
        return _per_layer(self.dropout, len(self.hidden_layers))


def _per_layer(value: Any, n: int) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, tuple) else (value,) * n


def _given(value: Any) -> tuple[Any, ...]:
    """The values a per-layer setting was given: one for all layers, or one per layer."""
    return tuple(value) if isinstance(value, tuple) else (value,)


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_HINTS = typing.get_type_hints(TrainConfig)


def make_config(
    values: Mapping[str, Any],
    base: TrainConfig | None = None,
    source: str | None = None,
    cross_field: bool = True,
) -> TrainConfig:
    """Builds a validated config from ``values`` laid over ``base`` (default: the defaults).

    Args:
        values: Field names and values, as parsed from YAML or ``--set``.
        base: The config whose values are kept where ``values`` says nothing.
        source: Where the values came from, named in error messages.
        cross_field: Also check rules that tie fields together (``nesterov`` needs
            ``momentum``); a search space checks one parameter at a time without them.

    Raises:
        ConfigError: Listing every unknown key, wrong type and out-of-range value at once.
    """
    problems: list[str] = []
    merged = (base or TrainConfig()).to_dict()
    for key, value in values.items():
        if key not in FIELDS:
            name = str(key) if len(str(key)) <= MAX_QUOTE else shorten(key)
            problems.append(f"{name}: unknown setting{_did_you_mean(name, FIELDS)}")
            continue
        try:
            merged[key] = _coerce(value, _HINTS[key])
        except TypeError as e:
            problems.append(f"{key}: expected {e}, got {shorten(value)}")
    if not problems:
        merged = {k: tuple(v) if isinstance(v, list) else v for k, v in merged.items()}
        merged["loss"] = LOSS_ALIASES.get(merged["loss"], merged["loss"])
        problems = check(TrainConfig(**merged), cross_field)
    if problems:
        raise ConfigError(problems, source)
    return TrainConfig(**merged)


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parses ``key=value`` where value is YAML (``[256,128]``, ``3e-4``, ``adam``).

    Raises:
        ConfigError: The text has no ``=`` or the value is not valid YAML.
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError([f"--set {shorten(text)}: expected KEY=VALUE, e.g. --set lr=0.01"])
    try:
        return key.strip(), load_yaml(raw)
    except yaml.YAMLError as e:
        raise ConfigError([f"{key.strip()}: value {shorten(raw)} is not valid YAML ({e})"]) from e


def _did_you_mean(key: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(choices), n=1)
    allowed = "" if close else f"; allowed: {', '.join(choices)}"
    return f" (did you mean {close[0]!r}?)" if close else allowed


def _coerce(value: Any, hint: Any) -> Any:
    """Checks ``value`` against a type hint, converting ints to floats and lists to tuples.

    Raises:
        TypeError: With a description of the expected type.
    """
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        for option in typing.get_args(hint):
            try:
                return _coerce(value, option)
            except TypeError:
                pass
        raise TypeError(" or ".join(_describe(o) for o in typing.get_args(hint)))
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, list | tuple):
            raise TypeError(_describe(hint))
        return tuple(_coerce(v, item) for v in value)
    if hint is type(None):
        if value is None:
            return None
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise TypeError(_describe(hint))


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        return "a list of " + {int: "integers", float: "numbers"}.get(item, "strings")
    return {type(None): "null", int: "an integer", float: "a number", bool: "true/false"}.get(
        hint, "a string"
    )


def _choice(problems: list[str], key: str, value: str, allowed: typing.Iterable[str]) -> None:
    if value not in allowed:
        problems.append(f"{key}: unknown {shorten(value)}; allowed: {', '.join(allowed)}")


def check(c: TrainConfig, cross_field: bool = True) -> list[str]:
    """Returns one message per semantic problem of a well-typed config (empty when valid)."""
    p: list[str] = []
    _choice(p, "dataset", c.dataset, DATASETS)
    _choice(p, "preprocess", c.preprocess, PREPROCESSING)
    _choice(p, "loss", c.loss, [*LOSSES, *LOSS_ALIASES])
    _choice(p, "optimizer", c.optimizer, OPTIMIZERS)
    _choice(p, "scheduler", c.scheduler, SCHEDULERS)
    for act in _given(c.activation):  # checked even when there is no hidden layer
        _choice(p, "activation", act, ACTIVATIONS)
    n = len(c.hidden_layers)
    for key in ("activation", "dropout"):
        value = getattr(c, key)
        if cross_field and isinstance(value, tuple) and len(value) != n:
            p.append(f"{key}: {len(value)} values for {n} hidden layers; give one or {n}")
    if any(w <= 0 for w in c.hidden_layers):
        p.append(f"hidden_layers: widths must be positive integers, got {list(c.hidden_layers)}")
    if any(not 0.0 <= d < 1.0 for d in _given(c.dropout)):
        p.append("dropout: must be in [0, 1)")
    rules = [
        ("val_fraction", 0.0 <= c.val_fraction < 1.0, "must be in [0, 1)"),
        ("train_subset", c.train_subset is None or c.train_subset > 1, "must be at least 2"),
        ("label_smoothing", 0.0 <= c.label_smoothing < 1.0, "must be in [0, 1)"),
        ("weight_decay", c.weight_decay >= 0.0, "must be >= 0"),
        ("l1", c.l1 >= 0.0, "must be >= 0"),
        ("lr", c.lr > 0.0, "must be > 0"),
        ("momentum", 0.0 <= c.momentum < 1.0, "must be in [0, 1)"),
        ("nesterov", not (cross_field and c.nesterov) or c.momentum > 0.0, "needs momentum > 0"),
        ("step_size", c.step_size >= 1, "must be >= 1"),
        ("gamma", 0.0 < c.gamma <= 1.0, "must be in (0, 1]"),
        ("epochs", c.epochs >= 1, "must be >= 1"),
        ("batch_size", c.batch_size >= 1, "must be >= 1"),
        ("eval_batch_size", c.eval_batch_size >= 1, "must be >= 1"),
        ("device", _valid_device(c.device), "allowed: auto, cpu, cuda, cuda:N, mps"),
    ]
    p += [f"{key}: {msg}, got {shorten(getattr(c, key))}" for key, ok, msg in rules if not ok]
    return p


def _valid_device(device: str) -> bool:
    kind, _, index = device.partition(":")
    return kind in ("auto", "cpu", "mps", "cuda") and (not index or index.isdigit())


def read_yaml(path: str) -> Any:
    """Reads a YAML file safely (no object construction, nothing evaluated).

    Raises:
        ConfigError: The file is missing or not valid YAML; the message gives the line.
    """
    try:
        with open(path, encoding="utf-8") as f:
            return load_yaml(f.read(MAX_YAML_CHARS + 1))
    except OSError as e:
        raise ConfigError([f"cannot read file: {e.strerror}"], path) from e
    except UnicodeDecodeError as e:
        raise ConfigError([f"not UTF-8 text (byte {e.start})"], path) from e
    except YamlLimitError as e:
        raise ConfigError([f"YAML document {e}"], path) from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError([f"YAML syntax error at {where}{problem}"], path) from e


def load_config_file(path: str, base: TrainConfig | None = None) -> TrainConfig:
    """Reads a YAML mapping of :class:`TrainConfig` fields (what ``hpsearch best`` writes).

    Raises:
        ConfigError: The file is unreadable, not a mapping, or has invalid settings.
    """
    values = read_yaml(path)
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(["expected a mapping of config fields at the top level"], path)
    # `hpsearch best` writes the config under a `config:` key beside its metrics.
    if set(values) >= {"config"} and isinstance(values["config"], dict):
        values = values["config"]
    return make_config(values, base, source=path)
