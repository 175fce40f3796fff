"""``hpsearch train``: one training run, no study."""

from __future__ import annotations

import json

import click

from hpsearch.cli import output
from hpsearch.cli.app import main
from hpsearch.cli.app import startup
from hpsearch.cli.options import build_config
from hpsearch.cli.options import data_flags
from hpsearch.cli.options import data_source
from hpsearch.cli.options import loss_given
from hpsearch.cli.options import precision_option


@main.command()
@click.option("--dataset", help="digits (default), mnist, fashion-mnist or synthetic.")
@click.option("--data-dir", help="Where mnist / fashion-mnist live [$HPSEARCH_DATA_DIR].")
@click.option(
    "--data",
    "data_path",
    type=click.Path(),
    help="Your own data: a .csv/.tsv, .parquet or .npz file, or a folder of images by class.",
)
@data_flags("--data")
@click.option("--config", "config_file", type=click.Path(), help="YAML file of config fields.")
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config field, e.g. --set hidden_layers=[256,128].",
)
@precision_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def train(
    dataset: str | None,
    data_dir: str | None,
    data_path: str | None,
    target: str | None,
    task: str | None,
    test_path: str | None,
    drop: tuple[str, ...],
    config_file: str | None,
    assignments: tuple[str, ...],
    precision: str | None,
    as_json: bool,
) -> None:
    """Train once and print the final metrics."""
    with startup():
        own = data_source(dataset, data_path, target, task, test_path, drop)
        config = build_config(
            config_file,
            assignments,
            dataset=own or dataset,
            data_dir=data_dir,
            precision=precision,
        )
        from hpsearch.training.sources import fit_config

        # the data read and checked before torch loads
        config = fit_config(config, loss_given=loss_given(config_file, assignments))
        from hpsearch.training.trainer import train as run_training

    result = run_training(config, on_epoch=lambda stats: output.epoch_line(stats, config.epochs))
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        output.train_result(result)
