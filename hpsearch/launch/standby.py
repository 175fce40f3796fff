"""Workers forked from a launcher that has imported torch, so that they start at once.

A worker started as a new interpreter spends most of its start-up importing torch (1.5-2 s on
two cores, more when several start together). A launcher imports torch once, then forks its
workers *before* it reads any data, initialises CUDA, opens the storage or starts a thread:
what a fork must not inherit. Each child runs the worker's own command line (the same one a
spawned worker runs, so its logs, exit statuses and signals are the same), loads its data and
trains its pre-flight batch while the launcher prepares the study, then waits on a pipe until
the launcher lets it go (the study exists) or goes away (it exits, having written nothing).

A process that has initialised CUDA, runs other threads or has used polars (whose thread
pool a fork leaves dead) is never forked: :func:`fork_hazard` says why, and the pool then
spawns fresh interpreters, as it does for every restart of a worker that died.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
import contextlib
import os
from pathlib import Path
import signal
import subprocess
import sys
import threading
import time
import traceback
from typing import NoReturn

from hpsearch.errors import HPSearchError

GO_ENV = "HPSEARCH_GO_FD"  # set in a forked worker: the pipe it waits on before it joins
_GO = b"g"

Main = Callable[[list[str]], object]  # runs a command line (the CLI's main) and exits


class LauncherGone(HPSearchError):
    """The launcher closed a waiting worker's pipe without letting it go."""


def fork_hazard() -> str | None:
    """Why this process must not fork its workers, or ``None`` when it may.

    A fork copies one thread and the memory of every library: CUDA's context, another
    thread's locks and polars' thread pool do not survive it (a child that uses them hangs).
    """
    if not hasattr(os, "fork"):
        return "this platform cannot fork"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return "this process has initialised CUDA"
    if threading.active_count() > 1:
        return "this process runs other threads"
    if "polars" in sys.modules:
        return "this process has loaded polars"
    return None


def wait_for_launcher() -> None:
    """In a forked worker, blocks until its launcher lets it go; elsewhere returns at once.

    Raises:
        LauncherGone: The launcher went away, or gave up before the study was ready.
    """
    fd = os.environ.pop(GO_ENV, None)
    if fd is None:
        return
    with os.fdopen(int(fd), "rb") as pipe:
        if pipe.read(1) != _GO:
            raise LauncherGone("the launcher stopped before the study was ready")


class ForkedProcess:
    """A forked child, watched like a :class:`subprocess.Popen`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0.0)
            time.sleep(0.02)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Standby:
    """Worker processes forked now, each waiting to be let go (see the module docstring)."""

    def __init__(self, main: Main) -> None:
        self._main = main
        self._waiting: dict[str, tuple[ForkedProcess, int]] = {}

    def fork(self, name: str, argv: Sequence[str], env: Mapping[str, str], log: Path) -> None:
        """Forks worker ``name``: it runs ``main(argv)`` with ``env``, its output in ``log``."""
        read, write = os.pipe()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # or the child writes the launcher's pending output again
        pid = os.fork()
        if pid == 0:
            os.close(write)
            for _, other in self._waiting.values():
                os.close(other)  # else an earlier child never sees its pipe close
            _run_child(self._main, list(argv), {**env, GO_ENV: str(read)}, log)
        os.close(read)
        self._waiting[name] = (ForkedProcess(pid), write)

    def release(self, name: str) -> ForkedProcess | None:
        """Lets worker ``name`` join the study; ``None`` if no such worker is waiting."""
        entry = self._waiting.pop(name, None)
        if entry is None:
            return None
        process, write = entry
        with contextlib.suppress(BrokenPipeError):  # it died: the pool sees its exit status
            os.write(write, _GO)
        os.close(write)
        return process

    def close(self) -> None:
        """Ends the workers never let go: they have claimed nothing and written nothing."""
        for process, write in self._waiting.values():
            os.close(write)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()
        self._waiting.clear()


def _run_child(main: Main, argv: list[str], env: Mapping[str, str], log: Path) -> NoReturn:
    """The forked worker: its own session, output and environment, then ``main(argv)``;
    it never returns into the launcher's stack."""
    code = 1
    try:
        os.setsid()  # the launcher's signals only, as for a spawned worker
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, sys.stdout.fileno())
        os.dup2(fd, sys.stderr.fileno())
        os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(AttributeError, ValueError):
                stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        os.environ.clear()
        os.environ.update(env)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
