"""The dashboard over HTTP: bound beyond loopback it warns and refuses writes."""

from __future__ import annotations

from pathlib import Path
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from hpsearch.dashboard import is_loopback
from hpsearch.results import open_study
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


def _serve(path: Path, *extra: str) -> tuple[subprocess.Popen[str], str, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpsearch", "dashboard", str(path), "--port", "0", *extra],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        match = re.search(r"at http://[^:]+:(\d+)/dashboard", line)
        if match:
            # Requests go to loopback only, whatever interface the server bound.
            return proc, f"http://127.0.0.1:{match.group(1)}", "".join(lines)
    raise AssertionError("".join(lines))


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
