"""Changing a study by hand: ``retry`` its failed trials, ``stop`` its workers, ``copy`` it
into another storage, ``delete`` it; and writing study files: ``init`` drafts one from your
data, ``schema`` describes them."""

from __future__ import annotations

import json

import click

from hpsearch import files
from hpsearch.cli import output
from hpsearch.cli.app import main
from hpsearch.cli.options import data_flags
from hpsearch.cli.options import data_source
from hpsearch.cli.options import resolve
from hpsearch.cli.options import storage_option


@main.command()
@click.argument("study")
@storage_option
def retry(study: str, storage: str | None) -> None:
    """Queue the params of STUDY's failed trials again, so that they count once more.

    For failures whose cause is now fixed (missing data, a full disk, a driver). Each failed
    trial is queued once; run the study (or start workers) to run them.
    """
    from hpsearch.results.reading import open_study
    from hpsearch.study.budget import retry_failed

    name, url = resolve(study, storage)
    queued = retry_failed(open_study(name, url, read_only=False))
    if not queued:
        click.echo(f"study {name}: no failed trial to retry")
        return
    click.echo(
        f"study {name}: queued {len(queued)} failed trials again "
        f"({', '.join(map(str, queued[:20]))}{', ...' if len(queued) > 20 else ''}); "
        "run the study to run them"
    )


@main.command()
@click.argument("study")
@storage_option
@click.option(
    "--now",
    is_flag=True,
    help="Also stop the running trials at their next epoch end and queue them again "
    "[they finish first].",
)
def stop(study: str, storage: str | None, now: bool) -> None:
    """Ask every worker of STUDY, on any host, to claim no more trials.

    Each worker stops before its next trial (with --now, at its running trials' next epoch
    end: they are queued again, so nothing is lost) and exits as a finished one does; a
    launch, a Slurm job array (its pending tasks are cancelled), a worker that joins later,
    all stop. Starting the study again (`hpsearch run`, `launch` or `create`) withdraws the
    request.
    """
    from hpsearch import storage as db
    from hpsearch.launch.slurm import cancel_pending
    from hpsearch.results.reading import open_study
    from hpsearch.study.budget import ask_to_stop

    name, url = resolve(study, storage)
    s = open_study(name, url, read_only=False)
    request = ask_to_stop(s, now)
    running = db.trial_counts(s).states.get("RUNNING", 0)
    for line in output.stop_lines(name, request, running, cancel_pending(s)):
        click.echo(line)


def _study_name(context: click.Context, param: click.Parameter, name: str | None) -> str | None:
    """``--name``: a name a study file could give (see ``STUDY_NAME_RULE``)."""
    from hpsearch.spec.studyfile import STUDY_NAME
    from hpsearch.spec.studyfile import STUDY_NAME_RULE

    if name is not None and not STUDY_NAME.fullmatch(name):
        raise click.BadParameter(f"{output.plain(name)!r}: {STUDY_NAME_RULE}")
    return name


@main.command()
@click.argument("study")
@storage_option
@click.option(
    "--to",
    "to",
    required=True,
    metavar="URL",
    help="The storage to copy it into (a SQLite or journal file is created if missing).",
)
@click.option("--name", callback=_study_name, help="The copy's name [the study's].")
def copy(study: str, storage: str | None, to: str, name: str | None) -> None:
    """Copy STUDY, every trial of it, into another storage, to resume it there.

    From a laptop's SQLite file to PostgreSQL for many hosts, or into another file: trials
    keep their numbers, states, values, params and curves, and the study its definition, so
    the same study file resumes it with `--storage URL`. A trial running in the source is
    queued again in the copy. The source is only read.
    """
    from hpsearch.cli.options import with_password
    from hpsearch.results.reading import open_study
    from hpsearch.study.lifecycle import copy_study

    source, url = resolve(study, storage)
    copied = copy_study(open_study(source, url), with_password(to), name)
    for line in output.copied_lines(source, url, to, copied):
        click.echo(line)


@main.command()
@click.argument("study")
@storage_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(study: str, storage: str | None, yes: bool) -> None:
    """Delete STUDY and all its trials from the storage."""
    from hpsearch.results.reading import open_study
    from hpsearch.results.reading import trial_count
    from hpsearch.study.lifecycle import delete_study

    name, url = resolve(study, storage)  # parses a study file once
    s = open_study(name, url)
    if not yes:
        click.confirm(f"delete study {name!r} ({trial_count(s)} trials)?", abort=True)
    delete_study(s)
    click.echo(f"deleted {name} from {output.redact(url)}")


@main.command()
@click.option("--output", "-o", "out", type=click.Path(), help="Write it to this file.")
def schema(out: str | None) -> None:
    """Print the JSON Schema of study files, for editors that check YAML while you type.

    Save it beside your studies and put this first line in a study file (VS Code's YAML
    extension, and any editor using yaml-language-server, then complete and check keys):

        # yaml-language-server: $schema=study.schema.json
    """
    from hpsearch.spec.studyfile import study_schema

    text = json.dumps(study_schema(), indent=2) + "\n"
    if out is None:
        click.echo(text, nl=False)
        return
    with files.whole(out) as part:
        part.write_text(text)
    click.echo(f"wrote {out}", err=True)


@main.command()
@click.argument("data", type=click.Path())
@data_flags("DATA")
@click.option("--output", "-o", "out", type=click.Path(), help="The study file [NAME.yaml].")
@click.option("--name", callback=_study_name, help="The study's name [DATA's file name].")
@click.option(
    "--trials", type=click.IntRange(min=1), default=40, show_default=True, help="The budget."
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="The file's budget.timeout: seconds after which a worker starts no new trial.",
)
@click.option("--force", is_flag=True, help="Replace the study file if it exists.")
def init(
    data: str,
    target: str | None,
    task: str | None,
    test_path: str | None,
    drop: tuple[str, ...],
    out: str | None,
    name: str | None,
    trials: int,
    timeout: float | None,
    force: bool,
) -> None:
    """Draft a study file for DATA, your own table (.csv, .tsv, .parquet, .npz) or folder of
    images by class, with choices fitted to it: how many rows validate, the batch size and
    epochs, the widths searched, the objective for its task and its classes' balance, ID
    columns left out. Each choice says why in a comment; check it with `hpsearch check`.
    """
    from hpsearch.results.reading import stored_trials
    from hpsearch.spec.datasource import DataSource
    from hpsearch.study.drafts import init_study
    from hpsearch.study.drafts import study_name

    source = DataSource(**data_source(None, data, target, task, test_path, drop, "DATA") or {})
    name = name or study_name(source)
    path = out or f"{name}.yaml"
    draft, spec = init_study(source, path, name, trials, timeout, replace=force)
    stored = stored_trials(spec.storage, spec.name)
    for line in output.drafted_lines(path, draft, spec, stored):
        click.echo(line)
