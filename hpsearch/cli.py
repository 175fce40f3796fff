"""The ``hpsearch`` command line: ``train``, and the study, worker and report commands.

User errors (:class:`~hpsearch.errors.HPSearchError`) become one message on stderr and exit
status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from hpsearch.config import load_config_file
from hpsearch.config import make_config
from hpsearch.config import parse_assignment
from hpsearch.config import TrainConfig
from hpsearch.errors import HPSearchError

USAGE_ERROR = 2


class _Group(click.Group):
    """Turns project errors into a one-line message and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HPSearchError as e:
            if ctx.params.get("debug"):
                raise
            for line in str(e).splitlines():
                click.echo(f"error: {line}", err=True)
            sys.exit(USAGE_ERROR)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of short messages.")
@click.version_option(package_name="hpsearch")
def main(debug: bool) -> None:
    """hpsearch: hyperparameter search for PyTorch MLPs on Optuna."""


def _build_config(
    config_file: str | None, assignments: tuple[str, ...], **overrides: Any
) -> TrainConfig:
    base = load_config_file(config_file) if config_file else None
    values = dict(parse_assignment(a) for a in assignments)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return make_config(values, base, source="--set" if assignments else None)


@main.command()
@click.option("--dataset", help="digits (default), mnist, fashion-mnist or synthetic.")
@click.option("--data-dir", help="Where mnist / fashion-mnist live [$HPSEARCH_DATA_DIR].")
@click.option("--config", "config_file", type=click.Path(), help="YAML file of config fields.")
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config field, e.g. --set hidden_layers=[256,128].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def train(
    dataset: str | None,
    data_dir: str | None,
    config_file: str | None,
    assignments: tuple[str, ...],
    as_json: bool,
) -> None:
    """Train once and print the final metrics."""
    from hpsearch.trainer import EpochStats
    from hpsearch.trainer import train as run_training

    config = _build_config(config_file, assignments, dataset=dataset, data_dir=data_dir)

    def show(stats: EpochStats) -> None:
        click.echo(
            f"epoch {stats.epoch:>3}/{config.epochs}  train_loss {stats.train_loss:.4f}  "
            f"val_loss {stats.val_loss:.4f}  val_acc {stats.val_accuracy:.2%}  "
            f"{stats.seconds:.2f}s",
            err=True,
        )

    result = run_training(config, on_epoch=show)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    final = result.final
    click.echo(f"outcome        {result.outcome}")
    if final is not None:
        click.echo(f"val_accuracy   {final.val_accuracy:.4f}")
        click.echo(f"val_loss       {final.val_loss:.4f}")
    if result.test_accuracy is not None and result.test_loss is not None:
        click.echo(f"test_accuracy  {result.test_accuracy:.4f}")
        click.echo(f"test_loss      {result.test_loss:.4f}")
    click.echo(f"params         {result.param_count}")
    click.echo(f"train_seconds  {result.train_seconds:.2f}")
    click.echo(f"device         {result.device}")
