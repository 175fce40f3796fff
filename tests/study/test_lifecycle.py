"""What starting a study would do, found without writing (``lifecycle.plan``, behind
``hpsearch check``)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
import re
import sqlite3
from typing import Any

import optuna
import pytest
import sqlalchemy as sa

from hpsearch.errors import ConfigError
from hpsearch.errors import StorageError
from hpsearch.spec.studyfile import parse_study
from hpsearch.spec.studyfile import StudySpec
from hpsearch.study import lifecycle
from hpsearch.study import record
from hpsearch.study.lifecycle import plan
from hpsearch.study.lifecycle import prepare
from tests.conftest import url_of
from tests.helpers import study_doc


def _spec(tmp_path: Path, trials: int | None = None, **overrides: Any) -> StudySpec:
    return parse_study(study_doc(tmp_path, **overrides), source="test.yaml", trials=trials)


def _dump(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return list(conn.iterdump())


def test_a_study_not_created_yet_is_planned_without_creating_its_database(
    storage_url: str, tmp_path: Path
) -> None:
    planned = plan(_spec(tmp_path, trials=5, storage=storage_url))
    assert planned.counts is None and planned.change == 5
    if storage_url.startswith("sqlite"):
        assert not (tmp_path / "hp.db").exists()
    else:  # an empty database stays empty
        assert sa.inspect(sa.create_engine(storage_url)).get_table_names() == []
    prepare(_spec(tmp_path, name="other", trials=2, storage=storage_url))  # another study
    assert plan(_spec(tmp_path, storage=storage_url)).counts is None


def test_a_plan_says_what_a_start_would_queue_or_take_off_and_writes_nothing(
    tmp_path: Path,
) -> None:
    prepare(_spec(tmp_path, trials=4))
    with sqlite3.connect(tmp_path / "hp.db") as conn:  # as a study made before they were kept
        conn.execute("DELETE FROM study_system_attributes WHERE key = ?", (record.DEFINITION,))
    before = _dump(tmp_path / "hp.db")
    planned = plan(_spec(tmp_path, trials=4))
    assert planned.counts is not None and planned.counts.states == {"WAITING": 4}
    assert planned.change == 0
    assert plan(_spec(tmp_path, trials=10)).change == 6
    assert plan(_spec(tmp_path, trials=1)).change == -3
    assert _dump(tmp_path / "hp.db") == before
    _, _, queued = prepare(_spec(tmp_path, trials=1))  # what a start then does
    assert queued == -3


def test_a_grid_plans_only_its_missing_points(tmp_path: Path) -> None:
    grid = {"sampler": "grid", "budget": None, "space": {"lr": [0.1, 0.01, 0.001]}}
    assert plan(_spec(tmp_path, **grid)).change == 3
    prepare(_spec(tmp_path, trials=2, **grid))
    assert plan(_spec(tmp_path, trials=5, **grid)).change == 1  # three points in all


KNOWN = [{"lr": 0.05, "hidden_layers": [32, 16]}, {"lr": 0.002}]


def _queued_with(url: str) -> list[dict[str, Any]]:
    study = optuna.load_study(study_name="t", storage=url)
    return [record.fixed_params(t) for t in study.get_trials()]


def test_known_points_are_queued_first_once_in_a_studys_life(
    storage_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def spec(trials: int | None = None, **overrides: Any) -> StudySpec:
        return _spec(tmp_path, trials, storage=storage_url, **overrides)

    assert plan(spec(start_with=KNOWN)).starts == 2
    prepare(spec(trials=3, start_with=KNOWN))
    known = [
        {
            "lr": 0.05,
            "hidden_layers.depth": 2,
            "hidden_layers.width_0": 32,
            "hidden_layers.width_1": 16,
        },
        {"lr": 0.002},  # what it leaves out is drawn
    ]
    assert _queued_with(storage_url) == [*known, {}]
    # a raised budget queues blank trials: each known point is queued once
    raised = plan(spec(trials=5, start_with=KNOWN))
    assert (raised.change, raised.starts) == (2, 0)
    prepare(spec(trials=5, start_with=KNOWN))
    assert _queued_with(storage_url) == [*known, {}, {}, {}]
    # a point added to the file later is queued first among what the budget still lacks
    more = [*KNOWN, {"lr": 0.01}]
    assert plan(spec(trials=7, start_with=more)).starts == 1
    prepare(spec(trials=7, start_with=more))
    assert _queued_with(storage_url)[5:] == [{"lr": 0.01}, {}]
    # one added where the budget is full waits for room, and a start says so
    full = plan(spec(trials=7, start_with=[*more, {"lr": 0.02}]))
    assert (full.change, full.starts, full.left) == (0, 0, 1)
    with caplog.at_level(logging.WARNING, logger="hpsearch"):
        prepare(spec(trials=7, start_with=[*more, {"lr": 0.02}]))
    assert "1 of its start_with points not queued: its budget of 7 trials" in caplog.text
    assert len(_queued_with(storage_url)) == 7


def test_a_budget_below_the_known_points_queues_the_first_of_them(tmp_path: Path) -> None:
    assert (plan(_spec(tmp_path, trials=1, start_with=KNOWN)).left) == 1
    prepare(_spec(tmp_path, trials=1, start_with=KNOWN))  # --trials 1
    assert [sorted(p) for p in _queued_with(f"sqlite:///{tmp_path / 'hp.db'}")] == [
        ["hidden_layers.depth", "hidden_layers.width_0", "hidden_layers.width_1", "lr"]
    ]


def test_a_changed_study_is_refused_as_a_start_would_refuse_it(tmp_path: Path) -> None:
    prepare(_spec(tmp_path))
    before = _dump(tmp_path / "hp.db")
    changed = {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}
    space = {**study_doc(tmp_path)["space"], "lr": changed}
    with pytest.raises(ConfigError, match=re.escape("space.lr.low: 0.001 -> 0.0001")):
        plan(_spec(tmp_path, space=space))
    with pytest.raises(StorageError, match="with directions"):
        plan(_spec(tmp_path, objective={"metric": "val_loss", "direction": "minimize"}))
    assert _dump(tmp_path / "hp.db") == before


def test_a_file_of_another_kind_is_refused_as_a_start_would_refuse_it(tmp_path: Path) -> None:
    (tmp_path / "hp.db").write_text("not a database")
    with pytest.raises(StorageError, match="is not a SQLite database"):
        plan(_spec(tmp_path))
    with sqlite3.connect(tmp_path / "other.db") as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(StorageError, match="another tool's tables"):
        plan(_spec(tmp_path, storage=f"sqlite:///{tmp_path / 'other.db'}"))


def test_a_journal_keeps_its_queue_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = {"storage": f"journal:{tmp_path / 'hp.log'}"}
    assert plan(_spec(tmp_path, trials=4, **journal)).counts is None
    assert not (tmp_path / "hp.log").exists()
    prepare(_spec(tmp_path, trials=4, **journal))
    assert plan(_spec(tmp_path, trials=1, **journal)).change == 0
    _, study, queued = prepare(_spec(tmp_path, trials=1, **journal))
    assert queued == 0 and len(study.get_trials()) == 4  # it only appends
    assert "budget 1, but 3 queued trials beyond it stay queued and will run" in caplog.text


@pytest.mark.parametrize("grid", [False, True], ids=["random", "grid"])
def test_two_starts_at_once_fill_the_budget_once(
    storage_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, grid: bool
) -> None:
    # `launch` on two hosts at once: A counts the gap and chooses its trials, B starts whole
    # meanwhile, then A queues. A must find the study changed and choose again: nothing.
    points = {"sampler": "grid", "budget": None, "space": {"lr": [0.1, 0.01, 0.001, 1e-4]}}
    spec = _spec(tmp_path, storage=storage_url, **(points if grid else {"trials": 4}))
    prepare(dataclasses.replace(spec, trials=1))  # a study with one trial queued
    missing, starts = lifecycle._missing, []

    def b_starts_meanwhile(*args: Any) -> Any:
        chosen = missing(*args)
        if not starts:
            starts.append("B")
            starts.append(prepare(spec)[2])  # B, whole
        return chosen

    monkeypatch.setattr(lifecycle, "_missing", b_starts_meanwhile)
    _, study, queued = prepare(spec)  # A
    assert starts == ["B", 3] and queued == 0
    trials = study.get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3]
    if grid:  # each point once
        assert sorted(record.fixed_params(t)["lr"] for t in trials) == [1e-4, 0.001, 0.01, 0.1]


def test_a_start_whose_study_never_stops_changing_gives_up_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepare(_spec(tmp_path, trials=1))
    tries: list[int] = []

    def another_always_first(study: Any, trials: Any, after: int | None = None) -> int:
        tries.append(after or 0)
        return 0

    monkeypatch.setattr(lifecycle, "TOP_UP_ATTEMPTS", 3)
    monkeypatch.setattr(lifecycle.db, "queue_trials", another_always_first)
    with pytest.raises(StorageError, match=r"its trials kept changing .*\(3 attempts\)"):
        prepare(_spec(tmp_path, trials=4))
    assert tries == [1, 1, 1]


@pytest.mark.parametrize(
    "kind", ["sqlite", "journal", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_a_copied_grid_resumes_on_its_new_storage_where_it_stopped(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from hpsearch.study.worker import run_study

    grid = {"sampler": "grid", "budget": None, "space": {"lr": [0.1, 0.03, 0.01, 0.003, 0.001]}}
    source, _ = run_study(_spec(tmp_path, trials=2, **grid))
    before = _dump(tmp_path / "hp.db")
    url = url_of(kind, tmp_path, request, "copy")
    copied = lifecycle.copy_study(source, url)
    assert copied.trials == 2 and copied.requeued == ()
    assert _dump(tmp_path / "hp.db") == before  # the source is only read
    assert [(t.number, t.state, t.values, t.user_attrs) for t in copied.study.trials] == [
        (t.number, t.state, t.values, t.user_attrs) for t in source.trials
    ]
    resumed, stats = run_study(_spec(tmp_path, storage=url, **grid))  # the same file there
    assert stats.completed == 3
    assert sorted(t.params["lr"] for t in resumed.trials) == [0.001, 0.003, 0.01, 0.03, 0.1]
    assert [t.number for t in resumed.trials] == [0, 1, 2, 3, 4]
    assert len(source.trials) == 2  # the source was left as it was


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # a running trial without optimize
def test_a_trial_running_in_the_source_is_queued_again_in_the_copy(tmp_path: Path) -> None:
    import optuna

    from hpsearch import storage as db
    from hpsearch.study import budget

    _, source, _ = prepare(_spec(tmp_path, trials=3))
    lr = optuna.distributions.FloatDistribution(1e-3, 1e-1, log=True)
    running = source.ask({"lr": lr})  # a worker's trial: claimed, its params drawn
    copied = lifecycle.copy_study(source, f"sqlite:///{tmp_path / 'copy.db'}")
    assert copied.requeued == (running.number,) and copied.trials == 4  # 3, and a retry
    trials = copied.study.get_trials()
    failed, again = trials[running.number], trials[-1]
    assert failed.state.name == "FAIL"
    assert "running in the source storage when it was copied" in failed.user_attrs["fail_reason"]
    assert again.state.name == "WAITING" and again.params == running.params  # Optuna's retry
    assert again.system_attrs["failed_trial"] == running.number
    assert budget.used(db.trial_counts(copied.study)) == 3  # as many as the source uses
    assert source.trials[running.number].state.name == "RUNNING"  # left to its worker


@pytest.mark.parametrize("stop", [RuntimeError("disk gone"), KeyboardInterrupt()])
@pytest.mark.parametrize("existed", [False, True], ids=["new-file", "existing-file"])
def test_a_copy_stopped_half_way_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop: BaseException, existed: bool
) -> None:
    from hpsearch import storage as db

    _, source, _ = prepare(_spec(tmp_path, trials=5))
    url = f"sqlite:///{tmp_path / 'copy.db'}"
    if existed:
        prepare(_spec(tmp_path, name="kept", trials=1, storage=url))
    monkeypatch.setattr(lifecycle, "COPY_PAGE", 2)
    add, calls = db.add_trials, []

    def second_page_fails(study: Any, trials: Any) -> list[int]:
        calls.append(len(trials))
        if len(calls) == 2:
            raise stop
        return add(study, trials)

    monkeypatch.setattr(db, "add_trials", second_page_fails)
    with pytest.raises(type(stop)):
        lifecycle.copy_study(source, url)
    assert calls == [2, 2]
    if existed:
        assert [s.study_name for s in db.open_storage(url).get_all_studies()] == ["kept"]
    else:
        assert sorted(p.name for p in tmp_path.iterdir()) == ["hp.db"]


def test_a_copy_takes_its_name_only_once_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hpsearch import storage as db

    _, source, _ = prepare(_spec(tmp_path, trials=5))
    url = f"sqlite:///{tmp_path / 'copy.db'}"
    monkeypatch.setattr(lifecycle, "COPY_PAGE", 2)
    add, seen = db.add_trials, []

    def watched(study: Any, trials: Any) -> list[int]:
        ids = add(study, trials)
        seen.append([s.study_name for s in db.open_storage(url, read_only=True).get_all_studies()])
        return ids

    monkeypatch.setattr(db, "add_trials", watched)
    lifecycle.copy_study(source, url, name="moved")
    assert len(seen) == 3 and all(names[0].startswith("moved.copying-") for names in seen)
    assert [s.study_name for s in db.open_storage(url).get_all_studies()] == ["moved"]


def test_a_copy_onto_a_study_of_that_name_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    _, source, _ = prepare(_spec(tmp_path, trials=2))
    url = f"sqlite:///{tmp_path / 'copy.db'}"
    lifecycle.copy_study(source, url)
    before = _dump(tmp_path / "copy.db")
    with pytest.raises(StorageError, match=r"copy.db already holds a study 't': .* --name"):
        lifecycle.copy_study(source, url)
    assert _dump(tmp_path / "copy.db") == before
    assert lifecycle.copy_study(source, url, name="t2").study.study_name == "t2"
