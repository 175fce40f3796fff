"""The ``--gpus`` flag, read without torch, so that ``launch`` refuses a malformed one before
torch loads (which GPUs exist is checked once torch counts them: see
:func:`hpsearch.launch.pool.plan_slots`)."""

from __future__ import annotations

from hpsearch.errors import ConfigError
from hpsearch.errors import shorten


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
