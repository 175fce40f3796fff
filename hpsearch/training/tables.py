"""A user's table as training data: read (CSV/TSV, gzipped or not, Parquet, .npz), checked,
encoded.

Reading uses polars: on the 2-core development machine it loads a million-row, 100-column
CSV in 3.0 s, pandas in 3.9 s and pyarrow's reader in 7.3 s (``bench/data_load.py``), and it
reads Parquet too. Every problem is found before anything trains and said in one line naming
the file and its line (CSV/TSV, counting the header as line 1) or row and column.

What is learned from the data (each numeric column's center, scale and fill value, each text
column's categories, the class names or the target's mean and scale) is fitted on the
training split only (:func:`fit_encoding`) and saved with a model, which then reads new
rows, in any column order, with missing cells, as it read the training rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
import csv
from dataclasses import asdict
from dataclasses import dataclass
import gzip
import io
import math
import os
from pathlib import Path
import re
from typing import Any
from typing import cast
from typing import IO
from typing import TYPE_CHECKING
import zlib

import numpy as np

from hpsearch.errors import closest
from hpsearch.errors import DataError
from hpsearch.spec.choices import table_kind
from hpsearch.spec.datasource import NPZ_FEATURES

if TYPE_CHECKING:
    import polars as pl

NULLS = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"]  # a missing cell
INFER_ROWS = 10_000  # rows read to guess a column's type; a later misfit is re-read as text
MEMORY_ENV = "HPSEARCH_DATA_MEMORY"  # bytes a data set may take (default: available RAM)
# bytes in memory per byte on disk while loading (the frame, then float32 features)
MEMORY_FACTOR = {"csv": 3.0, "tsv": 3.0, "parquet": 10.0, "npz": 2.0}
REGRESSION_DISTINCT = 20  # a numeric target with more distinct values is a regression target
SEPARATORS = {"csv": ",", "tsv": "\t"}
OTHER_SEPARATORS = (";", "\t", ",", "|")  # what a header read as one column may hold
NUMERIC_SHARE = 0.5  # a text column whose cells are mostly numbers is a mixed-type column


def where(file: str, row: int) -> str:
    """How a user finds row ``row`` (0-based, of the data) of ``file``."""
    return f"line {row + 2}" if table_kind(file) in SEPARATORS else f"row {row + 1}"


# --- reading ------------------------------------------------------------------------------


def read_table(file: str, kind: str, target: str) -> pl.DataFrame:
    """Reads a table file whole; an .npz file's ``x`` array becomes columns ``x0, x1, ...``
    beside its ``target`` array.

    Raises:
        DataError: The file is missing, unreadable, larger than memory allows, or has no
            ``target`` column.
    """
    frame = read_rows(file, kind, target)
    if target not in frame.columns:
        alone = frame.columns[0] if frame.width == 1 else ""  # a header read as one name
        other = [s for s in OTHER_SEPARATORS if s in alone and s != SEPARATORS.get(kind)]
        hint = None
        if other and kind in SEPARATORS:
            wanted = "commas" if kind == "csv" else "tabs"
            hint = f" (its lines are split by {other[0]!r}: a .{kind} file's, by {wanted})"
        raise _no_column(file, frame, target, hint=hint)
    return frame


def _no_column(
    file: str, frame: pl.DataFrame, name: str, role: str = "", hint: str | None = None
) -> DataError:
    """One line for a column ``frame`` lacks: a did-you-mean (or ``hint``), and its columns."""
    if hint is None:
        close = closest(name, frame.columns)
        hint = f" (did you mean {close!r}?)" if close else ""
    shown = ", ".join(frame.columns[:12]) + (", ..." if frame.width > 12 else "")
    return DataError(f"{file}: no column {name!r}{role}{hint}; its columns: {shown}")


def drop_columns(frame: pl.DataFrame, file: str, names: Sequence[str]) -> pl.DataFrame:
    """``frame`` without the columns a data source leaves out (``dataset.drop``).

    Raises:
        DataError: A named column is not in the file (a typo would otherwise leave an ID
            column among the inputs unseen).
    """
    for name in names:
        if name not in frame.columns:
            raise _no_column(file, frame, name, " to drop")
    return frame.drop(names)


def read_rows(file: str, kind: str, target: str | None = None) -> pl.DataFrame:
    """Reads a table file's rows (new rows to predict may lack the target).

    Raises:
        DataError: The file is missing, unreadable, empty or larger than memory allows.
    """
    import polars as pl

    path = Path(file)
    if not path.is_file():
        raise DataError(f"{file}: no such file")
    check_memory(file, _unpacked_size(path), MEMORY_FACTOR[kind])
    try:
        if kind in SEPARATORS:
            frame = _read_csv(file, SEPARATORS[kind])
        elif kind == "parquet":
            frame = pl.read_parquet(file)
        else:
            frame = _read_npz(file, target)
    except DataError:
        raise
    except Exception as e:  # polars and numpy raise many kinds for a damaged file
        fault = _csv_fault(file, SEPARATORS[kind]) if kind in SEPARATORS else None
        if fault:
            raise DataError(f"{file}: {fault}") from e
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{file}: not a readable {kind} file ({first})") from e
    if frame.height == 0:
        raise DataError(f"{file}: no rows")
    return frame


def _read_csv(file: str, separator: str) -> pl.DataFrame:
    import polars as pl

    text: dict[str, Any] = {}  # columns a later row showed not to be numbers
    while True:
        try:
            return pl.read_csv(
                file,
                separator=separator,
                null_values=NULLS,
                infer_schema_length=INFER_ROWS,
                schema_overrides=text,
            )
        except pl.exceptions.ComputeError as e:
            found = re.search(r"at column '([^']*)'", str(e))
            if found is None or found.group(1) in text:
                raise
            text[found.group(1)] = pl.String  # read again; what it holds is judged later


def _csv_fault(file: str, separator: str) -> str | None:
    """Where a CSV file that polars refused goes wrong, found by reading it again (polars
    names neither the line nor the row): the first line that is not UTF-8, else, with
    Python's reader, the first record with more fields than the header (a row with fewer
    reads as missing cells) or one whose quote runs on over lines to a wrong count (an
    unclosed quote)."""
    start = 1
    try:
        if (bad := _first_line_not_utf8(file)) is not None:
            return f"line {bad}: not UTF-8 text; save the file as UTF-8"
        with io.TextIOWrapper(_open_bytes(file), encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter=separator)
            header = len(next(reader, []))
            start = reader.line_num + 1
            for fields in reader:
                count, spans = len(fields), reader.line_num > start
                if count > header or (spans and count != header):
                    cause = " (an unclosed quote?)" if spans else ""
                    return f"line {start}: {count} fields where the header has {header}{cause}"
                start = reader.line_num + 1
    except csv.Error as e:
        return f"line {start}: {e}"
    except (OSError, EOFError, zlib.error) as e:  # a damaged or cut gzip file
        return f"not a readable gzip file ({e})" if _gzipped(file) else None
    return None


def _gzipped(file: str | Path) -> bool:
    return str(file).lower().endswith(".gz")


def _open_bytes(file: str) -> IO[bytes]:
    """A file's bytes, a gzipped file's unpacked as they are read."""
    if _gzipped(file):
        return cast(IO[bytes], gzip.open(file, "rb"))
    return open(file, "rb")


def _unpacked_size(path: Path) -> int:
    """A file's size, a gzipped one's once unpacked (what its last four bytes say, modulo
    4 GiB; at least its size on disk), without unpacking it."""
    size = path.stat().st_size
    if not _gzipped(path) or size < 4:
        return size
    with open(path, "rb") as f:
        f.seek(-4, os.SEEK_END)
        return max(size, int.from_bytes(f.read(4), "little"))


def _first_line_not_utf8(file: str) -> int | None:
    with _open_bytes(file) as raw:  # no UTF-8 character holds a newline byte
        for number, line in enumerate(raw, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


def _read_npz(file: str, target: str | None) -> pl.DataFrame:
    import polars as pl

    with np.load(file, allow_pickle=False) as arrays:
        for name in (NPZ_FEATURES, *([target] if target else [])):
            if name not in arrays:
                raise DataError(
                    f"{file}: no array {name!r}; it holds {', '.join(arrays.files) or 'nothing'}"
                    f" (expected {NPZ_FEATURES} and {target or 'y'})"
                )
        x = arrays[NPZ_FEATURES]
        y = arrays[target] if target else None
    if x.ndim == 0 or len(x) == 0 or x[0].size == 0:
        raise DataError(
            f"{file}: {NPZ_FEATURES} has shape {x.shape}: expected rows of features, "
            "(rows, features) or (rows, height, width)"
        )
    x = x.reshape(len(x), -1)
    columns = {f"x{i}": x[:, i] for i in range(x.shape[1])}
    if y is None or target is None:
        return pl.DataFrame(columns)
    if y.ndim == 2 and y.shape[1] == 1:  # a column vector: one value a row all the same
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(
            f"{file}: {target} has shape {y.shape}: expected one value a row, shape ({len(x)},)"
        )
    if len(x) != len(y):
        raise DataError(f"{file}: {len(x)} rows of {NPZ_FEATURES} but {len(y)} of {target}")
    data: dict[str, Any] = {**columns, target: y}
    return pl.DataFrame(data)


def check_memory(file: str, size: int, factor: float) -> None:
    """Refuses a file that would not fit in the memory this process may use.

    Raises:
        DataError: Saying how large the file is, what loading it takes and what fits.
    """
    allowed = available_memory()
    if allowed is None or size * factor <= allowed:
        return
    need, fits = memory_text(size * factor), memory_text(allowed / factor)
    raise DataError(
        f"{file}: {memory_text(size)} on disk needs about {need} of memory to load; "
        f"{memory_text(allowed)} is available (${MEMORY_ENV} sets the limit): a file up to about "
        f"{fits} fits; use a sample of its rows or a larger machine"
    )


def available_memory() -> int | None:
    """Bytes a data set may take: ``$HPSEARCH_DATA_MEMORY``, else the available RAM."""
    if value := os.environ.get(MEMORY_ENV):
        try:
            limit = int(float(value))
        except (ValueError, OverflowError):  # OverflowError: inf
            limit = 0
        if limit <= 0:
            raise DataError(f"${MEMORY_ENV}: {value!r} is not a number of bytes above 0")
        return limit
    return available_ram()


def available_ram() -> int | None:
    """The RAM this machine has available (Linux's MemAvailable), ``None`` where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def memory_text(n: float) -> str:
    """Bytes as a person reads them: ``2.4 MB``, ``80.1 GB``."""
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


# --- the target ---------------------------------------------------------------------------


def check_target(frame: pl.DataFrame, file: str, target: str) -> None:
    """Refuses a target with a missing or an infinite value.

    Raises:
        DataError: Naming the first row without a finite target value.
    """
    column = frame[target]
    if column.dtype.is_nested():  # dates, unlike lists, serve as class labels
        _check_scalar(column, file, target)
    missing = column.is_null()
    if column.dtype.is_float():
        missing = missing | column.is_nan()
    if missing.any():
        row = int(missing.arg_max() or 0)
        raise DataError(
            f"{file}: {where(file, row)}: no value of target {target!r} "
            f"({int(missing.sum())} rows have none; drop them or fill them in)"
        )
    if column.dtype.is_float():
        _finite(column.to_numpy(), file, target, "drop the row or fix the cell")


def infer_task(frame: pl.DataFrame, target: str) -> str:
    """Regression for a numeric target with more than :data:`REGRESSION_DISTINCT` distinct
    values; else (text, true/false, few values) classification."""
    column = frame[target]
    numeric = column.dtype.is_numeric()  # true/false is not
    many = column.n_unique() > REGRESSION_DISTINCT
    return "regression" if numeric and many else "classification"


def class_values(frame: pl.DataFrame, file: str, target: str) -> list[Any]:
    """The classes of a classification target, sorted.

    Raises:
        DataError: The target has one class only.
    """
    values = frame[target].unique().sort().to_list()
    if len(values) < 2:
        raise DataError(
            f"{file}: target {target!r} has one value ({values[0]!r}) in all {frame.height} "
            "rows: there is nothing to tell apart"
        )
    return values


def regression_values(frame: pl.DataFrame, file: str, target: str) -> np.ndarray:
    """A regression target as float64.

    Raises:
        DataError: The target is not numeric.
    """
    column = frame[target]
    if not column.dtype.is_numeric():
        raise DataError(
            f"{file}: target {target!r} holds text ({column.drop_nulls()[0]!r}), not numbers: "
            "a regression target must be numeric (or set task: classification)"
        )
    return column.cast(float).to_numpy()


# --- features -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnCode:
    """How one feature column becomes inputs: a number (``center``/``scale``, ``fill`` for a
    missing cell) or a category (one input per value); plus a missing-indicator input when
    the training split had missing cells."""

    name: str
    kind: str  # "number" or "category"
    center: float = 0.0
    scale: float = 1.0
    fill: float = 0.0
    categories: tuple[Any, ...] = ()
    indicator: bool = False

    @property
    def width(self) -> int:
        """How many inputs the column becomes."""
        return (len(self.categories) if self.kind == "category" else 1) + self.indicator


@dataclass(frozen=True)
class TableEncoding:
    """Everything learned from a table's training split: how its feature columns become
    inputs, and its target's classes (classification) or mean and scale (regression).

    Saved with a model (:meth:`to_dict`), so that it reads new rows as it read these.
    """

    columns: tuple[ColumnCode, ...]
    target: str
    task: str
    classes: tuple[Any, ...] = ()
    target_mean: float = 0.0
    target_scale: float = 1.0

    @property
    def num_features(self) -> int:
        return sum(c.width for c in self.columns)

    def features(self, frame: pl.DataFrame, file: str = "input") -> np.ndarray:
        """The inputs of every row of ``frame`` (float32, ``(rows, num_features)``); its
        columns may come in any order, extra columns (the target) are ignored.

        Raises:
            DataError: A column the model reads is absent, or a number column holds text.
        """
        absent = [c.name for c in self.columns if c.name not in frame.columns]
        if absent:
            raise DataError(
                f"{file}: no column {absent[0]!r}"
                + (f" (nor {len(absent) - 1} more)" if len(absent) > 1 else "")
                + " that the model reads"
            )
        out = np.empty((frame.height, self.num_features), dtype=np.float32)
        at = 0
        for code in self.columns:
            at = _encode_column(code, frame[code.name], file, out, at)
        return out

    def labels(self, frame: pl.DataFrame, file: str) -> np.ndarray:
        """The training target of every row: class indices (int64) or the standardized value
        (float32).

        Raises:
            DataError: A row's class is not one of the training split's.
        """
        column = frame[self.target]
        if self.task == "regression":
            values = column.cast(float).to_numpy()
            return ((values - self.target_mean) / self.target_scale).astype(np.float32)
        index = {v: i for i, v in enumerate(self.classes)}
        given = column.to_list()
        for row, v in enumerate(given):
            if v not in index:
                raise DataError(
                    f"{file}: {where(file, row)}: class {v!r} of {self.target!r} is not among "
                    f"the training data's ({', '.join(map(str, self.classes[:10]))})"
                )
        return np.fromiter((index[v] for v in given), dtype=np.int64, count=len(given))

    def answers(self, outputs: np.ndarray) -> list[Any]:
        """Outputs of the network (standardized values, or class indices) in the data's own
        terms: the target's units, or class names."""
        if self.task == "regression":
            return [float(v) * self.target_scale + self.target_mean for v in outputs]
        return [self.classes[int(i)] for i in outputs]

    def to_dict(self) -> dict[str, Any]:
        """Plain values (what ``torch.load(weights_only=True)`` reads back)."""
        doc = asdict(self)
        doc["columns"] = [{**c, "categories": list(c["categories"])} for c in doc["columns"]]
        doc["classes"] = list(self.classes)
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> TableEncoding:
        """The encoding :meth:`to_dict` wrote."""
        columns = tuple(
            ColumnCode(**{**c, "categories": tuple(c["categories"])}) for c in doc["columns"]
        )
        return cls(**{**doc, "columns": columns, "classes": tuple(doc["classes"])})


def _encode_column(
    code: ColumnCode, column: pl.Series, file: str, out: np.ndarray, at: int
) -> int:
    missing = column.is_null().to_numpy()
    if code.kind == "number":
        values = _numbers(column, file, code.name)
        missing = missing | np.isnan(values)
        out[:, at] = (np.where(missing, code.fill, values) - code.center) / code.scale
        at += 1
    else:
        text = column.cast(str).to_list()
        index = {v: i for i, v in enumerate(code.categories)}
        block = np.zeros((len(text), len(code.categories)), dtype=np.float32)
        rows = [(r, index[v]) for r, v in enumerate(text) if v in index]  # unknown: all zero
        if rows:
            r, c = zip(*rows, strict=True)
            block[list(r), list(c)] = 1.0
        out[:, at : at + len(code.categories)] = block
        at += len(code.categories)
    if code.indicator:
        out[:, at] = missing
        at += 1
    return at


def _numbers(column: pl.Series, file: str, name: str) -> np.ndarray:
    import polars as pl

    if column.dtype.is_numeric() or column.dtype == pl.Boolean:
        return _finite(column.cast(float).fill_null(math.nan).to_numpy(), file, name)
    parsed = column.cast(float, strict=False)
    bad = parsed.is_null() & column.is_not_null()
    if bad.any():
        row = int(bad.arg_max() or 0)
        raise DataError(
            f"{file}: {where(file, row)}: column {name!r} holds {column[row]!r} where the "
            "model reads a number"
        )
    return _finite(parsed.fill_null(math.nan).to_numpy(), file, name)


def _finite(
    values: np.ndarray,
    file: str,
    name: str,
    fix: str = "fix the cell or leave it empty (a missing value)",
) -> np.ndarray:
    """``values``, refused if one is infinite (``inf`` in the file, or a number too large
    for a float): standardizing would turn its whole column into NaN, and a trial on it
    would diverge for no reason a user could see."""
    infinite = np.isinf(values)
    if infinite.any():
        row = int(infinite.argmax())
        raise DataError(
            f"{file}: {where(file, row)}: column {name!r} holds {values[row]}, not a finite "
            f"number; {fix}"
        )
    return values


def _check_scalar(column: pl.Series, file: str, name: str) -> None:
    """Refuses a column of lists, records or dates (a Parquet file's nested or temporal
    types), which no encoding here reads: a list would fail to be read as text, a date
    become a category of each day."""
    dtype = column.dtype
    if dtype.is_nested():
        what, fix = "lists or records", "spread it into columns of its own, or drop it"
    elif dtype.is_temporal():
        what = "dates or times"
        fix = "convert it to numbers (days since a start, a weekday...) or drop it"
    else:
        return
    raise DataError(
        f"{file}: column {name!r} holds {what} ({dtype}); a model reads numbers, true/false "
        f"and text: {fix}"
    )


def counters(frame: pl.DataFrame, kinds: Mapping[str, str]) -> list[str]:
    """The number columns that count the rows: whole numbers, a different one in every row,
    with no gap (1, 2, ..., n in any order). Such a column is an ID, not a measurement; as
    an input it lets a network tell rows apart and nothing else."""
    found = []
    for name, kind in kinds.items():
        column = frame[name]
        if kind != "number" or not column.dtype.is_integer() or column.null_count():
            continue
        values, rows = column.to_numpy(), frame.height
        span = int(values.max()) - int(values.min()) + 1
        if rows > 2 and span == rows and column.n_unique() == rows:
            found.append(name)
    return found


def check_features(
    frame: pl.DataFrame, file: str, target: str, max_categories: int
) -> dict[str, str]:
    """Each feature column's kind, ``number`` or ``category``.

    Raises:
        DataError: No feature columns; an infinite number; a column of mixed types (mostly
            numbers, some text); a text column with more distinct values than ``max_categories``.
    """
    import polars as pl

    kinds = {}
    for name in frame.columns:
        if name == target:
            continue
        column = frame[name]
        if column.dtype.is_numeric() or column.dtype == pl.Boolean:
            if column.dtype.is_float():
                _finite(column.to_numpy(), file, name)
            kinds[name] = "number"
            continue
        _check_scalar(column, file, name)
        text = column.cast(str)
        present = int(text.is_not_null().sum())
        if present == 0:  # every cell empty: a number column, all missing
            kinds[name] = "number"
            continue
        numeric = text.cast(float, strict=False)
        not_numbers = numeric.is_null() & text.is_not_null()
        share = 1.0 - int(not_numbers.sum()) / present
        if share >= NUMERIC_SHARE:
            row = int(not_numbers.arg_max() or 0)
            raise DataError(
                f"{file}: {where(file, row)}: column {name!r} holds {text[row]!r} but is "
                f"otherwise numbers ({share:.0%} of its cells): a column of mixed types; fix "
                "the cell or leave it empty (a missing value)"
            )
        distinct = text.drop_nulls().n_unique()
        if distinct > max_categories:
            raise DataError(
                f"{file}: column {name!r} has {distinct} distinct text values, more than "
                f"max_categories ({max_categories}): an ID or free text? leave it out "
                f"(dataset.drop: [{name}], or --drop {name}), or raise dataset.max_categories"
            )
        kinds[name] = "category"
    if not kinds:
        raise DataError(f"{file}: no columns besides the target {target!r} to learn from")
    return kinds


def fit_encoding(
    train: pl.DataFrame,
    kinds: Mapping[str, str],
    target: str,
    task: str,
    preprocess: str,
    classes: Sequence[Any] = (),
) -> TableEncoding:
    """Learns the encoding from the training split only: each number column's center and
    scale (``standardize``: mean and standard deviation; ``scale``: minimum and range;
    ``raw``: none) and fill value (its mean), each text column's categories, a missing
    indicator where the split has missing cells, and the target's mean and scale."""
    codes = []
    for name, kind in kinds.items():
        column = train[name]
        has_missing = bool(column.is_null().any())
        if kind == "category":
            categories = tuple(sorted(column.cast(str).drop_nulls().unique().to_list()))
            codes.append(ColumnCode(name, kind, categories=categories, indicator=has_missing))
            continue
        values = _numbers(column, "training split", name)
        seen = values[~np.isnan(values)]
        has_missing = has_missing or len(seen) < len(values)
        mean = float(seen.mean()) if len(seen) else 0.0
        center, scale = _center_scale(seen, mean, preprocess)
        codes.append(ColumnCode(name, kind, center, scale, mean, indicator=has_missing))
    if task == "regression":
        y = train[target].cast(float).to_numpy()
        std = float(y.std())
        return TableEncoding(tuple(codes), target, task, (), float(y.mean()), std or 1.0)
    return TableEncoding(tuple(codes), target, task, tuple(classes))


def _center_scale(seen: np.ndarray, mean: float, preprocess: str) -> tuple[float, float]:
    if preprocess == "raw" or len(seen) == 0:
        return 0.0, 1.0
    if preprocess == "scale":
        low, high = float(seen.min()), float(seen.max())
        return low, (high - low) or 1.0
    return mean, float(seen.std()) or 1.0  # a constant column: centred, not divided by 0
