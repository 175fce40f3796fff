"""Serving optuna-dashboard from our own storage object.

The ``optuna-dashboard`` command opens SQLite with no lock timeout and takes no read-only
mode; serving its WSGI app on a storage we open (reader transactions, busy timeout, WAL) lets
it show studies while workers write to them. A large study's trials reach the page in pages
(:func:`paged`).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
import ipaddress
import json
import re
import signal
import socket
from socketserver import ThreadingMixIn
import threading
from types import FrameType
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import make_server
from wsgiref.simple_server import WSGIRequestHandler
from wsgiref.simple_server import WSGIServer

from hpsearch.storage import first_trials
from hpsearch.storage import open_storage

DEFAULT_HOST = "127.0.0.1"  # never exposed beyond this machine unless asked
DEFAULT_PORT = 8080


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # the page fetches several API routes at once


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6  # an IPv6 host (``::``, ``::1``): an IPv4 socket fails


def _family(host: str) -> socket.AddressFamily:
    """The address family a host binds with: IPv6 for an IPv6 address or a name that has
    only IPv6 addresses, else IPv4 (as before)."""
    try:
        return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        pass
    try:
        families = {info[0] for info in socket.getaddrinfo(host or None, None)}
    except OSError:
        return socket.AF_INET
    return socket.AF_INET6 if families == {socket.AF_INET6} else socket.AF_INET


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


# optuna-dashboard's API has no login and can write (delete a study, tell a trial): beyond
# this machine it is served read-only unless the user asks otherwise.
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine (``""`` and ``0`` bind every
    interface)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        return all(
            ipaddress.ip_address(info[4][0]).is_loopback
            for info in socket.getaddrinfo(host or None, None)
        )
    except (OSError, ValueError):
        return False


def read_only(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """WSGI middleware that refuses every writing request with 403 Forbidden."""

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET").upper() in SAFE_METHODS:
            return app(environ, start_response)
        body = b"read-only dashboard: start it with --allow-writes to change studies\n"
        start_response(
            "403 Forbidden",
            [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
        )
        return [body]

    return guarded


PAGE_TRIALS = 2000  # trials per study response: about 7 MB at 10,000 trials instead of 34
_STUDY_DETAIL = re.compile(r"^/api/studies/[0-9]+/?$")


def paged(
    app: Callable[..., Iterable[bytes]],
    first: Callable[..., Iterable[bytes]] | None = None,
    page: int = PAGE_TRIALS,
) -> Callable[..., Iterable[bytes]]:
    """WSGI middleware that cuts a study's trial list to ``page`` trials per response.

    optuna-dashboard sends every trial (params with their distributions, attributes, curves)
    in one response: 34 MB for 10,000 trials. Its page asks again on each refresh for the
    trials after those it holds (``?after=N``), so a cut response is completed page by page.
    Given ``first`` (another optuna-dashboard app on the same storage), the first response
    (``after=0``) is its answer with only the first page's trials read from the storage
    (:func:`~hpsearch.storage.first_trials`): it shows in about a second at 10,000 trials
    instead of six, its search space and attribute columns those of the trials it shows until
    the following pages complete them. An app of its own, because optuna-dashboard keeps the
    trials it read for a few seconds: the pages that follow must not be cut from a first page.
    """

    def cut(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET").upper() != "GET" or not _STUDY_DETAIL.match(
            environ.get("PATH_INFO", "")
        ):
            return app(environ, start_response)
        reply: dict[str, Any] = {}

        def keep(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            reply.update(status=status, headers=headers)
            return lambda data: None

        if first is not None and _after(environ) == 0:  # read only the first page's trials
            with first_trials(page):
                body = b"".join(first(environ, keep))
        else:  # every trial (for the study's search space, the best trials), then cut
            body = b"".join(app(environ, keep))
        headers = [(k, v) for k, v in reply["headers"] if k.lower() != "content-length"]
        if reply["status"].startswith("200"):
            doc = json.loads(body)
            if len(doc.get("trials", ())) > page:
                doc["trials"] = doc["trials"][:page]
                body = json.dumps(doc).encode()
        start_response(reply["status"], [*headers, ("Content-Length", str(len(body)))])
        return [body]

    return cut


def _after(environ: dict[str, Any]) -> int | None:
    """The ``after`` of a study request (``0`` when absent), ``None`` if malformed."""
    values = parse_qs(environ.get("QUERY_STRING", "")).get("after", ["0"])
    return int(values[0]) if values[0].isdigit() else None


def make_dashboard(
    url: str,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    allow_writes: bool | None = None,
) -> WSGIServer:
    """Builds (but does not start) a dashboard server on the storage at ``url``.

    Args:
        url: The storage URL.
        host: Interface to bind; 127.0.0.1 unless told otherwise.
        port: TCP port; 0 picks a free one (see ``server.server_port``).
        allow_writes: Whether the dashboard may change studies (delete, tell, notes); by
            default only when bound to a loopback address.

    Raises:
        StorageError: The storage cannot be opened.
        OSError: The address is taken or cannot be bound.
    """
    from optuna_dashboard import wsgi

    storage = open_storage(url, read_only=True)
    app = paged(wsgi(storage), first=wsgi(storage))
    if not (is_loopback(host) if allow_writes is None else allow_writes):
        app = read_only(app)
    server = _ThreadingServer6 if _family(host) == socket.AF_INET6 else _ThreadingServer
    return make_server(host, port, app, server_class=server, handler_class=_QuietHandler)


def check_address(host: str, port: int) -> None:
    """Binds ``host:port`` for a moment, as the dashboard's server would, so that a launch
    serving the dashboard beside its pool refuses a taken port before it starts (the
    dashboard's own process would say so only amid the pool's progress).

    Raises:
        OSError: The address is taken or cannot be bound.
    """
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as WSGIServer does
        probe.bind((host, port))


def serve(server: WSGIServer, on_ready: Callable[[str], None] | None = None) -> None:
    """Serves until Ctrl-C or SIGTERM, then closes the socket.

    Both signals are handled here: a process started in the background by a script inherits
    SIGINT ignored, and Python then never raises KeyboardInterrupt, so ``kill -INT`` (or a
    test's) would not stop it.
    """
    host, port = server.server_address[:2]
    host = host.decode() if isinstance(host, bytes) else host
    if ":" in host:  # an IPv6 address is bracketed in a URL
        host = f"[{host}]"
    old = {}
    if threading.current_thread() is threading.main_thread():
        old = {s: signal.signal(s, _interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    if on_ready is not None:
        on_ready(f"http://{host}:{port}/dashboard")
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        for s, handler in old.items():
            signal.signal(s, handler)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
