"""Results as pictures: optuna-dashboard (``dashboard``) and the HTML report (``report``)."""

from __future__ import annotations

import click

from hpsearch.cli import output
from hpsearch.cli.app import main
from hpsearch.cli.options import cannot_listen
from hpsearch.cli.options import open_target
from hpsearch.cli.options import resolve
from hpsearch.cli.options import storage_option
from hpsearch.cli.options import storage_url


@main.command()
@click.argument("study", required=False)
@storage_option
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to bind; 0.0.0.0 (or ::) exposes the dashboard to the network.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="0 picks a free port.",
)
@click.option(
    "--allow-writes",
    is_flag=True,
    help="Let the dashboard change studies when bound beyond 127.0.0.1 (it has no login).",
)
def dashboard(
    study: str | None, storage: str | None, host: str, port: int, allow_writes: bool
) -> None:
    """Serve optuna-dashboard on the storage of STUDY (a study file) or --storage."""
    from hpsearch.results.dashboard import is_loopback
    from hpsearch.results.dashboard import make_dashboard
    from hpsearch.results.dashboard import serve

    url = resolve(study, storage)[1] if study else storage_url(storage)
    try:
        server = make_dashboard(url, host, port, allow_writes=True if allow_writes else None)
    except OSError as e:
        raise cannot_listen("--host/--port", host, port, e) from e
    if not is_loopback(host):
        mode = "it can change studies (--allow-writes)" if allow_writes else "it is read-only"
        click.echo(
            f"warning: the dashboard listens on {host or 'every interface'}, beyond this "
            f"machine, and has no login: anyone who reaches it can read every study; {mode}",
            err=True,
        )
    serve(
        server,
        on_ready=lambda u: click.echo(
            f"optuna-dashboard on {output.redact(url)} at {u} (Ctrl-C to stop)", err=True
        ),
    )
    click.echo("dashboard stopped", err=True)


@main.command()
@click.argument("study")
@storage_option
@click.option("--output", "-o", "out", type=click.Path(), default="report.html", show_default=True)
def report(study: str, storage: str | None, out: str) -> None:
    """Write a self-contained HTML report of STUDY (file or name): plots that open offline."""
    from hpsearch.results.report import write_report

    write_report(open_target(study, storage), out)
    click.echo(f"wrote {out}")
