"""Pydantic's validation errors as hpsearch's one-line problems.

The study-file and trainer-config schemas are pydantic models (:mod:`hpsearch.spec.studyfile`,
:mod:`hpsearch.spec.config`); pydantic finds every problem at once. This module words each as
``key.path: what is wrong (what is allowed)``, the way a person reading a YAML file needs it:
the path in the file (no pydantic union labels), the value quoted and shortened, the allowed
names with a did-you-mean, a range as ``[0, 1)``. It also carries the docstrings under the
models' fields into their JSON Schema (:func:`describe_fields`), which pydantic is not asked
to read as each model is defined.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from collections.abc import Mapping
import dataclasses
import inspect
import itertools
import textwrap
import types
import typing
from typing import Annotated
from typing import Any
from typing import Literal

import pydantic
from pydantic import AllowInfNan
from pydantic import Strict

from hpsearch.errors import closest
from hpsearch.errors import MAX_QUOTE
from hpsearch.errors import shorten

# Strict scalars: YAML's `"3"` is not an integer and `yes` not a number; an int is a float.
# YAML's .inf and .nan are floats too, but no setting means them: a range up to .inf
# overflows every sampler, and NaN passes every bound, since no comparison with it is true.
StrictInt = Annotated[int, Strict()]
StrictFloat = Annotated[float, Strict(), AllowInfNan(False)]
StrictBool = Annotated[bool, Strict()]
StrictStr = Annotated[str, Strict()]


class Problems(ValueError):
    """Raised by a validator for problems it finds, each ``(key path below the validated
    object, message)``; an empty path means the object itself."""

    def __init__(self, problems: Iterable[tuple[str, str]]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"{k}: {m}" if k else m for k, m in self.problems))


@dataclasses.dataclass(frozen=True)
class Wording:
    """How a model's problems read.

    Attributes:
        unknown: What an unknown key is called (``key``, ``setting``).
        rules: Per field, a message for a value out of its range, instead of one derived
            from the field's bounds.
        whole_fields: Report a problem with a list item at the field, not at the item.
        unknown_value: Per field, what follows the allowed values when a value is not one
            of them (what else the field takes).
    """

    unknown: str = "key"
    rules: Mapping[str, str] = dataclasses.field(default_factory=dict)
    whole_fields: bool = False
    unknown_value: Mapping[str, str] = dataclasses.field(default_factory=dict)


_BOUNDS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


def problems(error: pydantic.ValidationError, root: Any) -> list[str]:
    """One ``key.path: message`` line per problem pydantic found validating ``root``.

    Args:
        error: What pydantic raised.
        root: The validated type (a model, a pydantic dataclass).
    """
    lines: list[str] = []
    for e in error.errors():
        for line in (_line(e, root) or "").splitlines():
            if line not in lines:
                lines.append(line)
    return lines


def _line(e: Any, root: Any) -> str | None:
    path, hint, wording, field, field_hint = "", root, _wording(root), None, None
    loc = list(e["loc"])
    for i, part in enumerate(loc):
        tagged = _tagged_union(hint)
        if tagged is not None:
            if part not in tagged[1]:
                break
            hint = tagged[1][part]  # pydantic names the variant by its tag: not a key
            continue
        hint = _unwrap(hint)
        model_fields = _fields(hint)
        if model_fields is not None:
            wording = _wording(hint)
            if part not in model_fields:  # an unknown key, or one that is not a string
                path = _join(path, str(part))
                break
            field = str(part)
            path, hint = _join(path, field), model_fields[part]
            field_hint = hint
            continue
        if _is_union(hint) and isinstance(part, str):  # pydantic's label of a union branch
            listy = part.startswith(("tuple[", "list["))
            if _wrong_branch(listy, e, last=i == len(loc) - 1):
                return None
            hint = next(
                (
                    a
                    for a in _args(hint)
                    if (typing.get_origin(_unwrap(a)) in (tuple, list)) == listy
                ),
                hint,
            )
            continue
        origin = typing.get_origin(hint)
        if origin is dict:
            path, hint = _join(path, str(part)), typing.get_args(hint)[1]
        elif origin in (list, tuple):
            if not (wording.whole_fields and field):
                path = f"{path}[{part}]"
            hint = typing.get_args(hint)[0]
        else:
            path = _join(path, str(part))
    if wording.whole_fields and field_hint is not None and _is_type_error(e["type"]):
        hint = field_hint  # "expected a list of integers", not "expected an integer"
    message = _message(e, hint, wording, field, loc)
    return "\n".join(filter(None, (_say(path, m) for m in message.splitlines())))


def _say(path: str, message: str) -> str:
    sub, sep, rest = message.partition(": ")
    if sep and sub.startswith("."):  # a validator's problem below the validated object
        path, message = _join(path, sub[1:]), rest
    if len(path) > MAX_QUOTE:  # a key is user input too
        path = f"{path[: MAX_QUOTE - 3]}..."
    return f"{path}: {message}" if path else message


def _message(e: Any, hint: Any, wording: Wording, field: str | None, loc: list[Any]) -> str:
    kind, value = e["type"], e.get("input")
    ctx = e.get("ctx") or {}
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        keys = list(_fields(_unwrap(hint)) or ())
        close = closest(str(loc[-1]), keys)
        hint_text = f"did you mean {close!r}?" if close else f"allowed: {', '.join(keys)}"
        return f"unknown {wording.unknown} ({hint_text})"
    if kind == "invalid_key":
        return f"key {shorten(value)} is not a string"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag, tags = _tagged_union(hint) or ("type", {})
        where = f".{tag}: "
        if kind == "union_tag_not_found":
            return f"{where}required (allowed: {', '.join(tags)})"
        got = ctx.get("tag")
        return f"{where}unknown {shorten(got)}{did_you_mean(str(got), tags)}"
    if kind == "literal_error":
        more = wording.unknown_value.get(field or "", "")
        return f"unknown {shorten(value)}{did_you_mean(str(value), _literals(hint))}{more}"
    if kind in ("value_error", "assertion_error") and isinstance(ctx.get("error"), Problems):
        found = ctx["error"].problems
        return "\n".join(f".{k}: {m}" if k else m for k, m in found)  # split by the caller
    if kind in _BOUNDS or kind == "string_pattern_mismatch":
        rule = wording.rules.get(field or "") or _rule(hint, ctx)
        return f"{rule}, got {shorten(value)}"
    if kind == "finite_number":
        return f"must be a finite number, got {shorten(value)}"
    if kind == "too_short":
        return "expected a non-empty list"
    if kind == "missing":
        return "required"
    if _is_type_error(kind):
        return f"expected {_describe(hint)}, got {shorten(value)}"
    return str(e["msg"])


def _is_type_error(kind: str) -> bool:
    return kind.endswith(("_type", "_parsing")) or kind == "is_instance_of"


def did_you_mean(value: str, allowed: Iterable[str]) -> str:
    """`` (did you mean 'x'?); allowed: a, b`` for a value not among ``allowed``."""
    choices = [str(a) for a in allowed]
    close = closest(value, choices)
    hint = f" (did you mean {close!r}?)" if close else ""
    return f"{hint}; allowed: {', '.join(choices)}" if choices else hint


def _rule(hint: Any, ctx: Mapping[str, Any]) -> str:
    bounds = _bounds(hint) or {k: v for k, v in ctx.items() if k in ("gt", "ge", "lt", "le")}
    if "pattern" in ctx:
        return f"must match {ctx['pattern']}"
    low = (
        ("[", bounds["ge"]) if "ge" in bounds else ("(", bounds["gt"]) if "gt" in bounds else None
    )
    high = (
        ("]", bounds["le"]) if "le" in bounds else (")", bounds["lt"]) if "lt" in bounds else None
    )
    if low and high:
        return f"must be in {low[0]}{_number(low[1])}, {_number(high[1])}{high[0]}"
    if low:
        return f"must be {'>=' if low[0] == '[' else '>'} {_number(low[1])}"
    if high:
        return f"must be {'<=' if high[0] == ']' else '<'} {_number(high[1])}"
    return "out of range"


def _number(bound: float) -> str:
    """A bound as a user wrote it: an integer whole (a seed's 4294967295, not 4.29497e+09)."""
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


def _bounds(hint: Any) -> dict[str, float]:
    found: dict[str, float] = {}
    for item in _metadata(hint):
        for attr in ("gt", "ge", "lt", "le"):
            if (v := getattr(item, attr, None)) is not None:
                found[attr] = v
    return found


def _metadata(hint: Any) -> list[Any]:
    if isinstance(hint, pydantic.fields.FieldInfo):
        return [*hint.metadata, *_metadata(hint.annotation)]
    if typing.get_origin(hint) is Annotated:
        base, *meta = typing.get_args(hint)
        flat = [m for item in meta for m in getattr(item, "metadata", [item])]
        return [*flat, *_metadata(base)]
    if _is_union(hint):  # a scalar's bounds, not its list form's
        return _metadata(next(a for a in _args(hint) if typing.get_origin(a) is not tuple))
    return []


def _describe(hint: Any) -> str:
    hint = _unwrap(hint)
    if _is_union(hint):
        return " or ".join(dict.fromkeys(_describe(a) for a in _args(hint)))
    origin = typing.get_origin(hint)
    if origin in (tuple, list):
        item = _describe(typing.get_args(hint)[0])
        plural = {"an integer": "integers", "a number": "numbers", "true/false": "true/false"}
        return f"a list of {plural.get(item, 'strings' if item == 'a string' else 'values')}"
    if origin is dict or _fields(hint) is not None:
        return "a mapping"
    if origin is Literal:
        return "a string"
    names = {type(None): "null", int: "an integer", float: "a number", bool: "true/false"}
    return names.get(hint, "a string" if hint is str else "a value")


def _wrong_branch(listy: bool, e: Any, last: bool) -> bool:
    """Whether a union branch's error is beside the point: the scalar branch's complaint about
    a list, or the list branch's complaint that a scalar is not a list."""
    if listy:
        return last and e["type"] in ("tuple_type", "list_type")
    return isinstance(e.get("input"), list | tuple)


def _unwrap(hint: Any) -> Any:
    """The type itself: without ``Annotated`` metadata and without ``| None``."""
    if isinstance(hint, pydantic.fields.FieldInfo):
        hint = hint.annotation
    while typing.get_origin(hint) is Annotated:
        hint = typing.get_args(hint)[0]
    if _is_union(hint):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
    return hint


def _args(hint: Any) -> list[Any]:
    return [a for a in typing.get_args(hint) if a is not type(None)]


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (types.UnionType, typing.Union)


def _fields(hint: Any) -> dict[str, Any] | None:
    """A model's or pydantic dataclass's fields by name, ``None`` for other types."""
    fields = getattr(hint, "__pydantic_fields__", None)
    if not isinstance(hint, type) or fields is None:
        return None
    return dict(fields)


def _wording(hint: Any) -> Wording:
    return getattr(_unwrap(hint), "__wording__", None) or Wording()


def _tagged_union(hint: Any) -> tuple[str, dict[str, Any]] | None:
    """A discriminated union's tag field and its variants by tag, ``None`` for other types."""
    tag: Any = None
    if isinstance(hint, pydantic.fields.FieldInfo):
        meta = [m.discriminator for m in hint.metadata if isinstance(m, pydantic.Discriminator)]
        tag, hint = hint.discriminator or next(iter(meta), None), hint.annotation
    if _is_union(hint) and len(_args(hint)) == 1:  # X | None
        hint = _args(hint)[0]
    while typing.get_origin(hint) is Annotated:
        hint, *meta = typing.get_args(hint)
        tag = next((d for m in meta if (d := getattr(m, "discriminator", None))), tag)
    if callable(tag) and _is_union(hint):  # variants named by pydantic.Tag, chosen by code
        return "", {_variant_tag(v): v for v in _args(hint)}
    if not isinstance(tag, str) or not _is_union(hint):
        return None
    variants = {}
    for variant in _args(hint):
        fields = _fields(_unwrap(variant)) or {}
        for name in _literals(fields.get(tag)):
            variants[name] = variant
    return tag, variants


def _variant_tag(variant: Any) -> str:
    meta = typing.get_args(variant)[1:] if typing.get_origin(variant) is Annotated else ()
    return next((str(m.tag) for m in meta if isinstance(m, pydantic.Tag)), "")


def _literals(hint: Any) -> tuple[str, ...]:
    hint = _unwrap(hint)
    if _is_union(hint):
        return tuple(x for a in _args(hint) for x in _literals(a))
    return typing.get_args(hint) if typing.get_origin(hint) is Literal else ()


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def attribute_docstrings(cls: type) -> dict[str, str]:
    """The docstring written under each annotated attribute of a class and of its bases.

    What pydantic's ``use_attribute_docstrings`` reads when a model is defined: read here only
    when a JSON Schema is asked for, because reading the source costs every command that
    validates a file 35 ms (a seventh of refusing a bad one).
    """
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not klass.__module__.startswith("hpsearch."):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0]
        assert isinstance(body, ast.ClassDef)
        for stmt, after in itertools.pairwise(body.body):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[stmt.target.id] = inspect.cleandoc(after.value.value)
    return docs


def describe_fields(schema: dict[str, Any], classes: Mapping[str, type]) -> dict[str, Any]:
    """A JSON Schema with each property of the named classes described by its attribute
    docstring, where no ``description`` was given (as ``use_attribute_docstrings`` would).

    Args:
        schema: A model's JSON Schema: its own properties and its ``$defs``.
        classes: The classes to describe, by their ``$defs`` name (the root's by ``""``).
    """
    for name, cls in classes.items():
        block = schema if name == "" else schema.get("$defs", {}).get(name)
        properties = (block or {}).get("properties", {})
        for field, doc in attribute_docstrings(cls).items():
            if field in properties:
                # keys in pydantic's (sorted) order, so a written schema file does not churn
                described = {"description": doc, **properties[field]}
                properties[field] = dict(sorted(described.items()))
    return schema
