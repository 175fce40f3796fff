"""Names several layers share: where studies are stored unless a file or flag says, and the
variable through which a Slurm job finds its storage URL."""

from __future__ import annotations

DEFAULT_STORAGE = "sqlite:///hpsearch.db"
STORAGE_FILE_ENV = "HPSEARCH_STORAGE_FILE"  # a file holding the URL (a Slurm job's, 0600)
