"""Safe, bounded YAML reading: every study file, config file and ``--set`` value goes
through here. Plain data only (nothing constructed or evaluated), within bounds of size,
nesting and alias expansion. No pydantic or optuna: the reading commands find a study
file's name and storage without loading either.
"""

from __future__ import annotations

import os
import re
from typing import Any

import yaml

from hpsearch.errors import ConfigError
from hpsearch.errors import shorten


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


class DuplicateKeyError(yaml.YAMLError):
    """A mapping that gives one key twice: PyYAML keeps the last, so the first would be
    silently ignored (a second ``fixed:`` block, a ``lr:`` written twice)."""

    def __init__(self, key: str, line: int, first: int) -> None:
        super().__init__(f"line {line}: key {shorten(key)} is given twice (first on line {first})")


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
            _check_keys(node)
            stack.extend((child, depth + 1) for pair in node.value for child in pair)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((child, depth + 1) for child in node.value)


def _check_keys(node: yaml.MappingNode) -> None:
    seen: dict[tuple[str, str], int] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
            continue  # a merge key (<<) may repeat; a complex key is left to the schema
        line = key.start_mark.line + 1
        if (key.tag, key.value) in seen:
            raise DuplicateKeyError(key.value, line, seen[key.tag, key.value])
        seen[key.tag, key.value] = line


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
    except DuplicateKeyError as e:
        raise ConfigError([str(e)], path) from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError([f"YAML syntax error at {where}{problem}"], path) from e


EXTENDS = "extends"
MAX_EXTENDS = 8  # files in one chain of extends: a longer one is a mistake
# Keys whose own keys an extending file gives one by one (``null`` removes one); every
# other key it gives replaces the base's whole: a sampler's options belong to its name, an
# objective's direction to its metric.
MERGED_KEYS = ("fixed", "space", "budget")


def read_study_yaml(path: str, bases: list[str] | None = None) -> Any:
    """Reads a study file (see :func:`read_yaml`), with the file that its ``extends:``
    names (a path from its own folder) under it: each top-level key replaces the base
    file's, except those of :data:`MERGED_KEYS`, which are merged a key at a time. The
    extending file names its own study (``name:``): it is another study.

    Args:
        path: The study file.
        bases: Given, it is extended with the files read under ``path``, nearest first.

    Raises:
        ConfigError: A file is missing or not valid YAML; ``extends`` is no path, names a
            file in its own chain, or is chained more than :data:`MAX_EXTENDS` deep; the
            extending file gives no name of its own.
    """
    return _extended(path, [], [] if bases is None else bases)


def _extended(path: str, chain: list[str], bases: list[str]) -> Any:
    doc = read_yaml(path)
    if not isinstance(doc, dict) or EXTENDS not in doc:
        return doc
    base = doc.pop(EXTENDS)
    if not isinstance(base, str) or not base:
        raise ConfigError([f"{EXTENDS}: expected a study file's path, got {shorten(base)}"], path)
    target = os.path.join(os.path.dirname(path), base)
    here = [*chain, os.path.realpath(path)]
    if os.path.realpath(target) in here:
        raise ConfigError([f"{EXTENDS}: {base} extends this file again (a circle)"], path)
    if len(here) >= MAX_EXTENDS:
        raise ConfigError([f"{EXTENDS}: more than {MAX_EXTENDS} files in a chain"], path)
    if "name" not in doc:
        raise ConfigError(
            [f"name: required: a file that extends {base} is a study of its own"], path
        )
    bases.append(target)
    under = _extended(target, here, bases)
    if not isinstance(under, dict):
        raise ConfigError([f"{EXTENDS}: {base} is no study file (not a mapping)"], path)
    return merge_study(under, doc)


def merge_study(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` given on top of ``base`` as ``extends:`` gives it (see
    :func:`read_study_yaml`)."""
    merged = dict(base)
    for key, value in over.items():
        below = merged.get(key)
        if key in MERGED_KEYS and isinstance(value, dict) and isinstance(below, dict):
            value = {k: v for k, v in {**below, **value}.items() if v is not None}
        merged[key] = value
    return merged


def study_location(path: str) -> tuple[str, str | None] | None:
    """A study file's ``name`` and ``storage``, read without validating the rest (what the
    reading commands need), or ``None`` when they are not plain strings: the caller then
    validates the whole file for the message.

    Raises:
        ConfigError: The file (or one it extends) is unreadable or not valid YAML.
    """
    doc = read_study_yaml(path)
    if not isinstance(doc, dict):
        return None
    name, storage = doc.get("name"), doc.get("storage")
    if not isinstance(name, str) or not isinstance(storage, str | None):
        return None
    return name, storage
