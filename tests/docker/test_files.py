"""docker/ read without an engine: what test_stack.py runs for real is also held to its rules
here, in the fast tier (no password in the environment, a user that is not root, dependency
layers before the code, a CPU override that keeps the base file's settings)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from hpsearch.cli import main
from tests.conftest import REPO

DOCKER = REPO / "docker"


def _compose(name: str = "compose.yaml") -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load((DOCKER / name).read_text())
    return found


def _expand(arg: str) -> str:
    # "${VAR:-default}" -> default, as compose does when VAR is unset
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", arg)


def _instructions() -> list[str]:
    text = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [ln.strip() for ln in text.splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def test_dockerfile_builds_on_pytorch_runs_as_a_user_and_installs_dependencies_first() -> None:
    instructions = _instructions()
    assert re.fullmatch(r"ARG BASE=pytorch/pytorch:\S+cuda\S+", instructions[0])
    assert instructions[1] == "FROM ${BASE}"
    for line in instructions:
        if line.startswith("COPY"):
            *sources, _dest = line.split()[1:]
            for source in sources:
                assert (REPO / source).exists(), source
    index = {ln.split()[0] + " " + ln.split()[1]: i for i, ln in enumerate(instructions)}
    dependencies = next(i for i, ln in enumerate(instructions) if "-c /tmp/constraints" in ln)
    # a change to the code reuses the dependency layer: it is built before the code is copied
    assert dependencies < index["COPY hpsearch"] < index["USER hpsearch"]
    assert "--no-deps" in instructions[index["COPY hpsearch"] + 1]
    assert instructions[-2:] == ['ENTRYPOINT ["hpsearch"]', 'CMD ["--help"]']
    assert "--uid 10001" in instructions[index["RUN useradd"]]  # the key: a RUN of useradd


def test_dockerignore_lets_in_only_what_the_image_copies() -> None:
    lines = [ln for ln in (REPO / ".dockerignore").read_text().splitlines() if ln.strip()]
    patterns = [ln for ln in lines if not ln.startswith("#")]
    assert patterns[0] == "*"
    allowed = {p[1:] for p in patterns if p.startswith("!")}
    copied = {
        source
        for line in _instructions()
        if line.startswith("COPY")
        for source in line.split()[1:-1]
    }
    assert copied == allowed


def test_compose_services_and_commands() -> None:
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"postgres", "create", "worker", "dashboard"}
    build = services["worker"]["build"]
    assert (DOCKER / build["context"] / build["dockerfile"]).resolve().is_file()
    for name in ("create", "worker", "dashboard"):
        command = [_expand(a) for a in services[name]["command"]]
        assert command[0] in main.commands, command
        assert (REPO / command[1]).is_file(), command
        assert "postgresql+psycopg://" in services[name]["environment"]["HPSEARCH_STORAGE"]
    assert services["create"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert (
        services["worker"]["depends_on"]["create"]["condition"] == "service_completed_successfully"
    )
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"] and devices[0]["driver"] == "nvidia"
    dashboard = [_expand(a) for a in services["dashboard"]["command"]]
    assert dashboard[dashboard.index("--host") + 1] == "0.0.0.0"
    assert all(p.startswith("127.0.0.1:") for p in services["dashboard"]["ports"])
    assert "name" not in compose  # Compose 1.29 refuses a top-level name (use -p)


@pytest.mark.parametrize("name", ["compose.yaml", "compose.cpu.yaml"])
def test_no_password_in_any_environment(name: str) -> None:
    """Every container's environment shows in `docker inspect`: the password is a secret file."""
    for service in _compose(name)["services"].values():
        for key, value in (service.get("environment") or {}).items():
            assert "PASSWORD" not in key or key.endswith("_FILE"), key
            assert not re.search(r"://[^/@]*:[^/@]*@", str(value)), (key, value)
        for key, value in (service.get("environment") or {}).items():
            if key.endswith("PASSWORD_FILE"):
                assert value == "/run/secrets/postgres_password"
                assert service["secrets"] == ["postgres_password"]
    if name == "compose.yaml":
        assert set(_compose()["secrets"]) == {"postgres_password"}


def test_cpu_override_hides_the_gpu_worker_and_keeps_its_settings() -> None:
    base, cpu = _compose()["services"], _compose("compose.cpu.yaml")["services"]
    assert cpu["worker"] == {"profiles": ["gpu"]}
    worker, cpu_worker = base["worker"], cpu["cpu-worker"]
    for key in ("image", "environment", "secrets", "volumes", "restart", "depends_on"):
        assert cpu_worker[key] == worker[key], key
    assert "deploy" not in cpu_worker
    command = [_expand(a) for a in cpu_worker["command"]]
    device = command.index("--device") + 1
    assert command[device] == "cpu" and _expand(worker["command"][device]) == "cuda"
    assert command[:device] == [_expand(a) for a in worker["command"]][:device]


@pytest.mark.parametrize(
    ("name", "service"),
    [
        ("compose.yaml", "create"),
        ("compose.yaml", "worker"),
        ("compose.yaml", "dashboard"),
        ("compose.cpu.yaml", "cpu-worker"),
    ],
)
def test_compose_commands_parse_with_the_cli(name: str, service: str) -> None:
    command = [_expand(a) for a in _compose(name)["services"][service]["command"]]
    ctx = main.make_context("hpsearch", list(command), resilient_parsing=True)
    sub = main.get_command(ctx, command[0])
    assert sub is not None
    sub.make_context(command[0], command[1:])  # raises on an unknown option


@pytest.mark.parametrize("cpu", [False, True])
def test_compose_itself_reads_the_files_as_the_readme_runs_them(cpu: bool) -> None:
    if shutil.which("docker-compose") is None:  # no engine needed: `config` only reads
        if os.environ.get("CI"):
            pytest.fail("docker-compose missing (scripts/install-system-deps.sh installs it)")
        pytest.skip("docker-compose not installed")
    files = ["compose.yaml", "compose.cpu.yaml"] if cpu else ["compose.yaml"]
    proc = subprocess.run(
        ["docker-compose", "-p", "hpsearch", *(a for f in files for a in ("-f", f)), "config"],
        capture_output=True,
        text=True,
        cwd=DOCKER,
        env={**os.environ, "HPSEARCH_STUDY": "studies/quickstart.yaml"},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    services = yaml.safe_load(proc.stdout)["services"]
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert gpu == [{"capabilities": ["gpu"], "count": 1, "driver": "nvidia"}]
    assert ("cpu-worker" in services) == cpu
    if cpu:
        assert services["worker"]["profiles"] == ["gpu"]
        assert services["cpu-worker"]["command"][:4] == [
            "worker", "studies/quickstart.yaml", "--device", "cpu"
        ]  # fmt: skip
