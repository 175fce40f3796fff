"""Writing a file whole or not at all (imported by every layer, as :mod:`hpsearch.errors`).

A file written in place is half a file while it is written: a full disk, a Ctrl-C or a
killed process leaves it so, where an earlier good copy was. Each file is written beside
its target and renamed onto it once complete (a rename within a folder is atomic on POSIX).
"""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
import os
from pathlib import Path


@contextlib.contextmanager
def whole(path: str | Path) -> Iterator[Path]:
    """A path to write ``path``'s new content to: renamed onto ``path`` when the block ends,
    deleted if it raises (``path`` is then as it was).

    Several nested blocks write several files together: each is renamed only once every
    block's writing ended without an error.
    """
    target = Path(path)
    part = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        yield part
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)
