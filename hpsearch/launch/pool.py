"""Worker pools: one process per worker, pinned to a GPU or sharing the CPU cores.

``launch`` creates (or resumes) the study and tops up its budget once, then starts workers
that only claim queued trials (see :mod:`hpsearch.study.worker`), so the budget is global. It
watches them: a worker that dies is reported and replaced (up to ``max_restarts``), and the
launcher itself fails stale trials, so a trial whose worker was killed is re-queued even if
no other worker is alive to notice. Ctrl-C or SIGTERM stops every worker within seconds;
interrupted trials are re-queued, and running ``launch`` again resumes.
"""

from __future__ import annotations

from collections.abc import Sequence
import contextlib
from dataclasses import dataclass
from dataclasses import field
import logging
import os
from pathlib import Path
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Any
from typing import IO

import optuna
from optuna.trial import TrialState

from hpsearch import storage as db
from hpsearch.errors import BROKEN_EXIT
from hpsearch.errors import ConfigError
from hpsearch.errors import StorageOutage
from hpsearch.errors import USAGE_EXIT
from hpsearch.launch.slots import parse_gpus
from hpsearch.launch.slots import timed_out
from hpsearch.launch.slots import worker_flags
from hpsearch.launch.standby import fork_hazard
from hpsearch.launch.standby import ForkedProcess
from hpsearch.launch.standby import Main
from hpsearch.launch.standby import Standby
from hpsearch.launch.worker import LAUNCHER_ENV
from hpsearch.launch.worker import THREADS_ENV
from hpsearch.spec.studyfile import StudySpec
from hpsearch.study import record
from hpsearch.study.budget import failed
from hpsearch.study.budget import finished_count
from hpsearch.study.budget import requeue
from hpsearch.study.budget import stop_reason
from hpsearch.study.lifecycle import check_not_deleted
from hpsearch.study.worker import fail_stale_trials
from hpsearch.study.worker import MAX_SAME_FAILURES

_log = logging.getLogger(__name__)

STOP_GRACE_S = 10.0  # after SIGTERM, a worker gets this long before SIGKILL
CHECK_S = 0.05  # how often the pool looks for a worker's exit (a waitpid: cheap)


@dataclass(frozen=True)
class WorkerSlot:
    """Where one worker runs: a name, its device, its environment additions, and how many
    workers share its GPU (each plans populations within its share of the memory)."""

    name: str
    device: str
    env: dict[str, str] = field(default_factory=dict)
    sharing: int = 1


def plan_slots(
    gpus: str | None,
    workers_per_gpu: int,
    cpu_workers: int | None,
    visible_gpus: int,
    cores: int,
    most: int | None = None,
) -> list[WorkerSlot]:
    """Decides the workers: one (or K) per selected GPU, else CPU workers sharing the cores;
    no more than there can be trials for (a worker beyond them would load the data, find
    nothing to claim and leave; ``--workers 10000`` would fork ten thousand processes).

    Args:
        gpus: ``all``, ``none`` or a comma list of indices; ``None`` means all visible.
        workers_per_gpu: Workers on each GPU, each sizing its populations within its share
            of the GPU's memory (see :func:`hpsearch.launch.slots.memory_share`).
        cpu_workers: Number of CPU workers (default: one per core) when no GPU is used.
        visible_gpus: GPUs this machine has.
        cores: CPU cores this machine has.
        most: Workers that can have a trial: the fewest GPUs, then the fewest workers per
            GPU, that give this many (a few more where they divide unevenly); that many CPU
            workers at most, sharing all the cores. ``None``: no limit.

    Raises:
        ConfigError: A GPU index that does not exist, or a malformed ``--gpus``.
    """
    selected = _select_gpus(gpus, visible_gpus)
    if most is not None and selected:
        selected = selected[:most]
        workers_per_gpu = min(workers_per_gpu, -(-most // len(selected)))
    if selected:
        return [
            WorkerSlot(f"gpu{g}-{k}", "cuda", {"CUDA_VISIBLE_DEVICES": str(g)}, workers_per_gpu)
            for g in selected
            for k in range(workers_per_gpu)
        ]
    n = cpu_workers or cores
    if most is not None:
        n = min(n, most)
    threads = str(max(1, cores // n))  # divide the cores, do not oversubscribe them
    env = {THREADS_ENV: threads, "OMP_NUM_THREADS": threads, "CUDA_VISIBLE_DEVICES": ""}
    return [WorkerSlot(f"cpu-{i}", "cpu", env) for i in range(n)]


def _select_gpus(gpus: str | None, visible: int) -> list[int]:
    selected = parse_gpus(gpus)
    if selected is None:
        return list(range(visible))
    bad = [g for g in selected if not 0 <= g < visible]
    if bad:
        raise ConfigError(
            [
                f"--gpus: no GPU {bad[0]}; this machine has {visible} (indices 0..{visible - 1})"
                if visible
                else f"--gpus: GPU {bad[0]} requested but no GPU is visible"
            ]
        )
    return selected


@dataclass
class _Worker:
    slot: WorkerSlot
    log: Path
    process: subprocess.Popen[bytes] | ForkedProcess | None = None
    restarts: int = 0
    handle: IO[bytes] | None = None
    state: str = "starting"
    exit_codes: list[int] = field(default_factory=list)


@dataclass
class PoolResult:
    """How a pool ended."""

    budget: int
    finished: int
    interrupted: bool
    failures: list[str]
    all_failed: bool = False  # trials finished in this launch, and every one of them failed
    timed_out: bool = False  # the study's timeout passed: the workers stopped claiming
    stopped: str | None = None  # why the study ended before its budget (target, plateau)

    @property
    def ok(self) -> bool:
        return not self.interrupted and self.finished >= self.budget


class _Stop(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, raised wherever the launcher's main thread is when it comes: a
    KeyboardInterrupt, not an Exception, so that no ``except Exception`` on the way (the
    stale-trial check's, a library's) swallows it and the pool runs on."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def worker_args(
    spec: StudySpec, slot: WorkerSlot, max_same_failures: int = MAX_SAME_FAILURES
) -> list[str]:
    """The ``hpsearch`` arguments of one worker process (a forked one runs them too)."""
    assert spec.path is not None
    return [
        "--log-level",  # the worker's log file shows each trial's start and end
        "info",
        "worker",
        spec.path,
        "--device",
        slot.device,
        "--name",
        slot.name,
        "--max-same-failures",
        str(max_same_failures),
        *worker_flags(spec, slot.sharing),
    ]


def worker_command(
    spec: StudySpec, slot: WorkerSlot, max_same_failures: int = MAX_SAME_FAILURES
) -> list[str]:
    """The command line of one worker process started as a new interpreter."""
    return [sys.executable, "-m", "hpsearch", *worker_args(spec, slot, max_same_failures)]


def worker_env(spec: StudySpec, slot: WorkerSlot) -> dict[str, str]:
    """The environment of one worker process of this launcher."""
    return {
        **os.environ,
        **slot.env,
        LAUNCHER_ENV: str(os.getpid()),  # the worker stops if this process goes away
        "PYTHONUNBUFFERED": "1",
        # the URL may hold a password: the environment, unlike argv, is not public
        "HPSEARCH_STORAGE": spec.storage,
    }


def worker_log(log_dir: Path, slot: WorkerSlot) -> Path:
    """Where one worker's output goes (appended to across restarts and launches)."""
    return log_dir / f"{slot.name}.log"


def fork_standby(
    spec: StudySpec,
    slots: Sequence[WorkerSlot],
    log_dir: Path,
    main: Main,
    max_same_failures: int = MAX_SAME_FAILURES,
) -> Standby | None:
    """Forks one waiting worker per slot (see :mod:`hpsearch.launch.standby`), or ``None``
    (and the pool spawns its workers) where this process must not fork."""
    hazard = fork_hazard()
    if hazard is not None:
        _log.info("workers start as new processes: %s", hazard)
        return None
    log_dir.mkdir(parents=True, exist_ok=True)
    standby = Standby(main)
    for slot in slots:
        argv = worker_args(spec, slot, max_same_failures)
        standby.fork(slot.name, argv, worker_env(spec, slot), worker_log(log_dir, slot))
    return standby


class Pool:
    """Starts, watches, restarts and stops worker processes for one study.

    Workers forked beforehand (``standby``) are let go when the pool starts; the others, and
    every restart, are new interpreters.
    """

    def __init__(
        self,
        spec: StudySpec,
        study: optuna.Study,
        slots: Sequence[WorkerSlot],
        log_dir: Path,
        max_restarts: int = 3,
        max_same_failures: int = MAX_SAME_FAILURES,
        standby: Standby | None = None,
    ) -> None:
        self.spec = spec
        self.standby = standby
        self.study = study
        self.max_restarts = max_restarts
        self.max_same_failures = max_same_failures
        log_dir.mkdir(parents=True, exist_ok=True)
        self.workers = [_Worker(slot, worker_log(log_dir, slot)) for slot in slots]
        self._before = _kept(db.trial_counts(self.study))

    def _states(self) -> dict[str, int]:
        return db.trial_counts(self.study).states

    def _start(self, worker: _Worker) -> None:
        forked = self.standby.release(worker.slot.name) if self.standby else None
        if forked is not None:  # forked before the study existed: it waited for this
            worker.process = forked
            worker.state = "running"
            return
        if worker.handle is not None:
            worker.handle.close()
        worker.handle = open(worker.log, "ab")  # noqa: SIM115 - lives as long as the process
        worker.process = subprocess.Popen(
            worker_command(self.spec, worker.slot, self.max_same_failures),
            stdout=worker.handle,
            stderr=subprocess.STDOUT,
            env=worker_env(self.spec, worker.slot),
            start_new_session=True,  # our signals only: the launcher decides when they stop
        )
        worker.state = "running"

    def run(self, on_tick: Any = None, poll_s: float = 1.0) -> PoolResult:
        """Runs the pool until every worker has exited, or until Ctrl-C / SIGTERM.

        A worker's exit is seen within :data:`CHECK_S`; stale trials are checked and
        ``on_tick`` called every ``poll_s``.

        Raises:
            StorageError: The study was deleted while the pool ran it (its workers stopped,
                each saying so).
        """
        old = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        interrupted, started = False, time.monotonic()
        try:
            for worker in self.workers:
                self._start(worker)
            next_tick = 0.0
            while any(w.state == "running" for w in self.workers):
                self._check_workers()
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + poll_s
                    try:
                        fail_stale_trials(self.study)
                    except StorageOutage:
                        raise
                    except Exception as e:  # a busy database: try next tick
                        _log.warning("stale-trial check failed: %s", e)
                    if on_tick is not None:
                        on_tick(self)
                time.sleep(CHECK_S)
        except KeyboardInterrupt:  # Ctrl-C, or _Stop
            interrupted = True
            self.stop()
        except BaseException:  # an outage past its wait, or a bug: no worker is left behind
            self.stop()
            raise
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
            for worker in self.workers:
                if worker.handle is not None:
                    worker.handle.close()
        check_not_deleted(self.study, "the launch")  # before what follows reads it
        return PoolResult(
            self.spec.budget(),
            self.finished(),
            interrupted,
            self.failures(),
            self._all_failed(),
            timed_out(self.spec.timeout, started),
            stop_reason(self.study, self.spec),
        )

    def _all_failed(self) -> bool:
        now, before = _kept(db.trial_counts(self.study)), self._before
        new = {s: now[s] - before[s] for s in now}
        return new["FAIL"] > 0 and new["COMPLETE"] + new["PRUNED"] == 0

    def _check_workers(self) -> None:
        for worker in self.workers:
            if worker.state != "running" or worker.process is None:
                continue
            code = worker.process.poll()
            if code is None:
                continue
            worker.exit_codes.append(code)
            if code == 0:
                worker.state = "done"
            elif code in (USAGE_EXIT, BROKEN_EXIT):
                worker.state = "broken"  # its environment fails every trial: not restarted
            elif worker.restarts < self.max_restarts and self._work_left():
                worker.restarts += 1
                self._start(worker)
            else:
                worker.state = "dead"

    def _work_left(self) -> bool:
        states = self._states()  # counted by the database: the queue is never loaded
        return states.get("WAITING", 0) + states.get("RUNNING", 0) > 0

    def stop(self) -> None:
        """SIGTERM to every worker, SIGKILL after a grace period (at once on a second
        Ctrl-C), then re-queue what any killed worker left RUNNING, so that no trial stays
        RUNNING."""
        running = [w.process for w in self.workers if w.process and w.process.poll() is None]
        try:
            for process in running:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE_S
            for process in running:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(max(0.1, deadline - time.monotonic()))
        except KeyboardInterrupt:  # Ctrl-C again: no more grace
            pass
        for process in running:  # what the grace left running (a no-op for the rest)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()
        for worker in self.workers:
            if worker.process in running:
                worker.state = "stopped"
        names = {w.slot.name for w in self.workers}
        try:
            requeue_running(self.study, names)
        except Exception as e:  # the storage is down: the heartbeat check re-queues them later
            _log.warning("could not re-queue the stopped workers' trials: %s", e)

    def finished(self) -> int:
        return finished_count(self.study)

    def failures(self) -> list[str]:
        lines = []
        for w in self.workers:
            bad = [c for c in w.exit_codes if c != 0]
            if bad:
                lines.append(
                    f"{w.slot.name}: exited {len(bad)}x with {bad} "
                    f"(restarted {w.restarts}x, now {w.state}); log {w.log}"
                )
        return lines

    def states(self) -> str:
        """Each worker's state (counts alone beyond 8 workers), for the progress line."""
        if len(self.workers) > 8:
            counts: dict[str, int] = {}
            for w in self.workers:
                counts[w.state] = counts.get(w.state, 0) + 1
            return " ".join(f"{k} {v}" for k, v in counts.items())
        return " ".join(
            f"{w.slot.name}:{w.state}" + (f"(restarted {w.restarts}x)" if w.restarts else "")
            for w in self.workers
        )


def _kept(counts: db.TrialCounts) -> dict[str, int]:
    """Finished trials by state, less the failures queued again (stopped, interrupted, gone
    stale): those are not the trials' fault."""
    states = counts.states
    return {
        "COMPLETE": states.get("COMPLETE", 0),
        "PRUNED": states.get("PRUNED", 0),
        "FAIL": failed(counts),
    }


def requeue_running(study: optuna.Study, workers: set[str]) -> int:
    """Fails the RUNNING trials of the given (stopped) workers and queues their params again."""
    count = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if record.worker_of(trial) not in workers:
            continue
        try:
            count += requeue(study, db.trial_id(trial), "worker stopped")
        except Exception as e:  # a busy database: the heartbeat check re-queues it later
            _log.warning("could not re-queue trial %d: %s", trial.number, e)
    return count
