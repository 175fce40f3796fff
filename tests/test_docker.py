"""Static checks of docker/: no engine runs here, so the files are parsed and cross-checked."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from hpsearch.cli import main
from tests.conftest import REPO

DOCKER = REPO / "docker"


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def _expand(arg: str) -> str:
    # "${VAR:-default}" -> default, as compose does when VAR is unset
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", arg)


def test_dockerfile_copies_existing_paths_and_runs_hpsearch() -> None:
    lines = [ln.strip() for ln in (DOCKER / "Dockerfile").read_text().splitlines()]
    instructions = [ln for ln in lines if ln and not ln.startswith("#")]
    assert instructions[0].startswith("FROM pytorch/pytorch:") and "cuda" in instructions[0]
    for line in instructions:
        if line.startswith("COPY"):
            *sources, _dest = line.split()[1:]
            for source in sources:
                assert (REPO / source).exists(), source
    assert 'ENTRYPOINT ["hpsearch"]' in instructions
    assert any('".[postgres]"' in ln for ln in instructions if ln.startswith("RUN"))


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


@pytest.mark.parametrize("service", ["create", "worker", "dashboard"])
def test_compose_commands_parse_with_the_cli(service: str) -> None:
    command = [_expand(a) for a in _compose()["services"][service]["command"]]
    ctx = main.make_context("hpsearch", list(command), resilient_parsing=True)
    sub = main.get_command(ctx, command[0])
    assert sub is not None
    sub.make_context(command[0], command[1:])  # raises on an unknown option
