"""Database outages: which errors are worth waiting out, and which are said at once.

A storage call that fails with one of :func:`transient`'s errors is retried until
:func:`hpsearch.spec.defaults.outage_wait` runs out (``ResilientRDBStorage``, in
:mod:`hpsearch.storage._optuna`); a full disk (:func:`disk_full`) is not an outage and is said
at once.
"""

from __future__ import annotations

import errno

import sqlalchemy

from hpsearch.storage.urls import scrub


def causes(error: BaseException) -> list[BaseException]:
    """``error`` and the errors that caused it, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


# What SQLite and the OS say when a write cannot get disk space (an I/O error on a write is
# most often that too, e.g. a file size limit): not an outage to wait out.
_DISK_ERRORS = ("database or disk is full", "No space left on device", "disk I/O error")


def disk_full(error: BaseException) -> bool:
    """Whether ``error`` (or its cause) says the disk is full or failing."""
    for e in causes(error):
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            return True
        if any(text in str(e) for text in _DISK_ERRORS):
            return True
    return False


def transient(error: BaseException) -> bool:
    """Whether ``error`` is a database outage worth waiting out (a restart, a dropped
    connection, a lock) rather than a bug or a bad request."""
    for e in causes(error):
        if isinstance(e, sqlalchemy.exc.DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
            return True
        if isinstance(e, sqlalchemy.exc.TimeoutError):  # no pooled connection came back
            return True
        if isinstance(e, sqlalchemy.exc.PendingRollbackError):  # a session the drop broke
            return True
    return False


def reason(error: BaseException, url: str) -> str:
    """The first line of an error's root cause (the driver's words, not Optuna's wrapper),
    with the URL's secrets scrubbed."""
    root = causes(error)[-1]
    text = str(root).strip().splitlines()[0] if str(root).strip() else type(root).__name__
    return scrub(text, url)
