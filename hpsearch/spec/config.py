"""The trainer's configuration: one frozen, validated dataclass.

Every hyperparameter is a plain value (a number, a name or a tuple of them), never code, so
that a search space can set it and a batched trainer could later hold it as a tensor. No
torch here: the command line reads configs without loading it.
"""

from __future__ import annotations

from collections.abc import Mapping
import dataclasses
from typing import Annotated
from typing import Any
from typing import ClassVar

import pydantic
from pydantic import ConfigDict
from pydantic import Field
import yaml

from hpsearch.errors import ConfigError
from hpsearch.errors import shorten
from hpsearch.spec.choices import Activation
from hpsearch.spec.choices import ClassWeight
from hpsearch.spec.choices import Dataset
from hpsearch.spec.choices import IMAGE_DATASETS
from hpsearch.spec.choices import Loss
from hpsearch.spec.choices import LOSS_ALIASES
from hpsearch.spec.choices import MAX_SEED
from hpsearch.spec.choices import Optimizer
from hpsearch.spec.choices import Precision
from hpsearch.spec.choices import Preprocess
from hpsearch.spec.choices import Scheduler
from hpsearch.spec.datasource import DataSource
from hpsearch.spec.validation import Problems
from hpsearch.spec.validation import problems
from hpsearch.spec.validation import StrictBool
from hpsearch.spec.validation import StrictFloat
from hpsearch.spec.validation import StrictInt
from hpsearch.spec.validation import StrictStr
from hpsearch.spec.validation import Wording
from hpsearch.spec.yamlfile import load_yaml
from hpsearch.spec.yamlfile import read_yaml

Fraction = Annotated[StrictFloat, Field(ge=0.0, lt=1.0)]
NonNegative = Annotated[StrictFloat, Field(ge=0.0)]
AtLeastOne = Annotated[StrictInt, Field(ge=1)]
DEVICE_PATTERN = r"^(auto|cpu|mps|cuda(:[0-9]+)?)$"
Device = Annotated[StrictStr, Field(pattern=DEVICE_PATTERN)]


def _dataset_kind(value: Any) -> str:
    # a name is a built-in data set; anything else is read as a user's own (a mapping)
    return "name" if isinstance(value, str) else "own"


# a built-in data set's name, or a user's own data (a mapping)
DatasetChoice = Annotated[
    Annotated[Dataset, pydantic.Tag("name")] | Annotated[DataSource, pydantic.Tag("own")],
    pydantic.Discriminator(_dataset_kind),
]

_WORDING = Wording(
    unknown="setting",
    rules={
        "hidden_layers": "widths must be positive integers",
        "device": "allowed: auto, cpu, cuda, cuda:N, mps",
    },
    whole_fields=True,
    unknown_value={
        "dataset": "; your own data: {path: FILE, target: COLUMN} in a study file, "
        "--data FILE --target COLUMN on the command line"
    },
)


@pydantic.dataclasses.dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class TrainConfig:
    """Everything one training run depends on; defaults are the classic PyTorch MNIST setup.

    Validated on construction (pydantic): types are strict (``"3"`` is not an integer), lists
    become tuples, ``nll`` becomes ``cross_entropy``. Build one from user input with
    :func:`make_config`, which words every problem for a person.
    """

    __wording__: ClassVar[Wording] = _WORDING

    # data
    dataset: DatasetChoice = "digits"
    """Data set: digits (offline default), mnist, fashion-mnist (read from data_dir),
    synthetic; or your own: a mapping of path, target, task, test (see the README)."""
    data_dir: StrictStr | None = None
    """Where mnist / fashion-mnist live; null: $HPSEARCH_DATA_DIR, else ./data."""
    val_fraction: Fraction = 0.1
    """Share of the training set held out (fixed seed) for validation: what a search optimizes."""
    train_subset: Annotated[StrictInt, Field(ge=2)] | None = None
    """Use only the first N training images (quick checks on MNIST)."""
    preprocess: Preprocess = "standardize"
    """raw, scale (to [0, 1]) or standardize (training mean and std)."""
    augment_shift: Annotated[StrictInt, Field(ge=0, le=4)] = 0
    """Images only (mnist, fashion-mnist, digits, a folder of images): each training image
    moved by up to N pixels across and down, drawn anew every epoch; 0: as they are."""
    # architecture
    hidden_layers: tuple[Annotated[StrictInt, Field(gt=0)], ...] = (128,)
    """Hidden layer widths; [] is a linear model, [128] is 784-128-10."""
    activation: Activation | tuple[Activation, ...] = "relu"
    """One activation for all hidden layers, or one per layer."""
    dropout: Fraction | tuple[Fraction, ...] = 0.0
    """One dropout probability for all hidden layers, or one per layer."""
    batch_norm: StrictBool = False
    """BatchNorm1d after each hidden linear layer."""
    # loss and regularization
    loss: Loss = "cross_entropy"
    """Classes: cross_entropy (= nll over log-softmax); mse and bce use one-hot targets.
    Regression (mse unless set): mse, huber or l1 on the standardized target."""
    label_smoothing: Fraction = 0.0
    """Mixes the one-hot target with uniform, for every loss."""
    class_weight: ClassWeight = "none"
    """balanced weighs each training example's loss by rows / (classes x its class's rows),
    so that every class counts alike (imbalanced classes); none: every example alike."""
    weight_decay: NonNegative = 0.0
    """L2 penalty, through the optimizer."""
    l1: NonNegative = 0.0
    """Coefficient of the sum of |weights| added to the loss."""
    # optimization
    optimizer: Optimizer = "adadelta"
    """The optimizer; adadelta is the classic example's choice."""
    lr: Annotated[StrictFloat, Field(gt=0.0)] = 1.0
    """Learning rate: 1.0 is Adadelta's customary rate; ~1e-3 for adam."""
    momentum: Fraction = 0.0
    """Momentum of sgd and rmsprop."""
    nesterov: StrictBool = False
    """Nesterov momentum (sgd only; needs momentum > 0)."""
    scheduler: Scheduler = "step"
    """Learning-rate schedule: none, step, cosine or onecycle."""
    step_size: AtLeastOne = 1
    """Epochs between StepLR decays."""
    gamma: Annotated[StrictFloat, Field(gt=0.0, le=1.0)] = 0.7
    """StepLR decay factor, as in the classic example."""
    epochs: AtLeastOne = 14
    """Training epochs; 14 in the classic example."""
    early_stopping: Annotated[StrictInt, Field(ge=0)] = 0
    """Stop a run once its validation loss has not improved for this many epochs, as
    completed (its test metrics read then; `retrain` trains its best epoch count); 0: never."""
    batch_size: AtLeastOne = 64
    """Training batch size."""
    eval_batch_size: AtLeastOne = 1000
    """Evaluation batch size: larger is faster and changes nothing."""
    seed: Annotated[StrictInt, Field(ge=0, le=MAX_SEED)] = 1
    """Seed of initialisation, shuffling and dropout."""
    device: Device = "auto"
    """auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps."""
    precision: Precision = "fp32"
    """fp32; tf32 (a CUDA GPU's tensor cores for float32 matrix products, faster, less
    exact; float32 elsewhere); or bf16 (training steps autocast to bfloat16, on a GPU or a
    CPU; evaluation stays float32). Measured in bench/precision.py."""
    cuda_graphs: StrictBool = True
    """On a CUDA GPU, every full training batch replayed from one captured CUDA graph (one
    launch a step instead of dozens; the same updates to float rounding); false: eager."""

    @pydantic.field_validator("loss")
    @classmethod
    def _resolve_alias(cls, loss: str) -> str:
        return LOSS_ALIASES.get(loss, loss)

    @pydantic.model_validator(mode="after")
    def _check_together(self, info: pydantic.ValidationInfo) -> TrainConfig:
        # Rules that tie fields together; a search space checks one parameter at a time
        # without them (context cross_field=False).
        if info.context is not None and not info.context.get("cross_field", True):
            return self
        found = []
        n = len(self.hidden_layers)
        for key in ("activation", "dropout"):
            value = getattr(self, key)
            if isinstance(value, tuple) and len(value) != n:
                found.append((key, f"{len(value)} values for {n} hidden layers; give one or {n}"))
        if self.nesterov and self.momentum <= 0.0:
            found.append(("nesterov", f"needs momentum > 0, got {self.momentum}"))
        if self.augment_shift and not _images(self.dataset):
            found.append(("augment_shift", f"only images can be shifted; {IMAGES_RULE}"))
        if self.early_stopping and self.val_fraction == 0.0:
            found.append(("early_stopping", "watches the validation loss: needs val_fraction > 0"))
        if found:
            raise Problems(found)
        return self

    @property
    def task(self) -> str | None:
        """The task: a built-in data set's is classification; a user's data set's as given
        (``None`` until inferred from its target, see :func:`hpsearch.spec.tasks.with_task`)."""
        return self.dataset.task if isinstance(self.dataset, DataSource) else "classification"

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON/YAML-friendly values (tuples become lists, a data source
        a mapping)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def activations(self) -> tuple[str, ...]:
        """The activation of each hidden layer."""
        return _per_layer(self.activation, len(self.hidden_layers))

    def dropouts(self) -> tuple[float, ...]:
        """The dropout probability of each hidden layer."""
        return _per_layer(self.dropout, len(self.hidden_layers))


IMAGES_RULE = f"images are {', '.join(IMAGE_DATASETS)} or a folder of images"


def _images(dataset: str | DataSource) -> bool:
    if isinstance(dataset, DataSource):
        return dataset.kind == "images"
    return dataset in IMAGE_DATASETS


def _plain(value: Any) -> Any:
    if isinstance(value, DataSource):
        return value.to_dict()
    return list(value) if isinstance(value, tuple) else value


def _per_layer(value: Any, n: int) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, tuple) else (value,) * n


FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TrainConfig))
_ADAPTER = pydantic.TypeAdapter(TrainConfig)


def make_config(
    values: Mapping[str, Any],
    base: TrainConfig | None = None,
    source: str | None = None,
    cross_field: bool = True,
) -> TrainConfig:
    """Builds a validated config from ``values`` laid over ``base`` (default: the defaults).

    Args:
        values: Field names and values, as parsed from YAML or ``--set``.
        base: The config whose values are kept where ``values`` says nothing.
        source: Where the values came from, named in error messages.
        cross_field: Also check rules that tie fields together (``nesterov`` needs
            ``momentum``); a search space checks one parameter at a time without them.

    Raises:
        ConfigError: Listing every unknown key, wrong type and out-of-range value at once.
    """
    merged = {**(base or TrainConfig()).to_dict(), **values}
    try:
        config: TrainConfig = _ADAPTER.validate_python(
            merged, context={"cross_field": cross_field}
        )
    except pydantic.ValidationError as e:
        raise ConfigError(problems(e, TrainConfig), source) from None
    return config


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parses ``key=value`` where value is YAML (``[256,128]``, ``3e-4``, ``adam``).

    Raises:
        ConfigError: The text has no ``=`` or the value is not valid YAML.
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError([f"--set {shorten(text)}: expected KEY=VALUE, e.g. --set lr=0.01"])
    try:
        return key.strip(), load_yaml(raw)
    except yaml.YAMLError as e:
        raise ConfigError([f"{key.strip()}: value {shorten(raw)} is not valid YAML ({e})"]) from e


def load_config_file(path: str, base: TrainConfig | None = None) -> TrainConfig:
    """Reads a YAML mapping of :class:`TrainConfig` fields (what ``hpsearch best`` writes).

    Raises:
        ConfigError: The file is unreadable, not a mapping, or has invalid settings.
    """
    values = read_yaml(path)
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(["expected a mapping of config fields at the top level"], path)
    # `hpsearch best` writes the config under a `config:` key beside its metrics.
    if set(values) >= {"config"} and isinstance(values["config"], dict):
        values = values["config"]
    return make_config(values, base, source=path)
