"""Where a saved model lives (no torch: ``predict`` refuses a wrong path before torch loads)."""

from __future__ import annotations

from pathlib import Path

from hpsearch.errors import ConfigError

MODEL_FILE = "model.pt"


def model_file(path: str | Path) -> Path:
    """The model file at ``path``: the file itself, or ``model.pt`` in a directory.

    Raises:
        ConfigError: There is no such file.
    """
    file = Path(path)
    if file.is_dir():
        file = file / MODEL_FILE
    if not file.is_file():
        raise ConfigError([f"{file}: no such model file (`hpsearch retrain` writes one)"])
    return file
