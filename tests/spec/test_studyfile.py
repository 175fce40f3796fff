from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
from pydantic import BaseModel
import pytest
import yaml

from hpsearch.errors import ConfigError
from hpsearch.spec import studyfile
from hpsearch.spec.config import TrainConfig
from hpsearch.spec.datasource import DataSource
from hpsearch.spec.studyfile import load_spec
from hpsearch.spec.studyfile import parse_study
from hpsearch.spec.studyfile import study_schema
from hpsearch.spec.yamlfile import read_study_yaml
from hpsearch.spec.yamlfile import read_yaml
from hpsearch.study.samplers import make_pruner
from hpsearch.study.samplers import make_sampler
from hpsearch.study.samplers import SAMPLERS
from hpsearch.study.windows import Windowed
from hpsearch.study.windows import WINDOWS
from tests.conftest import REPO
from tests.helpers import hpsearch
from tests.helpers import study_doc
from tests.helpers import write_study

STUDIES = sorted((REPO / "studies").glob("*.yaml"))


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.name)
def test_shipped_studies_are_valid(path: Path) -> None:
    doc = read_study_yaml(str(path))  # with the file it extends under it
    spec = load_spec(str(path))
    # the spec says what the file says
    own = isinstance(doc["dataset"], dict)
    dataset = spec.base.dataset
    assert spec.name == doc["name"]
    if own:  # a user's data: its paths from the file's folder, its task fitted
        assert isinstance(dataset, DataSource) and dataset.target == doc["dataset"]["target"]
        assert Path(dataset.path) == (path.parent / doc["dataset"]["path"]).resolve()
        assert dataset.task == doc["dataset"].get("task")  # else inferred by the pre-flight
    else:
        assert dataset == doc["dataset"]
    sampler = doc["sampler"] if isinstance(doc["sampler"], str) else doc["sampler"]["name"]
    assert spec.sampler == sampler
    made = make_sampler(spec)
    assert isinstance(made.sampler if isinstance(made, Windowed) else made, SAMPLERS[sampler])
    assert isinstance(made, Windowed) == (sampler in WINDOWS)
    assert [p.name for p in spec.space.params] == list(doc["space"])
    trials = doc.get("budget", {}).get("trials")
    points = len(spec.points())
    assert spec.budget() == (min(trials or points, points) if spec.is_finite else trials)
    assert spec.budget() > 0
    make_pruner(spec)
    # An accuracy measured on a small validation split saturates: trials tie at the top and
    # the pick among them is chance (bench/selection.py). Shipped studies select on the loss
    # there, or on an accuracy over thousands of validation images.
    accuracy = [o for o in spec.objectives if o.metric == "val_accuracy"]
    if accuracy:
        val_images = {"digits": 144, "mnist": 6000, "fashion-mnist": 6000}[str(dataset)]
        assert val_images * spec.base.val_fraction / 0.1 >= 1000
    # and an editor checking it against the shipped JSON Schema agrees
    assert path.read_text().startswith("# yaml-language-server: $schema=study.schema.json\n")
    schema = json.loads((path.parent / "study.schema.json").read_text())
    jsonschema.validate(read_yaml(str(path)), schema)  # the file as written


def test_schema_is_current_and_rejects_what_validation_rejects(tmp_path: Path) -> None:
    proc = hpsearch("schema")
    assert proc.returncode == 0, proc.stderr
    schema = json.loads(proc.stdout)
    shipped = STUDIES[0].parent / "study.schema.json"
    assert schema == json.loads(shipped.read_text()), "run: hpsearch schema -o " + str(shipped)
    jsonschema.Draft202012Validator.check_schema(schema)
    good = study_doc(tmp_path)
    jsonschema.validate(good, schema)
    bad_docs = [
        {**good, "samplr": "tpe"},
        {**good, "fixed": {"epochs": "3"}},
        {**good, "fixed": {"activation": "swish"}},
        {**good, "sampler": {"name": "tpe", "n_startup": 3}},
        {**good, "space": {"lr": {"type": "uniform", "low": 0, "high": 1}}},
        {**good, "budget": {"trials": 0}},
        {**good, "name": "../x"},
    ]
    for bad in bad_docs:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
        with pytest.raises(ConfigError):
            parse_study(bad, source="s.yaml")
    written = tmp_path / "s.json"
    assert hpsearch("schema", "-o", str(written)).returncode == 0
    assert json.loads(written.read_text()) == schema


def test_validation_models_are_defined_without_reading_their_source() -> None:
    # pydantic's use_attribute_docstrings reads every model's source as it is defined, 35 ms
    # of each command that validates a file; `hpsearch schema` reads the docstrings instead
    # (the test above holds it to the shipped schema, descriptions included)
    models = [
        m for m in vars(studyfile).values() if isinstance(m, type) and issubclass(m, BaseModel)
    ]
    configs = [m.model_config for m in models]
    configs += [c.__pydantic_config__ for c in (TrainConfig, DataSource)]  # type: ignore[attr-defined]
    assert len(models) > 10 and not any(c.get("use_attribute_docstrings") for c in configs)
    trials = study_schema()["$defs"]["BudgetFile"]["properties"]["trials"]
    assert trials["description"].startswith("Trials to run in total")


def test_ofat_study_is_baseline_plus_each_variation() -> None:
    spec = load_spec(str(REPO / "studies" / "mnist_ofat.yaml"))
    factors = [f for f, _, _ in spec.points()]
    assert factors[0] == "baseline"
    # 4 layer shapes, 2 activations, 1 loss (nll *is* the baseline), 2 batch sizes,
    # 2 epoch counts, 2 rates
    assert len(factors) == 1 + 4 + 2 + 1 + 2 + 2 + 2
    assert len({json.dumps(p, sort_keys=True) for _, _, p in spec.points()}) == len(factors)


BAD_CASES: list[tuple[str, dict[str, Any], str]] = [
    (
        "target of several objectives",
        {
            "objectives": [{"metric": "val_accuracy"}, {"metric": "param_count"}],
            "sampler": "nsga2",
            "budget": {"trials": 4, "target": 0.9},
        },
        "budget.target: a study of several objectives has no single best value to stop on",
    ),
    (
        "plateau of several objectives",
        {
            "objectives": [{"metric": "val_accuracy"}, {"metric": "param_count"}],
            "sampler": "nsga2",
            "budget": {"trials": 4, "plateau": 5},
        },
        "budget.plateau: a study of several objectives has no single best value to stop on",
    ),
    (
        "target in percent",
        {"budget": {"trials": 4, "target": 99}},
        "budget.target: val_accuracy is [0, 1]: 99 can never be reached",
    ),
    (
        "target over R²",
        {"objective": "val_r2", "budget": {"trials": 4, "target": 1.5}},
        "budget.target: val_r2 is at most 1: 1.5 can never be reached",
    ),
    ("plateau of none", {"budget": {"trials": 4, "plateau": 0}}, "budget.plateau: must be >= 1"),
    ("target as text", {"budget": {"trials": 4, "target": "0.9"}}, "budget.target: expected"),
    (
        "no time for a trial",
        {"budget": {"trials": 4, "trial_timeout": 0}},
        "budget.trial_timeout: must be > 0",
    ),
    (
        "no network small enough",
        {"budget": {"trials": 4, "max_params": 0}},
        "budget.max_params: must be >= 1",
    ),
    (
        "trial timeout as text",
        {"budget": {"trials": 4, "trial_timeout": "60s"}},
        "budget.trial_timeout: expected",
    ),
    ("unknown top key", {"samplr": "tpe"}, "samplr: unknown key (did you mean 'sampler'?)"),
    ("unknown sampler", {"sampler": "bayes"}, "sampler.name: unknown 'bayes'"),
    (
        "unknown sampler option",
        {"sampler": {"name": "tpe", "n_startup": 3}},
        "sampler.n_startup: unknown key (did you mean 'n_startup_trials'?)",
    ),
    (
        "wrong option type",
        {"sampler": {"name": "tpe", "multivariate": "yes"}},
        "sampler.multivariate: expected true/false",
    ),
    # Optuna refuses these when it builds the sampler or pruner, or later, mid-study
    (
        "a seed numpy cannot take",
        {"sampler": {"name": "tpe", "seed": -1}},
        "sampler.seed: must be in [0, 4294967295], got -1",
    ),
    (
        "no candidates",
        {"sampler": {"name": "tpe", "n_ei_candidates": 0}},
        "sampler.n_ei_candidates: must be >= 1, got 0",
    ),
    (
        "a probability over 1",
        {"sampler": {"name": "nsga2", "mutation_prob": 2.0}},
        "sampler.mutation_prob: must be in [0, 1], got 2.0",
    ),
    (
        "an unknown sequence",
        {"sampler": {"name": "qmc", "qmc_type": "random"}},
        "sampler.qmc_type: unknown 'random'; allowed: halton, sobol",
    ),
    (
        "an option Optuna ignores",
        {"sampler": {"name": "cmaes", "restart_strategy": "ipop"}},
        "sampler.restart_strategy: ignored since Optuna 4.4",
    ),
    ("unknown pruner", {"pruner": "early"}, "pruner.name: unknown 'early'"),
    (
        "a percentile over 100",
        {"pruner": {"name": "percentile", "percentile": 150.0}},
        "pruner.percentile: must be in [0, 100], got 150.0",
    ),
    (
        "a reduction that never reduces",
        {"pruner": {"name": "hyperband", "reduction_factor": 1}},
        "pruner.reduction_factor: must be >= 2, got 1",
    ),
    (
        "a resource neither a number nor auto",
        {"pruner": {"name": "hyperband", "max_resource": "all"}},
        "pruner.max_resource: expected an integer >= 1 or 'auto', got 'all'",
    ),
    (
        "percentile needs percentile",
        {"pruner": {"name": "percentile"}},
        "pruner.percentile: required",
    ),
    (
        "unknown metric",
        {"objective": {"metric": "accuracy"}},
        "objective.metric: unknown 'accuracy' (did you mean 'val_accuracy'?)",
    ),
    (
        "direction mismatch",
        {"objective": {"metric": "val_loss", "direction": "maximize"}},
        "objective.direction: maximize does not match val_loss",
    ),
    (
        "bad direction",
        {"objective": {"metric": "val_loss", "direction": "down"}},
        "objective.direction: unknown 'down'",
    ),
    ("unknown dataset", {"dataset": "cifar"}, "dataset: unknown 'cifar'"),
    (
        "unknown fixed field",
        {"fixed": {"epoch": 3}},
        "fixed.epoch: unknown setting (did you mean 'epochs'?)",
    ),
    ("wrong fixed type", {"fixed": {"epochs": "3"}}, "fixed.epochs: expected an integer"),
    (
        "low above high",
        {"space": {"lr": {"type": "float", "low": 1.0, "high": 0.1}}},
        "space.lr: low (1.0) is above high (0.1)",
    ),
    (
        "log with low 0",
        {"space": {"lr": {"type": "float", "low": 0, "high": 1, "log": True}}},
        "space.lr.low: log scale needs low > 0",
    ),
    (
        "an infinite bound",  # every sampler overflowed on it: each trial failed
        {"space": {"lr": {"type": "float", "low": 0.001, "high": float("inf")}}},
        "space.lr.high: must be a finite number, got inf",
    ),
    (
        "NaN among values",
        {"space": {"lr": [0.1, float("nan")]}},
        "space.lr.values[1]: lr: must be a finite number, got nan",
    ),
    (
        "an infinite timeout",
        {"budget": {"trials": 2, "timeout": float("inf")}},
        "budget.timeout: must be a finite number, got inf",
    ),
    (
        "a step beyond the range",  # Optuna would draw low alone
        {"space": {"batch_size": {"type": "int", "low": 16, "high": 64, "step": 64}}},
        "space.batch_size.step: 64 is more than high - low (48): only low fits",
    ),
    (
        "empty choices",
        {"space": {"activation": {"values": []}}},
        "space.activation.values: expected a non-empty list",
    ),
    (
        "bad choice",
        {"space": {"activation": ["relu", "swish"]}},
        "space.activation.values[1]: activation: unknown 'swish'",
    ),
    (
        "unknown param",
        {"space": {"learning_rate": [0.1]}},
        "space.learning_rate: not a trainer setting",
    ),
    (
        "unknown param type",
        {"space": {"lr": {"type": "uniform", "low": 0, "high": 1}}},
        "space.lr.type: unknown 'uniform'",
    ),
    (
        "unknown param key",
        {"space": {"lr": {"type": "float", "low": 0.1, "high": 1, "lg": 1}}},
        "space.lr.lg: unknown key (did you mean 'log'?)",
    ),
    (
        "grid without values",
        {"sampler": "grid", "space": {"lr": {"type": "float", "low": 0.1, "high": 1.0}}},
        "space.lr: a grid study needs finite values",
    ),
    (
        "when before parent",
        {
            "space": {
                "momentum": {"type": "float", "low": 0, "high": 0.9, "when": {"optimizer": "sgd"}}
            }
        },
        "space.momentum.when.optimizer: must name a parameter listed earlier",
    ),
    (
        "multi-objective with cmaes",
        {"objectives": ["val_accuracy", "train_seconds"], "sampler": "cmaes"},
        "sampler.name: cmaes supports one",
    ),
    (
        "pruning multi-objective",
        {"objectives": ["val_accuracy", "train_seconds"], "pruner": "median"},
        "pruner: pruning needs a single",
    ),
    (
        "a file as a data set's name",
        {"dataset": "data/my.csv"},
        "dataset: unknown 'data/my.csv'; allowed: digits, mnist, fashion-mnist, synthetic; "
        "your own data: {path: FILE, target: COLUMN}",
    ),
    # each point of a grid is a queued trial: a step too fine would hang reading the file
    (
        "a grid step too fine for its range",
        {
            "sampler": "grid",
            "space": {"dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 2**-20}},
        },
        "space.dropout: 524,289 values, more than the 100,000 points a study may queue",
    ),
    (
        "a grid of too many combinations",
        {
            "sampler": "grid",
            "space": {
                "epochs": {"type": "int", "low": 1, "high": 100},
                "batch_size": {"type": "int", "low": 1, "high": 100},
                "seed": {"type": "int", "low": 0, "high": 99},
            },
        },
        "space: a grid of more than 100,000 points (epochs 100 x batch_size 100 x seed 100 "
        "values), the most a study may queue",
    ),
    (
        "the default layers as a grid",
        {"sampler": "grid", "space": {"hidden_layers": {"type": "layers"}}},
        "space.hidden_layers: 14,055,843 values",
    ),
    (
        "one factor at a time, too many",
        {
            "sampler": "ofat",
            "space": {
                "epochs": {"type": "int", "low": 1, "high": 60000},
                "batch_size": {"type": "int", "low": 1, "high": 60000},
            },
        },
        "space: 120,001 points, more than the 100,000 a study may queue",
    ),
    # a value twice is drawn twice as often; Optuna takes 1.0 (or true) for the 1 before it
    (
        "a choice listed twice",
        {"space": {"activation": ["relu", "gelu", "relu"]}},
        "space.activation.values[2]: 'relu' is values[0] again",
    ),
    (
        "a number listed twice in two spellings",
        {"space": {"epochs": {"choices": [1, 2, 1.0]}}},
        "space.epochs.choices[2]: 1.0 is choices[0] again",
    ),
    (
        "an objective twice",
        {"objectives": ["val_loss", "train_seconds", "val_loss"]},
        "objectives[2]: val_loss is objectives[0] again",
    ),
    ("negative budget", {"budget": {"trials": 0}}, "budget.trials: must be >= 1"),
    ("missing budget", {"budget": {}}, "budget.trials: required"),
    ("no space", {"space": {}}, "space: required"),
    ("no name", {"name": ""}, "name: required"),
    (
        "a known point's unknown parameter",
        {"start_with": [{"lr": 0.01}, {"lrr": 0.01}]},
        "start_with[1].lrr: not a parameter of space (did you mean 'lr'?)",
    ),
    (
        "a known point out of range",
        {"start_with": [{"lr": 5}]},
        "start_with[0].lr: must be in [0.001, 0.1], got 5",
    ),
    (
        "known layers too deep",
        {"start_with": [{"hidden_layers": [8, 8, 8]}]},
        "start_with[0].hidden_layers: must be a list of 0 to 2 layer widths ([128, 64]), got "
        "[8, 8, 8]",
    ),
    ("an empty known point", {"start_with": [{}]}, "start_with[0]: empty: give at least one"),
    (
        "a known point's key that is no name",
        {"start_with": [{1: 0.5}]},
        "start_with[0].1: not a parameter of space; allowed: lr, hidden_layers",
    ),
    ("a known point that is not one", {"start_with": [3]}, "start_with[0]: expected a mapping"),
    (
        "a known point twice",
        {"start_with": [{"lr": 0.01}, {"lr": 0.01}]},
        "start_with[1]: the same point as start_with[0]",
    ),
    (
        "more known points than the budget",
        {"start_with": [{"lr": 0.001 * i} for i in range(1, 6)]},
        "start_with: 5 points, more than budget.trials (4)",
    ),
    (
        "a known point of a grid",
        {"sampler": "grid", "space": {"lr": [0.01, 0.1]}, "start_with": [{"lr": 0.01}]},
        "start_with: a grid study queues every point of its space itself",
    ),
    (
        "a known point's condition unmet",
        {
            "space": {
                "optimizer": ["adam", "sgd"],
                "momentum": {"type": "float", "low": 0, "high": 0.9, "when": {"optimizer": "sgd"}},
            },
            "start_with": [{"momentum": 0.5, "optimizer": "adam"}],
        },
        "start_with[0].momentum: exists only when optimizer is sgd; this point's is 'adam'",
    ),
]


@pytest.mark.parametrize(
    ("case", "overrides", "message"), BAD_CASES, ids=[c[0] for c in BAD_CASES]
)
def test_bad_study_files_name_the_key(
    case: str, overrides: dict[str, Any], message: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_study(study_doc(tmp_path, **overrides), source="s.yaml")
    assert f"s.yaml: {message}" in str(err.value)


def test_every_violation_is_reported_at_once(tmp_path: Path) -> None:
    doc = study_doc(tmp_path, sampler="bayes", pruner="early", budget={"trials": -1})
    with pytest.raises(ConfigError) as err:
        parse_study(doc, source="s.yaml")
    assert len(err.value.problems) == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name: x\nspace: {lr: [0.1\n", "YAML syntax error at line 3"),
        ("- just\n- a list\n", "expected a mapping at the top level"),
        # PyYAML keeps a repeated key's last value: the first would be silently ignored
        ("name: x\nfixed: {lr: 0.1}\nspace: {}\nfixed: {epochs: 2}\n", "line 4: key 'fixed'"),
        ("name: x\nfixed: {lr: 0.1, lr: 0.2}\n", "line 2: key 'lr' is given twice \\(first"),
    ],
)
def test_yaml_problems(content: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_spec(str(path))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sampler": "bayes"}, "sampler.name: unknown 'bayes'"),
        # each option is valid alone: Optuna refuses the two together
        (
            {"pruner": {"name": "hyperband", "bootstrap_count": 1}},
            "pruner: bootstrap_count > 0 and max_resource == 'auto' are mutually incompatible",
        ),
        (
            {"sampler": {"name": "cmaes", "lr_adapt": True, "with_margin": True}},
            "sampler: It is prohibited to pass `use_separable_cma` or `with_margin`",
        ),
        ({"space": {"lr": {"type": "float", "low": 1.0, "high": 0.1}}}, "space.lr: low (1.0)"),
    ],
)
def test_cli_rejects_bad_file_without_touching_storage(
    overrides: dict[str, Any], message: str, tmp_path: Path
) -> None:
    path = write_study(tmp_path, **overrides)
    proc = hpsearch("run", str(path), "--no-progress")
    assert proc.returncode == 2
    assert f"{path}: {message}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "hp.db").exists()


@pytest.mark.slow
def test_cli_storage_that_cannot_be_opened(tmp_path: Path) -> None:
    path = write_study(tmp_path, storage="postgresql+psycopg://me:hunter2@127.0.0.1:9/db")
    proc = hpsearch("run", str(path), "--no-progress")
    assert proc.returncode == 2
    assert "storage postgresql+psycopg://me:***@127.0.0.1:9/db: cannot open" in proc.stderr
    assert "hunter2" not in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    bad = write_study(tmp_path, name="b.yaml", storage=f"sqlite:///{tmp_path}/no/such/dir.db")
    proc = hpsearch("run", str(bad), "--no-progress")
    assert proc.returncode == 2 and f"no folder {tmp_path}/no/such to create it in" in proc.stderr


@pytest.mark.parametrize(
    "name",
    ["/tmp/x", "../../../../tmp/x", "x" * 5000, "a\nerror: forged", "ñame", ".hidden", "-x"],
    ids=["absolute", "dotdot", "long", "newline", "unicode", "dot", "dash"],
)
def test_study_names_that_could_leave_their_box_are_refused(name: str, tmp_path: Path) -> None:
    path = write_study(tmp_path, name="s.yaml")
    path.write_text(path.read_text().replace("name: t\n", f"name: {json.dumps(name)}\n"))
    proc = hpsearch("launch", str(path), "--no-progress", "--workers", "1", cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: name: ")
    assert "letters, digits" in lines[0] and len(lines[0]) < 400
    assert not (tmp_path / "hp.db").exists() and not (tmp_path / "hpsearch-logs").exists()


@pytest.mark.slow
def test_valid_names_keep_logs_in_their_directory(tmp_path: Path) -> None:
    path = write_study(tmp_path, budget={"trials": 1})
    path.write_text(path.read_text().replace("name: t\n", "name: my_study-1.v2\n"))
    proc = hpsearch("launch", str(path), "--no-progress", "--workers", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in (tmp_path / "hpsearch-logs").iterdir()] == ["my_study-1.v2"]


def _laughs(levels: int) -> str:
    lines = ['a0: &a0 "lol"']
    for i in range(1, levels + 1):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


EXPLODING = {
    "billion laughs": (_laughs(9), "more than 100,000 values once aliases are expanded"),
    "one level more": (_laughs(10), "more than 100,000 values once aliases are expanded"),
    "self reference": ("a: &a [*a]\n", "nested deeper than 50 levels"),
    "deep list": ("[" * 10_000 + "]" * 10_000 + "\n", "nested deeper than 50 levels"),
    "10 MB list": ("[" + "1, " * 3_500_000 + "1]\n", "larger than 1,000,000 characters"),
    "not utf-8": ("name: \xff\xfe\n", "not UTF-8 text"),
    "binary": ("\x00\x01\x02\x03", "YAML syntax error"),
    "empty": ("", "expected a mapping at the top level"),
    "scalar": ("just words\n", "expected a mapping at the top level"),
}


@pytest.mark.parametrize("case", list(EXPLODING), ids=list(EXPLODING))
def test_files_that_explode_are_one_line_errors(case: str, tmp_path: Path) -> None:
    content, message = EXPLODING[case]
    path = tmp_path / "s.yaml"
    path.write_bytes(content.encode("latin-1" if case == "not utf-8" else "utf-8"))
    with pytest.raises(ConfigError) as err:  # in this process: bounded before it is built
        load_spec(str(path))
    assert message in str(err.value) and len(str(err.value)) < 300
    proc = hpsearch("run", str(path), "--no-progress", cwd=tmp_path)
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1 and message in proc.stderr


def test_a_merge_key_may_repeat_where_a_key_may_not(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("a: &a {lr: 0.1}\nb: &b {epochs: 2}\nfixed:\n  <<: *a\n  <<: *b\n")
    assert read_yaml(str(path))["fixed"] == {"lr": 0.1, "epochs": 2}
    path.write_text("fixed:\n  <<: {lr: 0.1}\n  " + "k" * 500 + ": 1\n  " + "k" * 500 + ": 2\n")
    with pytest.raises(ConfigError) as err:
        read_yaml(str(path))
    assert "line 4: key 'kkk" in str(err.value) and len(str(err.value)) < 300
    proc = hpsearch("train", "--set", "hidden_layers={a: 1, a: 2}")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: hidden_layers: value '{a: 1, a: 2}' is not valid YAML (line 1: key 'a' is "
        "given twice (first on line 1))"
    ]


def test_quoted_values_are_shortened(tmp_path: Path) -> None:
    doc = study_doc(tmp_path, sampler={"name": "z" * 10_000}, budget={"trials": "9" * 10_000})
    doc["k" * 10_000] = 1
    with pytest.raises(ConfigError) as err:
        parse_study(doc, source="s.yaml")
    lines = str(err.value).splitlines()
    assert len(lines) == 3 and all(len(line) < 300 for line in lines)
    assert any("'zzzzz" in line and "...; allowed" in line for line in lines)


def test_a_large_gp_budget_is_warned_about_with_its_cost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    parse_study(study_doc(tmp_path, sampler="gp", budget={"trials": 150}), source="small.yaml")
    assert "sampler gp" not in caplog.text
    parse_study(study_doc(tmp_path, sampler="gp", budget={"trials": 1000}), source="big.yaml")
    assert "big.yaml: sampler gp: each ask refits a Gaussian process, about 0.25 s" in caplog.text
    assert "models only the best 100 and the 100 most recent trials" in caplog.text
    caplog.clear()
    parse_study(study_doc(tmp_path, sampler="tpe", budget={"trials": 10000}), source="t.yaml")
    assert caplog.text == ""


@pytest.mark.parametrize(
    ("pruner", "epochs", "warned"),
    [
        (
            {"name": "median", "n_warmup_steps": 5},
            {"epochs": 4},
            "from epoch 5 on (n_warmup_steps)",
        ),
        ({"name": "median", "n_warmup_steps": 4}, {"epochs": 4}, None),
        ({"name": "median", "n_warmup_steps": 5}, {"space": [3, 8]}, None),  # 8-epoch trials
        (
            {"name": "hyperband", "min_resource": 5},
            {"epochs": 4},
            "from epoch 5 on (min_resource)",
        ),
        ({"name": "hyperband"}, {"epochs": 1}, None),
        (
            {"name": "successive_halving", "min_resource": 2, "min_early_stopping_rate": 1},
            {"epochs": 7},
            "from epoch 8 on (min_resource)",
        ),  # 2 x 4 ** 1
        ({"name": "successive_halving", "min_resource": 2}, {"epochs": 2}, None),
        ({"name": "successive_halving"}, {"epochs": 1}, None),  # auto: read from the trials
        (
            {"name": "percentile", "percentile": 25.0, "n_warmup_steps": 9},
            {"space": {"type": "int", "low": 2, "high": 8}},
            "no trial trains more than 8 epochs",
        ),
    ],
)
def test_a_pruner_that_can_never_prune_is_warned_about(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    pruner: dict[str, Any],
    epochs: dict[str, Any],
    warned: str | None,
) -> None:
    doc = study_doc(tmp_path, pruner=pruner, objective={"metric": "val_loss"})
    if "space" in epochs:
        doc["space"]["epochs"] = epochs["space"]
    else:
        doc["fixed"]["epochs"] = epochs["epochs"]
    parse_study(doc, source="p.yaml")
    if warned is None:
        assert caplog.text == ""
    else:
        assert f"p.yaml: pruner {pruner['name']}: it prunes " in caplog.text
        assert warned in caplog.text and ": nothing will be pruned" in caplog.text


def test_hyperband_needs_its_least_resource_at_most_its_largest(tmp_path: Path) -> None:
    doc = study_doc(tmp_path, pruner={"name": "hyperband", "min_resource": 10, "max_resource": 3})
    with pytest.raises(ConfigError, match=r"pruner\.min_resource: 10 is more than max_resource 3"):
        parse_study(doc)
    doc["pruner"]["max_resource"] = 10
    parse_study(doc)


def _write(path: Path, doc: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_a_study_file_extends_another_key_by_key(tmp_path: Path) -> None:
    base = study_doc(tmp_path, budget={"trials": 4, "timeout": 60})
    base["fixed"]["dropout"] = 0.1
    _write(tmp_path / "base.yaml", base)
    # in a subfolder: extends is read from the extending file's folder
    middle = _write(
        tmp_path / "more" / "middle.yaml",
        {
            "extends": "../base.yaml",
            "name": "middle",
            "sampler": {"name": "tpe", "seed": 1},  # replaces the whole sampler
            "fixed": {"epochs": 3, "dropout": None},  # one key changed, one removed
            "space": {"lr": [0.01, 0.1]},  # one parameter replaced, the other kept
        },
    )
    top = _write(
        tmp_path / "more" / "top.yaml",
        {"extends": "middle.yaml", "name": "top", "budget": {"trials": 6}},
    )
    spec = load_spec(str(top))
    assert spec.name == "top" and spec.storage == base["storage"]
    assert (spec.sampler, spec.sampler_options) == ("tpe", {"seed": 1})
    assert (spec.base.epochs, spec.base.dropout, spec.base.lr) == (3, 0.0, 0.01)
    assert [p.name for p in spec.space.params] == ["lr", "hidden_layers"]
    assert spec.space.params[0].extremes() == [0.01, 0.1]
    assert (spec.budget(), spec.timeout) == (6, 60)  # budget: a key at a time too
    assert load_spec(str(middle)).budget() == 4
    from hpsearch.spec.yamlfile import study_location

    assert study_location(str(top)) == ("top", base["storage"])  # the storage inherited
    assert spec.bases == (
        str(tmp_path / "more" / "middle.yaml"),
        str(tmp_path / "more" / "../base.yaml"),
    )
    checked = hpsearch("check", str(top), "--no-train")
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.splitlines()[0] == (
        f"file      {top} on top of {spec.bases[0]}, then {spec.bases[1]} (extends:)"
    )


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"s.yaml": {"extends": "nope.yaml", "name": "s"}}, "nope.yaml: cannot read file"),
        ({"s.yaml": {"extends": 3, "name": "s"}}, "s.yaml: extends: expected a study file's"),
        (
            {"s.yaml": {"extends": "b.yaml"}, "b.yaml": {"name": "b"}},
            "s.yaml: name: required: a file that extends b.yaml is a study of its own",
        ),
        (
            {
                "s.yaml": {"extends": "b.yaml", "name": "s"},
                "b.yaml": {"extends": "s.yaml", "name": "b"},
            },
            "b.yaml: extends: s.yaml extends this file again (a circle)",
        ),
        (
            {"s.yaml": {"extends": "s.yaml", "name": "s"}},
            "s.yaml: extends: s.yaml extends this file again (a circle)",
        ),
        (
            {"s.yaml": {"extends": "b.yaml", "name": "s"}, "b.yaml": [1, 2]},
            "s.yaml: extends: b.yaml is no study file (not a mapping)",
        ),
        (
            {f"f{i}.yaml": {"extends": f"f{i + 1}.yaml", "name": f"f{i}"} for i in range(9)},
            "f7.yaml: extends: more than 8 files in a chain",
        ),
    ],
)
def test_a_bad_extends_is_one_line_naming_the_file(
    files: dict[str, Any], message: str, tmp_path: Path
) -> None:
    for name, doc in files.items():
        (tmp_path / name).write_text(yaml.safe_dump(doc))
    first = next(iter(files))
    proc = hpsearch("check", str(tmp_path / first), "--no-train")
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("error: ") and message in proc.stderr, proc.stderr


def test_a_document_alone_cannot_extend(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"s\.yaml: extends: only a study file read by"):
        parse_study({**study_doc(tmp_path), "extends": "b.yaml"}, source="s.yaml")
