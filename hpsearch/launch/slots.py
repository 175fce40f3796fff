"""Where a launch's workers go and what each is told, without torch: the ``--gpus`` flag,
so that ``launch`` refuses a malformed one before torch loads (which GPUs exist is checked
once torch counts them: see :func:`hpsearch.launch.pool.plan_slots`), and the settings that
every worker of a launch, local or Slurm, takes on (:func:`worker_flags`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from hpsearch.errors import ConfigError
from hpsearch.errors import shorten
from hpsearch.spec.defaults import MEMORY_SHARE

if TYPE_CHECKING:  # the reading commands import this module: pydantic stays unloaded
    from hpsearch.spec.studyfile import StudySpec


def parse_gpus(gpus: str | None) -> list[int] | None:
    """The GPU indices ``--gpus`` selects: ``None`` for every visible GPU (``all``, or no
    flag), ``[]`` for none.

    Raises:
        ConfigError: Neither ``all``, ``none`` nor a comma list of indices.
    """
    if gpus in (None, "all"):
        return None
    if gpus == "none":
        return []
    try:
        return [int(g) for g in gpus.split(",") if g.strip()]
    except ValueError as e:
        raise ConfigError(
            [f"--gpus: expected all, none or indices like 0,2,3; got {shorten(gpus)}"]
        ) from e


def memory_share(workers_per_gpu: int) -> float:
    """Each worker's share of its GPU's memory when ``workers_per_gpu`` share one."""
    return MEMORY_SHARE / workers_per_gpu


def worker_flags(spec: StudySpec, workers_per_gpu: int = 1) -> list[str]:
    """The ``hpsearch worker`` flags that carry a launcher's settings to each of its
    workers: the launcher's ``--population``, ``--precision`` and ``--timeout`` (or the
    file's), and the worker's share of its GPU's memory."""
    return [
        "--population",
        str(spec.population),
        "--precision",
        spec.base.precision,
        "--memory-share",
        f"{memory_share(workers_per_gpu):.4g}",
        *(("--timeout", f"{spec.timeout:g}") if spec.timeout else ()),
    ]


def timed_out(timeout: float | None, started: float) -> bool:
    """Whether a launch that started at ``started`` (``time.monotonic()``) has passed its
    study's ``timeout``: each of its workers counts the timeout from its own start, after
    the launch's, so a worker stopped by it ended after this is true."""
    return timeout is not None and time.monotonic() - started >= timeout
