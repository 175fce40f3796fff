"""Imported at start-up by every Python process of a gated test (tests/helpers.py: Gate puts
this folder on PYTHONPATH): hpsearch's trainer then holds each trial at its epoch ends while
the gate file is missing, so no trial can finish until the test opens the gate, however fast
the machine. A stop (Ctrl-C, SIGTERM) still ends the epoch at once, as it would."""

from __future__ import annotations

import os
import time
from typing import Any

GATE = os.environ.get("HPSEARCH_TEST_GATE")

if GATE:
    import hpsearch.study.worker as _worker

    _train_population = _worker.train_population

    def _gated(configs: Any, on_epoch: Any = None) -> Any:
        def epoch(i: int, stats: Any) -> bool:
            while not os.path.exists(GATE) and not _worker.stop_requested():
                time.sleep(0.05)
            return bool(on_epoch(i, stats)) if on_epoch is not None else False

        return _train_population(configs, epoch)

    _worker.train_population = _gated
