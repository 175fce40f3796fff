"""The README cannot drift: its study file validates, every `hpsearch` command it shows
parses, and its console sessions run as shown (same exit status, same kinds of lines)."""

from __future__ import annotations

from collections.abc import Iterator
import os
from pathlib import Path
import re
import shlex
import shutil
import subprocess
import sys

import click
import pytest

from hpsearch.cli import main
from hpsearch.spec.config import make_config
from hpsearch.spec.studyfile import parse_study
from tests.conftest import REPO

README = (REPO / "README.md").read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, flags=re.S)
NOT_RUN = ("hpsearch dashboard",)  # serves until Ctrl-C
HOME = "/home/me"  # where the README's sessions run


def _commands(text: str) -> Iterator[str]:
    """Every `hpsearch ...` command line of a block, prompts and comments removed."""
    for line in text.splitlines():
        line = line.removeprefix("$ ").split(" # ")[0].split(" > ")[0].strip()
        if line.startswith("hpsearch "):
            yield line


def test_readme_study_files_validate() -> None:
    yamls = [text for lang, text in BLOCKS if lang == "yaml"]
    assert yamls, "the README shows no study file"
    from hpsearch.spec.yamlfile import load_yaml

    for text in yamls:
        doc = load_yaml(text)
        if set(doc) == {"dataset"}:  # a fragment: the `dataset:` mapping of your own data
            assert make_config(doc).dataset.target  # type: ignore[union-attr]
            continue
        spec = parse_study(doc, source="README.md")
        assert spec.space.params


def test_readme_commands_parse() -> None:
    lines = [c for lang, text in BLOCKS if lang in ("bash", "console") for c in _commands(text)]
    assert len(lines) >= 15
    for line in lines:
        args = shlex.split(line)[1:]
        ctx = click.Context(main, info_name="hpsearch")
        command = main.get_command(ctx, args[0])
        assert command is not None, f"README: `{line}`: no command {args[0]!r}"
        try:
            command.make_context(args[0], args[1:], parent=ctx)
        except click.ClickException as e:
            pytest.fail(f"README: `{line}`: {e.format_message()}")


def _sessions() -> Iterator[tuple[str, list[str]]]:
    """(command, expected output lines) of each `$ hpsearch` line of the console blocks."""
    for lang, text in BLOCKS:
        if lang != "console":
            continue
        command: str | None = None
        expected: list[str] = []
        for line in text.splitlines():
            if line.startswith("$ "):
                if command:
                    yield command, expected
                command, expected = line[2:].split(" # ")[0].strip(), []
            else:
                expected.append(line)
        if command:
            yield command, expected


def _labels(lines: list[str]) -> list[str]:
    # The first word of each top-level line: values, timings and drawn params vary by machine
    # (so do the trial numbers that start a table's rows).
    return [
        word
        for line in lines
        if line
        and not line[0].isspace()
        and "|" not in line
        and not (word := line.split()[0]).isdigit()
    ]


@pytest.mark.slow
def test_readme_console_sessions_run_as_shown(tmp_path: Path) -> None:
    shutil.copytree(REPO / "studies", tmp_path / "studies")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HPSEARCH_OFFLINE": "1",
    }
    env.pop("HPSEARCH_STORAGE", None)
    ran = 0
    for command, expected in _sessions():
        if command.startswith(NOT_RUN):
            continue
        proc = subprocess.run(
            command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        ran += 1
        shown_error = any(line.startswith("error:") for line in expected)
        assert proc.returncode == (2 if shown_error else 0), f"`{command}`: {proc.stderr}"
        # the README's examples run in /home/me
        actual = re.split(r"[\r\n]", (proc.stdout + proc.stderr).replace(str(tmp_path), HOME))
        if shown_error:
            assert [e for e in expected if e.startswith("error:")] == [
                a for a in actual if a.startswith("error:")
            ]
        missing = set(_labels(expected)) - set(_labels(actual))
        assert not missing, f"`{command}` printed no line starting with {sorted(missing)}"
    assert ran >= 10


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path: Path) -> None:
    blocks = [text for lang, text in BLOCKS if lang == "python"]
    assert len(blocks) == 1, "the README shows one Python example"
    shutil.copytree(REPO / "studies", tmp_path / "studies")
    proc = subprocess.run(
        [sys.executable, "-c", blocks[0]],
        cwd=tmp_path,
        env={**os.environ, "HPSEARCH_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "best.yaml").is_file()
    assert {p.name for p in (tmp_path / "runs" / "best").iterdir()} == {
        "model.pt",
        "config.yaml",
        "result.json",
    }
    lines = proc.stdout.splitlines()
    assert 1 <= int(lines[0].split()[0]) <= 5  # completed in this run; the rest were pruned
    table = lines[lines.index(next(x for x in lines if x.startswith("number  state"))) :]
    assert [row.split()[0] for row in table[1:6]] == ["0", "1", "2", "3", "4"]
    assert float(lines[-1].split()[0]) > 0.8  # the retrained model's test accuracy
    # the study was deleted at the end
    gone = subprocess.run(
        [sys.executable, "-m", "hpsearch", "studies"], cwd=tmp_path, capture_output=True, text=True
    )
    assert "no studies" in gone.stdout
