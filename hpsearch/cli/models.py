"""``retrain`` (the best trial on training + validation data, saved), ``predict``,
``evaluate`` and ``repeat`` (the best trials with other seeds)."""

from __future__ import annotations

from pathlib import Path

import click

from hpsearch.cli import output
from hpsearch.cli.app import main
from hpsearch.cli.app import startup
from hpsearch.cli.options import format_option
from hpsearch.cli.options import open_target
from hpsearch.cli.options import storage_option
from hpsearch.cli.options import threads_option
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


@main.command()
@click.argument("model_dir", type=click.Path())
@click.argument("data", type=click.Path(), required=False)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
)
@click.option(
    "--mistakes",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="How many of the worst answers to list.",
)
@click.option("--device", default="cpu", show_default=True, help="Where to run the model.")
def evaluate(model_dir: str, data: str | None, fmt: str, mistakes: int, device: str) -> None:
    """Score the model `hpsearch retrain` saved in MODEL_DIR on labelled DATA: accuracy,
    balanced accuracy, each class's recall and precision, the confusion matrix and the worst
    answers (a regression: RMSE, MAE, R² and the largest errors). DATA is a table with the
    target column, a folder with a subfolder of images per class, or an .npz of x and y;
    without it, the test split of the data the model was trained on."""
    with startup():
        from hpsearch.training.modelfile import model_file

        model_file(model_dir)  # a wrong path is refused before torch loads
        if data is not None and not Path(data).exists():
            raise ConfigError([f"{data}: no such file or directory"])
        from hpsearch.training.scores import evaluate_model

    output.scores(evaluate_model(model_dir, data, device, mistakes), fmt)


@main.command()
@click.argument("study")
@storage_option
@click.option(
    "--top", type=click.IntRange(min=1), default=5, show_default=True, help="Trials to repeat."
)
@click.option(
    "--seeds",
    type=click.IntRange(min=2),
    default=3,
    show_default=True,
    help="Runs per trial: its own seed, then the next ones.",
)
@click.option("--device", default=None, help="Where to train [each trial's own: auto].")
@threads_option("Torch CPU threads [all cores].")
@format_option
def repeat(
    study: str,
    storage: str | None,
    top: int,
    seeds: int,
    device: str | None,
    threads: int | None,
    fmt: str,
) -> None:
    """Train the best trials of STUDY again with other seeds and rank them by their mean
    value: how much of their lead was the luck of one initialisation and batch order.
    Nothing is written to the study."""
    from hpsearch.results.reading import best_trials
    from hpsearch.results.repeat import check_repeat

    target = open_target(study, storage)
    check_repeat(target, seeds, device)  # refused before torch loads
    numbers = ", ".join(str(t.number) for t in best_trials(target, top))
    click.echo(f"repeating trials {numbers} with {seeds} seeds each", err=True)
    from hpsearch.results.repeat import repeat_best
    from hpsearch.training.trainer import set_threads

    set_threads(threads)
    output.repeats(repeat_best(target, top, seeds, device), fmt)
