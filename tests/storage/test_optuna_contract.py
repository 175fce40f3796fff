"""The contract with Optuna's private API (hpsearch/storage/_optuna): every listed name
exists in the pinned Optuna, and every use works on SQLite, PostgreSQL and the journal
storage; each method hpsearch overrides is shown to be called, so that a rename in Optuna
breaks a test here instead of silently bypassing the override."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
import importlib
import os
from pathlib import Path
import time
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial
from optuna.trial import TrialState
import pytest
import sqlalchemy as sa

from hpsearch import storage as db
from hpsearch.errors import StorageError
from hpsearch.storage import open_storage
from hpsearch.storage._optuna import PRIVATE_NAMES
from hpsearch.storage._optuna import sessions
from hpsearch.storage._optuna.rdb import ResilientRDBStorage
from hpsearch.study.windows import Windowed
from tests.conftest import REPO
from tests.conftest import url_of


def _resolve(path: str) -> Any:
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            found = getattr(found, attr)
        return found
    raise ImportError(path)


@pytest.mark.parametrize(("owner", "name"), PRIVATE_NAMES, ids=[n for _, n in PRIVATE_NAMES])
def test_every_listed_private_name_exists(owner: str, name: str) -> None:
    assert hasattr(_resolve(owner), name), f"{owner}.{name} is gone: see hpsearch/storage/_optuna"


def test_optuna_and_its_neighbours_are_pinned_exactly() -> None:
    pins = dict(
        line.split("==")
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert pins["optuna"] == optuna.__version__
    assert {"optuna", "optuna-dashboard", "sqlalchemy"} <= set(pins)


def test_every_private_name_in_the_package_is_behind_the_door() -> None:
    # Outside storage/_optuna no module reaches an Optuna object's private attribute.
    private = ("._storage", "._study_id", "._trial_id", "._get_trials", "._backend", "_rdb.")
    for path in (REPO / "hpsearch").rglob("*.py"):
        if "_optuna" in path.parts:
            continue
        text = path.read_text()
        assert not [p for p in private if p in text], path
        assert "optuna.storages._" not in text, path


def _study(url: str) -> optuna.Study:
    return optuna.create_study(study_name="c", storage=open_storage(url, create=True))


def _spy(monkeypatch: pytest.MonkeyPatch, cls: type, name: str) -> Counter[str]:
    calls: Counter[str] = Counter()
    method = getattr(cls, name)

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return method(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, spy)
    return calls


def test_overridden_private_methods_are_the_ones_optuna_calls(
    any_storage_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = _study(any_storage_url)
    rdb = isinstance(db.storage_of(study), RDBStorage) or not any_storage_url.startswith("j")
    created = _spy(monkeypatch, ResilientRDBStorage, "_create_new_trial")
    param = _spy(monkeypatch, ResilientRDBStorage, "_set_trial_param")
    reported = _spy(monkeypatch, ResilientRDBStorage, "set_trial_intermediate_value")
    study.enqueue_trial({})  # Optuna's cache creates trials through _create_new_trial
    trial = study.ask()
    trial.suggest_float("x", 0, 1)  # ... and writes params through _set_trial_param
    trial.report(0.5, 0)
    study.tell(trial, 0.5)
    if rdb:
        assert created["_create_new_trial"] == 1  # ask() ran the queued trial
        assert param["_set_trial_param"] == 1
        assert reported["set_trial_intermediate_value"] == 1
    else:  # the journal storage has no override of ours: none of them may be reached
        assert not (created + param + reported)
    assert study.trials[-1].params == {"x": trial.params["x"]}


def test_a_readers_schema_manager_is_swapped_only_while_it_is_set_up(tmp_path: Path) -> None:
    from optuna.storages._rdb import storage as rdb_module

    url = f"sqlite:///{tmp_path / 'hp.db'}"
    _study(url)
    before = rdb_module._VersionManager
    reader = open_storage(url, read_only=True)
    assert rdb_module._VersionManager is before  # restored for every other storage
    assert type(reader._version_manager).__name__ == "_LazySchemaVersions"  # type: ignore[attr-defined]
    assert reader.get_current_version() == reader.get_head_version()


def test_optunas_migration_scripts_are_read_once_a_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Optuna executes its 30 migration files for each schema question (three times to create
    # a database); a launcher reads them before it forks, so its workers read none
    from alembic.script import ScriptDirectory

    from hpsearch.storage._optuna import rdb

    reads = Counter[str]()
    from_config = ScriptDirectory.from_config.__func__  # type: ignore[attr-defined]

    def counted(cls: type, config: Any) -> Any:
        reads["scripts"] += 1
        return from_config(cls, config)

    monkeypatch.setattr(ScriptDirectory, "from_config", classmethod(counted))
    monkeypatch.setattr(rdb, "_migrations", None)
    db.preload(f"sqlite:///{tmp_path / 'first.db'}")
    assert reads["scripts"] == 1
    for name in ("first", "second"):
        url = f"sqlite:///{tmp_path / name}.db"
        _study(url)  # creates the database: stamps the head, checks it
        open_storage(url)  # a worker's opening: checks it
    assert reads["scripts"] == 1
    # the check still compares the database with the head: an older stamp is refused
    url = f"sqlite:///{tmp_path / 'first.db'}"
    with sa.create_engine(url).begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'v3.0.0.a'"))
    with pytest.raises(StorageError, match="optuna storage upgrade"):
        open_storage(url)


def test_a_sampler_window_cuts_the_trials_optuna_samplers_read(any_storage_url: str) -> None:
    # TPE reads a study's trials through the private Study._get_trials: the window's view
    # overrides it, so a window of 2 + 3 trials is what the sampler sees of 12.
    study = _study(any_storage_url)
    seen: list[int] = []

    class Recorder(optuna.samplers.RandomSampler):
        def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> Any:
            seen.append(len(study._get_trials(deepcopy=False, states=None, use_cache=False)))
            return super().sample_independent(study, trial, name, dist)

    study.sampler = Windowed(Recorder(seed=0), best=2, recent=3)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=12)
    assert seen[:6] == [1, 2, 3, 4, 5, 5] and set(seen[6:]) == {5}
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 12


def _every_kind_of_trial(study: optuna.Study) -> None:
    """Eleven trials of every state, with params of every kind, infinite and NaN values,
    intermediate values, user and system attributes."""
    dists = {
        "lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True),
        "depth": optuna.distributions.IntDistribution(0, 4),
        "act": optuna.distributions.CategoricalDistribution(["relu", "tanh", None]),
        "step": optuna.distributions.FloatDistribution(0.0, 1.0, step=0.25),
    }
    for i, state in enumerate([TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL] * 3):
        trial = study.ask(dists)
        trial.set_user_attr("curve", [0.5, float(i)])
        trial.set_user_attr("note", {"i": i, "s": "x"})
        study._storage.set_trial_system_attr(trial._trial_id, "hpsearch:worker", f"w{i}")
        for step, value in enumerate([0.1 * i, float("inf"), float("nan"), -float("inf")]):
            trial.report(value, step)
        value = [float("inf"), -float("inf"), 0.25 * i][i % 3]
        study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
    study.ask(dists)  # RUNNING
    study.enqueue_trial({"lr": 0.01})  # WAITING, a fixed param


def test_trials_read_as_columns_are_the_trials_optunas_reader_builds(storage_url: str) -> None:
    # ResilientRDBStorage.get_all_trials reads Optuna's tables as columns: every field of
    # every kind of trial must be what Optuna's own ORM reader gives
    study = _study(storage_url)
    _every_kind_of_trial(study)
    storage = open_storage(storage_url, read_only=True)
    sid = db.study_id(study)
    ours, optunas = storage.get_all_trials(sid), RDBStorage.get_all_trials(storage, sid)
    assert len(ours) == len(optunas) == 11
    _same(ours, optunas)
    states = (TrialState.PRUNED, TrialState.RUNNING)
    _same(
        storage.get_all_trials(sid, states=states),
        RDBStorage.get_all_trials(storage, sid, states=states),
    )
    ids = [t._trial_id for t in optunas]
    for included, after in [
        (set(), -1),
        (set(), ids[5]),
        ({ids[1], ids[3]}, ids[5]),
        ({ids[1], ids[9]}, ids[5]),
        ({ids[2]}, -1),
    ]:
        for states in [None, (TrialState.RUNNING, TrialState.COMPLETE)]:
            _same(  # what Optuna's trial cache reads: a worker's first load, then the changes
                storage._get_trials(sid, states, included, after),  # type: ignore[attr-defined]
                RDBStorage._get_trials(storage, sid, states, included, after),  # type: ignore[arg-type]
            )
    with db.first_trials(4):  # a first page: the first trials by id, nothing else changed
        _same(storage.get_all_trials(sid, deepcopy=False), optunas[:4])
    assert len(storage.get_all_trials(sid)) == 11  # only within the block
    with pytest.raises(KeyError):
        storage.get_all_trials(sid + 100)


@pytest.mark.postgres
@pytest.mark.parametrize("states", [None, (TrialState.RUNNING,)])
def test_a_trial_finished_during_a_read_is_read_before_or_after_never_half(
    postgres_url: str, states: tuple[TrialState, ...] | None
) -> None:
    # PostgreSQL gives each query of a read a snapshot of its own (READ COMMITTED): a trial that
    # another worker finishes between two of the reader's queries must come back running or
    # finished, never COMPLETE without its value (a sampler sorts complete trials' values),
    # nor among the running trials once finished. Finished after each query in turn.
    study = _study(postgres_url)
    reader = open_storage(postgres_url, read_only=True)
    assert isinstance(reader, ResilientRDBStorage)
    sid, dists = db.study_id(study), {"x": optuna.distributions.FloatDistribution(0, 1)}

    def read_finishing_after(k: int) -> tuple[list[FrozenTrial], int]:
        trial, seen = study.ask(dists), []

        def finish(*args: Any) -> None:
            seen.append(args[2])
            if len(seen) == k:
                study.tell(trial, 0.5)  # on another connection: committed at once

        sa.event.listen(reader.engine, "after_cursor_execute", finish)
        try:
            found = reader.get_all_trials(sid, deepcopy=False, states=states)
        finally:
            sa.event.remove(reader.engine, "after_cursor_execute", finish)
        return [t for t in found if t._trial_id == trial._trial_id], len(seen)

    _, queries = read_finishing_after(0)
    assert queries >= 4  # study, ids, then the trials' tables
    for k in range(1, queries):
        found, _ = read_finishing_after(k)
        for t in found:
            assert t.state in (states or (TrialState.RUNNING, TrialState.COMPLETE)), (k, t.state)
            if t.state == TrialState.COMPLETE:
                assert t.values == [0.5], (k, t.values)


def _same(ours: list[Any], optunas: list[Any]) -> None:
    # field by field, by repr: a NaN intermediate value is not == itself
    assert len(ours) == len(optunas)
    for mine, theirs in zip(ours, optunas, strict=True):
        assert mine.__dict__.keys() == theirs.__dict__.keys()
        for key, value in mine.__dict__.items():
            assert repr(value) == repr(theirs.__dict__[key]), (mine.number, key)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # heartbeats without optimize
def test_a_study_deleted_a_table_at_a_time_goes_as_optunas_delete_does(
    storage_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ResilientRDBStorage.delete_study deletes a study one DELETE a table (Optuna's ORM
    # cascade read 10,000 trials to delete them one row at a time). Three studies with the
    # same rows of every kind: ours deletes one, Optuna's another; the third stays whole.
    storage = open_storage(storage_url, create=True, heartbeat_interval=60)
    dists = {"lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)}
    for name in ("ours", "kept", "optunas"):
        study = optuna.create_study(study_name=name, storage=storage)
        study.set_user_attr("file", "s.yaml")
        study.set_metric_names(["val_loss"])
        for state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING):
            trial = study.ask(dists)
            trial.set_user_attr("curve", [0.5, 0.25])
            trial.report(0.5, 1)
            storage.record_heartbeat(trial._trial_id)
            if state != TrialState.RUNNING:
                study.tell(trial, 0.5 if state == TrialState.COMPLETE else None, state=state)
        study.enqueue_trial({"lr": 0.01})
    engine = sa.create_engine(storage_url)
    tables = sa.inspect(engine).get_table_names()

    def rows() -> dict[str, int]:
        with engine.connect() as conn:
            return {
                t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables
            }

    before = rows()
    kept = optuna.load_study(study_name="kept", storage=storage).get_trials()
    deletes, delete = [], sessions.delete_study
    monkeypatch.setattr(sessions, "delete_study", lambda *a: deletes.append(a) or delete(*a))
    optuna.delete_study(study_name="ours", storage=storage)  # Optuna's call reaches ours
    assert len(deletes) == 1
    RDBStorage.delete_study(storage, storage.get_study_id_from_name("optunas"))
    after = rows()
    for table in tables:
        if table in ("version_info", "alembic_version"):
            assert after[table] == before[table]
        else:  # a third of each study's rows is left: the kept study's
            assert before[table] > 0 and after[table] * 3 == before[table], table
    _same(optuna.load_study(study_name="kept", storage=storage).get_trials(), kept)
    assert [s.study_name for s in storage.get_all_studies()] == ["kept"]
    with pytest.raises(KeyError):
        storage.delete_study(10**6)


@pytest.fixture
def off_utc() -> Iterator[None]:
    """This process's local time 3.5 hours behind UTC: a trial's times are naive local time
    and Optuna's tables keep naive UTC, so a conversion missed or done twice shows."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "America/St_Johns"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TZ")
        else:
            os.environ["TZ"] = before
        time.tzset()


@pytest.mark.parametrize(
    ("source", "target", "returning"),
    [
        ("sqlite", "sqlite", True),
        ("sqlite", "sqlite", False),  # a database with no INSERT ... RETURNING: ORM rows
        ("journal", "sqlite", True),
        ("sqlite", "journal", True),
        pytest.param("sqlite", "postgres", True, marks=pytest.mark.postgres),
        pytest.param("postgres", "sqlite", True, marks=pytest.mark.postgres),
    ],
)
def test_a_copy_is_what_optunas_copy_study_writes(
    source: str,
    target: str,
    returning: bool,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    off_utc: None,
) -> None:
    # hpsearch copy writes whole trials many an INSERT (sessions.insert_trials) and renames
    # the study once whole: study and trials must be what Optuna's copy_study makes of them
    study = _study(url_of(source, tmp_path, request, "source"))
    study.set_user_attr("file", "s.yaml")
    study.set_metric_names(["val_loss"])
    _every_kind_of_trial(study)
    # Optuna's copy in a fresh file of the same kind: the same trial ids (a journal's from 0)
    ours_url = url_of(target, tmp_path, request, "ours")
    optunas_url = url_of(target.replace("postgres", "sqlite"), tmp_path, request, "optunas")
    storage = open_storage(ours_url, create=True)
    if not returning:
        flag = "insert_executemany_returning_sort_by_parameter_order"
        monkeypatch.setattr(storage.engine.dialect, flag, False)  # type: ignore[attr-defined]
    renames = db.can_rename(storage)
    assert renames == (target != "journal")  # a journal only appends
    copy = db.create_copy(study, storage, "passing" if renames else "c")
    ids = db.add_trials(copy, study.get_trials())
    if renames:
        assert db.rename_study(copy, "c")
        assert not db.rename_study(db.create_copy(study, storage, "other"), "c")  # taken
    # Optuna's own storage: hpsearch's marks each trial it creates from a template
    into = open_storage(optunas_url) if target == "journal" else RDBStorage(optunas_url)
    optuna.copy_study(from_study_name="c", from_storage=study._storage, to_storage=into)
    ours = optuna.load_study(study_name="c", storage=open_storage(ours_url))
    optunas = optuna.load_study(study_name="c", storage=into)
    assert ids == [t._trial_id for t in ours.trials]
    assert ours.directions == optunas.directions
    assert ours.user_attrs == optunas.user_attrs
    assert db.study_system_attrs(ours) == db.study_system_attrs(optunas) != {}
    _same(ours.trials, optunas.trials)
    _same(db.trial_pages(ours, False, 4, None).__next__(), optunas.trials[:4])  # whole pages
