"""The ``hpsearch`` command group: logging, user errors as one line and an exit status, and
a start-up and an exit that skip the garbage collector's walks (:func:`startup`).

User errors (:class:`~hpsearch.errors.HPSearchError`, and click's own: a bad flag value, a
missing argument, an unknown option) become one message on stderr and exit status 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import atexit
from collections.abc import Iterator
from collections.abc import Sequence
import contextlib
import gc
import logging
import os
import sys
from typing import Any

import click

from hpsearch.errors import HPSearchError
from hpsearch.errors import INTERRUPTED_EXIT
from hpsearch.errors import OUTAGE_EXIT
from hpsearch.errors import StorageOutage
from hpsearch.errors import USAGE_EXIT
from hpsearch.spec.defaults import outage_wait

# click 8.2 and later raise it for a group called with nothing; 8.1 prints the help itself
_HELP_FOR_NO_ARGUMENTS = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _os_error(e: OSError) -> str:
    """An OS error in a line: the file and the system's words; a write to standard output
    (``> /dev/full``) has no file name."""
    words = e.strerror or str(e) or type(e).__name__
    return f"{e.filename}: {words}" if e.filename is not None else words


class _Group(click.Group):
    """Turns user errors (bad input, a file that cannot be written) into short messages and
    exit status 2, and Ctrl-C into exit status 130."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # The reader went away (`hpsearch trials ... | head`): a normal end, not an error.
            # Point stdout at /dev/null so that flushing it at exit raises nothing more.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except (HPSearchError, OSError) as e:
            if ctx.params.get("debug"):
                raise
            message = str(e) if isinstance(e, HPSearchError) else _os_error(e)
            for line in message.splitlines():
                click.echo(f"error: {line}", err=True)
            sys.exit(OUTAGE_EXIT if isinstance(e, StorageOutage) else USAGE_EXIT)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(INTERRUPTED_EXIT)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        atexit.unregister(_ready_to_exit)  # once, however often main runs in a process
        atexit.register(_ready_to_exit)
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        # click's own handling, but a bad flag, argument or command is one line, as every
        # other user error is, not click's usage text around it
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as e:
            if isinstance(e, _HELP_FOR_NO_ARGUMENTS):  # `hpsearch` alone: the help, as asked
                e.show()
            else:
                click.echo(f"error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)  # ctx.exit's status, or success


@contextlib.contextmanager
def startup() -> Iterator[None]:
    """A command's start-up (its file read, torch and Optuna imported) without garbage
    collections, then what it made frozen.

    Imports make hundreds of thousands of objects and no garbage: the collections they
    trigger cost a third of a second of a launch's (bench/startup.py). Frozen, those objects
    are skipped by every later collection of a long study, and a forked worker's
    collections leave the launcher's pages shared (the pattern ``gc.freeze`` is documented
    for).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def _ready_to_exit() -> None:
    """At exit, before the interpreter's clean-up: spares it the garbage collections that
    walk every object torch, Optuna and the data made (0.5 s of a torch import's own exit,
    0.9 s of a launch's; bench/startup.py). Objects are still freed and streams flushed;
    database connections, which only a collection would close, are closed here."""
    if "hpsearch.storage" in sys.modules:
        from hpsearch.storage import close_storages

        close_storages()
    gc.freeze()


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of short messages.")
@click.option("-v", "--verbose", is_flag=True, help="Log every trial's start and end (info).")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    help="Level of the hpsearch logger on stderr [warning; info with -v; debug with --debug].",
)
@click.version_option(package_name="hpsearch")
def main(debug: bool, verbose: bool, log_level: str | None) -> None:
    """hpsearch: hyperparameter search for PyTorch MLPs on Optuna."""
    default = "debug" if debug else "info" if verbose else "warning"
    _configure_logging(getattr(logging, (log_level or default).upper()))
    outage_wait()  # a bad $HPSEARCH_STORAGE_WAIT: refused before a command writes anything


def _configure_logging(level: int) -> None:
    """Log records of the ``hpsearch`` logger go to stderr, with the time and level."""
    logger = logging.getLogger("hpsearch")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%X"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level)
