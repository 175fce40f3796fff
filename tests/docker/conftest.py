"""The Docker engine the stack tests run on (tests/docker/engine.py)."""

from __future__ import annotations

from collections.abc import Iterator
import os

import pytest

from tests.docker.engine import default_root
from tests.docker.engine import Engine
from tests.docker.engine import EngineUnavailable
from tests.docker.engine import ensure_standins
from tests.docker.engine import missing_tools


def _cannot(problem: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(problem)
    pytest.skip(problem)


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[Engine]:
    """A dockerd of the tests' own with the stand-in base images built (once a machine).
    Skips where it cannot run; fails instead under CI."""
    problem = missing_tools()
    if problem:
        _cannot(problem)
    engine = Engine(default_root())
    try:
        engine.start()
    except EngineUnavailable as e:
        _cannot(str(e))
    try:
        ensure_standins(engine)
        yield engine
    finally:
        engine.stop()
