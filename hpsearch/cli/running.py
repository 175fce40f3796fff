"""Commands that run trials: ``check`` (what a start would do, writing nothing), ``run``
(here, in this process), ``create`` (queue only), ``worker`` (join a study) and ``launch``
(a pool here, or a job array on Slurm).

Each parses, calls one function of :mod:`hpsearch.study` or :mod:`hpsearch.launch` that a
notebook can call too, and prints its progress.
"""

from __future__ import annotations

import sys
from typing import Any
from typing import TYPE_CHECKING

import click

from hpsearch.cli import output
from hpsearch.cli.app import main
from hpsearch.cli.app import startup
from hpsearch.cli.options import cannot_listen
from hpsearch.cli.options import load_spec
from hpsearch.cli.options import max_same_failures_option
from hpsearch.cli.options import population_option
from hpsearch.cli.options import precision_option
from hpsearch.cli.options import storage_option
from hpsearch.cli.options import storage_wait_option
from hpsearch.cli.options import threads_option
from hpsearch.cli.options import timeout_option
from hpsearch.cli.options import trials_option
from hpsearch.errors import FAILED_EXIT
from hpsearch.errors import INTERRUPTED_EXIT
from hpsearch.spec.defaults import MEMORY_SHARE

if TYPE_CHECKING:
    from collections import Counter

    import optuna

    from hpsearch.launch.local import LaunchStart
    from hpsearch.launch.pool import Pool
    from hpsearch.launch.slurm import SlurmOptions
    from hpsearch.spec.studyfile import StudySpec


@main.command()
@click.argument("study_file", type=click.Path())
@trials_option
@timeout_option
@storage_option
@threads_option("torch's default: all cores")
@population_option
@precision_option
@max_same_failures_option
@storage_wait_option
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def run(
    study_file: str,
    trials: int | None,
    timeout: float | None,
    storage: str | None,
    threads: int | None,
    population: int | None,
    precision: str | None,
    max_same_failures: int,
    no_progress: bool,
) -> None:
    """Run a study in this process until its budget is reached (resumes if it exists)."""
    with startup():  # a bad file: refused before torch loads
        spec = load_spec(
            study_file, storage, trials, population, precision=precision, timeout=timeout
        )
        from hpsearch.study.lifecycle import fit_task

        fit_task(spec)  # and bad data
        from hpsearch.results.reading import best_trials
        from hpsearch.study.budget import finished_count
        from hpsearch.study.worker import run_study

    shown: dict[str, Any] = {}

    def prepared(study: optuna.Study, queued: int) -> None:
        click.echo(
            output.start_line(spec, queued)
            + (f", population {spec.population}" if spec.population > 1 else ""),
            err=True,
        )
        output.data_line(spec)
        shown.update(
            study=study, bar=output.Progress(spec.budget(), finished_count(study), no_progress)
        )

    def progress(trial: Any) -> None:
        shown["bar"].show(None, shown["study"])

    try:
        study, stats = run_study(
            spec,
            on_trial=progress,
            max_same_failures=max_same_failures,
            threads=threads,
            stop_signals=True,  # Ctrl-C: finish the epoch, re-queue the trial; twice: at once
            on_prepared=prepared,
        )
    except KeyboardInterrupt:
        stats = None
    if "bar" in shown:
        shown["bar"].close()
    if stats is None or stats.interrupted:
        click.echo("interrupted: run the same command again to resume", err=True)
        sys.exit(INTERRUPTED_EXIT)
    click.echo(
        f"done: {stats.completed} completed, {stats.pruned} pruned, {stats.failed} failed "
        f"in this run; {output.best_line(study)}"
    )
    left = spec.budget() - finished_count(study)
    if stats.stopped:  # None when the budget's last trial reached it (see run_worker)
        click.echo(output.stopped_line(stats.stopped, left), err=True)
    elif stats.timed_out and left > 0:
        click.echo(output.timed_out_line(left, "run"), err=True)
    best = best_trials(study)
    output.best_trials(study, best)
    if best and len(study.directions) == 1:
        output.edges(best[0])
    output.exit_if_failing(stats, study_file)


@main.command()
@click.argument("study_file", type=click.Path())
@trials_option
@storage_option
def create(study_file: str, trials: int | None, storage: str | None) -> None:
    """Create the study and queue its budget, without running trials (workers join later)."""
    with startup():
        spec = load_spec(study_file, storage, trials)  # a bad file: refused before Optuna loads
        from hpsearch.study.lifecycle import fit_task
        from hpsearch.study.lifecycle import prepare

    spec = fit_task(spec)  # its data checked before anything is written
    _, _, queued = prepare(spec)
    click.echo(output.start_line(spec, queued))
    output.data_line(spec)


@main.command()
@click.argument("study_file", type=click.Path())
@trials_option
@storage_option
@click.option(
    "--no-train",
    is_flag=True,
    help="Skip training one batch (on a machine without the study's device, e.g. a login node).",
)
def check(study_file: str, trials: int | None, storage: str | None, no_train: bool) -> None:
    """Check STUDY_FILE, its data, its storage and one training batch, writing nothing: what
    `run`, `create` and `launch` would refuse, and what they would queue.

    Exits 0 when the study would start as it is, 2 with the first problem otherwise.
    """
    with startup():
        spec = load_spec(study_file, storage, trials)
        from hpsearch.study.lifecycle import fit_task
        from hpsearch.study.lifecycle import plan

    spec = fit_task(spec)  # the data, read and checked
    for line in output.check_lines(spec, plan(spec)):  # and the options, and the storage
        click.echo(line)
    with startup():
        from hpsearch.study.lifecycle import preflight
        from hpsearch.training.trainer import resolve_device

    preflight(spec, train=not no_train)  # a built-in data set's files; a batch on the device
    if not no_train:
        device = resolve_device(spec.base.device)
        click.echo(f"trains    one batch of the fixed settings on {device}")
    click.echo(f"ok        {study_file} would start as it is; nothing was written")


@main.command()
@click.argument("study_file", type=click.Path())
@storage_option
@timeout_option
@click.option("--device", help="Device for this worker's trials, e.g. cuda:0 or cpu.")
@click.option("--name", help="Worker name recorded with its trials [host:pid].")
@threads_option("the launcher's share of the cores, else 1")
@population_option
@precision_option
@click.option(
    "--memory-share",
    type=click.FloatRange(0, 1, min_open=True),
    help=f"Share of its GPU's memory this worker's populations may fill [{MEMORY_SHARE}; "
    "a launch gives each of K workers on a GPU this divided by K].",
)
@max_same_failures_option
@storage_wait_option
def worker(
    study_file: str,
    storage: str | None,
    timeout: float | None,
    device: str | None,
    name: str | None,
    threads: int | None,
    population: int | None,
    precision: str | None,
    memory_share: float | None,
    max_same_failures: int,
) -> None:
    """Join an existing study and run its queued trials (how another host joins)."""
    with startup():  # no torch
        spec = load_spec(
            study_file,
            storage,
            population=population,
            device=device,
            precision=precision,
            timeout=timeout,
        )
        from hpsearch.launch.worker import join_study

    joined: list[str] = []

    def join(me: str) -> None:
        joined.append(me)
        click.echo(f"worker {me} joined {spec.name} in {output.redact(spec.storage)}")

    try:
        stats = join_study(
            spec,
            device=device,
            name=name,
            threads=threads,
            memory_share=memory_share,
            max_same_failures=max_same_failures,
            on_join=join,
            on_trial=lambda t: click.echo(f"trial {t.number}: {t.state.name} {t.values or ''}"),
        )
    except KeyboardInterrupt:
        sys.exit(INTERRUPTED_EXIT)
    click.echo(
        f"worker {joined[0]}: {stats.completed} completed, {stats.pruned} pruned, "
        f"{stats.failed} failed"
        + ("; the timeout stopped it starting trials" if stats.timed_out else "")
        + (f"; stopped early: {stats.stopped}" if stats.stopped else "")
    )
    if stats.interrupted:
        sys.exit(INTERRUPTED_EXIT)
    output.exit_if_failing(stats, study_file)


@main.command()
@click.argument("study_file", type=click.Path())
@trials_option
@timeout_option
@storage_option
@click.option("--gpus", help="all (default when GPUs are visible), none, or e.g. 0,2,3.")
@click.option("--workers-per-gpu", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--workers",
    "cpu_workers",
    type=click.IntRange(min=1),
    help="CPU workers when no GPU is used [one per core; no more than the budget has trials].",
)
@click.option(
    "--max-restarts",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Replacements per worker slot after a crash.",
)
@population_option
@precision_option
@max_same_failures_option
@storage_wait_option
@click.option("--log-dir", type=click.Path(), help="Worker logs [hpsearch-logs/STUDY].")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option(
    "--dashboard",
    "with_dashboard",
    is_flag=True,
    help="Serve optuna-dashboard beside the pool (see `hpsearch dashboard`).",
)
@click.option("--dashboard-port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option(
    "--slurm", is_flag=True, help="Submit the workers to Slurm as one job array (see README)."
)
@click.option("--nodes", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--gpus-per-node", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--partition", help="Slurm partition.")
@click.option("--account", help="Slurm account.")
@click.option("--time", "time_limit", help="Slurm time limit per task, HH:MM:SS.")
@click.option(
    "--slurm-option", multiple=True, metavar="KEY=VALUE", help="More #SBATCH --KEY=VALUE lines."
)
@click.option("--requeue", is_flag=True, help="A task stopped by its time limit requeues.")
@click.option("--detach", is_flag=True, help="Return once the array is submitted.")
@click.option("--cancel-on-exit", is_flag=True, help="Ctrl-C cancels the array, unasked.")
def launch(
    study_file: str,
    trials: int | None,
    timeout: float | None,
    storage: str | None,
    population: int | None,
    precision: str | None,
    log_dir: str | None,
    no_progress: bool,
    slurm: bool,
    **flags: Any,
) -> None:
    """Start a pool of worker processes that share one study through its storage (here, or
    on a Slurm cluster with --slurm)."""
    with startup():
        spec = load_spec(
            study_file, storage, trials, population, precision=precision, timeout=timeout
        )
    if slurm:
        _launch_slurm(spec, log_dir, no_progress, **flags)
    else:
        _launch_local(spec, log_dir, no_progress, **flags)


# Flags that mean something only with --slurm, and their defaults.
_SLURM_ONLY = {
    "nodes": 1,
    "gpus_per_node": 0,
    "partition": None,
    "account": None,
    "time_limit": None,
    "slurm_option": (),
    "requeue": False,
    "detach": False,
    "cancel_on_exit": False,
}


def _launch_local(spec: StudySpec, log_dir: str | None, no_progress: bool, **flags: Any) -> None:
    from hpsearch.launch.slots import parse_gpus
    from hpsearch.study.lifecycle import fit_task

    given = [k for k, default in _SLURM_ONLY.items() if flags[k] != default]
    if given:
        named = ", ".join("--" + k.removesuffix("_limit").replace("_", "-") for k in given)
        raise click.UsageError(f"{named}: only with --slurm")
    parse_gpus(flags["gpus"])  # a malformed flag and bad data: refused before torch loads
    fit_task(spec)
    if flags["with_dashboard"]:
        from hpsearch.results.dashboard import check_address
        from hpsearch.results.dashboard import DEFAULT_HOST

        try:
            check_address(DEFAULT_HOST, flags["dashboard_port"])
        except OSError as e:
            raise cannot_listen(
                "--dashboard-port", DEFAULT_HOST, flags["dashboard_port"], e
            ) from e
    # the first line within a fraction of a second: torch takes one to several seconds
    click.echo(f"launching {spec.name}: loading PyTorch once for all its workers", err=True)
    with startup():
        from hpsearch.launch.local import launch_local
        from hpsearch.launch.local import LocalOptions

    options = LocalOptions(
        gpus=flags["gpus"],
        workers_per_gpu=flags["workers_per_gpu"],
        cpu_workers=flags["cpu_workers"],
        max_restarts=flags["max_restarts"],
        max_same_failures=flags["max_same_failures"],
        log_dir=log_dir,
        dashboard_port=flags["dashboard_port"] if flags["with_dashboard"] else None,
    )
    shown: dict[str, Any] = {}

    def started(start: LaunchStart) -> None:
        click.echo(
            f"{output.start_line(spec, start.queued)}; {len(start.slots)} worker"
            f"{'s' if len(start.slots) != 1 else ''} "
            f"({', '.join(s.name for s in start.slots)}); logs in {start.logs}",
            err=True,
        )
        output.data_line(spec)
        shown.update(study=start.study, bar=output.Progress(spec.budget(), 0, no_progress))

    def tick(pool: Pool) -> None:
        shown["bar"].show(pool.finished(), shown["study"], pool.states())

    def preflight(device: str) -> None:
        click.echo(f"pre-flight on {device}: training one batch", err=True)

    result = launch_local(
        spec,
        options,
        on_start=started,
        on_tick=None if no_progress else tick,
        on_preflight=preflight,
        fork_main=lambda argv: main.main(args=argv, prog_name="hpsearch"),
    )
    shown["bar"].show(result.finished, shown["study"])
    shown["bar"].close()
    output.launch_result(result, shown["study"], spec.path)


def _launch_slurm(spec: StudySpec, log_dir: str | None, no_progress: bool, **flags: Any) -> None:
    from hpsearch.launch import slurm
    from hpsearch.launch.local import log_dir as logs_of
    from hpsearch.study.budget import stop_reason

    options: SlurmOptions = slurm.parse_options(
        flags["nodes"],
        flags["gpus_per_node"],
        flags["workers_per_gpu"],
        flags["partition"],
        flags["account"],
        flags["time_limit"],
        flags["requeue"],
        flags["slurm_option"],
    )
    logs = logs_of(spec, log_dir)
    launched = slurm.launch_slurm(spec, options, logs)
    job = launched.job
    click.echo(
        f"{output.start_line(spec, launched.queued)}; Slurm job array {job}: "
        f"{options.tasks} tasks x {options.workers_per_gpu} workers; logs in {logs}\n"
        f"  squeue -j {job}    scancel {job}",
        err=True,
    )
    output.data_line(spec, nodes=True)
    if flags["detach"]:
        click.echo(job)
        return
    bar = output.Progress(spec.budget(), 0, no_progress)

    def tick(done: int, states: Counter[str]) -> None:
        tasks = ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items())) or "ended"
        bar.show(done, launched.study, f"tasks: {tasks}")

    try:
        followed = slurm.follow_job(launched, spec.budget(), spec.timeout, on_tick=tick)
    except KeyboardInterrupt:
        bar.close()
        _stop_or_leave(job, spec, flags["cancel_on_exit"])
    bar.close()
    done = followed.finished
    click.echo(f"{done}/{spec.budget()} trials finished; {output.best_line(launched.study)}")
    if done < spec.budget() and (why := stop_reason(launched.study, spec)):
        click.echo(output.stopped_line(why, spec.budget() - done), err=True)
    elif done < spec.budget() and followed.timed_out:
        click.echo(output.timed_out_line(spec.budget() - done, "launch"), err=True)
    elif done < spec.budget():
        click.echo(f"job {job} ended before the budget was reached: see {logs}", err=True)
        sys.exit(FAILED_EXIT)


def _stop_or_leave(job: str, spec: StudySpec, cancel: bool) -> None:
    """After Ctrl-C while following a job array: cancel it (asked, or ``--cancel-on-exit``)
    or leave it running; then exit as interrupted."""
    from hpsearch.launch import slurm

    if cancel or click.confirm(f"\ncancel Slurm job {job}?", default=False, err=True):
        slurm.cancel(job)
        click.echo(f"cancelled job {job}; running trials are queued again", err=True)
    else:
        click.echo(f"job {job} goes on; `hpsearch status {spec.path}` follows it", err=True)
    sys.exit(INTERRUPTED_EXIT)
