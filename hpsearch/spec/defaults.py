"""Names several layers share: where studies are stored unless a file or flag says, the
variable through which a Slurm job finds its storage URL, and the one through which a
container finds its database password."""

from __future__ import annotations

DEFAULT_STORAGE = "sqlite:///hpsearch.db"
STORAGE_FILE_ENV = "HPSEARCH_STORAGE_FILE"  # a file holding the URL (a Slurm job's, 0600)
PASSWORD_FILE_ENV = "HPSEARCH_STORAGE_PASSWORD_FILE"  # a file holding the password alone
