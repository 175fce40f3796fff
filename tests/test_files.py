"""A file written whole or not at all (hpsearch/files.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpsearch import files


def test_a_file_is_replaced_only_once_written_and_left_as_it_was_otherwise(
    tmp_path: Path,
) -> None:
    target = tmp_path / "best.yaml"
    target.write_text("earlier")
    with pytest.raises(OSError, match="No space left"), files.whole(target) as part:
        part.write_text("half")
        raise OSError(28, "No space left on device")
    assert target.read_text() == "earlier"
    assert [p.name for p in tmp_path.iterdir()] == ["best.yaml"]  # no part left beside
    with files.whole(target) as part:
        part.write_text("new")
        assert target.read_text() == "earlier"  # until the block ends
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["best.yaml"]


def test_files_written_together_are_replaced_only_if_all_were_written(tmp_path: Path) -> None:
    model, config = tmp_path / "model.pt", tmp_path / "config.yaml"
    model.write_text("old model")
    config.write_text("old config")
    with pytest.raises(KeyboardInterrupt), files.whole(model) as a, files.whole(config) as b:
        a.write_text("new model")
        raise KeyboardInterrupt  # a Ctrl-C before the config was written
    assert (model.read_text(), config.read_text()) == ("old model", "old config")
    with files.whole(model) as a, files.whole(config) as b:
        a.write_text("new model")
        b.write_text("new config")
    assert (model.read_text(), config.read_text()) == ("new model", "new config")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "model.pt"]
