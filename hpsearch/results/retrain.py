"""Retraining the best trial on training + validation data, and saving the model that
``hpsearch predict`` and :func:`hpsearch.load_model` read (torch is imported when called)."""

from __future__ import annotations

from dataclasses import dataclass
import json
import math
from pathlib import Path
from typing import Any

import optuna
import yaml

from hpsearch import files
from hpsearch.errors import ConfigError
from hpsearch.results.reading import chosen_trial
from hpsearch.results.tables import json_safe
from hpsearch.study.record import TEST_BALANCED
from hpsearch.study.record import TEST_REGRESSION
from hpsearch.study.record import TrialRecord
from hpsearch.training.modelfile import MODEL_FILE


@dataclass(frozen=True)
class Retrained:
    """What :func:`retrain_best` wrote.

    Attributes:
        trial: The number of the retrained trial.
        result: The training result as a dict (``hpsearch.training.trainer.TrainResult.to_dict``).
        files: The model, its config and the result, in that order.
    """

    trial: int
    result: dict[str, Any]
    files: tuple[Path, ...]


def retrain_best(
    study: optuna.Study, output: str | Path, number: int | None = None, replace: bool = False
) -> Retrained:
    """Trains the best configuration (or completed trial ``number``'s) on training +
    validation data and saves the model (``model.pt``: self-describing, see
    :func:`hpsearch.load_model`), its config and its result (``config.yaml``,
    ``result.json``) in ``output``.

    Args:
        study: The study.
        output: The folder to save in (made if missing).
        number: A completed trial to retrain instead of the best.
        replace: Replace a model saved in ``output`` earlier (else refused, before training).

    Raises:
        ConfigError: As :func:`chosen_trial`; ``output`` holds a saved model and ``replace``
            is false.
    """
    from hpsearch.spec.config import make_config

    best = chosen_trial(study, number)  # a wrong trial is refused before torch loads
    check_output(output, replace)
    config = make_config(
        {"val_fraction": 0.0, **_early_stopped(best)}, make_config(best.config or {})
    )
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)  # a folder that cannot be: refused before training
    # torch only here: reading results must not load it
    from hpsearch.training.saved import save_model
    from hpsearch.training.trainer import fit
    from hpsearch.training.trainer import load_data
    from hpsearch.training.trainer import resolve_device

    result, model = fit(config)
    data = load_data(config, resolve_device(config.device))  # cached: its preprocessing
    written = (out / MODEL_FILE, out / "config.yaml", out / "result.json")
    tests = TEST_REGRESSION if result.task == "regression" else (TEST_BALANCED,)
    # the three together, each whole: never a new model beside an earlier one's config
    with (
        files.whole(written[0]) as model_part,
        files.whole(written[1]) as config_part,
        files.whole(written[2]) as result_part,
    ):
        save_model(
            model,
            config.to_dict(),
            data,
            model_part,
            metrics={k: getattr(result, k) for k in ("test_accuracy", "test_loss", *tests)},
            origin={"study": study.study_name, "trial": best.number},
        )
        config_part.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        result_part.write_text(json.dumps(json_safe(result.to_dict()), indent=2))
    return Retrained(best.number, result.to_dict(), written)


def check_output(output: str | Path, replace: bool = False) -> None:
    """Refuses a folder that holds a saved model, unless it is to be replaced.

    Raises:
        ConfigError: ``output`` holds a model and ``replace`` is false.
    """
    # the default folder is the same for every study: one retrain must not lose another's
    if (Path(output) / MODEL_FILE).exists() and not replace:
        raise ConfigError(
            [f"{output} holds a saved model already: -o another folder, or --force replaces it"]
        )


def _early_stopped(trial: TrialRecord) -> dict[str, Any]:
    """What retraining a trial that stopped early changes: with no validation data left to
    watch, it trains the epochs that gave the trial's lowest validation loss."""
    losses = trial.curves.get("val_loss") or []
    if not (trial.config or {}).get("early_stopping") or not losses:
        return {}
    # a curve stores a NaN as None: never the best
    finite = [math.inf if loss is None else float(loss) for loss in losses]
    return {"epochs": finite.index(min(finite)) + 1, "early_stopping": 0}
