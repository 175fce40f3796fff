"""Handing a study's workers to Slurm: ``hpsearch launch --slurm`` submits one job array.

Slurm places the workers, allocates their GPUs, preempts and requeues them; hpsearch only
writes a job script and reads the queue. Each array task is one GPU of a node (a CPU slot
on a cluster without GPUs) and runs ``--workers-per-gpu`` K workers on it: Slurm gives GPUs
to tasks whole (``--gres=gpu:1``), so K workers can share one only inside one task.

Why a plain ``sbatch`` script and not submitit: submitit pickles a Python function for the
nodes to unpickle, which ties them to the launcher's exact environment and hides what runs
behind a pickle; a script is what cluster users read, rerun by hand and debug with
``scontrol``, and it needs no extra package. hpsearch needs nothing from a function call
either: a worker is already a command (``hpsearch worker``), and results live in the study.

The storage URL, which may hold a password, reaches the jobs through a file only its owner
can read (``HPSEARCH_STORAGE_FILE``), never the sbatch command line or the script, which
``scontrol show job`` and ``squeue`` show to every user of the cluster.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
from dataclasses import dataclass
import logging
import os
from pathlib import Path
import re
import shlex
import shutil
import subprocess
import sys
import time
from typing import Any
from typing import TYPE_CHECKING

from hpsearch import storage as db
from hpsearch.errors import ConfigError
from hpsearch.errors import HPSearchError
from hpsearch.launch.slots import timed_out
from hpsearch.launch.slots import worker_flags
from hpsearch.spec.defaults import STORAGE_FILE_ENV
from hpsearch.storage import redact
from hpsearch.storage import sqlite_path
from hpsearch.study.budget import finished_count

if TYPE_CHECKING:
    from hpsearch.spec.studyfile import StudySpec

_log = logging.getLogger(__name__)

JOB_ATTR_PREFIX = "hpsearch:slurm_job:"  # study system attribute per submitted job array
JOBS_ATTR = "hpsearch:slurm_jobs"  # earlier layout: one list of every job (read, not written)
SIGNAL_BEFORE_S = 120  # SIGTERM this long before the time limit: a trial stops at epoch end
NETWORK_FILE_SYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs")
_TIME = re.compile(r"^(\d+-)?\d{1,2}(:\d{2}){0,2}$")  # Slurm's [D-]HH[:MM[:SS]] and MM forms
_OPTION = re.compile(r"^[a-z][a-z0-9-]*$")


class SlurmError(HPSearchError):
    """sbatch, squeue or scancel is missing or refused a request."""


@dataclass(frozen=True)
class SlurmOptions:
    """What ``hpsearch launch --slurm`` asks of the cluster.

    Attributes:
        nodes: Nodes' worth of array tasks: ``nodes * max(gpus_per_node, 1)`` tasks (Slurm
            places them where there is room).
        gpus_per_node: GPUs per node, one array task each; 0: CPU tasks.
        workers_per_gpu: Workers in each task (sharing its GPU, one CPU each).
        partition: ``--partition``.
        account: ``--account``.
        time: ``--time`` per task (``HH:MM:SS``); SIGTERM comes :data:`SIGNAL_BEFORE_S`
            before it, so the running trials are queued again, not lost.
        requeue: A task stopped by its time limit or a preemption puts itself back in the
            queue and continues the study when it runs again.
        extra: More ``#SBATCH --KEY=VALUE`` lines (``--slurm-option``).
    """

    nodes: int = 1
    gpus_per_node: int = 0
    workers_per_gpu: int = 1
    partition: str | None = None
    account: str | None = None
    time: str | None = None
    requeue: bool = False
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def tasks(self) -> int:
        return self.nodes * max(self.gpus_per_node, 1)


def parse_options(
    nodes: int,
    gpus_per_node: int,
    workers_per_gpu: int,
    partition: str | None,
    account: str | None,
    limit: str | None,
    requeue: bool,
    extra: tuple[str, ...],
) -> SlurmOptions:
    """Checks the command line's Slurm options.

    Raises:
        ConfigError: A malformed ``--time`` or ``--slurm-option``, or one hpsearch sets itself.
    """
    problems = []
    if limit is not None and not _TIME.match(limit):
        problems.append(f"--time {limit!r}: not a Slurm time (HH:MM:SS, MM or D-HH:MM:SS)")
    pairs = []
    for item in extra:
        key, sep, value = item.partition("=")
        key = key.strip().removeprefix("--")
        if not sep or not _OPTION.match(key) or "\n" in value:
            problems.append(f"--slurm-option {item!r}: give KEY=VALUE, e.g. qos=high")
        elif key in _OWN_OPTIONS:
            problems.append(f"--slurm-option {key}: set by hpsearch (use the launch flags)")
        else:
            pairs.append((key, value))
    if problems:
        raise ConfigError(problems)
    return SlurmOptions(
        nodes, gpus_per_node, workers_per_gpu, partition, account, limit, requeue, tuple(pairs)
    )


_OWN_OPTIONS = (
    "array", "job-name", "output", "error", "signal", "gres", "cpus-per-task", "requeue",
    "no-requeue", "partition", "account", "time", "export",
)  # fmt: skip


def check_storage(url: str, options: SlurmOptions) -> None:
    """Refuses a storage the array's tasks cannot share.

    Raises:
        ConfigError: SQLite for several nodes, or SQLite on a network file system.
    """
    path = sqlite_path(url)
    if path is None:
        return
    if options.nodes > 1:
        raise ConfigError(
            [
                f"--slurm --nodes {options.nodes}: storage {redact(url)} is a SQLite file, "
                "which tasks on several nodes cannot share; put the study on PostgreSQL "
                "(--storage postgresql+psycopg://...) or use --nodes 1"
            ]
        )
    fs = file_system(path.parent)
    if fs in NETWORK_FILE_SYSTEMS:
        raise ConfigError(
            [
                f"storage {redact(url)}: SQLite on a network file system ({fs}) loses its "
                "locks; put the study on PostgreSQL or on a local disk"
            ]
        )


def file_system(path: Path) -> str | None:
    """The type of the file system ``path`` is on (from /proc/mounts; ``None`` if unknown)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    target = str(path.resolve())
    best, kind = "", None
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1]
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, kind = point, fields[2]
    return kind


def write_storage_file(url: str, directory: Path) -> Path:
    """Writes the storage URL to a file only its owner can read (created that way, never
    readable by others in between)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "storage-url"
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(url + "\n")
    return path


def read_storage_file(path: str) -> str:
    """The storage URL in a file :func:`write_storage_file` wrote.

    Raises:
        ConfigError: The file is missing, empty, or readable by others.
    """
    file = Path(path)
    try:
        mode = file.stat().st_mode
        url = file.read_text().strip()
    except OSError as e:
        raise ConfigError([f"${STORAGE_FILE_ENV} {path}: {e.strerror}"]) from e
    if mode & 0o077:
        raise ConfigError(
            [
                f"${STORAGE_FILE_ENV} {path}: readable by others; chmod 600 it (it may hold a "
                "password)"
            ]
        )
    if not url:
        raise ConfigError([f"${STORAGE_FILE_ENV} {path}: empty"])
    return url


def job_script(
    study_file: Path,
    storage_file: Path,
    logs: Path,
    options: SlurmOptions,
    name: str,
    flags: Sequence[str] = (),
) -> str:
    """The sbatch script of the array: no secret in it (see the module docstring).
    ``flags`` are the launcher's settings its workers take on (see
    :func:`hpsearch.launch.slots.worker_flags`)."""
    k = options.workers_per_gpu
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name=hpsearch-{name}",
        f"#SBATCH --array=0-{options.tasks - 1}",
        f"#SBATCH --cpus-per-task={k}",
        f"#SBATCH --output={logs}/slurm-%A_%a.log",
        # SIGTERM to this script (B:) before the limit: it passes it on to the workers
        f"#SBATCH --signal=B:TERM@{signal_lead(options.time)}",
        "#SBATCH --requeue" if options.requeue else "#SBATCH --no-requeue",
    ]
    if options.gpus_per_node:
        lines.append("#SBATCH --gres=gpu:1")
    for key, value in (
        ("partition", options.partition),
        ("account", options.account),
        ("time", options.time),
        *options.extra,
    ):
        if value is not None:
            lines.append(f"#SBATCH --{key}={value}")
    device = "cuda" if options.gpus_per_node else "cpu"
    worker = [
        sys.executable, "-m", "hpsearch", "--log-level", "info", "worker", str(study_file),
        "--device", device, "--threads", "1", *flags,
    ]  # fmt: skip
    lines += [
        "# Written by `hpsearch launch --slurm`: one GPU (or CPU slot) per array task, its",
        "# workers on it. The storage URL is read from a file only its owner can read.",
        f"export {STORAGE_FILE_ENV}={shlex.quote(str(storage_file))}",
        'task="${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"',
        "pids=()",
        f"for k in $(seq 0 {k - 1}); do",
        f'  {shlex.join(worker)} --name "slurm-$task-$k" &',
        '  pids+=("$!")',
        "done",
        "stopped=0",
        "trap 'stopped=1; kill -TERM \"${pids[@]}\" 2>/dev/null' TERM INT",
        "status=0",
        'for pid in "${pids[@]}"; do',
        '  while kill -0 "$pid" 2>/dev/null; do wait "$pid"; done',  # wait returns on a trap
        '  wait "$pid"; code=$?; [ "$code" -ne 0 ] && status=$code',
        "done",
    ]
    if options.requeue:  # a time limit does not requeue by itself; a preemption does
        lines.append('if [ "$stopped" = 1 ]; then scontrol requeue "$task"; fi')
    lines.append('exit "$status"')
    return "\n".join(lines) + "\n"


def signal_lead(limit: str | None) -> int:
    """Seconds before the time limit that the workers get SIGTERM: :data:`SIGNAL_BEFORE_S`,
    or half of a shorter limit (Slurm may send it up to a minute early)."""
    seconds = time_seconds(limit) if limit else None
    return SIGNAL_BEFORE_S if seconds is None else min(SIGNAL_BEFORE_S, max(seconds // 2, 10))


def time_seconds(limit: str) -> int | None:
    """A Slurm time limit in seconds: ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``."""
    days, _, rest = limit.rpartition("-") if "-" in limit else ("", "", limit)
    try:
        parts = [int(x) for x in rest.split(":")]
        day_s = int(days) * 86400 if days else 0
    except ValueError:
        return None
    if days:  # D-HH, D-HH:MM, D-HH:MM:SS
        parts += [0] * (3 - len(parts))
        return day_s + parts[0] * 3600 + parts[1] * 60 + parts[2]
    if len(parts) == 1:
        return parts[0] * 60
    if len(parts) == 2:
        return parts[0] * 60 + parts[1]
    return parts[0] * 3600 + parts[1] * 60 + parts[2]


def _run(args: list[str], what: str) -> str:
    tool = shutil.which(args[0])
    if tool is None:
        raise SlurmError(f"{args[0]} not found: --slurm needs Slurm's commands on this host")
    # The jobs get the launcher's environment (sbatch's default) minus the storage URL,
    # which may hold a password: they read it from their file.
    env = {k: v for k, v in os.environ.items() if k != "HPSEARCH_STORAGE"}
    proc = subprocess.run([tool, *args[1:]], capture_output=True, text=True, timeout=60, env=env)
    if proc.returncode != 0:
        reason = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise SlurmError(f"{what} failed: {reason[-1] if reason else proc.returncode}")
    return proc.stdout


def submit(script: Path) -> str:
    """Submits a job script; returns the job id."""
    out = _run(["sbatch", "--parsable", str(script)], "sbatch")
    return out.strip().split(";")[0]


def cancel(job_id: str) -> None:
    """Cancels every task of a job array."""
    _run(["scancel", job_id], f"scancel {job_id}")


def cancel_pending(study: Any) -> list[str]:
    """Cancels the tasks of the study's job arrays that have not started (after ``hpsearch
    stop``, each would start only to stop); running tasks end as their workers stop.

    Returns:
        The jobs whose pending tasks were cancelled: none where the study never ran on
        Slurm, or this host has no Slurm commands (its pending tasks then start and stop).
    """
    if shutil.which("squeue") is None:
        return []
    cancelled = []
    for job in recorded_jobs(study):
        job_id = str(job["job_id"])
        try:
            pending = task_states([job_id]).get("PENDING", 0)
        except SlurmError:  # long finished: squeue no longer knows the job
            continue
        if not pending:
            continue
        try:
            _run(["scancel", "--state=PENDING", job_id], f"scancel {job_id}")
        except SlurmError as e:  # another user's array: its tasks start and stop
            _log.warning("%s", e)
            continue
        cancelled.append(job_id)
    return cancelled


def task_states(job_ids: list[str]) -> Counter[str]:
    """How many of the jobs' array tasks are in each Slurm state (PENDING, RUNNING, ...);
    finished tasks leave the queue, so they are not counted."""
    if not job_ids:
        return Counter()
    out = _run(["squeue", "-h", "-r", "-j", ",".join(job_ids), "-o", "%T"], "squeue")
    return Counter(line.strip() for line in out.splitlines() if line.strip())


def record_job(study: Any, job_id: str, tasks: int) -> None:
    """Remembers a submitted array with its study (``hpsearch status`` shows it): one
    attribute per job, so that two launchers submitting at once both keep theirs (a shared
    list would be read, extended and written back, and one of the two lost)."""
    job = {"job_id": job_id, "tasks": tasks, "submitted": time.time()}
    db.set_study_system_attr(study, f"{JOB_ATTR_PREFIX}{job_id}", job)


def recorded_jobs(study: Any) -> list[dict[str, Any]]:
    """The arrays submitted for a study, oldest first."""
    return jobs_in(db.study_system_attrs(study))


def jobs_in(attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The arrays recorded in a study's system attributes (read once for several things),
    oldest first."""
    jobs = list(attrs.get(JOBS_ATTR) or [])  # the one-list layout of earlier launches
    jobs += [v for k, v in attrs.items() if k.startswith(JOB_ATTR_PREFIX)]
    return sorted(jobs, key=lambda j: float(j.get("submitted", 0)))


def job_summary(attrs: Mapping[str, Any]) -> dict[str, Any] | None:
    """A study's Slurm jobs, from its system attributes, and how many of their tasks are
    pending, running and done (``None`` if it was never launched on Slurm; states ``None``
    if squeue cannot say)."""
    jobs = jobs_in(attrs)
    if not jobs:
        return None
    ids = [str(j["job_id"]) for j in jobs]
    total = sum(int(j["tasks"]) for j in jobs)
    try:
        states: Counter[str] | None = task_states(ids)
    except SlurmError:
        states = None
    if states is None:
        return {"job_ids": ids, "tasks": total, "pending": None, "running": None, "done": None}
    pending = states.get("PENDING", 0) + states.get("REQUEUED", 0)
    running = sum(states.values()) - pending
    return {
        "job_ids": ids,
        "tasks": total,
        "pending": pending,
        "running": running,
        "done": max(total - pending - running, 0),
    }


@dataclass(frozen=True)
class SlurmLaunch:
    """A submitted job array and the study it works on."""

    job: str
    study: Any  # optuna.Study
    queued: int
    tasks: int
    logs: Path


def launch_slurm(spec: StudySpec, options: SlurmOptions, logs: Path) -> SlurmLaunch:
    """``launch --slurm``: checks, creates or resumes the study, and submits its workers as
    one job array (see the module docstring). Returns once the array is submitted;
    :func:`follow_job` follows it.

    Raises:
        ConfigError: A storage the nodes cannot share (a SQLite file on a local disk).
        PreflightError: The data cannot load or a batch cannot train (on this host's CPU:
            it may have no GPU); nothing was written.
        SlurmError: sbatch failed.
    """
    from hpsearch.spec.config import make_config
    from hpsearch.study.lifecycle import fit_task
    from hpsearch.study.lifecycle import preflight  # torch: only a launch needs it
    from hpsearch.study.lifecycle import prepare

    check_storage(spec.storage, options)
    if spec.path is None:
        raise ConfigError(["launch --slurm: the study needs a file the nodes can read"])
    study_file = Path(spec.path).resolve()
    spec = fit_task(spec)  # bad data is refused first, in one line
    preflight(dataclasses.replace(spec, base=make_config({"device": "cpu"}, spec.base)))
    _, study, queued = prepare(spec)
    here = logs.resolve()
    secret = write_storage_file(spec.storage, here / "slurm")
    script = here / "slurm" / f"job-{time.strftime('%Y%m%d-%H%M%S')}.sh"
    flags = worker_flags(spec, options.workers_per_gpu)
    script.write_text(job_script(study_file, secret, here, options, spec.name, flags))
    job = submit(script)
    record_job(study, job, options.tasks)
    return SlurmLaunch(job, study, queued, options.tasks, logs)


@dataclass(frozen=True)
class Followed:
    """How a followed job array ended: its budget trials finished, and whether the study's
    timeout had passed (its tasks then stopped starting trials)."""

    finished: int
    timed_out: bool


def follow_job(
    launch: SlurmLaunch,
    budget: int,
    timeout: float | None = None,
    on_tick: Callable[[int, Counter[str]], None] | None = None,
    poll_s: float = 2.0,
) -> Followed:
    """Waits until the study's budget has finished or the array has ended. ``on_tick`` gets
    the budget trials finished and the tasks by state.

    Raises:
        StorageError: The study was deleted meanwhile.
    """
    started = time.monotonic()
    while True:
        done = finished_count(launch.study)
        states = task_states([launch.job])
        if on_tick is not None:
            on_tick(done, states)
        if done >= budget or not states:
            # here, not at the top: the reading commands import this module (a study's job
            # states) and must not load the study-file schema that lifecycle imports
            from hpsearch.study.lifecycle import check_not_deleted

            check_not_deleted(launch.study, "the job array")  # its tasks stopped, saying so
            return Followed(finished_count(launch.study), timed_out(timeout, started))
        time.sleep(poll_s)
