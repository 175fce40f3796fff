"""The worker loop: claim queued trials, train them, record each result, until none is left.

Workers only claim WAITING trials, atomically (``SELECT ... FOR UPDATE`` on PostgreSQL,
``BEGIN IMMEDIATE`` on SQLite, see :mod:`hpsearch.storage`), and stop when none is left, so
no point runs twice and a pool never overshoots the budget that
:func:`hpsearch.study.lifecycle.top_up` queued. A trial whose worker died is failed by the
heartbeat check (:func:`fail_stale_trials`) and queued again with the same params
(:class:`hpsearch.study.budget.RetryCleanly`); a failed-and-retried trial does not count.
:func:`run_study` is ``hpsearch run``: prepare the study, then run the loop in this process.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
import contextlib
from dataclasses import dataclass
import logging
import math
import os
import re
import signal
import socket
import sys
import threading
import time
import traceback
from types import FrameType
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

import hpsearch
from hpsearch import storage as db
from hpsearch.errors import StorageOutage
from hpsearch.spec.config import make_config
from hpsearch.spec.config import TrainConfig
from hpsearch.spec.studyfile import Objective
from hpsearch.spec.studyfile import StudySpec
from hpsearch.storage import in_or_after_outage
from hpsearch.study import budget
from hpsearch.study import record
from hpsearch.study.budget import requeue
from hpsearch.study.lifecycle import check_not_deleted
from hpsearch.study.lifecycle import load_existing_study
from hpsearch.study.lifecycle import preflight
from hpsearch.study.lifecycle import prepare
from hpsearch.study.samplers import make_sampler
from hpsearch.training.trainer import check_fits
from hpsearch.training.trainer import count_params
from hpsearch.training.trainer import EpochStats
from hpsearch.training.trainer import resolve_device
from hpsearch.training.trainer import set_threads
from hpsearch.training.trainer import train_population
from hpsearch.training.trainer import TrainResult

_log = logging.getLogger(__name__)

MAX_SAME_FAILURES = 3  # a worker stops after this many trials in a row fail with one error
STOP_POLL_S = 2.0  # how often a training worker reads whether `hpsearch stop --now` was asked

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


def install_stop_signals() -> None:
    """SIGTERM, and a first Ctrl-C, stop the running trial at its next epoch end (a safe point
    for the database), fail it and queue it again; a second Ctrl-C interrupts at once."""

    def stop(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and stop_requested():
            raise KeyboardInterrupt
        request_stop()
        if signum == signal.SIGINT:
            print("stopping after this epoch (Ctrl-C again to stop now)", file=sys.stderr)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


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
    """A trial stopped by :func:`request_stop`, or by ``hpsearch stop --now`` (``request``);
    failed and re-queued, not counted."""

    def __init__(self, request: budget.StopRequest | None = None) -> None:
        super().__init__(request.reason if request else "interrupted")
        self.request = request


class TrialTooLarge(Exception):
    """A trial whose network has more parameters than ``budget.max_params``: pruned
    before it trains."""

    def __init__(self, config: TrainConfig, params: int) -> None:
        super().__init__(f"{params:,} parameters, over budget.max_params")
        self.config = config
        self.params = params


@dataclass
class _Member:
    """A claimed trial of a population: its config once suggested, and its reports."""

    trial: optuna.Trial
    config: TrainConfig
    reported: int = 0  # the last epoch reported (a population split after running out of
    pruned: bool = False  # memory trains again from epoch 1: repeats are not reported)
    taken_over: bool = False
    timed: int = 0  # the last epoch whose seconds are counted in trained (likewise)
    trained: float = 0.0  # seconds of training, for budget.trial_timeout
    timed_out: bool = False

    def time(self, stats: EpochStats, limit: float | None) -> bool:
        """Counts an epoch's seconds once; whether the trial has used up ``limit`` before
        its last epoch (then it stops here: pruned, as too slow for the budget)."""
        if stats.epoch > self.timed:
            self.timed, self.trained = stats.epoch, self.trained + stats.seconds
        if limit is not None and self.trained > limit and stats.epoch < self.config.epochs:
            self.timed_out = True
        return self.timed_out


def _start(trial: optuna.Trial, spec: StudySpec, worker: str) -> TrainConfig:
    """Marks a claimed trial as this worker's and suggests its config.

    Raises:
        ConfigError: The suggested values make an invalid config.
        DeviceError: A model too large for this machine (:func:`check_fits`).
        TrialTooLarge: A network over ``budget.max_params``.
    """
    _log.info(
        "trial %d of %s started on worker %s, device %s",
        trial.number,
        spec.name,
        worker,
        resolve_device(spec.base.device),
    )
    with db.params_together(trial.study, db.trial_id(trial)):
        values = spec.space.suggest(trial)
    config = make_config(values, spec.base, source=f"trial {trial.number}")
    if spec.max_params is not None and (params := count_params(config)) > spec.max_params:
        raise TrialTooLarge(config, params)
    check_fits(config)  # fails this trial alone, not the population, nor the worker
    return config


class _StopNow:
    """Whether ``hpsearch stop --now`` asked the study's workers to stop their running
    trials: read at epoch ends, at most every :data:`STOP_POLL_S` (a small query each)."""

    def __init__(self, study: optuna.Study) -> None:
        self.study = study
        self.request: budget.StopRequest | None = None
        self._next = 0.0

    def asked(self) -> bool:
        """Whether it was asked (once found, for good)."""
        if self.request is None and time.monotonic() >= self._next:
            self._next = time.monotonic() + STOP_POLL_S
            found = budget.stop_request(self.study)
            self.request = found if found is not None and found.now else None
        return self.request is not None


def _reporter(
    spec: StudySpec, members: list[_Member], stop_now: _StopNow
) -> Callable[[int, EpochStats], bool]:
    """The trainer's epoch callback: reports the first objective of member ``i`` to its
    trial and says whether to stop it (pruned, out of ``budget.trial_timeout``, a stop
    requested here or by ``hpsearch stop --now``, or taken over)."""
    first = spec.objectives[0]
    prunable = len(spec.objectives) == 1 and first.per_epoch

    def report(i: int, stats: EpochStats) -> bool:
        m = members[i]
        if _STOP.is_set() or m.taken_over or stop_now.asked():
            return True
        # an epoch trained again after a split was reported already
        if prunable and stats.epoch > m.reported:
            try:
                m.trial.report(float(getattr(stats, first.metric)), stats.epoch)
                m.reported, m.pruned = stats.epoch, m.trial.should_prune()
            except UpdateFinishedTrialError:  # declared stale and queued again meanwhile
                m.taken_over = True
                return True
        # reported first: the pruner and the sampler see the epoch a slow trial stops at
        return m.pruned or m.time(stats, spec.trial_timeout)

    return report


def _write(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """Stores attributes of a running trial, all in one transaction."""
    db.set_trial_user_attrs(trial.study, db.trial_id(trial), attrs)


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


@dataclass
class WorkerStats:
    """What one worker did.

    Attributes:
        discarded: Trials this worker finished after another process had declared them
            stale and queued them again; their results were dropped.
        broken: Why the worker stopped claiming trials (the same error several times in a
            row), or ``None``.
        timed_out: Whether the study's timeout stopped it claiming trials.
        stopped: Why the study ended before its budget (its target reached, its best not
            beaten in ``budget.plateau`` trials, or ``hpsearch stop``), or ``None``.
    """

    completed: int = 0
    pruned: int = 0
    failed: int = 0
    discarded: int = 0
    interrupted: bool = False
    broken: str | None = None
    timed_out: bool = False
    stopped: str | None = None

    @property
    def all_failed(self) -> bool:
        """Whether trials ran and every one of them failed."""
        return self.failed > 0 and self.completed + self.pruned == 0


class TrialTakenOver(Exception):
    """Another process finished this trial while this worker was running it: its heartbeat
    went stale (the worker was paused, swapped out or cut off), so it was failed and queued
    again. This worker's result for it is discarded."""


class _SameErrorBreaker:
    """Trips when ``limit`` trials in a row failed with the same error (not divergence, which
    belongs to the point): the environment, not the hyperparameters, is then at fault."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.errors: list[str] = []

    def record(self, error: str | None) -> str | None:
        """Records one trial's error (``None`` if it did not raise); returns why to stop."""
        self.errors = [*self.errors, error][-self.limit :] if error else []
        # Numbers vary between trials of one cause ("trial 7: ...", "tried to allocate 2 MiB").
        kinds = {re.sub(r"\d+(\.\d+)?", "N", e) for e in self.errors}
        if self.limit and len(self.errors) == self.limit and len(kinds) == 1:
            return error
        return None


@contextlib.contextmanager
def _heartbeat(storage: BaseStorage, trial_ids: list[int]) -> Iterator[None]:
    """Records the heartbeat of every claimed trial in one thread while they run
    (Study.optimize does this itself; our claim-then-run loop uses ask/tell, so it must)."""
    interval = getattr(storage, "heartbeat_interval", None)
    if not interval:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            for trial_id in trial_ids:
                try:
                    storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
                except Exception as e:  # a missed beat is retried next interval
                    _log.debug("heartbeat of trial id %d failed: %s", trial_id, e)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_ids[0]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def fail_stale_trials(study: optuna.Study) -> int:
    """Fails each trial whose heartbeat went stale, recording why, and queues it again.

    Optuna's own ``fail_stale_trials`` leaves ``fail_reason`` empty; here the reason and the
    FAIL state are written in one transaction, so a worker that comes back late cannot turn
    the trial COMPLETE in between (it discards its result instead, see :class:`TrialTakenOver`).

    Returns:
        How many trials this call failed.
    """
    grace = db.grace_period(study)
    if grace is None:
        return 0
    stale = db.stale_trial_ids(study)
    # Checked after the query, which may itself have waited out an outage: heartbeats stopped
    # during it, so every running trial looks stale until live workers have beaten again.
    if in_or_after_outage(grace + 2 * db.heartbeat_interval(study)):
        return 0
    retry = db.stale_trial_callback(study)
    failed = 0
    for trial_id in stale:
        reason = record.fail_attrs(f"stale: no heartbeat for {grace} s")
        if not db.fail_running_trial(study, trial_id, reason):
            continue  # finished meanwhile, or another process failed it first
        failed += 1
        trial = db.get_trial(study, trial_id)
        _log.warning(
            "trial %d of %s: no heartbeat for %d s (worker %s); failed and queued again",
            trial.number,
            study.study_name,
            grace,
            record.worker_of(trial) or "?",
        )
        if retry is not None:
            retry(study, trial)
    return failed


def _started(study: optuna.Study) -> int:
    return budget.started(db.trial_counts(study))


def run_worker(
    spec: StudySpec,
    storage: BaseStorage,
    worker: str = "main",
    stop: threading.Event | None = None,
    on_trial: Callable[[FrozenTrial], None] | None = None,
    max_same_failures: int = MAX_SAME_FAILURES,
) -> WorkerStats:
    """Claims and runs queued trials of an existing study until none is left.

    The worker claims up to ``spec.population`` trials at once and trains them together as
    one population (members that cannot share kernels train in groups, one after the other):
    each member reports every epoch to its own trial and is pruned, fails or completes
    alone. A trial that raises or diverges is recorded as FAIL with its reason and the loop goes
    on, unless ``max_same_failures`` trials in a row raised the same error: then the worker
    stops claiming (``broken`` says why) rather than burn the budget on a broken environment.
    A trial this worker finishes after another process declared it stale is discarded with a
    log line. After :func:`request_stop` (a signal handler calls it) the running trial stops
    at its next epoch end; it, or a trial hit by KeyboardInterrupt, is failed and its params
    queued again, and the loop returns with ``interrupted`` set. ``hpsearch stop`` stops it
    likewise from anywhere (``stopped`` says so): before its next claim, or with ``--now``
    at the running trials' next epoch end.

    Args:
        spec: The study file.
        storage: An opened storage (see :func:`open_spec_storage`).
        worker: A name recorded with every trial this worker runs.
        stop: Set it to stop before the next trial.
        on_trial: Called with every trial this worker finishes.
        max_same_failures: Trials in a row failing with one error that stop the worker;
            0 never stops.
    """
    # One load of the study's started trials, then only what changed (see worker_storage).
    # Whoever started this worker compared its data with the study's (prepare, join_study):
    # hashing a large file once is enough.
    study = load_existing_study(spec, db.worker_storage(storage), compare_data=False)
    # A seeded sampler moves its seed past the trials the study already started, so a
    # resumed study never redraws its first points (see samplers.make_sampler).
    study.sampler = make_sampler(spec, started=_started(study))
    # A trial's config is stored as its differences from the base stored with the study
    # (once, at its creation), which reading merges back: this worker's base may differ in
    # how it runs trials (--device, --precision), and those differences are the trial's own.
    base = record.base_config(study) or spec.base.to_dict()
    stats = WorkerStats()
    breaker = _SameErrorBreaker(max_same_failures)
    deadline = time.monotonic() + spec.timeout if spec.timeout else math.inf
    population = spec.population
    stale_check_at = 0.0
    finished: list[FrozenTrial] = []  # by this worker: a stop rule sees them at once
    stop_now = _StopNow(study)
    while not (stop is not None and stop.is_set()):
        if time.monotonic() >= deadline:
            stats.timed_out = True
            break
        if _STOP.is_set():
            stats.interrupted = True
            break
        claimed: list[int] = []
        try:  # each read may find the study deleted (KeyError, below)
            if _ends(study, spec, finished, stats):
                break
            if time.monotonic() >= stale_check_at:
                fail_stale_trials(study)  # a dead worker's trial is failed and re-queued here
                # A trial goes stale only after a grace period of missed beats: checking more
                # often than once a heartbeat interval (a query each) finds none sooner.
                stale_check_at = time.monotonic() + db.heartbeat_interval(study)
            claimed = _claim(study, population, worker)
            if not claimed:
                if not db.may_go_stale(study):
                    break
                time.sleep(1.0)  # a running trial may still go stale and come back
                continue
            # Beat from right after the claim: a trial with no heartbeat is never found stale,
            # and constructing a Trial already runs the sampler (seconds for GP).
            with _heartbeat(storage, claimed):
                outcomes = _run_population(study, claimed, spec, worker, base, stop_now)
        except (KeyboardInterrupt, TrialInterrupted) as e:
            asked = e.request if isinstance(e, TrialInterrupted) else None
            why = f"stopped by {asked.command}" if asked else "interrupted"
            for trial_id in claimed:  # those still running; a finished one is left alone
                _interrupt(study, storage, trial_id, why)
            if asked is not None:
                stats.stopped = asked.reason  # asked for: an end, not an interruption
            else:
                stats.interrupted = True
            break
        except KeyError:  # a record gone: the study itself, or a bug
            check_not_deleted(study, "this worker")
            raise
        for trial_id, frozen, error in outcomes:
            if frozen is None:
                stats.discarded += 1
                _log.warning(
                    "trial %d of %s was declared stale while this worker ran it and was queued "
                    "again; discarding this worker's result",
                    db.get_trial(study, trial_id).number,
                    spec.name,
                )
                continue
            _count(stats, frozen)
            if spec.target is not None or spec.plateau is not None:
                finished.append(frozen)
            _log.info(
                "trial %d of %s %s on worker %s%s",
                frozen.number,
                spec.name,
                frozen.state.name.lower(),
                worker,
                f": {frozen.values}" if frozen.values else "",
            )
            if on_trial is not None:
                on_trial(frozen)
            stats.broken = stats.broken or breaker.record(error)
        if stats.broken:
            break
    return stats


def _ends(
    study: optuna.Study, spec: StudySpec, finished: list[FrozenTrial], stats: WorkerStats
) -> bool:
    """Whether the study ends before this worker's next claim (see
    :func:`hpsearch.study.budget.stop_reason`); sets ``stats.stopped``, and records why a
    rule of the file ended it, for ``status``."""
    why = budget.stop_reason(study, spec, finished)
    if not why:
        return False
    # the last trial of the budget may reach the target: then nothing ended early
    done = budget.finished_count(study)
    stats.stopped = why if done < spec.budget() else None
    if stats.stopped and not budget.asked(why):  # a request is shown as it stands
        budget.record_end(study, why, done)
    return True


def _claim(study: optuna.Study, population: int, worker: str) -> list[int]:
    """Claims up to ``population`` WAITING trials, each atomically (see internals)."""
    claimed: list[int] = []
    while len(claimed) < population:
        # Who runs it is stored with the claim: a launcher (or an operator) finds which
        # process runs a trial from the moment it runs.
        trial_id = db.claim_waiting_trial(study, record.start_attrs(worker))
        if trial_id is None:
            break
        claimed.append(trial_id)
    return claimed


def _count(stats: WorkerStats, trial: FrozenTrial) -> None:
    if trial.state == TrialState.COMPLETE:
        stats.completed += 1
    elif trial.state == TrialState.PRUNED:
        stats.pruned += 1
    else:
        stats.failed += 1


Outcome = tuple[int, FrozenTrial | None, str | None]  # trial id, trial (None: taken over), error


def _run_population(
    study: optuna.Study,
    trial_ids: list[int],
    spec: StudySpec,
    worker: str,
    base: Mapping[str, Any],
    stop_now: _StopNow,
) -> list[Outcome]:
    """Runs claimed trials as one population (see
    :func:`hpsearch.training.trainer.train_population`) and records each one's outcome,
    its config as far as it differs from ``base`` (the study's stored base config).

    Returns:
        Per trial: its id, the finished trial (``None`` when another process finished it
        first: its result was discarded), and the error it raised (``None`` unless it raised;
        divergence is the point's fault, not an error).

    Raises:
        TrialInterrupted: A stop was requested (here, or with ``hpsearch stop --now``); the
            caller re-queues the running trials.
    """
    outcomes: list[Outcome] = []
    members: list[_Member] = []
    for trial_id in trial_ids:
        trial = db.trial_for(study, trial_id)
        try:
            members.append(_Member(trial, _start(trial, spec, worker)))
        except UpdateFinishedTrialError:
            outcomes.append((trial_id, None, None))
        except TrialTooLarge as e:
            outcomes.append(_too_large(study, trial, e, spec, base))
        except (KeyboardInterrupt, StorageOutage):
            raise
        except Exception as e:  # an invalid suggested config: this trial fails alone
            outcomes.append(_fail(study, trial, e, spec, worker))
    if not members:
        return outcomes
    try:
        results = train_population([m.config for m in members], _reporter(spec, members, stop_now))
    except (KeyboardInterrupt, StorageOutage):
        raise
    except Exception as e:  # the whole population failed (a device error, a bug)
        _free_accelerator_memory()
        if isinstance(e, KeyError) and not db.study_exists(study):
            raise  # not the trials' fault: the study was deleted (see run_worker)
        return outcomes + [_fail(study, m.trial, e, spec, worker) for m in members]
    if (_STOP.is_set() or stop_now.request) and any(r.outcome == "stopped" for r in results):
        raise TrialInterrupted(None if _STOP.is_set() else stop_now.request)
    threads = _torch_threads()
    for m, result in zip(members, results, strict=True):
        trial_id = db.trial_id(m.trial)
        if m.taken_over:
            outcomes.append((trial_id, None, None))
            continue
        try:
            attrs = record.result_attrs(result, threads, hpsearch.__version__, base)
            if m.timed_out and result.outcome == "stopped":  # not one that diverged then
                attrs[record.OUTCOME] = record.TIMED_OUT
                _log.info(
                    "trial %d of %s timed out: %.1f s of training by epoch %d, over "
                    "budget.trial_timeout %g s",
                    m.trial.number,
                    spec.name,
                    m.trained,
                    m.timed,
                    spec.trial_timeout,
                )
            _write(m.trial, attrs)
            if result.outcome == "diverged":
                reason = f"diverged: non-finite loss at epoch {len(result.epochs)}"
                outcomes.append(_fail(study, m.trial, TrialFailed(reason), spec, worker))
            elif result.outcome == "stopped":
                frozen = _tell(study, m.trial, state=TrialState.PRUNED)
                outcomes.append((trial_id, frozen, None))
            else:
                values = [metric_value(result, o) for o in spec.objectives]
                outcomes.append((trial_id, _tell(study, m.trial, values), None))
        except (UpdateFinishedTrialError, TrialTakenOver):
            outcomes.append((trial_id, None, None))
    return outcomes


def _too_large(
    study: optuna.Study,
    trial: optuna.Trial,
    found: TrialTooLarge,
    spec: StudySpec,
    base: Mapping[str, Any],
) -> Outcome:
    """Prunes a trial over ``budget.max_params`` untrained: TPE ranks a pruned trial
    without epochs below all others, and so learns where the networks are too large."""
    trial_id = db.trial_id(trial)
    _log.info("trial %d of %s pruned untrained: %s", trial.number, spec.name, found)
    try:
        _write(trial, record.too_large_attrs(found.params, found.config.to_dict(), base))
        return trial_id, _tell(study, trial, state=TrialState.PRUNED), None
    except (UpdateFinishedTrialError, TrialTakenOver):
        return trial_id, None, None


def _fail(
    study: optuna.Study, trial: optuna.Trial, error: Exception, spec: StudySpec, worker: str
) -> Outcome:
    """Fails a running trial with the reason (and traceback) of ``error``."""
    trial_id = db.trial_id(trial)
    diverged = isinstance(error, TrialFailed)
    reason = str(error) if diverged else f"{type(error).__name__}: {error}"
    _log.warning(
        "trial %d of %s failed on worker %s: %s",
        trial.number,
        spec.name,
        worker,
        reason.splitlines()[0],
    )
    if not diverged:
        text = "".join(traceback.format_exception(error))
        _log.debug("trial %d traceback:\n%s", trial.number, text)
        try:  # kept with the trial: `hpsearch trial STUDY N` shows it
            _write(trial, record.traceback_attrs(text))
        except UpdateFinishedTrialError:
            return trial_id, None, None
    if not db.fail_running_trial(study, trial_id, record.fail_attrs(reason)):
        return trial_id, None, None
    return trial_id, db.get_trial(study, trial_id), None if diverged else reason


def _tell(
    study: optuna.Study,
    trial: optuna.Trial,
    values: list[float] | None = None,
    state: TrialState | None = None,
) -> FrozenTrial:
    """``study.tell``; :class:`TrialTakenOver` if another process finished the trial first."""
    try:
        return study.tell(trial, values, state=state)
    except (UpdateFinishedTrialError, ValueError) as e:
        # Optuna says "Cannot tell a FAIL trial" (ValueError) when it finds the trial finished,
        # or raises UpdateFinishedTrialError when that happens during the write.
        if db.get_trial(study, db.trial_id(trial)).state.is_finished():
            raise TrialTakenOver from e
        raise


def _interrupt(study: optuna.Study, storage: BaseStorage, trial_id: int, why: str) -> None:
    """Fails an interrupted trial (``why``) and queues it again, so a resume runs it."""
    for attempt in range(2):
        try:
            requeue(study, trial_id, why)
            return
        except Exception as e:
            # A Ctrl-C inside a database call can leave this thread's session unusable:
            # drop it and try once more on a fresh one. Whatever still fails is left to the
            # heartbeat check (or the launcher), which re-queues stale trials.
            _log.debug("re-queueing interrupted trial id %d failed: %s", trial_id, e)
            if attempt == 0:
                db.drop_session(storage)


def _free_accelerator_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_study(
    spec: StudySpec,
    on_trial: Callable[[FrozenTrial], None] | None = None,
    max_same_failures: int = MAX_SAME_FAILURES,
    *,
    threads: int | None = None,
    stop_signals: bool = False,
    on_prepared: Callable[[optuna.Study, int], None] | None = None,
) -> tuple[optuna.Study, WorkerStats]:
    """Runs a study in this process until its budget is reached: what ``hpsearch run`` does.

    Checks the environment first (:func:`preflight`), creates or resumes the study and
    queues its budget (:func:`prepare`), then runs trials (:func:`run_worker`).

    Args:
        spec: The study file (see :func:`hpsearch.spec.studyfile.load_spec`).
        on_trial: Called with every trial this process finishes.
        max_same_failures: See :func:`run_worker`.
        threads: Torch CPU threads (``None``: torch's default, all cores).
        stop_signals: Whether SIGTERM and a first Ctrl-C stop the running trial at its next
            epoch end and queue it again (:func:`install_stop_signals`; the command line's
            way, not a notebook's).
        on_prepared: Called with the study and how many trials were queued now, before the
            first trial.

    Returns:
        The study and what this process did.
    """
    set_threads(threads)
    spec = preflight(spec)  # before anything is written: a broken environment burns no budget
    storage, study, queued = prepare(spec)
    if on_prepared is not None:
        on_prepared(study, queued)
    if stop_signals:
        install_stop_signals()
    stats = run_worker(
        spec, storage, worker_name(), on_trial=on_trial, max_same_failures=max_same_failures
    )
    return study, stats


def worker_name() -> str:
    """``host:pid``, recorded with each trial."""
    return f"{socket.gethostname()}:{os.getpid()}"
