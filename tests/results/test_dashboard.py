"""The dashboard over HTTP: bound beyond loopback it warns and refuses writes."""

from __future__ import annotations

import json
from pathlib import Path
import re
import signal
import subprocess
import sys
from typing import Any
import urllib.error
import urllib.request

import optuna
import pytest

from hpsearch.results.dashboard import is_loopback
from hpsearch.results.reading import open_study
from tests.helpers import hpsearch
from tests.helpers import write_study


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        *[("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.0.2", True)],
        *[("0.0.0.0", False), ("", False), ("0", False), ("::", False)],
    ],
)
def test_which_hosts_stay_on_this_machine(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def _request(url: str, method: str) -> int:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return e.code


def _serve(
    path: Path, *extra: str, preexec_fn: Any = None
) -> tuple[subprocess.Popen[str], str, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpsearch", "dashboard", str(path), "--port", "0", *extra],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec_fn,
    )
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        match = re.search(r"at http://(\[[0-9a-f:]+\]|[^:/]+):(\d+)/dashboard", line)
        if match:
            # Requests go to loopback only, whatever interface the server bound.
            loopback = "[::1]" if match.group(1).startswith("[") else "127.0.0.1"
            return proc, f"http://{loopback}:{match.group(2)}", "".join(lines)
    raise AssertionError("".join(lines))


@pytest.mark.slow
@pytest.mark.parametrize("host", ["0.0.0.0", ""])
def test_dashboard_beyond_loopback_is_read_only(host: str, tmp_path: Path) -> None:
    path = write_study(tmp_path, budget={"trials": 1})
    assert hpsearch("run", str(path), "--no-progress").returncode == 0
    proc, base, banner = _serve(path, "--host", host)
    try:
        assert "warning: the dashboard listens on" in banner and "no login" in banner
        assert "it is read-only" in banner
        assert _request(f"{base}/api/studies", "GET") == 200
        assert _request(f"{base}/api/studies/1", "DELETE") == 403
        assert _request(f"{base}/api/studies/1/note", "PUT") == 403
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert len(open_study("t", f"sqlite:///{tmp_path / 'hp.db'}").get_trials()) == 1


@pytest.mark.parametrize(("host", "exposed"), [("::1", False), ("::", True)])
def test_the_dashboard_listens_on_ipv6_hosts(host: str, exposed: bool, tmp_path: Path) -> None:
    path = write_study(tmp_path, budget={"trials": 1})
    assert hpsearch("create", str(path)).returncode == 0
    proc, base, banner = _serve(path, "--host", host)
    try:
        assert base.startswith("http://[::1]:")  # it said where, bracketed, and listens there
        assert ("warning: the dashboard listens on" in banner) is exposed
        assert _request(f"{base}/api/studies", "GET") == 200
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


@pytest.mark.slow
def test_allow_writes_is_explicit(tmp_path: Path) -> None:
    path = write_study(tmp_path, budget={"trials": 1})
    assert hpsearch("run", str(path), "--no-progress").returncode == 0
    proc, base, banner = _serve(path, "--host", "0.0.0.0", "--allow-writes")
    try:
        assert "it can change studies (--allow-writes)" in banner
        assert _request(f"{base}/api/studies/1", "DELETE") in (200, 204)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert (
        "no studies" in hpsearch("studies", "--storage", f"sqlite:///{tmp_path / 'hp.db'}").stdout
    )


def test_a_large_studys_trials_reach_the_page_in_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from optuna_dashboard import wsgi

    from hpsearch.results.dashboard import paged
    from hpsearch.storage import open_storage
    from hpsearch.storage import ResilientRDBStorage

    url = f"sqlite:///{tmp_path / 'hp.db'}"
    study = optuna.create_study(study_name="big", storage=open_storage(url, create=True))
    for i in range(5):
        study.add_trial(optuna.trial.create_trial(value=float(i)))
    storage = open_storage(url, read_only=True)
    app = paged(wsgi(storage), first=wsgi(storage), page=2)

    def get(path: str, query: str = "") -> dict[str, Any]:
        status: list[str] = []
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": query}
        body = b"".join(app(environ, lambda s, h, *e: status.append(s)))  # type: ignore[arg-type]
        assert status == ["200 OK"]
        return dict(json.loads(body))

    sid = optuna.storages.get_storage(url).get_study_id_from_name("big")
    read: list[int] = []
    real = ResilientRDBStorage.get_all_trials

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        read.append(len(found := real(self, *args, **kwargs)))
        return found

    monkeypatch.setattr(ResilientRDBStorage, "get_all_trials", spy)
    first = get(f"/api/studies/{sid}")
    assert read == [2]  # the first page read only its trials from the storage
    assert [t["number"] for t in first["trials"]] == [0, 1]
    assert [t["number"] for t in first["best_trials"]] == [0]  # computed over every trial
    # the page asks for what follows the trials it holds, as on each refresh
    assert [t["number"] for t in get(f"/api/studies/{sid}", "after=2")["trials"]] == [2, 3]
    assert [t["number"] for t in get(f"/api/studies/{sid}", "after=4")["trials"]] == [4]
    assert len(get("/api/studies")["study_summaries"]) == 1  # other routes pass through


@pytest.mark.slow
def test_the_dashboard_stops_on_sigint_even_when_started_with_it_ignored(tmp_path: Path) -> None:
    """A script's background job (`hpsearch dashboard &`) inherits SIGINT ignored."""
    path = write_study(tmp_path, budget={"trials": 1})
    assert hpsearch("create", str(path)).returncode == 0
    ignore = lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)  # noqa: E731
    proc, base, _ = _serve(path, preexec_fn=ignore)
    try:
        assert _request(f"{base}/api/studies", "GET") == 200
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "dashboard stopped" in err
