"""Large studies: how fast and how big every reading command, the report and the dashboard
are at 1,000 and 10,000 trials, ``compare`` of the studies of every size (each in its own
storage), and what each trial costs in bookkeeping.

The studies are built through hpsearch's own code path (``study.prepare`` and
``study.run_worker``: claims, suggestions, per-epoch reports, pruning, result records, tells)
with ONE thing replaced: training. A STAND-IN trainer (``stand_in`` in tests/helpers.py)
returns at once with made-up but real-looking curves (accuracy rising towards a level set by
the learning rate and width, noise, about 5% diverging), so 10,000 trials take minutes, not
days. Its results say ``device: stand-in``; nothing it produces measures a model. The study
prunes with a percentile pruner that keeps the top 95% at each epoch. Optuna's percentile (and
median) pruner compares with completed trials only, which get better as the bad ones are
pruned, so the share pruned grows with the study (and faster the more the sampler has
converged: at 80% a 10,000-trial study ended 22% complete, 73% pruned). At 95% it ends about
71% complete, 24% pruned, 5% failed: more completed trials than a real quickstart study grown
that large (about 55/40/5), the heavier case for the report and the dashboard, whose figures
grow with completed trials. The mix is printed with the figures.

Each reading command runs as a fresh process, as a user types it (wall time and peak
resident memory: the median of 3 runs, the report once); the dashboard is served in this
process and its first study response and its importances are timed over loopback. Then 200
more trials run (``--more``) to time what one costs at that size, sampler, pruner and
bookkeeping together. ``--postgres`` runs the same on a throw-away PostgreSQL server
(tests/conftest.py's), ``--postgres SERVER_URL`` on a running one::

    python bench/scale.py --trials 1000 10000 --keep /tmp/scale
    python bench/scale.py --trials 1000 10000 --keep /tmp/scale --reuse   # measure again
    python bench/scale.py --trials 1000 10000 --postgres
    python bench/scale.py --trials 1000 --clone 10000 100000 --keep /tmp/clone  # copies: seconds
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
import contextlib
import os
from pathlib import Path
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any
import urllib.request

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402

from hpsearch import storage as db  # noqa: E402
from hpsearch.results.reading import open_study  # noqa: E402
from hpsearch.spec.studyfile import load_spec  # noqa: E402
from hpsearch.study import lifecycle  # noqa: E402
from hpsearch.study import worker as study_module  # noqa: E402
from hpsearch.study.budget import used_budget  # noqa: E402
from tests.helpers import clone_study  # noqa: E402
from tests.helpers import stand_in  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.ERROR)  # gp's fallback warnings, once per ask

EPOCHS = 10
STATES = ("COMPLETE", "PRUNED", "FAIL")
STUDY = """\
name: {name}
storage: {url}
dataset: digits
objective: {{metric: val_accuracy, reduce: best, direction: maximize}}
sampler: {{name: {sampler}, seed: 0}}
pruner: {{name: percentile, percentile: 95.0, n_startup_trials: 5, n_warmup_steps: 3}}
budget: {{trials: {trials}}}
fixed: {{epochs: {epochs}, scheduler: none, batch_size: 32}}
space:
  hidden_layers:
    type: layers
    depth: {{low: 1, high: 3}}
    width: {{low: 16, high: 256, log: true}}
  activation: [relu, gelu, tanh, silu]
  optimizer: [adam, sgd, rmsprop]
  lr: {{type: float, low: 1.0e-4, high: 0.3, log: true}}
  momentum: {{type: float, low: 0.0, high: 0.95, when: {{optimizer: [sgd, rmsprop]}}}}
  dropout: {{type: float, low: 0.0, high: 0.5}}
  weight_decay: {{type: float, low: 1.0e-6, high: 1.0e-2, log: true}}
"""


def build(path: Path) -> tuple[float, float]:
    """Runs the study file's whole budget with the stand-in trainer in this process.

    Returns:
        Seconds until the first trial finished (the worker's one study load, and a first
        ask) and seconds per trial after it.
    """
    spec = load_spec(str(path))
    study_module.train_population = stand_in  # the ONE replacement: see the module docstring
    storage, _, _ = lifecycle.prepare(spec)
    times: list[float] = []
    start = time.perf_counter()
    study_module.run_worker(spec, storage, on_trial=lambda t: times.append(time.perf_counter()))
    return times[0] - start, (times[-1] - times[0]) / max(1, len(times) - 1)


def extend(path: Path, more: int) -> tuple[float, float]:
    """Raises the budget of a built study by ``more`` trials and runs them (see
    :func:`build`): what each trial costs at the study's size, sampler and pruner included."""
    spec = load_spec(str(path))
    study = optuna.load_study(study_name=spec.name, storage=spec.storage)
    budget = used_budget(study) + more
    bigger = path.with_name(f"{path.stem}-more.yaml")
    bigger.write_text(path.read_text().replace(f"trials: {spec.trials}", f"trials: {budget}"))
    return build(bigger)


# Run through a small wrapper: a child forked from this process (optuna, torch loaded) would
# report this process's memory as its own peak.
_WRAPPER = """
import os, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
print(time.perf_counter() - start, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status))
"""


def command(args: list[str], cwd: Path) -> tuple[float, float, int]:
    """Wall seconds, peak resident MB and exit status of one ``hpsearch`` process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HPSEARCH_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", _WRAPPER, sys.executable, "-m", "hpsearch", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(out[0]), float(out[1]), int(out[2])


# the tables that hold a trial's rows, each keyed by its own id and the trial's
def dashboard(url: str, name: str) -> tuple[float, float, float]:
    """The first ``/api/studies/<id>`` response (seconds, MB) and the importances' seconds."""
    from hpsearch.results.dashboard import make_dashboard

    server = make_dashboard(url, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        study_id = optuna.storages.get_storage(url).get_study_id_from_name(name)
        base = f"http://127.0.0.1:{server.server_port}/api/studies/{study_id}"
        start = time.perf_counter()
        with urllib.request.urlopen(base, timeout=600) as r:
            size = len(r.read())
        first = time.perf_counter() - start
        start = time.perf_counter()
        with urllib.request.urlopen(f"{base}/param_importances", timeout=600) as r:
            r.read()
        return first, size / 1e6, time.perf_counter() - start
    finally:
        server.shutdown()
        server.server_close()


def gp_ask(url: str, name: str, work: Path, asks: int = 3) -> tuple[float, float]:
    """Seconds of a ``gp`` sampler's first ask and the median of the next ones, on a copy
    of the study (asking creates trials)."""
    # a file of its own each time: a new database under an old name meets the old one's
    # write-ahead log (and this process still holds the old one open)
    target = work / f"gp-copy-{time.time_ns()}.db"
    copy = f"sqlite:///{target}"
    if url.startswith("sqlite:///"):  # SQLite's online backup: a consistent copy of a live file
        with (
            sqlite3.connect(url.removeprefix("sqlite:///")) as src,
            sqlite3.connect(target) as dst,
        ):
            src.backup(dst)
    else:  # Optuna's copy reads every trial through its ORM: minutes at 100,000 trials
        optuna.copy_study(from_study_name=name, from_storage=url, to_storage=copy)
    spec = load_spec(str(_write(work, "gp", copy, 1, name=name, sampler="gp")))
    study = lifecycle.load_existing_study(spec, lifecycle.open_spec_storage(spec))
    times = []
    for _ in range(asks):
        start = time.perf_counter()
        trial = study.ask()
        spec.space.suggest(trial)
        times.append(time.perf_counter() - start)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return times[0], sorted(times[1:])[len(times[1:]) // 2]


def _write(
    work: Path, stem: str, url: str, trials: int, name: str | None = None, sampler: str = "tpe"
) -> Path:
    path = work / f"{stem}.yaml"
    path.write_text(
        STUDY.format(name=name or stem, url=url, trials=trials, epochs=EPOCHS, sampler=sampler)
    )
    return path


@contextlib.contextmanager
def storage_base(postgres: str | None, work: Path) -> Iterator[Any]:
    """Yields a function giving the storage URL of a study: a SQLite file in ``work``, a
    database on the PostgreSQL server at ``postgres`` (created anew), or with ``postgres`` =
    ``throw-away`` one on a server of its own (tests/conftest.py's, removed afterwards)."""
    if postgres is None:
        yield lambda stem: f"sqlite:///{work / stem}.db"
        return
    if postgres != "throw-away":
        yield lambda stem: _fresh_database(postgres, stem)
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import PostgresCluster

    cluster = PostgresCluster()
    try:
        yield lambda stem: cluster.database()
    finally:
        cluster.close()


def _fresh_database(server: str, stem: str) -> str:
    import psycopg

    dsn = server.replace("postgresql+psycopg", "postgresql") + "/postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {stem}")
        conn.execute(f"CREATE DATABASE {stem}")
    return f"{server}/{stem}"


def measure(
    args: argparse.Namespace, path: Path, url: str, stem: str, work: Path, n: int
) -> list[tuple[str, ...]]:
    """Every figure of one study at its present size ``n``, as table rows."""
    rows: list[tuple[str, ...]] = []
    counted = db.trial_counts(open_study(stem, url)).states  # by query: not 100,000 loads
    states = {s.name: counted.get(s.name, 0) for s in optuna.trial.TrialState}
    print(f"# {n} trials: {states}", flush=True)
    total = sum(states.values())
    mix = ", ".join(f"{states[s] / total:.0%} {s.lower()}" for s in STATES)
    rows.append((f"{n}", "trials in the study", f"{total}: {mix}", ""))
    for cmd in (
        ["status", str(path)],
        ["best", str(path)],
        ["trials", str(path), "--top", "20"],
        ["studies", "--storage", url],
        ["trials", "no-such-study", "--storage", url],  # the error lists the studies
        ["trials", str(path), "--format", "csv"],  # every trial, streamed
        ["trials", str(path), "--format", "json"],
        ["report", str(path), "-o", str(work / f"{stem}.html")],
    ):
        runs = [command(cmd, work) for _ in range(1 if cmd[0] == "report" else 3)]
        wall, rss, rc = sorted(runs)[len(runs) // 2]  # the median run
        label = " ".join(
            c for c in cmd if not c.startswith(("/", str(work), url)) and c != "--storage"
        )
        ok = "" if rc == 0 else f" (exit {rc})"
        rows.append((f"{n}", label, f"{wall:.2f} s{ok}", f"{rss:.0f} MB"))
        print("  ".join(rows[-1]), flush=True)
    html = work / f"{stem}.html"
    if html.exists():
        rows.append((f"{n}", "report HTML size", f"{html.stat().st_size / 1e6:.1f} MB", ""))
    first, size, importances = dashboard(url, stem)
    rows.append((f"{n}", "dashboard first study response", f"{first:.2f} s", f"{size:.1f} MB"))
    rows.append((f"{n}", "dashboard importances", f"{importances:.2f} s", ""))
    load, per_trial = extend(path, args.more)
    cost = (
        f"{per_trial * 1e3:.0f} ms/trial ({per_trial / 5.0:.1%} of a 5 s trial); "
        f"the worker's start {load:.1f} s"
    )
    rows.append((f"{n}", f"{args.more} more trials: search and bookkeeping", cost, ""))
    first_ask, ask = gp_ask(url, stem, work)
    rows.append((f"{n}", "gp ask (first / next)", f"{first_ask:.2f} s / {ask:.2f} s", ""))
    print("  ".join(rows[-1]), flush=True)
    return rows


def compare(paths: list[Path], work: Path, n: int) -> list[tuple[str, ...]]:
    """``hpsearch compare`` of the built studies (each in its own storage), as table rows:
    the table (every finished trial read, in pages), then the page of curves."""
    rows: list[tuple[str, ...]] = []
    files = [str(p) for p in sorted(paths)]
    for extra in ([], ["-o", str(work / "compare.html")]):
        runs = [command(["compare", *files, *extra], work) for _ in range(3)]
        wall, rss, rc = sorted(runs)[len(runs) // 2]
        label = f"compare {len(files)} studies" + (" -o page.html" if extra else "")
        ok = "" if rc == 0 else f" (exit {rc})"
        rows.append((f"up to {n}", label, f"{wall:.2f} s{ok}", f"{rss:.0f} MB"))
        print("  ".join(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument(
        "--postgres",
        nargs="?",
        const="throw-away",
        metavar="SERVER_URL",
        help="PostgreSQL: a throw-away server, or one at postgresql+psycopg://user@host:port",
    )
    parser.add_argument("--keep", type=Path, help="build the studies here and keep them")
    parser.add_argument(
        "--reuse", action="store_true", help="measure the studies --keep already holds"
    )
    parser.add_argument("--more", type=int, default=200, help="trials added to time a trial")
    parser.add_argument(
        "--clone",
        type=int,
        nargs="+",
        metavar="N",
        help="grow each built study to N trials (each N in turn) by copying its trials (SQL), "
        "measuring at each size",
    )
    args = parser.parse_args()
    rows: list[tuple[str, ...]] = []
    with contextlib.ExitStack() as stack:
        work = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        work.mkdir(parents=True, exist_ok=True)
        make_url = stack.enter_context(storage_base(args.postgres, work))
        for n in args.trials:
            stem = f"s{n}"
            path = work / f"{stem}.yaml"
            if not (args.reuse and path.exists()):
                path = _write(work, stem, make_url(stem), n)
                _, per_trial = build(path)
                print(f"# {n} trials built: {per_trial * 1e3:.0f} ms/trial", flush=True)
            url = load_spec(str(path)).storage
            for size in args.clone or [n]:
                if size != n:
                    seconds = clone_study(url, stem, size)
                    print(f"# cloned to {size} trials in {seconds:.1f}s", flush=True)
                rows += measure(args, path, url, stem, work, size)
        if len(args.trials) > 1:  # the studies of every size side by side
            built = [work / f"s{n}.yaml" for n in args.trials]
            rows += compare(built, work, max(args.clone or args.trials))
    print("\n| trials | what | time | size |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
