"""Classification or regression: what each task may train with and be judged by.

A built-in data set is a classification task. A user's data set names its task or leaves it
to be inferred from its target (:func:`hpsearch.training.sources.infer_task`); either way the
config and the study are then made to fit it here: a regression trains with ``mse`` unless
a loss was given, a study without an objective maximizes ``val_r2``, and a loss or metric of
the other task is refused, one line each.
"""

from __future__ import annotations

from collections.abc import Iterable

from hpsearch.errors import ConfigError
from hpsearch.spec.choices import TASK_LOSSES
from hpsearch.spec.config import make_config
from hpsearch.spec.config import TrainConfig
from hpsearch.spec.datasource import DataSource

# metrics only one task measures; the losses, train_seconds and param_count are for both
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("val_accuracy", "val_balanced_accuracy"),
    "regression": ("val_rmse", "val_mae", "val_r2"),
}
DEFAULT_METRIC = {"classification": "val_accuracy", "regression": "val_r2"}
DEFAULT_LOSS = {"classification": "cross_entropy", "regression": "mse"}
# settings that mean something for classes only, and their values that leave them off
CLASS_ONLY = {
    "label_smoothing": "smooths class labels; a regression task has none",
    "class_weight": "weighs classes; a regression task has none",
}
UNSET = (0.0, "none")


def with_task(config: TrainConfig, task: str, loss_given: bool = True) -> TrainConfig:
    """``config`` with its data source's task set to ``task`` and, unless a loss was given,
    the task's default loss.

    Raises:
        ConfigError: Its loss, label smoothing or class weight does not fit the task.
    """
    values: dict[str, object] = {}
    if isinstance(config.dataset, DataSource) and config.dataset.task != task:
        values["dataset"] = {**config.dataset.to_dict(), "task": task}
    if not loss_given:
        values["loss"] = DEFAULT_LOSS[task]
    resolved = make_config(values, config) if values else config
    problems = loss_problems([resolved.loss], task, "loss")
    if task == "regression":
        problems += [
            f"{key}: {why}"
            for key, why in CLASS_ONLY.items()
            if getattr(resolved, key) not in UNSET
        ]
    if problems:
        raise ConfigError(problems)
    return resolved


def loss_problems(losses: Iterable[str], task: str, where: str) -> list[str]:
    """A line for each loss that ``task`` cannot train with."""
    allowed = TASK_LOSSES[task]
    return [
        f"{where}: {loss} is not a {task} loss; allowed: {', '.join(allowed)}"
        for loss in dict.fromkeys(losses)
        if make_config({"loss": loss}, cross_field=False).loss not in allowed
    ]


def metric_problems(metrics: Iterable[str], task: str, where: str = "objective") -> list[str]:
    """A line for each metric that ``task`` does not measure."""
    other = [m for t, ms in TASK_METRICS.items() if t != task for m in ms]
    return [
        f"{where}: {metric} is not measured for a {task} task; use "
        f"{', '.join(TASK_METRICS[task])}, val_loss or train_loss"
        for metric in dict.fromkeys(metrics)
        if metric in other
    ]
