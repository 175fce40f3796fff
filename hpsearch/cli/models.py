"""``retrain`` (the best trial on training + validation data, saved) and ``predict``."""

from __future__ import annotations

from pathlib import Path

import click

from hpsearch.cli import output
from hpsearch.cli.app import main
from hpsearch.cli.app import startup
from hpsearch.cli.options import format_option
from hpsearch.cli.options import open_target
from hpsearch.cli.options import storage_option
from hpsearch.cli.options import trial_option
from hpsearch.errors import ConfigError


@main.command()
@click.argument("study")
@storage_option
@click.option(
    "--output",
    "-o",
    "out",
    type=click.Path(),
    default="runs/best",
    show_default=True,
    help="Directory for model.pt, config.yaml and result.json.",
)
@trial_option("Retrain this completed trial instead (a Pareto set of several needs one).")
@click.option("--force", is_flag=True, help="Replace a model saved in the directory earlier.")
def retrain(study: str, storage: str | None, out: str, number: int | None, force: bool) -> None:
    """Train the best configuration on training + validation data and save the model
    (model.pt: weights, config and preprocessing; `hpsearch predict` and
    `hpsearch.load_model` read it)."""
    from hpsearch.results.reading import chosen_trial
    from hpsearch.results.retrain import check_output
    from hpsearch.results.retrain import retrain_best

    target = open_target(study, storage)  # its start-up without collections (see startup)
    chosen = chosen_trial(target, number)  # a wrong trial is refused before anything runs
    check_output(out, replace=force)
    click.echo(f"retraining trial {chosen.number} on training + validation data", err=True)
    done = retrain_best(target, out, chosen.number, replace=force)
    click.echo(f"trial          {done.trial}")
    for key in (*output.TEST_CLASSES, "test_rmse", "test_mae", "test_r2", "test_loss"):
        if done.result.get(key) is not None:
            click.echo(f"{output.shown(key):<15}{done.result[key]:.4f}")
    click.echo(f"saved          {', '.join(map(str, done.files))}")


@main.command()
@click.argument("model_dir", type=click.Path())
@click.argument("inputs", type=click.Path())
@format_option
@click.option("--device", default="cpu", show_default=True, help="Where to run the model.")
def predict(model_dir: str, inputs: str, fmt: str, device: str) -> None:
    """Answer for INPUTS with the model `hpsearch retrain` saved in MODEL_DIR, in the data's
    own labels (class and probability, or a regression's value): a table's new rows (.csv,
    .tsv, .parquet, .npz; any column order, missing cells allowed), a directory of images,
    or a .npy / .pt tensor of examples on the data set's raw scale."""
    with startup():
        from hpsearch.training.modelfile import model_file

        model_file(model_dir)  # a wrong path is refused before torch loads
        if not Path(inputs).exists():
            raise ConfigError([f"{inputs}: no such file or directory"])
        from hpsearch.training.saved import predict_file

    output.rows(predict_file(model_dir, inputs, device), fmt)
