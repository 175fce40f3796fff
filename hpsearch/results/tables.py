"""Rows as a person reads them: short column names, 4 significant digits, tables that fit
120 columns, and the same rows as CSV or JSON at full precision. The command line prints
every table through :func:`format_rows` or :func:`fit_table`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from collections.abc import Iterator
import csv
import fnmatch
import io
import json
import math
import textwrap
from typing import Any

from hpsearch.errors import ConfigError
from hpsearch.errors import shorten


def select_columns(rows: list[dict[str, Any]], columns: str) -> list[dict[str, Any]]:
    """Rows cut to ``columns`` (comma-separated), in that order.

    Raises:
        ConfigError: A column that no row has.
    """
    wanted = [c.strip() for c in columns.split(",") if c.strip()]
    known = columns_of(rows)
    resolved = {c: resolve_column(c, known) for c in wanted}  # once, not once per row
    unknown = [c for c, full in resolved.items() if full is None and rows]
    if unknown:
        names = ", ".join(map(shorten, unknown))
        raise ConfigError([f"--columns: no column {names}; columns: {', '.join(known)}"])
    return [{c: r.get(resolved[c] or c) for c in wanted} for r in rows]


TABLE_WIDTH = 120  # characters the default ``trials`` table fits in

# How tables and plot axes shorten long names (always the same way, listed under a table).
ABBREVIATIONS = {
    "activation": "act",
    "optimizer": "optim",
    "weight_decay": "wd",
    "label_smoothing": "smoothing",
    "test_accuracy": "test_acc",
    "test_balanced_accuracy": "test_bal_acc",
    "train_seconds": "train_s",
    "param_count": "n_params",
}

# The default table's columns in the order they are given room; the rest are listed below it.
_PRIORITY = (
    "number",
    "state",
    "value",
    "value_*",
    "param.*",
    "test_balanced_accuracy",
    "test_accuracy",
    "test_r2",
    "train_seconds",
)
_FLEXIBLE = "fail_reason"  # cut to the width left, after the columns above
_MIN_FLEXIBLE = 16


def short_name(name: str) -> str:
    """A column's or parameter's name as tables and plot axes show it: no ``param.`` or
    other dotted prefix (``param.hidden_layers.width_1`` is ``width_1``), and the long
    trainer settings abbreviated as :data:`ABBREVIATIONS` says."""
    last = name.rsplit(".", 1)[-1]
    return ABBREVIATIONS.get(last, last)


def short_names(columns: list[str]) -> dict[str, str]:
    """:func:`short_name` of each column, or its full name where two would collide."""
    counts = Counter(short_name(c) for c in columns)
    return {c: short_name(c) if counts[short_name(c)] == 1 else c for c in columns}


def resolve_column(name: str, columns: list[str]) -> str | None:
    """The column ``name`` stands for: itself, the parameter of that name (``optimizer``
    for ``param.optimizer``), or the column it is the short name of."""
    for column in (name, f"param.{name}"):
        if column in columns:
            return column
    full = [c for c, short in short_names(columns).items() if short == name]
    return full[0] if len(full) == 1 else None


def fit_table(rows: list[dict[str, Any]], width: int = TABLE_WIDTH) -> str:
    """``rows`` as a table at most ``width`` characters wide: the number, state and values,
    then the params, then metrics while they fit, a failure reason cut to the room left;
    short column names (:func:`short_names`), and a note of what was left out."""
    present = [c for c in columns_of(rows) if any(r.get(c) not in (None, "") for r in rows)]
    names = short_names(present)
    ordered = [c for pattern in _PRIORITY for c in present if fnmatch.fnmatch(c, pattern)]
    chosen: list[str] = []
    used = -2
    for column in ordered:
        need = max([len(names[column])] + [len(_cell(r.get(column))) for r in rows]) + 2
        if used + need > width:
            break
        chosen.append(column)
        used += need
    room = width - used - 2
    cut = _FLEXIBLE in present and room >= _MIN_FLEXIBLE
    if cut:
        chosen.append(_FLEXIBLE)
    table = [
        {names[c]: _cut(_cell(r.get(c)), room) if c == _FLEXIBLE else r.get(c) for c in chosen}
        for r in rows
    ]
    notes = []
    hidden = [c for c in present if c not in chosen]
    if hidden:
        notes.append(f"not shown: {', '.join(hidden)} (--columns, or --format csv for all)")
    abbreviated = sorted(
        f"{names[c]}={last}" for c in chosen if names[c] != (last := c.rsplit(".", 1)[-1])
    )
    if abbreviated:
        notes.append(f"short names: {', '.join(abbreviated)}")
    # a long list of columns left out wraps too: every line fits the width
    wrapped = [
        textwrap.fill(n, width, subsequent_indent="  ", break_on_hyphens=False) for n in notes
    ]
    return "\n".join([format_rows(table, "table"), *wrapped])


def _cut(text: str, room: int) -> str:
    return text if len(text) <= room else text[: room - 1] + "…"


def significant(value: Any, digits: int = 4) -> Any:
    """``value`` with its floats, at any depth, rounded to ``digits`` significant digits (as
    tables and status lines show them; csv and json keep full precision)."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}") if math.isfinite(value) else value
    if isinstance(value, dict):
        return {k: significant(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [significant(v, digits) for v in value]
    return value


def sort_key(value: Any) -> tuple[bool, Any]:
    # None last; numbers and strings apart (a column holds one kind, a categorical may not)
    if value is None:
        return (True, ("", 0.0))
    return (False, ("", float(value)) if isinstance(value, int | float) else (str(value), 0.0))


def columns_of(rows: list[dict[str, Any]]) -> list[str]:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return list(columns)


def plain(text: str) -> str:
    """Text from a database, quoted if it holds control characters (a name with a newline
    must not forge a line of output)."""
    return text if text.isprintable() else repr(text)


def _cell(value: Any, exact: bool = False) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if exact else f"{value:.4g}"  # csv: full precision
    if not exact and isinstance(value, list) and all(isinstance(v, float) for v in value):
        return "[" + ", ".join(_cell(v) for v in value) + "]"  # a study's best values
    return plain(value if isinstance(value, str) else json.dumps(value))


def format_rows(rows: list[dict[str, Any]] | dict[str, Any], fmt: str) -> str:
    """Renders rows (or one record) as ``table``, ``csv`` or ``json``: the one formatter of
    every command."""
    if fmt == "json":
        return json.dumps(json_safe(rows), indent=2, default=str)
    if isinstance(rows, dict):
        rows = [rows]
    columns = columns_of(rows)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows([{c: _cell(r.get(c), exact=True) for c in columns} for r in rows])
        return out.getvalue().rstrip("\n")
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def stream_rows(rows: Iterable[dict[str, Any]], columns: list[str], fmt: str) -> Iterator[str]:
    """Renders rows as ``csv`` (under ``columns``) or ``json`` a row at a time, the same text
    :func:`format_rows` gives for them whole (without its final newline)."""
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: _cell(row.get(c), exact=True) for c in columns})
            yield out.getvalue()
            out.seek(0)
            out.truncate()
        yield out.getvalue()
        return
    first = True
    for row in rows:
        try:  # most rows have no NaN or infinity: no copy of them made safe first
            text = json.dumps(row, indent=2, default=str, allow_nan=False)
        except ValueError:
            text = json.dumps(json_safe(row), indent=2, default=str)
        text = text.replace("\n", "\n  ")
        yield ("[\n  " if first else ",\n  ") + text
        first = False
    yield "[]" if first else "\n]"


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as ``null`` (JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
