"""A worker process's start-up: what ``hpsearch worker`` does, whether a person started it on
another host, a :class:`~hpsearch.launch.pool.Pool` on this one, or a Slurm job task.

It pins the device, names the worker (its seeded sampler then draws a stream of its own),
stops at an epoch end on SIGTERM, on Ctrl-C or when its launcher dies, limits torch's threads
to its share of the cores and its populations to its share of the GPU's memory, checks that
it can train before it claims a trial, and joins an existing study (it never creates one:
the launcher did).
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
import logging
import os
import threading
import time

from optuna.trial import FrozenTrial

from hpsearch.errors import ConfigError
from hpsearch.launch.standby import wait_for_launcher
from hpsearch.spec.config import make_config
from hpsearch.spec.studyfile import StudySpec
from hpsearch.study.lifecycle import load_existing_study
from hpsearch.study.lifecycle import open_spec_storage
from hpsearch.study.lifecycle import preflight
from hpsearch.study.worker import install_stop_signals
from hpsearch.study.worker import MAX_SAME_FAILURES
from hpsearch.study.worker import request_stop
from hpsearch.study.worker import run_worker
from hpsearch.study.worker import worker_name
from hpsearch.study.worker import WorkerStats
from hpsearch.training.trainer import set_memory_share
from hpsearch.training.trainer import set_threads

_log = logging.getLogger(__name__)

THREADS_ENV = "HPSEARCH_TORCH_THREADS"  # set by a pool: a worker's share of the cores
LAUNCHER_ENV = "HPSEARCH_LAUNCHER_PID"  # set by a pool: the worker stops if it goes away


def watch_launcher(poll_s: float = 1.0) -> None:
    """In a worker started by ``launch``: if the launcher goes away (killed, crashed), stop
    after the running trial's epoch, as on SIGTERM, so no worker outlives its launcher."""
    launcher = os.environ.get(LAUNCHER_ENV)
    if not launcher:
        return

    def watch() -> None:
        while os.getppid() == int(launcher):
            time.sleep(poll_s)
        _log.warning("the launcher (pid %s) is gone: stopping after this epoch", launcher)
        request_stop()

    threading.Thread(target=watch, name="launcher-watch", daemon=True).start()


def worker_threads(requested: int | None) -> int:
    """Torch threads for a ``worker`` process: as requested, else the share of the cores a
    launcher gave it, else 1, so that several workers started by hand on one host do not
    oversubscribe its cores (PyTorch's threads spin: 2 processes with all cores each on 2
    cores run several times slower than with 1 thread each).

    Raises:
        ConfigError: ``$HPSEARCH_TORCH_THREADS`` is set to anything but a whole number >= 1.
    """
    if requested:
        return requested
    value = os.environ.get(THREADS_ENV)
    if not value:
        return 1
    if not value.strip().isdigit() or int(value) < 1:
        raise ConfigError([f"${THREADS_ENV}: {value!r} is not a whole number of threads >= 1"])
    return int(value)


def join_study(
    spec: StudySpec,
    *,
    device: str | None = None,
    name: str | None = None,
    threads: int | None = None,
    memory_share: float | None = None,
    max_same_failures: int = MAX_SAME_FAILURES,
    on_join: Callable[[str], None] | None = None,
    on_trial: Callable[[FrozenTrial], None] | None = None,
) -> WorkerStats:
    """Joins an existing study as one worker and runs its queued trials until none is left.

    Args:
        spec: The study file (its storage names the study to join).
        device: The device for this worker's trials (``cuda:1``, ``cpu``), else the file's.
        name: The worker's name recorded with its trials [``host:pid``].
        threads: Torch CPU threads [the launcher's share of the cores, else 1].
        memory_share: The share of its GPU's memory this worker's populations may fill
            [:data:`~hpsearch.spec.defaults.MEMORY_SHARE`: alone on its GPU].
        max_same_failures: See :func:`hpsearch.study.worker.run_worker`.
        on_join: Called with the worker's name once it has joined, before its first claim.
        on_trial: Called with every trial this worker finishes.

    Raises:
        StorageError: The study does not exist.
        PreflightError: This worker cannot train (no data, a broken device): nothing claimed.
        LauncherGone: A forked worker's launcher stopped before the study was ready.
    """
    if device:
        spec = dataclasses.replace(spec, base=make_config({"device": device}, spec.base))
    me = name or worker_name()
    spec = spec.for_worker(me)
    install_stop_signals()
    watch_launcher()
    set_threads(worker_threads(threads))
    if memory_share is not None:
        set_memory_share(memory_share)
    spec = preflight(spec)  # before claiming: a worker that cannot train must not fail trials
    wait_for_launcher()  # a forked worker: until the launcher has prepared the study
    # The study exists (a launcher made it, or someone is told to join it): a restart of its
    # database as this worker starts is waited out, as it is once the worker runs.
    storage = open_spec_storage(spec, wait=True)
    load_existing_study(spec, storage)  # fail fast, before any work, if it does not exist
    if on_join is not None:
        on_join(me)
    return run_worker(
        spec, storage, worker=me, on_trial=on_trial, max_same_failures=max_same_failures
    )
