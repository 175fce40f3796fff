"""The ``hpsearch`` command line: every command parses its flags, calls one documented
function of the layers below and prints through :mod:`hpsearch.cli.output`.

Commands by area: ``training`` (train), ``running`` (check, run, create, worker, launch),
``reading`` (studies, status, best, trials, trial), ``models`` (retrain, predict, evaluate,
repeat), ``manage`` (retry, copy, delete, init, schema), ``pictures`` (dashboard, report).
Each imports its heavy modules inside the command, so ``--help``, ``init`` and the reading
commands never load torch.
"""

from __future__ import annotations

from hpsearch.cli import manage
from hpsearch.cli import models
from hpsearch.cli import pictures
from hpsearch.cli import reading
from hpsearch.cli import running
from hpsearch.cli import training
from hpsearch.cli.app import main

__all__ = ["main"]

_COMMANDS = (manage, models, pictures, reading, running, training)  # imported to register
