"""The project's exception hierarchy.

Every error that a user can cause (a bad study file, a bad CLI flag, missing data files, a
storage that cannot be opened) is an :class:`HPSearchError`; the CLI prints its message and
exits with status 2 instead of showing a traceback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

# Exit statuses of every command and worker process.
FAILED_EXIT = 1  # trials ran and every one failed, or a launch ended short of its budget
USAGE_EXIT = 2  # bad input or an environment that cannot run the study: nothing was written
BROKEN_EXIT = 3  # a worker stopped because trials kept failing with the same error
OUTAGE_EXIT = 4  # the storage stayed unreachable longer than the configured wait
INTERRUPTED_EXIT = 130  # Ctrl-C or SIGTERM; running trials were queued again


MAX_QUOTE = 80  # characters of a user's value quoted in a message
MAX_PROBLEMS = 50  # problems listed by one error; the rest are counted


def closest(value: str, choices: Iterable[object]) -> str | None:
    """The choice a mistyped ``value`` most likely meant, or ``None``: one that differs only
    in case, or has the same words in another order (``radius_mean`` for ``mean_radius``),
    else the closest spelling (difflib's, at its default cutoff)."""
    import difflib  # only for a message: every command imports this module first

    names = [str(c) for c in choices]
    value = value[:MAX_QUOTE]
    for same in (str.casefold, _words):
        found = [n for n in names if same(n) == same(value)]
        if found:
            return found[0]
    close = difflib.get_close_matches(value, names, n=1)
    return close[0] if close else None


def _words(name: str) -> list[str]:
    import re

    return sorted(w for w in re.split(r"[\W_]+", name.casefold()) if w)


def shorten(value: object, limit: int = MAX_QUOTE) -> str:
    """``repr(value)`` cut to ``limit`` characters, for quoting user input in a message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


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
        shown = self.problems[:MAX_PROBLEMS]
        if len(self.problems) > MAX_PROBLEMS:
            shown.append(f"... and {len(self.problems) - MAX_PROBLEMS} more problems")
        super().__init__("\n".join(prefix + p for p in shown))

    def __reduce__(self) -> tuple[type[ConfigError], tuple[list[str], str | None]]:
        # Rebuilt from its problems, not its message: an error that crosses a process pool
        # (pickled) reads the same on the other side.
        return type(self), (self.problems, self.source)


class DataError(HPSearchError):
    """A data set that cannot be loaded (missing files, unknown name)."""


class StorageError(HPSearchError):
    """A storage URL that cannot be opened, or a study that is not in it."""


class DeviceError(HPSearchError):
    """A training device that this machine does not have (``cuda`` without a GPU)."""


class PreflightError(HPSearchError):
    """The environment cannot run a study's trials (checked before anything is queued)."""


class StorageOutage(StorageError):
    """The storage stayed unreachable (or its disk full) past the configured wait."""
