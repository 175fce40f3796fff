"""Shared helpers: small study files on digits and a CLI runner."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
import json
import math
import os
from pathlib import Path
import random
import subprocess
import sys
import time
from typing import Any
from typing import TYPE_CHECKING
from typing import TypeVar

import optuna
from optuna.trial import TrialState
import yaml

if TYPE_CHECKING:
    from hpsearch.spec.config import TrainConfig
    from hpsearch.training.trainer import TrainResult

T = TypeVar("T")

# Every trial fails the same way (two activations for one hidden layer), while the fixed
# settings alone train fine: the pre-flight check passes, every trial raises.
BROKEN_SPACE: dict[str, Any] = {
    "fixed": {"epochs": 1, "hidden_layers": [16], "scheduler": "none"},
    "space": {"activation": {"values": [["relu", "tanh"]]}},
}

# A study whose best trial lies at an end of its range: the fewest parameters, the narrowest
# layer the range allows, queued first (1,210 parameters on digits at width 16; 610 at 8).
EDGE_STUDY: dict[str, Any] = {
    "objective": "param_count",
    "budget": {"trials": 3},
    "space": {
        "hidden_layers": {
            "type": "layers",
            "depth": {"low": 1, "high": 1},
            "width": {"low": 8, "high": 64},
        },
        "lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
    },
    "start_with": [{"hidden_layers": [8], "lr": 1e-2}],
}
EDGE = "hidden_layers.width_0 8 is at the bottom of its range [8, 64]"

# A grid selecting on the parameter count (known before a trial runs), in the order listed:
# width 16 (1,210 parameters on digits) is the first to reach the target, trial 1.
TARGET_STUDY: dict[str, Any] = {
    "sampler": "grid",
    "objective": "param_count",
    "budget": {"target": 1210},
    "space": {"hidden_layers": {"values": [[32], [16], [64], [8]]}},
}
TARGET_REACHED = "trial 1 reached budget.target (1210 <= 1210)"

# A space with conditional params: the widths exist for some depths, momentum for sgd only.
CONDITIONAL_SPACE = {
    "lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
    "hidden_layers": {
        "type": "layers",
        "depth": {"low": 0, "high": 3},
        "width": {"low": 8, "high": 64, "log": True},
    },
    "activation": ["relu", "tanh"],
    "optimizer": ["adam", "sgd"],
    "momentum": {"type": "float", "low": 0.0, "high": 0.9, "when": {"optimizer": ["sgd"]}},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "weight_decay": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True},
}


def study_doc(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """A small, fast digits study stored in a temporary SQLite file."""
    doc: dict[str, Any] = {
        "name": "t",
        "storage": f"sqlite:///{tmp_path / 'hp.db'}",
        "dataset": "digits",
        "objective": {"metric": "val_accuracy", "reduce": "final"},
        "sampler": {"name": "random", "seed": 0},
        "budget": {"trials": 4},
        "fixed": {"epochs": 2, "scheduler": "none", "optimizer": "adam", "lr": 0.01},
        "space": {
            "lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
            "hidden_layers": {
                "type": "layers",
                "depth": {"low": 0, "high": 2},
                "width": {"low": 8, "high": 64, "log": True},
            },
        },
        "heartbeat": {"interval": 1, "grace_period": 3},
    }
    doc.update(overrides)
    return doc


def write_study(tmp_path: Path, name: str = "study.yaml", **overrides: Any) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(study_doc(tmp_path, **overrides), sort_keys=False))
    return path


def hpsearch(
    *args: str,
    cwd: Path | None = None,
    timeout: float = 300,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Runs the CLI in a subprocess, as a user would (``env`` adds variables)."""
    return subprocess.run(
        [sys.executable, "-m", "hpsearch", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "HPSEARCH_OFFLINE": "1", **(env or {})},
        timeout=timeout,
    )


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Starts the CLI in the background, offline, its output captured (``env``: more
    variables, such as a :class:`Gate`'s)."""
    return subprocess.Popen(
        [sys.executable, "-m", "hpsearch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HPSEARCH_OFFLINE": "1", **(env or {})},
    )


class Gate:
    """Holds every trial of the processes started with :attr:`env` at its epoch ends until
    :meth:`open` (see ``tests/gate/sitecustomize.py``): a trial the test means to kill,
    stop or interrupt cannot finish first, however fast the machine."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "gate-open"

    @property
    def env(self) -> dict[str, str]:
        here = str(Path(__file__).resolve().parent / "gate")
        paths = [here, os.environ.get("PYTHONPATH", "")]
        return {
            "PYTHONPATH": os.pathsep.join(p for p in paths if p),
            "HPSEARCH_TEST_GATE": str(self.path),
        }

    def open(self) -> None:
        self.path.touch()


def wait_for(condition: Callable[[], T | None], what: str, timeout: float = 240) -> T:
    """What ``condition`` returns once it is truthy (asked every half second); an
    ``AssertionError`` naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"never: {what}")


def wait_running(
    url: str,
    n: int = 1,
    timeout: float = 180,
    process: subprocess.Popen[str] | None = None,
) -> list[optuna.trial.FrozenTrial]:
    """The first ``n`` trials (by number) of study ``t`` that run with their worker's pid
    recorded, once that many do (failing at once, with its output, if ``process`` ends)."""
    from hpsearch.results.reading import open_study

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"exited {process.returncode} first:\n{out}\n{err}")
        try:
            running = open_study("t", url).get_trials(states=(TrialState.RUNNING,))
        except Exception:  # the study may not exist yet
            running = []
        started = sorted((t for t in running if "pid" in t.user_attrs), key=lambda t: t.number)
        if len(started) >= n:
            return started[:n]
        time.sleep(0.2)
    raise AssertionError(f"{n} trials never ran at once")


def stand_in(configs: Sequence[TrainConfig], on_epoch: Any = None) -> list[TrainResult]:
    """A STAND-IN for ``trainer.train_population`` (patch
    ``hpsearch.study.worker.train_population``) that trains nothing: real-looking curves at
    once, accuracy rising towards a level set by the learning rate and width, about 5%
    diverging, every epoch reported. For tests and
    benchmarks of everything around training; its results say ``device: stand-in``."""
    from hpsearch.training.data import load_raw
    from hpsearch.training.data import split_indices
    from hpsearch.training.trainer import EpochStats
    from hpsearch.training.trainer import TrainResult

    results = []
    for i, c in enumerate(configs):
        n_train = len(load_raw(c.dataset, c.data_dir).train_y)  # cached after the first
        val_size = len(split_indices(n_train, c.val_fraction)[1])
        rng = random.Random(json.dumps(c.to_dict(), sort_keys=True))
        width = sum(c.hidden_layers) or 10
        level = 0.97 - 0.08 * abs(math.log10(c.lr) + 2.3) - 0.02 / math.log2(width + 1)
        level = min(0.995, level + rng.gauss(0, 0.01))
        diverge = rng.random() < 0.05
        epochs: list[EpochStats] = []
        outcome = "completed"
        for e in range(1, c.epochs + 1):
            acc = max(0.1, level * (1 - math.exp(-0.6 * e)) + rng.gauss(0, 0.004))
            loss = -math.log(max(acc, 1e-3)) * 0.9 + rng.gauss(0, 0.01)
            if diverge and e == 3:
                epochs.append(EpochStats(e, math.nan, math.nan, 0.1, 0.3))
                outcome = "diverged"
                break
            epochs.append(EpochStats(e, loss * 0.8, loss, acc, 0.3 + rng.random() * 0.05))
            if on_epoch is not None and on_epoch(i, epochs[-1]):
                outcome = "stopped"
                break
        done = outcome == "completed"
        results.append(
            TrainResult(
                outcome=outcome,  # type: ignore[arg-type]
                epochs=tuple(epochs),
                test_loss=epochs[-1].val_loss if done else None,
                test_accuracy=epochs[-1].val_accuracy - 0.005 if done else None,
                train_seconds=sum(s.seconds for s in epochs),
                param_count=64 * width,
                device="stand-in",
                config=c.to_dict(),
                val_size=val_size,
            )
        )
    return results


def stand_in_study(tmp_path: Path, monkeypatch: Any, trials: int = 30, **overrides: Any) -> Path:
    """A study file whose whole budget ran through the real worker loop with
    :func:`stand_in` training (seconds for dozens of trials; median pruning, 6 epochs)."""
    from hpsearch.spec.studyfile import load_spec
    from hpsearch.study import lifecycle
    from hpsearch.study import worker as study_module

    doc = {
        "budget": {"trials": trials},
        "pruner": {"name": "median", "n_startup_trials": 3, "n_warmup_steps": 2},
        "fixed": {"epochs": 6, "scheduler": "none", "optimizer": "adam"},
        **overrides,
    }
    path = write_study(tmp_path, **doc)
    monkeypatch.setattr(study_module, "train_population", stand_in)
    spec = load_spec(str(path))
    storage, _, _ = lifecycle.prepare(spec)
    study_module.run_worker(spec, storage)
    return path


TRIAL_TABLES = (
    "trial_params",
    "trial_values",
    "trial_user_attributes",
    "trial_system_attributes",
    "trial_intermediate_values",
    "trial_heartbeats",
)


def clone_study(url: str, name: str, target: int) -> float:
    """Grows study ``name`` to ``target`` trials by copying its trials (every row of each,
    new ids and numbers) in a few INSERT ... SELECT statements per doubling: a study of any
    size in seconds, with the shape of the one built (bench/scale.py's ``--clone``, the
    large-study tests). Returns the seconds."""
    import sqlalchemy as sa

    start = time.perf_counter()
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    meta.reflect(engine, only=("studies", "trials", *TRIAL_TABLES))
    trials = meta.tables["trials"]
    with engine.begin() as db:
        sid = db.execute(
            sa.select(meta.tables["studies"].c.study_id).where(
                meta.tables["studies"].c.study_name == name
            )
        ).scalar_one()
        while True:
            n = db.execute(
                sa.select(sa.func.count()).select_from(trials).where(trials.c.study_id == sid)
            ).scalar_one()
            if n >= target:
                break
            take = min(n, target - n)  # the first `take` trials again, numbered after the last
            shift = db.execute(sa.select(sa.func.max(trials.c.trial_id))).scalar_one()
            first = db.execute(
                sa.select(sa.func.min(trials.c.trial_id)).where(trials.c.study_id == sid)
            ).scalar_one()
            chosen = sa.and_(trials.c.study_id == sid, trials.c.number < take)
            columns = [c.name for c in trials.columns]
            picked = [
                (trials.c.trial_id + shift) if c == "trial_id"
                else (trials.c.number + n) if c == "number"
                else trials.c[c]
                for c in columns
            ]  # fmt: skip
            db.execute(trials.insert().from_select(columns, sa.select(*picked).where(chosen)))
            ids = sa.select(trials.c.trial_id).where(chosen)
            for table_name in TRIAL_TABLES:
                table = meta.tables[table_name]
                own = table.primary_key.columns.values()[0].name
                names = [c.name for c in table.columns if c.name != own]
                rows = sa.select(
                    *[(table.c.trial_id + shift) if c == "trial_id" else table.c[c] for c in names]
                ).where(table.c.trial_id.in_(ids), table.c.trial_id >= first)
                db.execute(table.insert().from_select(names, rows))
        if engine.dialect.name == "postgresql":  # explicit ids do not move the sequences on
            for table_name, key in (("trials", "trial_id"),):
                db.execute(
                    sa.text(
                        f"SELECT setval(pg_get_serial_sequence('{table_name}', '{key}'), "
                        f"(SELECT max({key}) FROM {table_name}))"
                    )
                )
    engine.dispose()
    return time.perf_counter() - start
