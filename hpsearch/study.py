"""Running a study: create it, queue its budget, and run trials until none is left.

The budget is global and exact across any number of processes and hosts. The process that
creates or resumes a study (``run``, ``launch``) *tops it up*: it queues one WAITING trial per
trial still missing from the budget (for a grid or one-factor study, one per missing point,
with its params fixed). Workers only claim WAITING trials, atomically (``SELECT ... FOR
UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite, see :mod:`hpsearch.storage`), and stop
when none is left, so no point runs twice and the pool never overshoots. A trial whose worker
died is failed by the heartbeat check and re-queued with the same params by Optuna's
``RetryHeartbeatStaleTrialCallback``; a failed-and-retried trial does not count.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
import contextlib
from dataclasses import dataclass
import json
import math
import os
import socket
import threading
import time
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.storages import fail_stale_trials
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

import hpsearch
from hpsearch.config import make_config
from hpsearch.errors import StorageError
from hpsearch.storage import open_storage
from hpsearch.storage import redact
from hpsearch.storage import RetryCleanly
from hpsearch.studyfile import Objective
from hpsearch.studyfile import StudySpec
from hpsearch.trainer import EpochStats
from hpsearch.trainer import train
from hpsearch.trainer import TrainResult

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPEC_ATTR = "hpsearch"  # study user attribute holding the study file's summary

# Set by a signal handler (see request_stop): the running trial stops at its next epoch end,
# a safe point, instead of being interrupted in the middle of a database call.
_STOP = threading.Event()


def request_stop() -> None:
    """Asks the worker loop in this process to stop after the running trial's current epoch;
    the trial is failed and queued again. Safe to call from a signal handler."""
    _STOP.set()


def stop_requested() -> bool:
    """Whether :func:`request_stop` was called."""
    return _STOP.is_set()


def open_spec_storage(spec: StudySpec, for_workers: bool = True) -> BaseStorage:
    """Opens the storage a study file names, with its heartbeat settings."""
    return open_storage(
        spec.storage,
        heartbeat_interval=spec.heartbeat_interval,
        grace_period=spec.grace_period,
        for_workers=for_workers,
    )


def create_study(spec: StudySpec, storage: BaseStorage) -> optuna.Study:
    """Creates the study, or loads it if it exists with the same objectives.

    Raises:
        StorageError: A study of that name exists with other directions.
    """
    study = optuna.create_study(
        study_name=spec.name,
        storage=storage,
        sampler=spec.make_sampler(),
        pruner=spec.make_pruner(),
        directions=[optuna.study.StudyDirection[d.upper()] for d in spec.directions],
        load_if_exists=True,
    )
    existing = [d.name.lower() for d in study.directions]
    if existing != spec.directions:
        raise StorageError(
            f"study {spec.name!r} already exists in {redact(spec.storage)} with directions "
            f"{existing}, not {spec.directions}: pick another name or delete it"
        )
    if SPEC_ATTR not in study.user_attrs:
        study.set_user_attr(SPEC_ATTR, describe(spec))
    return study


def load_study(spec: StudySpec, storage: BaseStorage) -> optuna.Study:
    """Loads an existing study with the file's sampler and pruner.

    Raises:
        StorageError: There is no such study in the storage.
    """
    try:
        return optuna.load_study(
            study_name=spec.name,
            storage=storage,
            sampler=spec.make_sampler(),
            pruner=spec.make_pruner(),
        )
    except KeyError as e:
        raise StorageError(
            f"no study {spec.name!r} in {redact(spec.storage)}: create it with "
            f"`hpsearch run` or `hpsearch launch`"
        ) from e


def describe(spec: StudySpec) -> dict[str, Any]:
    """What a report needs to know of the study file, stored with the study."""
    return {
        "file": spec.path,
        "sampler": spec.sampler,
        "sampler_options": dict(spec.sampler_options),
        "pruner": spec.pruner,
        "objectives": [vars(o) for o in spec.objectives],
        "base_config": spec.base.to_dict(),
        "params": [p.name for p in spec.space.params],
        "version": hpsearch.__version__,
    }


def counted_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Trials that use up budget: all but those failed and then re-queued as a retry."""
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    return [t for t in trials if not (t.state == TrialState.FAIL and t.number in retried)]


def finished_count(study: optuna.Study) -> int:
    """Budget trials that have finished (complete, pruned, or failed and not retried)."""
    final = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return sum(t.state in final for t in counted_trials(study))


def _point_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def top_up(study: optuna.Study, spec: StudySpec) -> int:
    """Queues WAITING trials for whatever the budget still lacks; returns how many.

    Only the process that creates or resumes a study calls this; workers never do, so two
    hosts cannot both fill the same gap.
    """
    counted = counted_trials(study)
    room = spec.budget() - len(counted)
    if room <= 0:
        return 0
    if not spec.is_finite:
        for _ in range(room):
            study.enqueue_trial({})
        return room
    done = {_point_key(t.system_attrs.get("fixed_params") or t.params) for t in counted}
    missing = [pt for pt in spec.points() if _point_key(pt[2]) not in done][:room]
    for factor, value, params in missing:
        attrs = {} if factor is None else {"ofat_factor": factor, "ofat_value": value}
        study.enqueue_trial(params, user_attrs=attrs)
    return len(missing)


def metric_value(result: TrainResult, objective: Objective) -> float:
    """The value of one objective for a training result."""
    if not objective.per_epoch:
        return float(getattr(result, objective.metric))
    curve = [getattr(e, objective.metric) for e in result.epochs]
    if objective.reduce == "best":
        return float(max(curve) if objective.direction == "maximize" else min(curve))
    return float(curve[-1])


class TrialFailed(Exception):
    """A trial that ran but produced no usable result (diverged); recorded as FAIL."""


class TrialInterrupted(Exception):
    """A trial stopped by :func:`request_stop`; failed and re-queued, not counted."""


def objective(trial: optuna.Trial, spec: StudySpec, worker: str) -> list[float]:
    """Trains one configuration, reporting the first objective after every epoch.

    Raises:
        optuna.TrialPruned: The pruner stopped the trial.
        TrialFailed: Training diverged.
    """
    # First, before any work: a launcher (or an operator) finds which process runs a trial.
    trial.set_user_attr("worker", worker)
    trial.set_user_attr("pid", os.getpid())
    values = spec.space.suggest(trial)
    config = make_config(values, spec.base, source=f"trial {trial.number}")
    first = spec.objectives[0]
    prunable = len(spec.objectives) == 1 and first.per_epoch

    def report(stats: EpochStats) -> bool:
        if _STOP.is_set():
            return True
        if not prunable:
            return False
        trial.report(float(getattr(stats, first.metric)), stats.epoch)
        return trial.should_prune()

    result = train(config, on_epoch=report)
    if result.outcome == "stopped" and _STOP.is_set():
        raise TrialInterrupted
    _record(trial, result)
    if result.outcome == "diverged":
        raise TrialFailed(f"diverged: non-finite loss at epoch {len(result.epochs)}")
    if result.outcome == "stopped":
        raise optuna.TrialPruned(f"pruned at epoch {len(result.epochs)}")
    return [metric_value(result, o) for o in spec.objectives]


def _record(trial: optuna.Trial, result: TrainResult) -> None:
    curves = {
        key: [getattr(e, key) for e in result.epochs]
        for key in ("train_loss", "val_loss", "val_accuracy", "seconds")
    }
    attrs = {
        "outcome": result.outcome,
        "curves": _finite(curves),
        "test_accuracy": result.test_accuracy,
        "test_loss": result.test_loss,
        "train_seconds": result.train_seconds,
        "param_count": result.param_count,
        "device": result.device,
        "host": socket.gethostname(),
        "version": hpsearch.__version__,
        "config": result.config,
    }
    for key, value in attrs.items():
        trial.set_user_attr(key, value)


def _finite(curves: dict[str, list[float]]) -> dict[str, list[float | None]]:
    # JSON has no NaN: a diverged epoch's loss is stored as null.
    return {k: [v if math.isfinite(v) else None for v in vs] for k, vs in curves.items()}


@dataclass
class WorkerStats:
    """What one worker did."""

    completed: int = 0
    pruned: int = 0
    failed: int = 0
    interrupted: bool = False


@contextlib.contextmanager
def _heartbeat(storage: BaseStorage, trial_id: int) -> Iterator[None]:
    """Records the trial's heartbeat in a thread while it runs (Study.optimize does this
    itself; our claim-then-run loop uses ask/tell, so it must)."""
    interval = getattr(storage, "heartbeat_interval", None)
    if not interval:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            with contextlib.suppress(Exception):  # a missed beat is retried next interval
                storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _claim(study: optuna.Study) -> int | None:
    # Optuna's own pop of the WAITING queue: an atomic WAITING -> RUNNING update per trial.
    # Study.ask() would create a fresh trial when the queue is empty; we must not.
    return study._pop_waiting_trial_id()


def run_worker(
    spec: StudySpec,
    storage: BaseStorage,
    worker: str = "main",
    stop: threading.Event | None = None,
    on_trial: Callable[[FrozenTrial], None] | None = None,
) -> WorkerStats:
    """Claims and runs queued trials of an existing study until none is left.

    A trial that raises or diverges is recorded as FAIL with its reason and the loop goes
    on. After :func:`request_stop` (a signal handler calls it) the running trial stops at its
    next epoch end; it, or a trial hit by KeyboardInterrupt, is failed and its params queued
    again, and the loop returns with ``interrupted`` set.

    Args:
        spec: The study file.
        storage: An opened storage (see :func:`open_spec_storage`).
        worker: A name recorded with every trial this worker runs.
        stop: Set it to stop before the next trial.
        on_trial: Called with every trial this worker finishes.
    """
    study = load_study(spec, storage)
    stats = WorkerStats()
    deadline = time.monotonic() + spec.timeout if spec.timeout else math.inf
    while not (stop is not None and stop.is_set()) and time.monotonic() < deadline:
        if _STOP.is_set():
            stats.interrupted = True
            break
        fail_stale_trials(study)  # a dead worker's trial is failed and re-queued here
        trial_id = None
        try:
            trial_id = _claim(study)
            if trial_id is None:
                if not _others_may_fail(study, storage):
                    break
                time.sleep(1.0)  # a running trial may still go stale and come back
                continue
            # Beat from right after the claim: a trial with no heartbeat is never found stale,
            # and constructing the Trial already runs the sampler (seconds for GP).
            with _heartbeat(storage, trial_id):
                frozen = _run_one(study, optuna.Trial(study, trial_id), spec, worker, stats)
        except (KeyboardInterrupt, TrialInterrupted):
            if trial_id is not None:
                _interrupt(study, storage, trial_id)
            stats.interrupted = True
            break
        if on_trial is not None:
            on_trial(frozen)
    return stats


def _others_may_fail(study: optuna.Study, storage: BaseStorage) -> bool:
    if not getattr(storage, "heartbeat_interval", None):
        return False
    return bool(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def _run_one(
    study: optuna.Study, trial: optuna.Trial, spec: StudySpec, worker: str, stats: WorkerStats
) -> FrozenTrial:
    try:
        values = objective(trial, spec, worker)
    except TrialInterrupted:
        raise
    except optuna.TrialPruned:
        stats.pruned += 1
        return study.tell(trial, state=TrialState.PRUNED)
    except Exception as e:  # divergence, a bad config, out of memory, a bug: not fatal
        stats.failed += 1
        _free_accelerator_memory()
        reason = f"{type(e).__name__}: {e}" if not isinstance(e, TrialFailed) else str(e)
        trial.set_user_attr("fail_reason", reason[:2000])
        return study.tell(trial, state=TrialState.FAIL)
    frozen = study.tell(trial, values)
    if frozen.state == TrialState.COMPLETE:
        stats.completed += 1
    else:
        stats.failed += 1
    return frozen


def _interrupt(study: optuna.Study, storage: BaseStorage, trial_id: int) -> None:
    """Fails an interrupted trial and queues it again, so a resume runs it."""
    for attempt in range(2):
        try:
            requeue(study, trial_id, "interrupted")
            return
        except Exception:
            # A Ctrl-C inside a database call can leave this thread's session unusable:
            # drop it and try once more on a fresh one. Whatever still fails is left to the
            # heartbeat check (or the launcher), which re-queues stale trials.
            session = getattr(storage, "scoped_session", None)
            if attempt == 0 and session is not None:
                session.remove()


def requeue(study: optuna.Study, trial_id: int, reason: str) -> None:
    """Fails a RUNNING trial with ``reason`` and queues a copy of its params.

    Raises:
        optuna.exceptions.UpdateFinishedTrialError: It finished meanwhile.
    """
    study._storage.set_trial_user_attr(trial_id, "fail_reason", reason)
    number = study._storage.get_trial(trial_id).number
    RetryCleanly()(study, study.tell(number, state=TrialState.FAIL))


def _free_accelerator_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def prepare(spec: StudySpec) -> tuple[BaseStorage, optuna.Study, int]:
    """Opens the storage, creates or loads the study and tops up its budget."""
    storage = open_spec_storage(spec)
    study = create_study(spec, storage)
    return storage, study, top_up(study, spec)


def worker_name() -> str:
    """``host:pid``, recorded with each trial."""
    return f"{socket.gethostname()}:{os.getpid()}"
