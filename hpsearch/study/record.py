"""The trial record: what hpsearch stores with a study and each of its trials.

This module is the only one that knows the attribute keys. Workers write what
:func:`start_attrs`, :func:`result_attrs` and :func:`traceback_attrs` return, each in one
transaction; everything that reads results (tables, status, the report, the launcher) builds
:class:`TrialRecord` s with :func:`records`. Which trials count against the budget is
:mod:`hpsearch.study.budget`'s rule.

Stored per trial (Optuna user attributes), each group in one transaction: ``worker`` and
``pid`` (written first, so a launcher knows who runs it), then with the result ``outcome``,
per-epoch ``curves`` (one attribute, 5 significant digits), test metrics, ``train_seconds``,
``param_count``, ``val_size``, ``device``, ``threads``, ``host``, ``version`` and
``config``: the trainer settings in which the trial differs from the study's base config
(stored once, with the study summary); a failed trial's ``fail_reason`` (one line) and
``traceback``; a one-factor point's ``ofat_factor`` and ``ofat_value``.

Studies of an earlier layout stored each trial's whole config and full-precision curves; they
read the same (a whole config laid over the base is itself), so they need no migration.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
import math
import os
import re
import socket
from typing import Any
from typing import TYPE_CHECKING
import uuid

import optuna
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from hpsearch import storage as db
from hpsearch.spec.choices import table_kind
from hpsearch.storage.states import FIXED_PARAMS

if TYPE_CHECKING:  # the schema's models: a reading command never needs them
    from hpsearch.spec.studyfile import StudySpec

WORKER = "worker"
PID = "pid"
OUTCOME = "outcome"
TIMED_OUT = "timed_out"  # the outcome of a trial pruned by budget.trial_timeout
TOO_LARGE = "too_large"  # the outcome of a trial pruned by budget.max_params, untrained
CURVES = "curves"
TEST_ACCURACY = "test_accuracy"
TEST_LOSS = "test_loss"
TEST_REGRESSION = ("test_rmse", "test_mae", "test_r2")  # a regression's, in the target's units
TEST_BALANCED = "test_balanced_accuracy"  # a classification's
TRAIN_SECONDS = "train_seconds"
PARAM_COUNT = "param_count"
DEVICE = "device"
THREADS = "threads"
HOST = "host"
VERSION = "version"
CONFIG = "config"
FAIL_REASON = "fail_reason"
TRACEBACK = "traceback"
OFAT_FACTOR = "ofat_factor"
OFAT_VALUE = "ofat_value"
VAL_SIZE = "val_size"

# Attributes that describe a trial's point, not one attempt at running it: a retried trial
# keeps them (the rest, such as fail_reason or the curves of a killed run, would mislabel it).
POINT_ATTRS = (OFAT_FACTOR, OFAT_VALUE)
STORED_CURVES = ("train_loss", "val_loss", "val_accuracy", "seconds", "val_loss_se")
# a regression's, stored only where measured (a classification's are all NaN)
REGRESSION_CURVES = ("val_rmse", "val_mae", "val_r2", "val_rmse_se", "val_mae_se", "val_r2_se")
# a classification's (trials stored by earlier versions have none)
BALANCED_CURVES = ("val_balanced_accuracy", "val_balanced_accuracy_se")
CURVE_KEYS = STORED_CURVES + REGRESSION_CURVES + BALANCED_CURVES

# Study attributes.
# System attribute (a user attribute in an earlier layout): what a report needs to know of
# the study file. Kept out of the user attributes, which optuna-dashboard shows: there the
# study has flat, readable labels instead (see lifecycle.label_study).
STUDY_SUMMARY = "hpsearch"
DEFINITION = "hpsearch:definition"  # system attribute: what gives the trials' values meaning
DATA = "hpsearch:data"  # system attribute: a user's data files' fingerprint (size, SHA-256)
STOP_REQUEST = "hpsearch:stop"  # system attribute: `hpsearch stop` asked its workers to stop
ENDED = "hpsearch:ended"  # system attribute: why its workers last stopped by a budget rule
MAX_TRACEBACK = 20_000  # characters kept of a failed trial's traceback
MAX_REASON = 2_000  # characters kept of a failed trial's reason


@dataclass(frozen=True)
class TrialRecord:
    """One trial as hpsearch stored it, read from a ``FrozenTrial``.

    Attributes:
        number: The trial's number in its study.
        state: ``COMPLETE``, ``PRUNED``, ``FAIL``, ``RUNNING`` or ``WAITING``.
        values: The objective values (``None`` unless complete).
        params: Optuna's params (the searched settings as sampled).
        config: The resolved trainer config it trained with (``None`` before its result).
        curves: Per-epoch ``train_loss``, ``val_loss``, ``val_accuracy`` (a regression's
            ``val_rmse``, ``val_mae``, ``val_r2``), ``seconds`` and standard errors
            (``None`` where a value was not finite).
        outcome: The trainer's outcome: ``completed``, ``early_stopped``, ``stopped``
            (pruned), ``timed_out`` (pruned by ``budget.trial_timeout``), ``too_large``
            (pruned by ``budget.max_params`` before it trained) or ``diverged``.
        fail_reason: Why it failed, one line; its ``traceback`` when it raised.
        duration_s: Wall time from start to end, in seconds.
    """

    number: int
    state: str
    values: tuple[float, ...] | None
    params: Mapping[str, Any]
    config: Mapping[str, Any] | None
    curves: Mapping[str, list[float | None]]
    outcome: str | None
    fail_reason: str | None
    traceback: str | None
    test_accuracy: float | None
    test_loss: float | None
    train_seconds: float | None
    param_count: int | None
    worker: str | None
    device: str | None
    host: str | None
    threads: int | None
    duration_s: float | None
    ofat_factor: str | None
    ofat_value: Any
    val_size: int | None = None
    test_rmse: float | None = None
    test_mae: float | None = None
    test_r2: float | None = None
    test_balanced_accuracy: float | None = None

    @classmethod
    def from_trial(cls, trial: FrozenTrial, base: Mapping[str, Any] | None = None) -> TrialRecord:
        """The record of a trial read from any storage.

        Args:
            trial: The trial.
            base: The study's base config (:func:`base_config`), which the trial's own
                settings complete.
        """
        a = trial.user_attrs
        own = a.get(CONFIG)
        return cls(
            number=trial.number,
            state=trial.state.name,
            values=tuple(trial.values) if trial.values is not None else None,
            # a queued point's params are known before it runs
            params=fixed_params(trial) if trial.state == TrialState.WAITING else trial.params,
            config=None if own is None else {**(base or {}), **own},
            curves=a.get(CURVES) or {},
            outcome=a.get(OUTCOME),
            fail_reason=a.get(FAIL_REASON),
            traceback=a.get(TRACEBACK),
            test_accuracy=a.get(TEST_ACCURACY),
            test_loss=a.get(TEST_LOSS),
            train_seconds=a.get(TRAIN_SECONDS),
            param_count=a.get(PARAM_COUNT),
            worker=a.get(WORKER),
            device=a.get(DEVICE),
            host=a.get(HOST),
            threads=a.get(THREADS),
            duration_s=trial.duration.total_seconds() if trial.duration else None,
            ofat_factor=a.get(OFAT_FACTOR),
            ofat_value=a.get(OFAT_VALUE),
            val_size=a.get(VAL_SIZE),
            **{key: a.get(key) for key in (*TEST_REGRESSION, TEST_BALANCED)},
        )

    def curve(self, metric: str) -> list[float | None]:
        """One per-epoch curve (empty if the trial has none)."""
        return list(self.curves.get(metric) or [])

    def standard_error(self, metric: str, value: float) -> float | None:
        """The standard error of ``value``, this trial's measurement of ``metric`` on the
        validation images (``None`` for other metrics, or trials stored without it): the
        spread a different draw of as many validation images would give."""
        if metric == "val_accuracy" and self.val_size:
            # (k + 1) / (n + 2), not k / n: a perfect score on few images is not certain
            n = self.val_size
            p = (value * n + 1.0) / (n + 2.0)
            return math.sqrt(p * (1.0 - p) / n)
        if metric in ("val_loss", "val_rmse", "val_mae", "val_r2", "val_balanced_accuracy"):
            pairs = zip(self.curve(metric), self.curve(f"{metric}_se"), strict=False)
            near = [(abs(v - value), se) for v, se in pairs if v is not None and se is not None]
            return min(near)[1] if near else None  # the epoch the value was taken at
        return None

    def val_score(self, score: str, best: bool = False) -> float | None:
        """The validation ``score`` (see :func:`scoring`) of the last epoch, or of the best."""
        values = [v for v in self.curve(f"val_{score}") if v is not None]
        if not values:
            return None
        return max(values) if best else values[-1]

    def test_score(self, score: str) -> float | None:
        """The test ``score`` (``None`` unless completed)."""
        value: float | None = getattr(self, f"test_{score}")
        return value

    @property
    def best_val_accuracy(self) -> float | None:
        """The highest validation accuracy of any epoch."""
        values = [v for v in self.curve("val_accuracy") if v is not None]
        return max(values) if values else None

    @property
    def final_val_accuracy(self) -> float | None:
        """The last epoch's validation accuracy."""
        values = self.curve("val_accuracy")
        return values[-1] if values else None


@dataclass(frozen=True)
class StudySummary:
    """What a report needs to know of a study's file, stored with the study at creation."""

    file: str | None
    sampler: str
    pruner: str
    metrics: tuple[str, ...]  # of the objectives, in order
    params: tuple[str, ...]
    version: str


def study_labels(spec: StudySpec) -> dict[str, str]:
    """The study's sampler, pruner, data set, objective and file, one line each."""

    def options(d: Mapping[str, Any]) -> str:
        return f" ({', '.join(f'{k} {v}' for k, v in d.items())})" if d else ""

    base = spec.base
    return {
        "sampler": spec.sampler + options(spec.sampler_options),
        "pruner": spec.pruner + options({**spec.pruner_options, **spec.patience}),
        "dataset": f"{_data_label(base.dataset)} (validation fraction {base.val_fraction})",
        "objective": "; ".join(
            f"{o.metric} ({o.direction}" + (f", {o.reduce} epoch)" if o.per_epoch else ")")
            for o in spec.objectives
        ),
        "file": spec.path or "(none)",
    }


def _data_label(dataset: Any) -> str:
    if isinstance(dataset, str):
        return dataset
    target = f", target {dataset.target}" if dataset.target else ""
    return f"{dataset.path}{target}, {dataset.task or 'task inferred'}"


def study_summary(study: optuna.Study) -> StudySummary | None:
    """The summary stored with a study, ``None`` if it has none (not created by hpsearch)."""
    doc = _summary_doc(study)
    if doc is None:
        return None
    return StudySummary(
        file=doc.get("file"),
        sampler=str(doc.get("sampler", "unknown")),
        pruner=str(doc.get("pruner", "unknown")),
        metrics=tuple(str(o.get("metric")) for o in doc.get("objectives") or []),
        params=tuple(doc.get("params") or ()),
        version=str(doc.get("version", "unknown")),
    )


def objectives(study: optuna.Study) -> list[dict[str, str]]:
    """The study's objectives as its file gave them (``metric``, ``direction``, ``reduce``),
    stored at its creation; empty for a study hpsearch did not create."""
    stored = (_summary_doc(study) or {}).get("objectives") or []
    return [
        {
            "metric": str(o.get("metric")),
            "direction": str(o.get("direction")),
            "reduce": str(o.get("reduce", "final")),
        }
        for o in stored
        if isinstance(o, dict)
    ]


def _summary_doc(study: optuna.Study) -> dict[str, Any] | None:
    doc = db.study_system_attrs(study).get(STUDY_SUMMARY)
    if doc is None:  # an earlier layout
        doc = study.user_attrs.get(STUDY_SUMMARY)
    return doc if isinstance(doc, dict) else None


def base_config(study: optuna.Study) -> dict[str, Any] | None:
    """The trainer config every trial of the study starts from (stored at creation)."""
    return _base_of(_summary_doc(study) or {})


def _base_of(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    base = doc.get("base_config")
    return base if isinstance(base, dict) else None


@dataclass(frozen=True)
class Scoring:
    """How a study's models are rated and on what: ``score`` is ``r2`` for a regression
    task, ``balanced_accuracy`` for a classification that selects on it, else ``accuracy``;
    ``examples`` are a table's ``rows``, else ``images``."""

    score: str
    examples: str


def scoring(study: optuna.Study) -> Scoring:
    """The study's :class:`Scoring`, from the data set of its stored base config."""
    doc = _summary_doc(study) or {}  # one read for the base config and the objectives
    dataset = (_base_of(doc) or {}).get("dataset")
    metrics = [o.get("metric") for o in doc.get("objectives") or [] if isinstance(o, dict)]
    rated = "balanced_accuracy" if "val_balanced_accuracy" in metrics else "accuracy"
    if not isinstance(dataset, dict):  # a built-in data set: images
        return Scoring(rated, "images")
    table = table_kind(str(dataset.get("path", ""))) is not None
    return Scoring(
        "r2" if dataset.get("task") == "regression" else rated,
        "rows" if table else "images",
    )


def records(study: optuna.Study, trials: Iterable[FrozenTrial]) -> list[TrialRecord]:
    """The records of several trials of ``study``."""
    base = base_config(study)
    return [TrialRecord.from_trial(t, base) for t in trials]


def worker_of(trial: FrozenTrial) -> str | None:
    """The worker that claimed a trial (written before anything else)."""
    value = trial.user_attrs.get(WORKER)
    return None if value is None else str(value)


def fail_reason_of(trial: FrozenTrial) -> str | None:
    """Why a trial failed."""
    value = trial.user_attrs.get(FAIL_REASON)
    return None if value is None else str(value)


def point_attrs(trial: FrozenTrial) -> dict[str, Any]:
    """The attributes a retry of ``trial`` keeps (see :data:`POINT_ATTRS`)."""
    return {k: v for k, v in trial.user_attrs.items() if k in POINT_ATTRS}


def one_factor_attrs(factor: str | None, value: Any) -> dict[str, Any]:
    """The attributes of a queued one-factor point (none for other points)."""
    return {} if factor is None else {OFAT_FACTOR: factor, OFAT_VALUE: value}


# A copy's name until it is whole and renamed (lifecycle.copy_study): a study so named is a
# copy being written, or one whose process was killed before it was whole.
_COPYING = re.compile(r"\.copying-[0-9a-f]{8}\Z")


def copying_name(name: str) -> str:
    """The name a copy of study ``name`` has until it is whole."""
    return f"{name}.copying-{uuid.uuid4().hex[:8]}"


def unfinished_copy(name: str) -> bool:
    """Whether ``name`` is that of a copy not yet whole (see :func:`copying_name`)."""
    return _COPYING.search(name) is not None


def fixed_params(trial: FrozenTrial) -> dict[str, Any]:
    """The params a queued trial was queued with (its own params once it ran)."""
    return dict(trial.system_attrs.get(FIXED_PARAMS) or trial.params)


def fail_attrs(reason: str) -> dict[str, Any]:
    """What is stored with a failed trial, in the same transaction as its FAIL state."""
    return {FAIL_REASON: reason[:MAX_REASON]}


def start_attrs(worker: str) -> dict[str, Any]:
    """What a worker writes first when it claims a trial, so a launcher finds who runs it."""
    return {WORKER: worker, PID: os.getpid()}


def result_attrs(
    result: Any, threads: int, version: str, base: Mapping[str, Any]
) -> dict[str, Any]:
    """What is stored with a trial's training result (a
    :class:`hpsearch.training.trainer.TrainResult`); its config as far as it differs from
    ``base``."""
    curves = {key: [getattr(e, key) for e in result.epochs] for key in CURVE_KEYS}
    by_task = REGRESSION_CURVES + BALANCED_CURVES
    kept = [k for k in by_task if not all(math.isnan(v) for v in curves[k])]
    tests = {k: getattr(result, k, None) for k in (*TEST_REGRESSION, TEST_BALANCED)}
    return {
        OUTCOME: result.outcome,
        CURVES: _compact({k: curves[k] for k in (*STORED_CURVES, *kept)}),
        TEST_ACCURACY: result.test_accuracy,
        TEST_LOSS: result.test_loss,
        **{k: v for k, v in tests.items() if v is not None},
        TRAIN_SECONDS: round(result.train_seconds, 3),
        PARAM_COUNT: result.param_count,
        VAL_SIZE: result.val_size,
        DEVICE: result.device,
        THREADS: threads,
        HOST: socket.gethostname(),
        VERSION: version,
        CONFIG: _differences(result.config, base),
    }


def too_large_attrs(
    params: int, config: Mapping[str, Any], base: Mapping[str, Any]
) -> dict[str, Any]:
    """What is stored with a trial pruned by ``budget.max_params`` before it trained: its
    parameter count and its config as far as it differs from ``base``."""
    return {
        OUTCOME: TOO_LARGE,
        PARAM_COUNT: params,
        CONFIG: _differences(config, base),
    }


def _differences(config: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of a trial's config that the study's base config lacks or sets
    otherwise: all a trial stores of its config."""
    return {k: v for k, v in config.items() if k not in base or base[k] != v}


def traceback_attrs(text: str) -> dict[str, Any]:
    """The traceback of a trial that raised (its last characters if very long)."""
    return {TRACEBACK: text[-MAX_TRACEBACK:]}


def _compact(curves: dict[str, list[float]]) -> dict[str, list[float | None]]:
    # 5 significant digits (the curves are plotted, never computed on); JSON has no NaN, so a
    # diverged epoch's loss is stored as null.
    return {
        k: [float(f"{v:.5g}") if math.isfinite(v) else None for v in vs]
        for k, vs in curves.items()
    }
