"""Size and build time of the image docker/Dockerfile builds, on the tests' Docker engine.

Builds, on the stand-in PyTorch base (tests/docker/engine.py; built first if this machine has
none), from a copy of the build context so that the checkout is never touched:

- cold: ``--no-cache``, every layer of the Dockerfile built (the dependencies from the registry);
- a code change: one line added to a module, then built again with the layer cache;
- no change: built again as it is.

It prints each time and its ratio to the cold build, the image's size and what the Dockerfile
adds to its base, and the build context sent to the engine beside the whole checkout.
``--before REV`` builds that commit's docker/Dockerfile the same way first, side by side. Needs
root and Debian's docker.io, docker-compose and debootstrap, as the tests do::

    python bench/docker_image.py --before eb7136b
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import os
from pathlib import Path
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.docker.engine import default_root
from tests.docker.engine import Engine
from tests.docker.engine import ensure_standins
from tests.docker.engine import missing_tools
from tests.docker.engine import pytorch_image
from tests.docker.engine import REPO

TAG = "hpsearch-bench:latest"


def _context(dest: Path) -> None:
    """The files the .dockerignore lets in (its `!` lines), copied to ``dest``."""
    lines = (REPO / ".dockerignore").read_text().splitlines()
    for name in (ln[1:] for ln in lines if ln.startswith("!")):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, dest / name)
    (dest / "docker").mkdir()
    shutil.copy(REPO / "docker" / "Dockerfile", dest / "docker" / "Dockerfile")


def _bytes(root: Path) -> int:
    """Bytes of the files under ``root``."""
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file() and not f.is_symlink())


def _build(engine: Engine, context: Path, dockerfile: Path, *args: str) -> float:
    start = time.perf_counter()
    engine.docker("build", *args, "-f", str(dockerfile), "-t", TAG, str(context), timeout=1800)
    return time.perf_counter() - start


@dataclass(frozen=True)
class Builds:
    """One Dockerfile's three builds (seconds) and its image's size over the base (bytes)."""

    cold: float
    change: float
    same: float
    added: int


def _measure(engine: Engine, dockerfile: Path) -> Builds:
    with tempfile.TemporaryDirectory() as tmp:
        context = Path(tmp)
        _context(context)
        cold = _build(engine, context, dockerfile, "--no-cache")
        module = context / "hpsearch" / "errors.py"
        module.write_text(module.read_text() + "\n# a change\n")
        change = _build(engine, context, dockerfile)
        same = _build(engine, context, dockerfile)
    added = engine.image_size(TAG) - engine.image_size(pytorch_image())
    engine.docker("rmi", TAG)
    return Builds(cold, change, same, added)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", help="a commit whose docker/Dockerfile to build first")
    args = parser.parse_args()
    problem = missing_tools()
    if problem:
        sys.exit(f"cannot run: {problem}")
    with tempfile.TemporaryDirectory() as tmp:
        dockerfiles = {"now": REPO / "docker" / "Dockerfile"}
        if args.before:
            old = Path(tmp, "Dockerfile.before")
            show = ["git", "-C", str(REPO), "show", f"{args.before}:docker/Dockerfile"]
            old.write_text(subprocess.run(show, check=True, capture_output=True, text=True).stdout)
            dockerfiles = {f"before ({args.before})": old, **dockerfiles}
        engine = Engine(default_root())
        engine.start()
        try:
            ensure_standins(engine)
            base = engine.image_size(pytorch_image())
            found = {name: _measure(engine, path) for name, path in dockerfiles.items()}
        finally:
            engine.stop()
    mb = 1e6
    print(f"{'Dockerfile':<22}{'build':<20}{'seconds':>9}{'x cold':>9}{'MB over base':>14}")
    for name, b in found.items():
        for build, seconds in (("cold (--no-cache)", b.cold), ("a code change", b.change),
                               ("no change", b.same)):  # fmt: skip
            print(f"{name:<22}{build:<20}{seconds:>9.1f}{seconds / b.cold:>9.3f}", end="")
            print(f"{b.added / mb:>14,.0f}" if build == "no change" else "")
    with tempfile.TemporaryDirectory() as tmp:
        _context(Path(tmp))
        sent = _bytes(Path(tmp))
    print(f"base image (stand-in {pytorch_image()}): {base / mb:,.0f} MB")
    print(
        f"build context: {sent / mb:,.1f} MB (the .dockerignore lets in only what the image "
        f"copies; this checkout holds {_bytes(REPO) / mb:,.0f} MB with its .venv and .git)"
    )
    print(f"(machine: {os.cpu_count()} cores; engine root {engine.root})")


if __name__ == "__main__":
    main()
