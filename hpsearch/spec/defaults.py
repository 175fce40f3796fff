"""Names several layers share: where studies are stored unless a file or flag says, the
variable through which a Slurm job finds its storage URL, the one through which a container
finds its database password, how long a storage outage is waited out, and the share of a
GPU's memory a worker fills. Light: every command reads the outage wait as it starts."""

from __future__ import annotations

import math
import os

from hpsearch.errors import ConfigError

DEFAULT_STORAGE = "sqlite:///hpsearch.db"
STORAGE_FILE_ENV = "HPSEARCH_STORAGE_FILE"  # a file holding the URL (a Slurm job's, 0600)
PASSWORD_FILE_ENV = "HPSEARCH_STORAGE_PASSWORD_FILE"  # a file holding the password alone
# The share of a GPU's memory one worker's populations may fill when it is alone on it; each
# of K workers on one GPU gets this divided by K.
MEMORY_SHARE = 0.8

OUTAGE_WAIT_ENV = "HPSEARCH_STORAGE_WAIT"
DEFAULT_OUTAGE_WAIT_S = 300  # how long workers wait out a database restart or network cut


def outage_wait() -> float:
    """Seconds a storage call waits out an outage (``$HPSEARCH_STORAGE_WAIT``, default 300).

    Raises:
        ConfigError: The variable is not a number of seconds >= 0 (a typo would otherwise
            leave the default in force unseen).
    """
    value = os.environ.get(OUTAGE_WAIT_ENV)
    if not value:
        return DEFAULT_OUTAGE_WAIT_S
    try:
        wait = float(value)
    except ValueError:
        wait = math.nan
    if not wait >= 0:  # NaN too
        raise ConfigError([f"${OUTAGE_WAIT_ENV}: {value!r} is not a number of seconds >= 0"])
    return wait
