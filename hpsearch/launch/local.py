"""``hpsearch launch``: a pool of worker processes on this machine, one per GPU (or K per
GPU), else CPU workers sharing the cores, with optuna-dashboard beside them if asked."""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
from dataclasses import dataclass
import os
from pathlib import Path
import subprocess
import sys

import optuna

from hpsearch import storage as db
from hpsearch.launch.pool import fork_standby
from hpsearch.launch.pool import plan_slots
from hpsearch.launch.pool import Pool
from hpsearch.launch.pool import PoolResult
from hpsearch.launch.pool import WorkerSlot
from hpsearch.launch.standby import Main
from hpsearch.spec.config import make_config
from hpsearch.spec.studyfile import StudySpec
from hpsearch.study.lifecycle import fit_task
from hpsearch.study.lifecycle import preflight
from hpsearch.study.lifecycle import prepare
from hpsearch.study.worker import MAX_SAME_FAILURES

LOG_ROOT = Path("hpsearch-logs")


def log_dir(spec: StudySpec, given: str | Path | None = None) -> Path:
    """Where a launch writes its workers' logs: ``given``, else ``hpsearch-logs/STUDY``."""
    return Path(given) if given else LOG_ROOT / spec.name


@dataclass(frozen=True)
class LocalOptions:
    """How a local launch places its workers (the ``launch`` flags without ``--slurm``).

    Attributes:
        gpus: ``all`` (the default when GPUs are visible), ``none``, or indices ``0,2,3``.
        workers_per_gpu: Workers on each selected GPU.
        cpu_workers: CPU workers when no GPU is used [one per core].
        max_restarts: Replacements per worker slot after a crash.
        max_same_failures: A worker stops after this many trials in a row fail alike.
        log_dir: Worker logs [``hpsearch-logs/STUDY``].
        dashboard_port: Serve optuna-dashboard on this port beside the pool (``None``: no).
    """

    gpus: str | None = None
    workers_per_gpu: int = 1
    cpu_workers: int | None = None
    max_restarts: int = 3
    max_same_failures: int = MAX_SAME_FAILURES
    log_dir: str | None = None
    dashboard_port: int | None = None


@dataclass(frozen=True)
class LaunchStart:
    """What a launch has set up when its workers start (for a progress line)."""

    study: optuna.Study
    queued: int
    slots: tuple[WorkerSlot, ...]
    logs: Path


def launch_local(
    spec: StudySpec,
    options: LocalOptions = LocalOptions(),
    on_start: Callable[[LaunchStart], None] | None = None,
    on_tick: Callable[[Pool], None] | None = None,
    on_preflight: Callable[[str], None] | None = None,
    fork_main: Main | None = None,
) -> PoolResult:
    """Creates (or resumes) the study, queues its budget, and runs a pool of workers on this
    machine until the budget is reached, every worker has stopped, or Ctrl-C / SIGTERM.

    Before anything is written, the data set loads and a batch trains on the workers' kind
    of device (each worker checks its own device again before it claims a trial).

    Args:
        spec: The study file (workers read it again: it must have a path).
        options: Where the workers run (see :class:`LocalOptions`).
        on_start: Called once the study is prepared, before the workers start.
        on_tick: Called about once a second with the pool while it runs.
        on_preflight: Called with the workers' first device once the data has passed its
            checks, before the pre-flight trains a batch, so that a launch says what it does
            while it starts.
        fork_main: Runs a worker's command line (the CLI's ``main``): given, the workers are
            forked from this process once it has imported torch, before it reads data or
            initialises CUDA (see :mod:`hpsearch.launch.standby`), and start within a
            fraction of a second; else each is a new interpreter that imports torch itself.

    Raises:
        ConfigError: A GPU that does not exist, or a study file without a path.
        PreflightError: The data or the device cannot train: nothing was written.
    """
    import torch  # counting GPUs through NVML does not initialise CUDA: this may still fork

    import hpsearch.launch.worker  # noqa: F401 - what every worker runs, imported once for all

    db.preload(spec.storage)  # and what opening the storage imports

    slots = plan_slots(
        options.gpus,
        options.workers_per_gpu,
        options.cpu_workers,
        torch.cuda.device_count(),
        os.cpu_count() or 1,
        most=workers_needed(spec),
    )
    logs = log_dir(spec, options.log_dir)
    # forked now, before this process reads data, initialises CUDA or opens the storage: they
    # load their data while the study is prepared, and wait until it is
    standby = None
    if fork_main is not None:
        standby = fork_standby(spec, slots, logs, fork_main, options.max_same_failures)
    dashboard = None
    try:
        spec = fit_task(spec)  # bad data is refused first, in one line
        if on_preflight is not None:
            on_preflight(slots[0].device)
        device = slots[0].device
        preflight(dataclasses.replace(spec, base=make_config({"device": device}, spec.base)))
        _, study, queued = prepare(spec)
        if on_start is not None:
            on_start(LaunchStart(study, queued, tuple(slots), logs))
        pool = Pool(
            spec,
            study,
            slots,
            logs,
            options.max_restarts,
            options.max_same_failures,
            standby,
        )
        if options.dashboard_port is not None:
            dashboard = start_dashboard(spec, options.dashboard_port)
        return pool.run(on_tick=on_tick)
    finally:
        if standby is not None:
            standby.close()  # those never let go (the launch stopped before its pool)
        if dashboard is not None:
            dashboard.terminate()
            dashboard.wait()


def workers_needed(spec: StudySpec) -> int | None:
    """The most workers a launch of ``spec`` can keep busy: its budget of trials, a
    population to each worker; ``None`` for a budget of time alone."""
    return None if spec.trials is None else -(-spec.trials // spec.population)


def start_dashboard(spec: StudySpec, port: int) -> subprocess.Popen[bytes]:
    """optuna-dashboard on the study's storage, in a process of its own (it prints its URL)."""
    assert spec.path is not None
    cmd = [sys.executable, "-m", "hpsearch", "dashboard", spec.path, "--port", str(port)]
    env = {**os.environ, "HPSEARCH_STORAGE": spec.storage}  # not argv: it may hold a password
    return subprocess.Popen(cmd, env=env)
