"""A user's own data set as a study file or ``hpsearch train --data`` names it (no torch).

``dataset:`` is either a built-in name (``digits``) or a mapping, a :class:`DataSource`::

    dataset:
      path: data/train.csv      # .csv/.tsv (.csv.gz), .parquet, .npz (x and y), or a folder
      target: label             # the column to predict (tables)
      task: classification      # or regression; inferred from the target when omitted
      test: data/test.csv       # optional held-out file; else a fixed share is carved out

This module validates that mapping, resolves its paths (a study file's relative to the file's
own folder, ``--data`` relative to the working directory), checks that its files exist (with a
did-you-mean) and fingerprints them, so that a study resumed on changed data is refused.
Reading and encoding the data is :mod:`hpsearch.training.tables` and
:mod:`hpsearch.training.images`.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Mapping
import dataclasses
import hashlib
from pathlib import Path
from typing import Annotated
from typing import Any

import pydantic
from pydantic import ConfigDict
from pydantic import Field

from hpsearch.errors import closest
from hpsearch.spec.choices import Color
from hpsearch.spec.choices import IMAGE_SUFFIXES
from hpsearch.spec.choices import table_kind
from hpsearch.spec.choices import Task
from hpsearch.spec.validation import Problems
from hpsearch.spec.validation import StrictInt
from hpsearch.spec.validation import StrictStr

NPZ_FEATURES = "x"  # the feature array of an .npz file; its target array is `target` ("y")
NPZ_TARGET = "y"
ALLOWED_PATHS = (
    "allowed: .csv, .tsv (or gzipped: .csv.gz, .tsv.gz), .parquet, .npz, or a folder of images "
    "by class"
)

Side = Annotated[StrictInt, Field(ge=1, le=4096)]


def _square(value: Any) -> Any:
    # `image_size: 28` is shorthand for [28, 28]
    return [value, value] if isinstance(value, int) and not isinstance(value, bool) else value


def _listed(value: Any) -> Any:
    # `drop: id` is shorthand for [id]
    return [value] if isinstance(value, str) else value


@pydantic.dataclasses.dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class DataSource:
    """A user's data set: a table file or a folder of images, and what to predict."""

    path: StrictStr
    """A .csv/.tsv (header row), .parquet or .npz file, or a folder with a subfolder per class."""
    target: StrictStr | None = None
    """The column to predict (tables; an .npz file's target array, default y)."""
    task: Task | None = None
    """classification or regression; inferred from the target when left out."""
    test: StrictStr | None = None
    """A held-out file (or folder) of the same layout; else a fixed share is carved out."""
    image_size: Annotated[tuple[Side, Side], pydantic.BeforeValidator(_square)] | None = None
    """Images are resized to [height, width] (or one number); default the most common size."""
    color: Color = "grey"
    """Images made grey (one value per pixel) or kept rgb (three)."""
    max_categories: Annotated[StrictInt, Field(ge=2, le=100_000)] = 100
    """A text column with more distinct values than this is refused (an ID or free text?)."""
    drop: Annotated[tuple[StrictStr, ...], pydantic.BeforeValidator(_listed)] = ()
    """Columns left out of the inputs (tables): an ID, free text, a leak of the target."""

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> DataSource:
        found = []
        for key in ("path", "test"):
            value = getattr(self, key)
            if value is not None and _kind(value) is None:
                found.append((key, f"{value!r}: unknown kind of file; {ALLOWED_PATHS}"))
        kind = _kind(self.path)
        if kind in ("csv", "tsv", "parquet") and not self.target:
            found.append(("target", "required for a table: the name of the column to predict"))
        if kind == "images" and self.target is not None:
            found.append(
                ("target", "a folder of images has no target: its subfolders are its classes")
            )
        if kind == "images" and self.drop:
            found.append(("drop", "a folder of images has no columns to drop"))
        target = self.target or (NPZ_TARGET if kind == "npz" else None)
        if target in self.drop:
            found.append(("drop", f"{target!r} is the target: it cannot be dropped"))
        if kind == "images" and self.task == "regression":
            found.append(("task", "a folder of images by class is a classification task"))
        test_kind = None if self.test is None else _kind(self.test)
        if (
            test_kind is not None  # an unknown one is said above
            and kind is not None
            and test_kind
            not in (
                kind,
                *(("csv", "tsv", "parquet") if kind in ("csv", "tsv", "parquet") else ()),
            )
        ):
            found.append(("test", f"{self.test!r} is not of the same kind as path {self.path!r}"))
        if found:
            raise Problems(found)
        return self

    @property
    def kind(self) -> str:
        """``csv``, ``tsv``, ``parquet``, ``npz`` or ``images``."""
        kind = _kind(self.path)
        assert kind is not None  # validated
        return kind

    @property
    def target_name(self) -> str:
        """The target column (an .npz file's target array: ``y`` unless named)."""
        return self.target or (NPZ_TARGET if self.kind == "npz" else "")

    def files(self) -> dict[str, str]:
        """The paths by role: ``train`` and, if given, ``test``."""
        return {"train": self.path, **({"test": self.test} if self.test else {})}

    def resolved(self, folder: str | Path) -> DataSource:
        """The source with relative paths made absolute against ``folder``."""
        absolute = {
            key: str((Path(folder) / Path(value).expanduser()).resolve())
            for key, value in self.files().items()
        }
        return dataclasses.replace(self, path=absolute["train"], test=absolute.get("test"))

    def to_dict(self) -> dict[str, Any]:
        """The settings given (defaults left out), as plain values."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        return {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(self).items()
            if v != defaults.get(k, dataclasses.MISSING) or k == "path"
        }

    def definition(self) -> dict[str, Any]:
        """What gives a study's values their meaning: everything but where the files are
        (their content is the fingerprint's, see :func:`fingerprint`)."""
        doc = self.to_dict()
        doc.pop("path")
        doc.pop("test", None)
        return {"kind": self.kind, **doc}


def _kind(path: str) -> str | None:
    kind = table_kind(path)
    if kind is not None:
        return kind
    return "images" if not Path(path).suffix or Path(path).is_dir() else None


def missing_files(source: DataSource) -> list[str]:
    """One line per file of ``source`` that does not exist, each with a did-you-mean."""
    lines = []
    for role, value in source.files().items():
        path = Path(value)
        if source.kind == "images" and not path.is_dir():
            lines.append(f"{path}: no such folder of images{_did_you_mean(path)}")
        elif source.kind != "images" and not path.is_file():
            lines.append(f"{path}: no such {role} file{_did_you_mean(path)}")
    return lines


def _did_you_mean(path: Path) -> str:
    try:
        siblings = [p.name for p in path.parent.iterdir()]
    except OSError:
        return f" (no folder {path.parent})"
    close = closest(path.name, siblings)
    return f" (did you mean {close!r}?)" if close else ""


# --- fingerprints -------------------------------------------------------------------------


def fingerprint(source: DataSource) -> dict[str, dict[str, Any]]:
    """Per role (``train``, ``test``): the file (or folder), its size in bytes (a folder: its
    image files' count and total size) and a SHA-256 of its content."""
    prints = {}
    for role, value in source.files().items():
        path = Path(value)
        digest = hashlib.sha256()
        size = count = 0
        for file in _content_files(path):
            digest.update(str(file.relative_to(path) if path.is_dir() else "").encode())
            with open(file, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
            size += file.stat().st_size
            count += 1
        prints[role] = {
            "file": str(path),
            "bytes": size,
            **({"files": count} if path.is_dir() else {}),
            "sha256": digest.hexdigest(),
        }
    return prints


def _content_files(path: Path) -> Iterator[Path]:
    if not path.is_dir():
        yield path
        return
    yield from sorted(
        p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def fingerprint_changes(
    old: Mapping[str, Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """One line per role whose data differs: which file, and how (size, content)."""
    lines = []
    for role in sorted(old.keys() | new.keys()):
        a, b = old.get(role), new.get(role)
        if a is None or b is None:
            lines.append(f"{role} data: {'added' if a is None else 'removed'}")
        elif a.get("sha256") != b.get("sha256"):
            how = (
                f"{a.get('bytes')} -> {b.get('bytes')} bytes"
                if a.get("bytes") != b.get("bytes")
                else "same size, other content"
            )
            where = (
                a.get("file")
                if a.get("file") == b.get("file")
                else f"{a.get('file')} -> {b.get('file')}"
            )
            lines.append(f"{role} data {where} changed since the study was created ({how})")
    return lines
