"""A Docker engine of the tests' own, and stand-ins for the base images docker/ names.

No image registry is reachable here, so ``pytorch/pytorch:...`` and ``postgres:15`` are built
locally under those very names (tests/docker/standins/), from a Debian made with debootstrap
from the mirror apt already uses: the project's Dockerfile and compose files are built and
run unchanged, as a user would. The engine keeps its images in a data root of its own
(``$HPSEARCH_TEST_DOCKER_ROOT``, default /var/lib/hpsearch-test-docker), so a stand-in is
built once a machine and found by its tag and a label of what it was built from; a fresh
machine builds it anew. bench/docker_image.py uses the same engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Mapping
import contextlib
import functools
import hashlib
import http.server
import os
from pathlib import Path
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import yaml

REPO = Path(__file__).resolve().parents[2]
STANDINS = Path(__file__).resolve().parent / "standins"
DEBIAN_TAG = "hpsearch-standin/debian:bookworm"
STANDIN_LABEL = "hpsearch.standin"
TOOLS = ("dockerd", "docker", "docker-compose", "debootstrap")


class EngineUnavailable(Exception):
    """This machine cannot run the tests' Docker engine (the message says why)."""


def missing_tools() -> str | None:
    """Why the engine cannot start here, or ``None``."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not installed (scripts/install-system-deps.sh)"
    if os.geteuid() != 0:
        return "a Docker engine of the tests' own needs root"
    return None


class Engine:
    """A ``dockerd`` on a socket, data root and exec root of its own.

    Args:
        root: Where the engine keeps its images, socket and log.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket = root / "docker.sock"
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket}"}
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90) -> None:
        """Starts ``dockerd``, or uses the one already answering on this engine's socket."""
        if self._answers():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        # exec root under /run: containerd's socket paths must stay short
        exec_root = Path("/run") / f"hpsearch-docker-{_short_hash(bytes(self.root))}"
        cmd = [
            "dockerd", "--data-root", str(self.root / "data"),
            "--exec-root", str(exec_root), "--pidfile", str(self.root / "dockerd.pid"),
            "-H", f"unix://{self.socket}",
        ]  # fmt: skip
        with (self.root / "dockerd.log").open("ab") as log:  # the child keeps its own copy
            self._process = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None or self._answers():
                break
            time.sleep(0.5)
        if not self._answers():
            tail = (self.root / "dockerd.log").read_text(errors="replace")[-2000:]
            self.stop()
            raise EngineUnavailable(f"dockerd did not start:\n{tail}")

    def _answers(self) -> bool:
        proc = self.docker("version", "--format", "{{.Server.Version}}", check=False, timeout=20)
        return proc.returncode == 0

    def stop(self) -> None:
        """Stops the ``dockerd`` this object started (one it found running is left alone)."""
        if self._process is None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def docker(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """A ``docker`` command on this engine; raises with its output when ``check`` fails."""
        return _run(["docker", *args], self.env, check, timeout)

    def compose(
        self,
        files: list[Path],
        *args: str,
        env: Mapping[str, str],
        check: bool = True,
        timeout: float = 600,
    ) -> subprocess.CompletedProcess[str]:
        """``docker-compose -f FILE ... ARGS`` on this engine, with ``env`` added."""
        cmd = ["docker-compose", *(a for f in files for a in ("-f", str(f))), *args]
        return _run(cmd, {**self.env, **env}, check, timeout)

    def image_label(self, tag: str) -> str | None:
        """The stand-in label of image ``tag``, ``""`` if it has none; ``None`` if absent."""
        fmt = '{{index .Config.Labels "' + STANDIN_LABEL + '"}}'
        proc = self.docker("image", "inspect", "--format", fmt, tag, check=False)
        if proc.returncode != 0:
            return None
        return proc.stdout.strip().replace("<no value>", "")

    def image_size(self, tag: str) -> int:
        """Bytes of image ``tag``, its base's layers included."""
        return int(self.docker("image", "inspect", "--format", "{{.Size}}", tag).stdout)


def _short_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:8]


def _run(
    cmd: list[str], env: Mapping[str, str], check: bool, timeout: float
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, env=dict(env), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        output = proc.stdout[-3000:] + proc.stderr[-3000:]
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}:\n{output}")
    return proc


# -- what the project's files name ---------------------------------------------------------


def pytorch_image() -> str:
    """The base image docker/Dockerfile builds on (its ``ARG BASE`` default)."""
    text = (REPO / "docker" / "Dockerfile").read_text()
    match = re.search(r"^ARG BASE=(\S+)$", text, re.MULTILINE)
    assert match, "docker/Dockerfile: no ARG BASE=IMAGE"
    return match.group(1)


def postgres_image() -> str:
    """The image docker/compose.yaml runs PostgreSQL from."""
    compose = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())
    return str(compose["services"]["postgres"]["image"])


def pinned(package: str) -> str:
    """The version constraints.txt pins ``package`` to."""
    for line in (REPO / "constraints.txt").read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep and name.strip() == package:
            return version.strip()
    raise AssertionError(f"constraints.txt pins no {package}")


# -- stand-in images -----------------------------------------------------------------------


def debian_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The Debian mirror apt uses here (debootstrap's source), else deb.debian.org."""
    for file in sorted(sources.glob("sources.list.d/*.sources")):
        for line in file.read_text().splitlines():
            if line.startswith("URIs:"):
                for uri in line.split()[1:]:
                    if uri.rstrip("/").endswith("/debian"):
                        return uri
    for file in [sources / "sources.list", *sorted(sources.glob("sources.list.d/*.list"))]:
        if file.is_file():
            for line in file.read_text().splitlines():
                kind, uri, *rest = [*line.split(), "", ""]
                if kind == "deb" and rest[0] and uri.rstrip("/").endswith("/debian"):
                    return uri
    return "http://deb.debian.org/debian"


def ensure_debian(engine: Engine) -> None:
    """``hpsearch-standin/debian:bookworm``: ``debootstrap --variant=minbase``, imported."""
    if engine.image_label(DEBIAN_TAG) is not None:
        return
    with tempfile.TemporaryDirectory(prefix="rootfs-", dir=engine.root) as rootfs:
        subprocess.run(
            ["debootstrap", "--variant=minbase", "bookworm", rootfs, debian_mirror()],
            check=True,
            capture_output=True,
            timeout=900,
        )
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in Path(rootfs, cache).glob("*"):
                if item.is_file():
                    item.unlink()
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(
            ["docker", "import", "-", DEBIAN_TAG],
            stdin=tar.stdout,
            env=engine.env,
            check=True,
            capture_output=True,
            timeout=600,
        )
        assert tar.wait() == 0


def _pip_settings() -> dict[str, list[str]]:
    """pip's settings here that a build must copy: its CA bundle and local indexes."""
    command = [sys.executable, "-m", "pip", "config", "list"]
    out = subprocess.run(command, capture_output=True, text=True, check=False).stdout
    found: dict[str, list[str]] = {}
    for line in out.splitlines():
        key, _, value = line.partition("=")
        name = key.rsplit(".", 1)[-1]
        if name in ("cert", "find-links", "extra-index-url", "index-url"):
            found.setdefault(name, []).extend(value.strip("'\"").split())
    return found


def _host_ca(settings: Mapping[str, list[str]]) -> Path:
    for candidate in [*settings.get("cert", []), "/etc/ssl/certs/ca-certificates.crt"]:
        if Path(candidate).is_file():
            return Path(candidate)
    raise EngineUnavailable("no CA bundle for pip (pip's cert setting)")


@contextlib.contextmanager
def local_indexes(settings: Mapping[str, list[str]]) -> Iterator[list[str]]:
    """pip options that reach this machine's local wheel indexes from a build on the host's
    network: each ``file://`` index or find-links folder served on 127.0.0.1 while it runs."""
    servers: list[http.server.ThreadingHTTPServer] = []
    options: list[str] = []
    try:
        for key in ("extra-index-url", "find-links"):
            for value in dict.fromkeys(settings.get(key, [])):
                folder = Path(value.removeprefix("file://"))
                if not folder.is_dir():
                    continue  # a remote index: the build reaches it as the host does
                # an index's pages link to files beside it (../../files/...): serve its parent
                root, path = (folder.parent, folder.name) if key.endswith("url") else (folder, "")
                handler = functools.partial(_QuietHandler, directory=str(root))
                server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
                threading.Thread(target=server.serve_forever, daemon=True).start()
                servers.append(server)
                options += [f"--{key}", f"http://127.0.0.1:{server.server_address[1]}/{path}"]
        yield options
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _build_standin(
    engine: Engine, tag: str, dockerfile: str, files: Mapping[str, Path], args: Mapping[str, str]
) -> None:
    """Builds stand-in ``tag`` unless an image of that tag was built from the same inputs."""
    digest = hashlib.sha256((STANDINS / dockerfile).read_bytes())
    for name in sorted(files):
        digest.update(name.encode() + files[name].read_bytes())
    for key in sorted(args):
        if key != "PIP_INDEXES":  # local ports, which change every run
            digest.update(f"{key}={args[key]}".encode())
    base = engine.docker("image", "inspect", "--format", "{{.Id}}", DEBIAN_TAG).stdout
    digest.update(base.encode())
    key = digest.hexdigest()[:16]
    if engine.image_label(tag) == key:
        return
    with tempfile.TemporaryDirectory(prefix="standin-", dir=engine.root) as context:
        for name, source in files.items():
            shutil.copy(source, Path(context, name))
        shutil.copy(STANDINS / dockerfile, Path(context, "Dockerfile"))
        build_args = [a for k, v in args.items() for a in ("--build-arg", f"{k}={v}")]
        # the host's network: pip reaches the local indexes served on 127.0.0.1
        engine.docker(
            "build", "--force-rm", "--network", "host", "--label", f"{STANDIN_LABEL}={key}",
            *build_args, "-t", tag, context, timeout=1800,
        )  # fmt: skip


def ensure_standins(engine: Engine) -> None:
    """The Debian base and the stand-ins for the PyTorch and PostgreSQL images."""
    ensure_debian(engine)
    settings = _pip_settings()
    with local_indexes(settings) as indexes:
        _build_standin(
            engine,
            pytorch_image(),
            "pytorch.Dockerfile",
            {"host-ca.crt": _host_ca(settings)},
            {
                "PIP_INDEXES": " ".join(indexes),
                "TORCH": pinned("torch"),
                "TORCHVISION": pinned("torchvision"),
            },
        )
    _build_standin(
        engine,
        postgres_image(),
        "postgres.Dockerfile",
        {"postgres-entrypoint.sh": STANDINS / "postgres-entrypoint.sh"},
        {},
    )


def default_root() -> Path:
    """The engine's root: ``$HPSEARCH_TEST_DOCKER_ROOT``, else /var/lib/hpsearch-test-docker."""
    return Path(os.environ.get("HPSEARCH_TEST_DOCKER_ROOT", "/var/lib/hpsearch-test-docker"))
