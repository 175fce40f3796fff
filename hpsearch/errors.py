"""The project's exception hierarchy.

Every error that a user can cause (a bad study file, a bad CLI flag, missing data files, a
storage that cannot be opened) is an :class:`HPSearchError`; the CLI prints its message and
exits with status 2 instead of showing a traceback.
"""

from __future__ import annotations

# Exit statuses of every command and worker process.
USAGE_EXIT = 2  # bad input or an environment that cannot run the study: nothing was written
BROKEN_EXIT = 3  # a worker stopped because trials kept failing with the same error
INTERRUPTED_EXIT = 130  # Ctrl-C or SIGTERM; running trials were queued again


class HPSearchError(Exception):
    """Root of all errors caused by user input."""


class ConfigError(HPSearchError):
    """One or more invalid settings, each reported as ``key: what is wrong``.

    Args:
        problems: One message per violation, each starting with its key path.
        source: The file or flag the settings came from, prefixed to every line.
    """

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__("\n".join(prefix + p for p in self.problems))


class DataError(HPSearchError):
    """A data set that cannot be loaded (missing files, unknown name)."""


class StorageError(HPSearchError):
    """A storage URL that cannot be opened, or a study that is not in it."""


class DeviceError(HPSearchError):
    """A training device that this machine does not have (``cuda`` without a GPU)."""


class PreflightError(HPSearchError):
    """The environment cannot run a study's trials (checked before anything is queued)."""
