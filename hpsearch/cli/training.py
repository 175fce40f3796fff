"""``hpsearch train``: one training run, no study."""

from __future__ import annotations

import json

import click

from hpsearch.cli import output
from hpsearch.cli.app import main
from hpsearch.cli.options import build_config


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
    from hpsearch.training.trainer import train as run_training

    config = build_config(config_file, assignments, dataset=dataset, data_dir=data_dir)
    result = run_training(config, on_epoch=lambda stats: output.epoch_line(stats, config.epochs))
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        output.train_result(result)
