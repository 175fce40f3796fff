"""Names several layers share: where studies are stored unless a file or flag says, the
variable through which a Slurm job finds its storage URL, the one through which a container
finds its database password, and the share of a GPU's memory a worker fills."""

from __future__ import annotations

DEFAULT_STORAGE = "sqlite:///hpsearch.db"
STORAGE_FILE_ENV = "HPSEARCH_STORAGE_FILE"  # a file holding the URL (a Slurm job's, 0600)
PASSWORD_FILE_ENV = "HPSEARCH_STORAGE_PASSWORD_FILE"  # a file holding the password alone
# The share of a GPU's memory one worker's populations may fill when it is alone on it; each
# of K workers on one GPU gets this divided by K.
MEMORY_SHARE = 0.8
