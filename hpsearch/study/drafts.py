"""A first study file for a user's own data set, drafted from the data (``hpsearch init``).

A user's first move is to point hpsearch at a table or a folder of images; writing a study
file by hand then asks for choices that depend on the data: how many rows validate, how
large a batch, how many epochs, how wide a network, which objective fits the task and the
classes' balance, which column is an ID, whether images keep their colour.
:func:`draft_study` reads the data once (with the checks every study runs, no torch) and
makes those choices, each with a comment in the file that says why; :func:`init_study`
writes it whole and checks that it loads as it would run.
The file is a starting point, as a shipped study is: every line of it can be changed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import json
import math
import os
from pathlib import Path
import re
from typing import cast

import yaml

from hpsearch import files
from hpsearch.errors import ConfigError
from hpsearch.spec.choices import Task
from hpsearch.spec.datasource import DataSource
from hpsearch.spec.datasource import missing_files
from hpsearch.spec.studyfile import load_spec
from hpsearch.spec.studyfile import STUDY_NAME
from hpsearch.spec.studyfile import StudySpec
from hpsearch.training import sources
from hpsearch.training import tables
from hpsearch.training.images import in_colour

TRIALS = 40  # the quickstart's budget: tens of trials inform TPE; `--trials` sets another
SMALL = 2_000  # rows (after the test share): below it a quarter validates, else a tenth
STEPS = 4_000  # optimizer steps a trial aims at: few epochs of many rows, many of few
EPOCHS = (10, 50)  # the fewest and the most epochs a draft fixes
WIDTHS = (128, 1024)  # the widest layer searched: twice the inputs, within these
SCHEMA = "study.schema.json"  # `hpsearch schema -o` beside the file: editors complete keys


@dataclass(frozen=True)
class Draft:
    """A study file drafted from a data set.

    Attributes:
        name: The study's name.
        text: The study file, YAML with a comment on each choice.
        source: The data as the study reads it: absolute paths, a table's task written
            down, ID columns dropped.
        ids: The columns that number the rows, left out of the inputs as IDs.
        inputs: The network's inputs: encoded table columns, or pixels.
        val_fraction: The share of the non-test rows that validates.
    """

    name: str
    text: str
    source: DataSource
    ids: tuple[str, ...]
    inputs: int
    val_fraction: float


def draft_study(
    source: DataSource,
    folder: str | Path,
    name: str,
    trials: int = TRIALS,
    timeout: float | None = None,
) -> Draft:
    """Drafts a study file for ``source`` to be saved in ``folder`` (its data paths are
    written relative to it).

    Args:
        source: The data set, its paths absolute.
        folder: The folder the file will be saved in.
        name: The study's name (see ``STUDY_NAME_RULE``).
        trials: The trial budget.
        timeout: Seconds after which no new trial starts, or ``None``.

    Raises:
        DataError: The data cannot be read or fails a check, each problem in one line.
    """
    given_task = source.task is not None
    if source.kind == "images" and source.color == "grey" and in_colour(Path(source.path)):
        source = dataclasses.replace(source, color="rgb")  # found on a sample: read once
    own = sources.read_source(source)
    ids = tuple(tables.counters(own.frame, own.kinds)) if own.kinds is not None else ()
    if own.kinds is not None:  # a table: its task written down, its IDs left out
        task = cast(Task, own.task)
        source = dataclasses.replace(source, task=task, drop=(*source.drop, *ids))
        own = sources.read_source(source)
    rest = own.rows - (0 if source.test else round(own.rows * sources.TEST_FRACTION))
    val_fraction = 0.25 if rest < SMALL else 0.1
    sizes = sources.split_sizes(source, val_fraction)  # refuses too few rows, as a run would
    largest = sources.largest_class(source)
    shape = _Shape(
        sizes,
        _inputs(source),
        own.task,
        largest if _imbalanced(largest) else None,
        "images" if source.kind == "images" else "rows",
        own.image_size,
    )
    lines = [
        *_header(source, Path(folder), own.rows, shape, len(own.classes)),
        f"name: {name}",
        f"description: {_scalar(f'TPE over an MLP for {_what(source, own.task)}')}",
        "storage: sqlite:///hpsearch.db   # the default; PostgreSQL for workers on many hosts",
        "",
        *_dataset(source, Path(folder), shape, ids, given_task),
        "",
        *_objective(shape),
        "",
        f"sampler: {{name: tpe, seed: 0, n_startup_trials: {min(10, max(1, trials // 4))}}}",
        f"pruner: {{name: median, n_startup_trials: 5, n_warmup_steps: {shape.warm_up}}}",
        f"budget: {{trials: {trials}{f', timeout: {timeout:g}' if timeout else ''}}}",
        _noted("population: 1", "trials a worker trains at once; 16 or more on a GPU"),
        "",
        *_fixed(shape, val_fraction),
        "",
        *_space(shape),
    ]
    return Draft(name, "\n".join(lines) + "\n", source, ids, shape.inputs, val_fraction)


@dataclass(frozen=True)
class _Shape:
    """What the choices depend on: the split sizes, the inputs, the task, the largest class
    where it holds most rows, and what a row is (``rows`` or ``images``, of ``image_size``)."""

    sizes: dict[str, int]
    inputs: int
    task: str
    largest: tuple[object, float] | None
    unit: str
    image_size: tuple[int, int] | None

    @property
    def small(self) -> bool:
        return self.sizes["train"] < SMALL

    @property
    def batch(self) -> int:
        return 32 if self.small else 64 if self.sizes["train"] < 20_000 else 128

    @property
    def steps(self) -> int:
        return math.ceil(self.sizes["train"] / self.batch)

    @property
    def epochs(self) -> int:
        return min(max(round(STEPS / self.steps), EPOCHS[0]), EPOCHS[1])

    @property
    def warm_up(self) -> int:
        return max(3, self.epochs // 5)

    @property
    def widest(self) -> int:
        power = 1 << max(0, (2 * self.inputs - 1).bit_length())  # 2 * inputs, rounded up
        return min(max(power, WIDTHS[0]), WIDTHS[1])


def _imbalanced(largest: tuple[object, float] | None) -> bool:
    return largest is not None and largest[1] >= sources.IMBALANCED


def _fixed(shape: _Shape, val_fraction: float) -> list[str]:
    sizes, steps = shape.sizes, shape.steps
    return [
        "fixed:",
        _noted(
            f"  val_fraction: {val_fraction}", f"{sizes['validation']} validation {shape.unit}"
        ),
        _noted(
            f"  batch_size: {shape.batch}",
            f"{steps} steps an epoch on {sizes['train']} {shape.unit}",
        ),
        _noted(f"  epochs: {shape.epochs}", f"about {shape.epochs * steps} steps a trial"),
        _noted(
            f"  early_stopping: {max(5, shape.epochs // 5)}",
            "a trial completes once val_loss stalls that many epochs",
        ),
        _noted("  scheduler: none", "a constant lr; or search it: [none, cosine]"),
        *(
            [_noted("  loss: mse", "or huber, l1: on the standardized target")]
            if shape.task == "regression"
            else []
        ),
    ]


def _space(shape: _Shape) -> list[str]:
    return [
        "space:",
        "  hidden_layers:",
        "    type: layers",
        f"    depth: {{low: 1, high: {2 if shape.small else 3}}}",
        _noted(
            f"    width: {{low: {8 if shape.small else 16}, high: {shape.widest}, log: true}}",
            f"{shape.inputs} inputs",
        ),
        "  activation: [relu, gelu, tanh]",
        "  optimizer: [adam, sgd]",
        "  lr: {type: float, low: 1.0e-4, high: 0.1, log: true}",
        "  momentum: {type: float, low: 0.0, high: 0.95, when: {optimizer: [sgd]}}",
        "  dropout: {type: float, low: 0.0, high: 0.5}",
        "  weight_decay: {type: float, low: 1.0e-6, high: 1.0e-2, log: true}",
        *(
            [_noted("  class_weight: [none, balanced]", "each class counted alike, or not")]
            if shape.largest is not None
            else []
        ),
        "",
        _noted("# start_with:", "settings you know work, trained first; the rest drawn"),
        "#   - {hidden_layers: [64], optimizer: adam, lr: 1.0e-3}",
    ]


def init_study(
    source: DataSource,
    path: str | Path,
    name: str | None = None,
    trials: int = TRIALS,
    timeout: float | None = None,
    replace: bool = False,
) -> tuple[Draft, StudySpec]:
    """Drafts a study file for ``source`` (:func:`draft_study`) and writes it to ``path``,
    whole or not at all, once it loads as ``hpsearch run`` would load it.

    Args:
        source: The data set, its paths absolute.
        path: The study file to write.
        name: The study's name; default the data file's name without its suffixes.
        trials: The trial budget.
        timeout: Seconds after which no new trial starts, or ``None``.
        replace: Replace an existing file at ``path`` (else refused).

    Returns:
        The draft, and the study as the file declares it.

    Raises:
        ConfigError: ``path`` exists and ``replace`` is false, its folder does not exist, or
            a data file is missing (with a did-you-mean).
        DataError: The data cannot be read or fails a check.
    """
    target = Path(path)
    if target.exists() and not replace:
        raise ConfigError([f"{target} exists: --force replaces it"])
    if not target.parent.is_dir():
        raise ConfigError([f"{target}: no folder {target.parent} to write it in"])
    if missing := missing_files(source):
        raise ConfigError(missing)
    folder = target.resolve().parent
    draft = draft_study(source, folder, name or study_name(source), trials, timeout)
    with files.whole(target) as part:
        part.write_text(draft.text, encoding="utf-8")
        spec = load_spec(str(part))  # the draft is a study file as any other: checked so
    return draft, spec


def study_name(source: DataSource) -> str:
    """A study name from the data's file (or folder) name: ``train`` for ``train.csv.gz``,
    each character a name may not hold made ``_``."""
    stem = Path(source.path).name.split(".")[0]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_").lstrip(".-")[:100]
    return name if STUDY_NAME.fullmatch(name) else "study"


def _inputs(source: DataSource) -> int:
    own = sources.read_source(source)
    if own.images is not None:
        return int(own.images.pixels.shape[1])
    assert own.kinds is not None  # a table
    encoding = tables.fit_encoding(
        own.frame, own.kinds, source.target_name, own.task, "standardize", own.classes
    )
    return encoding.num_features


def _header(source: DataSource, folder: Path, rows: int, shape: _Shape, classes: int) -> list[str]:
    what = f"{classes} classes" if shape.task == "classification" else "a regression"
    first = [f"# yaml-language-server: $schema={SCHEMA}"] if (folder / SCHEMA).exists() else []
    return [
        *first,
        f"# Drafted by `hpsearch init` from {_scalar(_relative(source.path, folder))} "
        f"({rows} {shape.unit}, {shape.inputs} inputs, {what}).",
        "# A starting point: each choice says why; change any of it. `hpsearch check` on this",
        "# file checks it and trains one batch; `hpsearch run` runs it.",
    ]


def _what(source: DataSource, task: str) -> str:
    if source.kind == "images":
        return f"the images by class in {Path(source.path).name}"
    return f"the {task} of {source.target_name} in {Path(source.path).name}"


def _dataset(
    source: DataSource, folder: Path, shape: _Shape, ids: tuple[str, ...], given_task: bool
) -> list[str]:
    path = _relative(source.path, folder)
    where = "absolute" if Path(path).is_absolute() else "relative to this file's folder"
    lines = ["dataset:", _noted(f"  path: {_scalar(path)}", where)]
    if source.kind != "images":
        if source.target is not None:
            lines.append(f"  target: {_scalar(source.target)}")
        given = "as given" if given_task else "inferred from the target"
        lines.append(_noted(f"  task: {shape.task}", given))
    if source.test:
        lines.append(f"  test: {_scalar(_relative(source.test, folder))}")
    else:
        lines.append(_noted("  # test: FILE", "a held-out file; else a fixed, stratified 20%"))
    if source.drop:
        given_drop = ["as given"] if any(c not in ids for c in source.drop) else []
        counts = "numbers" if len(ids) == 1 else "number"
        named = ", ".join(map(_scalar, ids))  # a note is a comment: no line break in it
        why = given_drop + ([f"{named}: {counts} the rows, an ID"] if ids else [])
        lines.append(_noted(f"  drop: [{', '.join(map(_scalar, source.drop))}]", "; ".join(why)))
    chosen = source.to_dict()
    if "color" in chosen:
        lines.append(_noted("  color: rgb", "the images have colour; grey: one input a pixel"))
    for key in ("image_size", "max_categories"):
        if key in chosen:
            value = chosen[key]
            lines.append(
                f"  {key}: {f'[{value[0]}, {value[1]}]' if key == 'image_size' else value}"
            )
    if source.kind == "images" and "image_size" not in chosen:
        size = f"[{shape.image_size[0]}, {shape.image_size[1]}]" if shape.image_size else "[H, W]"
        lines.append(
            _noted(f"  # image_size: {size}", "each image resized to it: the most common")
        )
    return lines


def _objective(shape: _Shape) -> list[str]:
    if shape.task == "regression":
        return [
            _noted(
                "objective: {metric: val_r2, direction: maximize}",
                "or val_rmse, val_mae: in the target's units",
            )
        ]
    if shape.largest is not None:
        label, share = shape.largest
        return [
            f"# class {label!r} holds {share:.0%} of the {shape.unit}: always answering it scores",
            f"# {share:.2f} in val_accuracy; the balanced accuracy averages each class's recall",
            "objective: {metric: val_balanced_accuracy, direction: maximize}",
        ]
    n_val = shape.sizes["validation"]
    why = f"on {n_val} validation {shape.unit} the loss ranks finer than accuracy"
    return [_noted("objective: val_loss", why)]


def _noted(line: str, note: str) -> str:
    """``line`` with ``# note`` after it, the notes of a block in one column."""
    return f"{line:<32} # {note}" if len(line) < 32 else f"{line}   # {note}"


def _relative(path: str, folder: Path) -> str:
    """``path`` from ``folder`` where it is near (in it, below it or beside it), else whole:
    a study file moved with its data still finds it, and one far from it reads plainly."""
    relative = Path(os.path.relpath(path, folder))
    return relative.as_posix() if relative.parts[:2] != ("..", "..") else path


def _scalar(text: str) -> str:
    """``text`` as a YAML scalar: plain where YAML reads it back as this string, else
    double-quoted (JSON's quoting is YAML's)."""
    plain = re.fullmatch(r"[A-Za-z0-9_./][A-Za-z0-9_./ -]*", text) and not text.endswith(" ")
    if plain and yaml.safe_load(text) == text:
        return text
    return json.dumps(text, ensure_ascii=False)
