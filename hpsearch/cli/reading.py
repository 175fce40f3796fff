"""The reading commands: ``studies``, ``status``, ``best``, ``trials`` and ``trial``.

Each reads only what it shows, never writes, and never imports torch.
"""

from __future__ import annotations

import dataclasses

import click

from hpsearch.cli import output
from hpsearch.cli.app import main
from hpsearch.cli.options import format_option
from hpsearch.cli.options import open_target
from hpsearch.cli.options import open_targets
from hpsearch.cli.options import storage_option
from hpsearch.cli.options import storage_url
from hpsearch.cli.options import trial_option


@main.command()
@storage_option
@format_option
def studies(storage: str | None, fmt: str) -> None:
    """List the studies in a storage."""
    from hpsearch.results.reading import study_rows
    from hpsearch.study.record import unfinished_copy

    url = storage_url(storage)
    found = study_rows(url)
    if not found and fmt == "table":
        click.echo(f"no studies in {output.redact(url)}")
        return
    output.rows(found, fmt)
    for name in [row["study"] for row in found if unfinished_copy(row["study"])]:
        click.echo(
            f"note: {name} is a copy still being written, or one stopped before it was whole; "
            f"if no copy runs, `hpsearch delete {name} --storage {output.redact(url)} --yes` "
            "removes it",
            err=True,
        )


@main.command()
@click.argument("study")
@storage_option
@click.option("--json", "as_json", is_flag=True, help="Print as JSON (same as --format json).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def status(study: str, storage: str | None, as_json: bool, fmt: str) -> None:
    """Counts by state, best trial, time spent and trial rate of STUDY (file or name)."""
    from hpsearch.results.reading import status as study_status

    info = study_status(open_target(study, storage))
    if as_json or fmt == "json":
        output.rows(info, "json")
    else:
        output.status(info)


@main.command()
@click.argument("study")
@storage_option
@click.option(
    "--top",
    type=click.IntRange(min=1),
    help="The N best trials (single objective), or the first N of the Pareto set.",
)
@trial_option("With --write-config: this completed trial's config (a Pareto set needs one).")
@click.option(
    "--write-config",
    type=click.Path(),
    help="Write the best trainer config here (YAML that `hpsearch train --config` reads).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "table", "csv", "json", "start_with"]),
    default="text",
    help="start_with: the trials as a study file's start_with, for another study to start from.",
)
def best(
    study: str,
    storage: str | None,
    top: int | None,
    number: int | None,
    write_config: str | None,
    fmt: str,
) -> None:
    """The best trial of STUDY, with whether it stands out of the validation noise; the
    Pareto set of a multi-objective study, best first by its first objective."""
    from hpsearch.results.reading import best_trials
    from hpsearch.results.reading import require_best
    from hpsearch.results.reading import trial_rows
    from hpsearch.results.reading import write_best_config

    s = open_target(study, storage)
    multi = len(s.directions) > 1
    trials = best_trials(s, top or 1)  # a Pareto set whole: --top cuts what is shown
    if not trials:
        require_best(s)  # the one message for a study with no completed trial
    shown = trials[:top] if top else trials
    if fmt == "start_with":
        output.start_with(s, shown)
    elif fmt != "text":
        output.rows(trial_rows(s, shown), fmt)
    else:
        if multi:
            more = f"; the first {len(shown)}" if len(shown) < len(trials) else ""
            click.echo(f"Pareto set: {len(trials)} trials{more}, best first by objective 0")
        output.best_trials(s, shown)
        if not multi:
            output.noise(s)
            output.edges(trials[0])
    if write_config:
        click.echo(f"wrote {write_best_config(s, write_config, number)}", err=fmt != "text")


@main.command()
@click.argument("study")
@storage_option
@format_option
@click.option(
    "--sort",
    default="value",
    show_default=True,
    help="`value` (the objective, best first), `number`, or a column such as param.lr.",
)
@click.option("--top", type=click.IntRange(min=1), help="Only the first N trials.")
@click.option(
    "--columns", help="Only these columns, comma-separated (e.g. number,value,param.lr)."
)
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(["complete", "pruned", "fail", "running", "waiting"], case_sensitive=False),
    help="Only trials in this state (repeat for more).",
)
def trials(
    study: str,
    storage: str | None,
    fmt: str,
    sort: str,
    top: int | None,
    columns: str | None,
    states: tuple[str, ...],
) -> None:
    """The trials of STUDY, best first, with their state, values, params and metrics (a
    failed trial's reason in one line; `hpsearch trial STUDY N` shows its traceback). The
    table fits 120 columns (short names, 4 significant digits); csv and json have all."""
    from hpsearch.results.reading import SORT_VALUE
    from hpsearch.results.reading import sorted_trials
    from hpsearch.results.reading import stream_trial_rows
    from hpsearch.results.reading import trial_rows
    from hpsearch.results.tables import select_columns

    s = open_target(study, storage)
    every = top is None and sort in (SORT_VALUE, "number")  # read in pages, in order
    if every and fmt != "table" and not columns:
        header, rows = stream_trial_rows(s, sort, states)
        output.stream(rows, header, fmt)  # a page of trials at a time: never held whole
        return
    found = (
        list(stream_trial_rows(s, sort, states)[1])
        if every
        else trial_rows(s, sorted_trials(s, sort, top, states))
    )
    if fmt == "table" and not found:  # a line that says so, not an empty table
        named = " or ".join(dict.fromkeys(state.upper() for state in states))
        click.echo(f"no {named + ' ' if named else ''}trials in this study")
    elif columns:
        output.rows(select_columns(found, columns), fmt)
    elif fmt == "table":
        output.table(found)  # fits 120 columns; says what it left out
    else:
        output.rows(found, fmt)


@main.command()
@click.argument("study")
@click.argument("number", type=click.IntRange(min=0))
@storage_option
@click.option("--json", "as_json", is_flag=True, help="Print the whole record as JSON.")
def trial(study: str, number: int, storage: str | None, as_json: bool) -> None:
    """Everything stored of trial NUMBER of STUDY: config, curves, outcome, traceback."""
    from hpsearch.results.reading import trial_record

    record = trial_record(open_target(study, storage), number)
    if as_json:
        output.rows(dataclasses.asdict(record), "json")
    else:
        output.trial_record(record)


@main.command()
@click.argument("study_list", metavar="STUDY...", nargs=-1, required=True)
@storage_option
@format_option
@click.option(
    "--output",
    "-o",
    "out",
    type=click.Path(),
    help="Also write the comparison as one HTML page here (each study's best so far).",
)
def compare(study_list: tuple[str, ...], storage: str | None, fmt: str, out: str | None) -> None:
    """Compare studies of one objective (files, or names in --storage): each one's best, the
    trials and time it took to reach a level all of them reached, and whether the winner's
    lead is more than the validation noise."""
    from hpsearch.results.compare import compare_studies
    from hpsearch.results.compare import write_comparison

    targets = open_targets(study_list, storage, "compare")
    if out:
        found = write_comparison(targets, out, study_list)
    else:
        found = compare_studies(targets, study_list)
    output.comparison(found, fmt)
    if out:
        click.echo(f"wrote {out}", err=True)
