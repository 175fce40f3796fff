"""Contract of hpsearch.storage, the one door to Optuna's private API, on every storage:
an Optuna upgrade that changes what it relies on fails here, not in a worker."""

from __future__ import annotations

import copy
import time
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
import pytest

from hpsearch import storage as db
from hpsearch.storage import open_storage
from hpsearch.storage._optuna import trials as trials_module


def _study(url: str, **heartbeat: Any) -> optuna.Study:
    storage = open_storage(url, create=True, **heartbeat)
    return optuna.create_study(study_name="c", storage=storage)


def test_claim_takes_each_waiting_trial_once_and_creates_none(any_storage_url: str) -> None:
    study = _study(any_storage_url)
    study.enqueue_trial({"x": 1.0})
    study.enqueue_trial({"x": 2.0})
    first = db.claim_waiting_trial(study)
    second = db.claim_waiting_trial(study)
    assert first is not None and second is not None and first != second
    assert db.claim_waiting_trial(study) is None  # an empty queue creates nothing
    trials = study.get_trials()
    assert len(trials) == 2 and {t.state for t in trials} == {TrialState.RUNNING}
    assert {db.trial_id(t) for t in trials} == {first, second}
    trial = db.trial_for(study, first)
    assert trial.suggest_float("x", 0, 3) == 1.0  # the queued params are what it suggests
    assert db.get_trial(study, first).number == trial.number
    assert db.storage_of(study) is study._storage
    assert db.study_id(study) == study._study_id


def test_fail_running_trial_records_why_and_only_once(any_storage_url: str) -> None:
    study = _study(any_storage_url)
    study.enqueue_trial({})
    trial_id = db.claim_waiting_trial(study)
    assert trial_id is not None
    assert db.fail_running_trial(study, trial_id, {"fail_reason": "stale: no heartbeat for 3 s"})
    assert not db.fail_running_trial(
        study, trial_id, {"fail_reason": "again"}
    )  # no longer RUNNING
    trial = db.get_trial(study, trial_id)
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["fail_reason"] == "stale: no heartbeat for 3 s"
    assert trial.datetime_complete is not None
    study.enqueue_trial({})
    done = db.claim_waiting_trial(study)
    assert done is not None
    study.tell(db.get_trial(study, done).number, 1.0)
    assert not db.fail_running_trial(
        study, done, {"fail_reason": "late"}
    )  # a COMPLETE trial stays so
    assert "fail_reason" not in db.get_trial(study, done).user_attrs


def test_study_system_attrs_round_trip(any_storage_url: str) -> None:
    study = _study(any_storage_url)
    db.set_study_system_attr(study, "hpsearch:definition", {"space": {"lr": [1, 2]}})
    assert db.study_system_attrs(study)["hpsearch:definition"] == {"space": {"lr": [1, 2]}}


def test_stale_trials_are_found_where_heartbeats_exist(any_storage_url: str) -> None:
    if any_storage_url.startswith("journal:"):
        study = _study(any_storage_url)
        assert db.grace_period(study) is None and db.stale_trial_ids(study) == []
        assert db.stale_trial_callback(study) is None
        return

    def on_stale(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        pass  # the study layer's rule (a retry): the storage only hands it back

    study = _study(any_storage_url, heartbeat_interval=1, grace_period=1, on_stale=on_stale)
    assert db.grace_period(study) == 1 and db.heartbeat_interval(study) == 1
    assert db.stale_trial_callback(study) is on_stale
    assert not db.may_go_stale(study)
    study.enqueue_trial({})
    # No heartbeat is sent after the claim (its worker died at once): the claim itself
    # recorded the first one, so the trial still goes stale rather than stay RUNNING forever.
    trial_id = db.claim_waiting_trial(study)
    assert trial_id is not None
    assert db.stale_trial_ids(study) == [] and db.may_go_stale(study)
    time.sleep(2.5)
    assert db.stale_trial_ids(study) == [trial_id]
    # A RUNNING trial no heartbeat will ever come from (Optuna's ask) is not waited for.
    assert db.fail_running_trial(study, trial_id, {"fail_reason": "stale"})
    with pytest.warns(UserWarning, match="Heartbeat"):
        study.ask()
    assert not db.may_go_stale(study) and db.stale_trial_ids(study) == []


def test_trial_attrs_are_written_together_or_not_at_all(any_storage_url: str) -> None:
    study = _study(any_storage_url)
    study.enqueue_trial({})
    study.enqueue_trial({})
    running = db.claim_waiting_trial(study)
    assert running is not None
    db.set_trial_user_attrs(study, running, {"a": 1, "b": [0.5, None], "c": "x"})
    assert db.get_trial(study, running).user_attrs == {"a": 1, "b": [0.5, None], "c": "x"}
    finished = db.claim_waiting_trial(study)
    assert finished is not None
    study.tell(db.get_trial(study, finished).number, 1.0)
    with pytest.raises(UpdateFinishedTrialError):
        db.set_trial_user_attrs(study, finished, {"a": 2, "b": 3})
    assert db.get_trial(study, finished).user_attrs == {}  # nothing half-written


def test_counts_and_top_trials_match_loading_every_trial(any_storage_url: str) -> None:
    study = _study(any_storage_url)  # minimizing: the best value is the lowest
    for value in (3.0, 1.0, 2.0, 5.0):
        study.add_trial(optuna.trial.create_trial(value=value))
    study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED))
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))
    study.enqueue_trial({})
    retry = db.claim_waiting_trial(study)
    assert retry is not None
    db.storage_of(study).set_trial_system_attr(retry, "retry_history", [5])
    counts = db.trial_counts(study)
    assert counts.states == {"COMPLETE": 4, "PRUNED": 1, "FAIL": 1, "RUNNING": 1}
    assert counts.retried == {5}
    assert counts.first_start is not None and counts.last_complete is not None
    assert [t.values[0] for t in db.top_trials(study, 3)] == [1.0, 2.0, 3.0]
    assert db.trial_by_number(study, 3).values == [5.0]
    with pytest.raises(KeyError):
        db.trial_by_number(study, 99)


def test_study_overviews_match_optunas_summaries(any_storage_url: str) -> None:
    storage = open_storage(any_storage_url, create=True)
    low = optuna.create_study(study_name="low", storage=storage)
    high = optuna.create_study(study_name="high", storage=storage, direction="maximize")
    both = optuna.create_study(
        study_name="both", storage=storage, directions=["minimize", "maximize"]
    )
    optuna.create_study(study_name="empty", storage=storage)
    for study in (low, high):
        for value in (3.0, 1.0, 2.0):
            study.add_trial(optuna.trial.create_trial(value=value))
        study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED))
        study.enqueue_trial({})
    both.add_trial(optuna.trial.create_trial(values=[1.0, 2.0]))
    expected = [
        (
            s.study_name,
            s.n_trials,
            tuple(d.name.lower() for d in s.directions),
            s.best_trial.values[0] if s.best_trial and len(s.directions) == 1 else None,
        )
        for s in optuna.get_all_study_summaries(storage)
    ]
    got = [(s.name, s.trials, s.directions, s.best) for s in db.study_overviews(storage)]
    assert got == expected
    assert dict((n, b) for n, _, _, b in got) == {
        "low": 1.0,
        "high": 3.0,
        "both": None,
        "empty": None,
    }


def test_a_workers_trial_cache_skips_waiting_trials_until_claimed(
    any_storage_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trials_module, "REFRESH_S", 0.0)  # every read goes to the database
    study = _study(any_storage_url)
    for _ in range(4):
        study.enqueue_trial({})
    worker = optuna.load_study(study_name="c", storage=db.worker_storage(db.storage_of(study)))
    journal = any_storage_url.startswith("journal:")  # no cache of ours: Optuna's own reads
    if not journal:
        assert worker.get_trials(deepcopy=False) == []
    claimed = db.claim_waiting_trial(worker)
    assert claimed is not None
    trial = db.trial_for(worker, claimed)
    trial.suggest_float("x", 0, 1)  # writes through the cache: the claimed trial is in it
    worker.tell(trial, 0.5)
    other = db.claim_waiting_trial(study)  # another process runs the next one
    assert other is not None
    study.tell(db.get_trial(study, other).number, 0.25)
    states = [t.state for t in worker.get_trials(deepcopy=False)]
    done = [TrialState.COMPLETE] * 2
    assert states == (done + [TrialState.WAITING] * 2 if journal else done)
    if journal:
        return
    # within REFRESH_S, the sampler's and pruner's view is not read again
    monkeypatch.setattr(trials_module, "REFRESH_S", 3600.0)
    worker.get_trials(deepcopy=False)
    third = db.claim_waiting_trial(study)
    assert third is not None
    study.tell(db.get_trial(study, third).number, 0.125)
    assert len(worker.get_trials(deepcopy=False)) == 2  # not yet seen
    db.storage_of(worker).refresh(db.study_id(worker))  # type: ignore[attr-defined]
    assert len(worker.get_trials(deepcopy=False)) == 3


def test_a_claim_records_who_runs_the_trial_in_its_own_transaction(any_storage_url: str) -> None:
    study = _study(any_storage_url)
    study.enqueue_trial({})
    claimed = db.claim_waiting_trial(study, {"worker": "w1", "pid": 42})
    assert claimed is not None
    trial = db.get_trial(study, claimed)
    assert trial.state == TrialState.RUNNING and trial.user_attrs == {"worker": "w1", "pid": 42}


def test_params_drawn_together_are_written_at_the_end_of_the_block(any_storage_url: str) -> None:
    study = _study(any_storage_url)
    study.add_trial(optuna.trial.create_trial(params={"x": 0.5}, distributions={"x": _X}, value=1))
    study.enqueue_trial({})
    study.enqueue_trial({})
    worker = optuna.load_study(study_name="c", storage=db.worker_storage(db.storage_of(study)))
    claimed = db.claim_waiting_trial(worker)
    assert claimed is not None
    trial = db.trial_for(worker, claimed)
    journal = any_storage_url.startswith("journal:")  # no cache of ours: written at once
    with db.params_together(worker, claimed):
        x = trial.suggest_float("x", 0, 1)
        y = trial.suggest_int("y", 1, 8)
        written = db.get_trial(study, claimed).params
        assert written == ({"x": x, "y": y} if journal else {})
    assert db.get_trial(study, claimed).params == {"x": x, "y": y}
    if journal:
        return
    # A drawn param that conflicts with the study's distribution: nothing is written.
    second = db.claim_waiting_trial(worker)
    assert second is not None
    clash = db.trial_for(worker, second)
    with pytest.raises(ValueError), db.params_together(worker, second):
        clash.suggest_int("y", 1, 8)
        clash.suggest_categorical("x", ["a", "b"])  # x is a float in this study
    assert db.get_trial(study, second).params == {}
    # A finished trial: refused whole.
    study.tell(db.get_trial(study, second).number, state=TrialState.FAIL)
    storage = db.storage_of(worker)
    with pytest.raises(UpdateFinishedTrialError):
        db.set_trial_params(
            storage._backend,  # type: ignore[attr-defined]
            second,
            [("y", 3.0, optuna.distributions.IntDistribution(1, 8))],
            {},
        )
    assert db.get_trial(study, second).params == {}


_X = optuna.distributions.FloatDistribution(0, 1)


def test_a_workers_first_read_of_its_claimed_trial_is_the_claims_own(
    any_storage_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if any_storage_url.startswith("journal:"):
        pytest.skip("no cache of ours on the journal storage")
    study = _study(any_storage_url)
    study.enqueue_trial({"x": 0.25})
    storage = db.worker_storage(db.storage_of(study))
    worker = optuna.load_study(study_name="c", storage=storage)
    claimed = db.claim_waiting_trial(worker, {"worker": "w1"})
    assert claimed is not None
    reads: list[int] = []
    backend = storage._backend  # type: ignore[attr-defined]
    read = backend.get_trial
    monkeypatch.setattr(backend, "get_trial", lambda i: reads.append(i) or read(i))
    trial = db.trial_for(worker, claimed)  # optuna.Trial reads its trial once
    assert reads == [] and trial.number == 0 and trial.user_attrs == {"worker": "w1"}
    assert trial.suggest_float("x", 0, 1) == 0.25  # the queued params came with the copy
    assert storage.get_trial(claimed).state == TrialState.RUNNING and reads == [claimed]


def test_an_epochs_value_is_one_guarded_write(any_storage_url: str) -> None:
    study = _study(any_storage_url)
    study.enqueue_trial({})
    study.enqueue_trial({})
    storage = db.storage_of(study)
    running = db.claim_waiting_trial(study)
    assert running is not None
    for step, value in ((1, 0.5), (2, float("nan")), (3, float("inf")), (1, 0.25)):
        storage.set_trial_intermediate_value(running, step, value)
    values = db.get_trial(study, running).intermediate_values
    assert values[1] == 0.25 and values[3] == float("inf") and values[2] != values[2]  # NaN
    finished = db.claim_waiting_trial(study)
    assert finished is not None
    study.tell(db.get_trial(study, finished).number, 1.0)
    with pytest.raises(UpdateFinishedTrialError):
        storage.set_trial_intermediate_value(finished, 1, 0.5)
    assert db.get_trial(study, finished).intermediate_values == {}
    if not any_storage_url.startswith("journal:"):
        with pytest.raises(KeyError):
            storage.set_trial_intermediate_value(10**6, 1, 0.5)


def test_a_claim_drops_the_queued_trials_create_token(any_storage_url: str) -> None:
    # The token only lets a retried insert find its trial; a running trial keeps none.
    from hpsearch.storage._optuna.rdb import CREATE_TOKEN

    study = _study(any_storage_url)
    study.enqueue_trial({})
    queued = study.get_trials()[0]
    journal = any_storage_url.startswith("journal:")
    assert (CREATE_TOKEN in queued.system_attrs) is not journal  # RDB inserts carry one
    claimed = db.claim_waiting_trial(study)
    assert claimed is not None
    assert CREATE_TOKEN not in db.get_trial(study, claimed).system_attrs


def test_a_workers_kept_trial_lists_are_what_sorting_the_cache_gives(tmp_path: Any) -> None:
    # The worker's cache keeps its lists in order and changes them by bisection as trials
    # arrive (new, changed, out of order, WAITING ones turning RUNNING then finished): after
    # every batch each list is what Optuna's sort and filter of the whole cache would give.
    import math
    import random

    from optuna.storages._cached_storage import _StudyInfo

    url = f"sqlite:///{tmp_path / 'hp.db'}"
    cache = db.worker_storage(open_storage(url, create=True))
    sid = 1
    cache._studies[sid] = _StudyInfo()  # type: ignore[attr-defined]
    cache._read_at[sid] = math.inf  # type: ignore[attr-defined] # no reads: batches only
    keys = [None, (TrialState.COMPLETE,), (TrialState.COMPLETE, TrialState.PRUNED)]
    rng = random.Random(0)
    states = [TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED]
    for batch in range(60):
        numbers = rng.sample(range(120), rng.randint(1, 8))
        if batch % 5 == 0:
            numbers.sort()  # a batch of only new trials, in order, now and then
        trials = [
            optuna.trial.create_trial(
                state=rng.choice(states[1:]) if rng.random() < 0.8 else TrialState.WAITING,
                value=rng.random(),
            )
            for _ in numbers
        ]
        for number, trial in zip(numbers, trials, strict=True):
            trial.number, trial._trial_id = number, number + 1
            if trial.state != TrialState.COMPLETE:
                trial.values = None
        cache._add_trials_to_cache(sid, trials)  # type: ignore[attr-defined]
        held = cache._studies[sid].trials.values()  # type: ignore[attr-defined]
        for key in keys:
            expected = sorted(
                (t for t in held if key is None or t.state in key), key=lambda t: t.number
            )
            got = cache.get_all_trials(sid, deepcopy=False, states=key)
            assert [(t.number, t.state) for t in got] == [(t.number, t.state) for t in expected], (
                batch,
                key,
            )


QUEUED = [
    db.QueuedTrial(),
    db.QueuedTrial({"x": 0.25}, {"factor": "x", "value": 0.25}),
    db.QueuedTrial({"x": 0.5}),
    db.QueuedTrial({}, {"n": [1, 2], "s": "é"}),
    db.QueuedTrial({"x": 0.75}),
]


def test_queued_trials_are_what_enqueue_trial_makes(
    any_storage_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A budget is queued many trials a transaction: each must be the trial Optuna's
    # enqueue_trial makes, numbered after those already there (a running one here).
    from hpsearch.storage._optuna.rdb import CREATE_TOKEN

    monkeypatch.setattr(trials_module, "QUEUE_CHUNK", 2)  # three transactions
    ours = _study(any_storage_url)
    theirs = optuna.create_study(study_name="o", storage=db.storage_of(ours))
    for study in (ours, theirs):
        study.ask({"x": _X})
    db.queue_trials(ours, QUEUED)
    for queued in QUEUED:
        theirs.enqueue_trial(dict(queued.params), user_attrs=dict(queued.user_attrs) or None)
    mine, optunas = ours.get_trials()[1:], theirs.get_trials()[1:]
    assert [t.number for t in mine] == [1, 2, 3, 4, 5]
    for a, b in zip(mine, optunas, strict=True):
        a_fields, b_fields = dict(a.__dict__), dict(b.__dict__)
        for fields in (a_fields, b_fields):
            del fields["_trial_id"]
            fields["_system_attrs"] = {
                k: v for k, v in fields["_system_attrs"].items() if k != CREATE_TOKEN
            }
        assert repr(a_fields) == repr(b_fields)
    # claimed in their order, each taking its params; none keeps the insert's token
    for queued in QUEUED:
        claimed = db.claim_waiting_trial(ours)
        assert claimed is not None
        trial = db.trial_for(ours, claimed)
        assert queued.params == ({"x": trial.suggest_float("x", 0, 1)} if queued.params else {})
        assert CREATE_TOKEN not in db.get_trial(ours, claimed).system_attrs
    assert db.claim_waiting_trial(ours) is None


def test_queued_retries_are_what_optunas_retry_callback_makes(any_storage_url: str) -> None:
    # `hpsearch retry` queues every failed trial again in one transaction; each copy must be
    # the trial Optuna's RetryHeartbeatStaleTrialCallback adds (the same history, so the
    # budget counts it alike; the same params, so it runs the failed trial's point again).
    from optuna.storages import RetryHeartbeatStaleTrialCallback as Retry

    ours = _study(any_storage_url)
    ours.enqueue_trial({"x": 0.25}, user_attrs={"factor": "x"})  # a queued point
    for _ in range(2):  # it, then a sampled one
        trial = ours.ask({"x": _X, "n": optuna.distributions.IntDistribution(1, 9)})
        trial.set_user_attr("curves", [1.0])  # an attempt's: not kept
        ours.tell(trial, state=TrialState.FAIL)
    theirs = optuna.create_study(study_name="o", storage=db.storage_of(ours))
    failed = ours.get_trials()
    db.queue_trials(ours, [db.retry_of(t, {"factor": "x"}) for t in failed])
    for t in failed:  # Optuna's, of the same trials, in its own study
        t = copy.deepcopy(t)
        t.user_attrs = {"factor": "x"}  # as budget.RetryCleanly keeps only the point's
        Retry()(theirs, t)
    mine, optunas = ours.get_trials()[2:], theirs.get_trials()
    assert [t.number for t in mine] == [2, 3]
    for a, b in zip(mine, optunas, strict=True):
        a_fields, b_fields = dict(a.__dict__), dict(b.__dict__)
        for fields in (a_fields, b_fields):
            del fields["_trial_id"], fields["_number"]
            fields["_system_attrs"] = _own(fields["_system_attrs"])
        assert repr(a_fields) == repr(b_fields)
        assert Retry.retry_history(a) == [a.system_attrs["failed_trial"]]
    assert [t.params for t in mine] == [t.params for t in failed]
    # each retry, claimed in turn, runs its failed trial's point; a retry of a retry grows
    # the history
    for again, was in zip(mine, failed, strict=True):
        claimed = db.claim_waiting_trial(ours)
        assert claimed is not None and db.get_trial(ours, claimed).number == again.number
        trial = db.trial_for(ours, claimed)
        assert trial.suggest_float("x", 0, 1) == was.params["x"]
        ours.tell(trial, state=TrialState.FAIL)
    twice = db.retry_of(ours.get_trials()[3], {})
    assert twice.system_attrs["retry_history"] == [1, 3]
    assert twice.system_attrs["failed_trial"] == 1


def _own(system_attrs: dict[str, Any]) -> dict[str, Any]:
    # the create token is each insert's own (the storage's, on Optuna's path too)
    from hpsearch.storage._optuna.rdb import CREATE_TOKEN

    return {k: v for k, v in system_attrs.items() if k != CREATE_TOKEN}


def test_a_queued_chunk_whose_commit_an_outage_hid_is_not_queued_twice(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trials_module, "QUEUE_CHUNK", 2)
    study = _study(f"sqlite:///{tmp_path / 'hp.db'}")
    dropped = _drop_after_commit(monkeypatch, trials_module._insert_waiting)
    db.queue_trials(study, QUEUED)
    assert dropped and [t.number for t in study.get_trials()] == [0, 1, 2, 3, 4]


def test_a_copied_chunk_whose_commit_an_outage_hid_is_not_written_twice(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hpsearch.storage._optuna import copies

    monkeypatch.setattr(copies, "COPY_CHUNK", 2)
    source = _study(f"sqlite:///{tmp_path / 'hp.db'}")
    for value in range(5):
        source.add_trial(optuna.trial.create_trial(value=float(value)))
    target = open_storage(f"sqlite:///{tmp_path / 'copy.db'}", create=True)
    copy = db.create_copy(source, target, "c")
    dropped = _drop_after_commit(monkeypatch, copies._insert)
    ids = db.add_trials(copy, source.get_trials())
    copied = copy.get_trials()
    assert dropped and [t.number for t in copied] == [0, 1, 2, 3, 4]
    assert [t.value for t in copied] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert ids == [db.trial_id(t) for t in copied]  # the hidden chunk's ids read back


def _writes_meet_an_outage(
    monkeypatch: pytest.MonkeyPatch, study: optuna.Study, writer: str, in_place: Any = None
) -> list[str]:
    """As :func:`_drop_after_commit`, and the first check of whether the write committed
    finds the database still down if it did. Returns what happened, in order."""
    import sqlalchemy as sa

    events = _drop_after_commit(monkeypatch, writer, in_place)
    rdb = trials_module._rdb(db.storage_of(study))
    assert rdb is not None
    get_trial = type(rdb).get_trial

    def still_down_once(self: Any, trial_id: int) -> Any:
        if events == ["dropped"] and in_place is None:
            events.append("still down")
            raise sa.exc.OperationalError("SELECT", {}, Exception("connection refused"))
        return get_trial(self, trial_id)

    monkeypatch.setattr(type(rdb), "get_trial", still_down_once)
    return events


def test_a_write_is_redone_only_once_its_check_has_answered(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy as sa

    monkeypatch.setenv("HPSEARCH_STORAGE_WAIT", "30")
    rdb = trials_module._rdb(db.storage_of(_study(f"sqlite:///{tmp_path / 'hp.db'}")))
    assert rdb is not None
    calls, checks = [], []

    def call() -> str:
        calls.append(1)
        if len(calls) == 1:  # committed, and then the connection dropped
            raise sa.exc.OperationalError("COMMIT", {}, Exception("connection dropped"))
        return "written twice"

    def done() -> str:
        checks.append(1)
        if len(checks) < 3:
            raise sa.exc.OperationalError("SELECT", {}, Exception("connection refused"))
        return "found written"

    assert rdb.retry(call, done) == "found written"
    assert len(calls) == 1 and len(checks) == 3


def test_a_claim_whose_commit_an_outage_hid_is_kept_though_the_check_meets_the_outage(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = _study(f"sqlite:///{tmp_path / 'hp.db'}")
    study.enqueue_trial({})
    study.enqueue_trial({})
    events = _writes_meet_an_outage(monkeypatch, study, "_claim")
    claimed = db.claim_waiting_trial(study, {"worker": "w1", "pid": 1})
    assert events == ["dropped", "still down"]
    # the claim is not run again (it would find its own trial RUNNING and take the next)
    first, second = study.get_trials()
    assert (first.state, second.state) == (TrialState.RUNNING, TrialState.WAITING)
    assert claimed == db.trial_id(first) and first.user_attrs["worker"] == "w1"


def test_params_whose_commit_an_outage_hid_are_not_written_twice(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Written twice, they break the table's uniqueness: the trial failed as a bad config.
    study = _study(f"sqlite:///{tmp_path / 'hp.db'}")
    study.enqueue_trial({})
    worker = optuna.load_study(study_name="c", storage=db.worker_storage(db.storage_of(study)))
    claimed = db.claim_waiting_trial(worker)
    assert claimed is not None
    events = _writes_meet_an_outage(monkeypatch, study, "set_trial_params")
    trial = db.trial_for(worker, claimed)
    with db.params_together(worker, claimed):
        x = trial.suggest_float("x", 0, 1)
    assert events == ["dropped", "still down"]
    assert db.get_trial(study, claimed).params == {"x": x}


def test_a_claim_cut_off_while_another_worker_took_its_trial_takes_the_next(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'hp.db'}"
    study = _study(url)
    study.enqueue_trial({})
    study.enqueue_trial({})
    other = optuna.load_study(study_name="c", storage=open_storage(url))
    taken: list[int | None] = []
    events = _writes_meet_an_outage(
        monkeypatch,
        study,
        "_claim",
        lambda: taken.append(db.claim_waiting_trial(other, {"worker": "w2"})),
    )
    claimed = db.claim_waiting_trial(study, {"worker": "w1"})
    assert events == ["dropped"]  # the check finds the trial RUNNING, but not as w1's
    first, second = study.get_trials()
    assert taken == [db.trial_id(first)] and first.user_attrs["worker"] == "w2"
    assert claimed == db.trial_id(second) and second.user_attrs["worker"] == "w1"


def _drop_after_commit(
    monkeypatch: pytest.MonkeyPatch, writer: Any, in_place: Any = None
) -> list[str]:
    """The first transaction that runs ``writer`` (a function a partial runs, or the
    qualified name of the function that makes it) commits, or given ``in_place`` runs that
    instead, then its connection drops before the answer comes back; an outage is waited
    out. Returns what happened (``dropped``), in order."""
    import sqlalchemy as sa

    from hpsearch.storage._optuna import sessions

    monkeypatch.setenv("HPSEARCH_STORAGE_WAIT", "30")
    commit, events = sessions.transaction, []

    def picked(run: Any) -> bool:
        if isinstance(writer, str):
            return bool(getattr(run, "__qualname__", "").startswith(f"{writer}."))
        return getattr(run, "func", None) is writer

    def commit_then_drop(rdb: Any, run: Any) -> Any:
        if events or not picked(run):
            return commit(rdb, run)
        events.append("cut")  # first: another worker's write in its place goes through
        if in_place is None:
            commit(rdb, run)
        else:
            in_place()
        events[-1] = "dropped"
        raise sa.exc.OperationalError("COMMIT", {}, Exception("connection dropped"))

    monkeypatch.setattr(sessions, "transaction", commit_then_drop)
    return events


def _orphans(url: str) -> dict[str, int]:
    """Rows of each table that refers to a trial, whose trial is gone."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    found = sa.inspect(engine)
    tables = [
        t
        for t in found.get_table_names()
        if t != "trials" and "trial_id" in {c["name"] for c in found.get_columns(t)}
    ]
    assert len(tables) >= 6  # params, values, both attributes, intermediate values, beats
    gone = "trial_id NOT IN (SELECT trial_id FROM trials)"
    with engine.connect() as conn:
        return {
            t: conn.execute(sa.text(f"SELECT count(*) FROM {t} WHERE {gone}")).scalar_one()
            for t in tables
        }


def test_unqueued_trials_are_the_waiting_ones_at_the_end_and_leave_no_row(
    any_storage_url: str,
) -> None:
    # A lowered budget takes queued trials off, the last first; only those at the end of
    # the numbering (a gap lower down would give the next queued trial a number taken).
    study = _study(any_storage_url, heartbeat_interval=60)
    db.queue_trials(study, QUEUED[:2])  # 0, 1: waiting below a finished trial
    done = optuna.trial.create_trial(value=0.5, params={"x": 0.5}, distributions={"x": _X})
    study.add_trial(done)
    db.queue_trials(study, [*QUEUED[2:], db.QueuedTrial({"x": 0.5}, {"a": 1}, {}, {"x": _X})])
    running = db.claim_waiting_trial(study)  # 0
    assert db.get_trial(study, running).number == 0
    numbers = [t.number for t in study.get_trials()]
    assert numbers == list(range(7))
    if any_storage_url.startswith("journal:"):  # it only appends: nothing is taken off
        assert db.unqueue_trials(study, 5) == 0
        assert len(study.get_trials()) == 7
        return
    assert db.unqueue_trials(study, 2) == 2  # 6, 5
    assert db.unqueue_trials(study, 10) == 2  # 4, 3: not 1, below the finished 2
    states = [(t.number, t.state) for t in study.get_trials()]
    assert states == [(0, TrialState.RUNNING), (1, TrialState.WAITING), (2, TrialState.COMPLETE)]
    assert db.unqueue_trials(study, 1) == 0  # the last trial is finished
    assert not any(_orphans(any_storage_url).values())
    db.queue_trials(study, QUEUED[:1])  # numbered after the trials left
    assert [t.number for t in study.get_trials()] == [0, 1, 2, 3]
    claims = [db.claim_waiting_trial(study) for _ in range(3)]
    assert [db.get_trial(study, c).number for c in claims[:2] if c] == [1, 3]
    assert claims[2] is None


def test_a_claimed_trial_is_never_unqueued(
    any_storage_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if any_storage_url.startswith("journal:"):
        pytest.skip("a journal storage takes no trial off its queue")
    from hpsearch.storage._optuna import sessions

    study = _study(any_storage_url)
    db.queue_trials(study, QUEUED[:3])
    last = db.trial_id(study.get_trials()[-1])
    rdb = trials_module._rdb(db.storage_of(study))
    assert rdb is not None
    unqueue, claimed = sessions.unqueue_from, []

    def claimed_first(session: Any, models: Any, **kwargs: Any) -> None:
        if not claimed:  # a worker claims the last trial between the count and the delete
            claimed.append(trials_module._claim(rdb, last, False, {}))
        unqueue(session, models, **kwargs)

    monkeypatch.setattr(sessions, "unqueue_from", claimed_first)
    assert db.unqueue_trials(study, 3) == 0  # the run of WAITING trials ends at the last one
    assert claimed == [True]
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.WAITING, TrialState.WAITING, TrialState.RUNNING]


def test_unqueueing_whose_commit_an_outage_hid_takes_no_more_off(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hpsearch.storage._optuna import sessions

    study = _study(f"sqlite:///{tmp_path / 'hp.db'}")
    db.queue_trials(study, QUEUED)
    dropped = _drop_after_commit(monkeypatch, sessions.unqueue_from)
    assert db.unqueue_trials(study, 2) == 2
    assert dropped and [t.number for t in study.get_trials()] == [0, 1, 2]


def test_trials_are_queued_only_after_as_many_as_the_caller_counted(
    any_storage_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trials_module, "QUEUE_CHUNK", 2)
    study = _study(any_storage_url)
    db.queue_trials(study, QUEUED[:1])
    assert db.queue_trials(study, QUEUED, after=0) == 0  # another process queued one
    assert len(study.get_trials()) == 1
    assert db.queue_trials(study, QUEUED, after=1) == 5
    assert [t.number for t in study.get_trials()] == list(range(6))
    if any_storage_url.startswith("journal:"):
        return  # queued one at a time: no chunk to interleave
    insert, chunks = trials_module._insert_waiting, []

    def another_queues_after_the_first_chunk(*args: Any, **kwargs: Any) -> bool:
        done = insert(*args, **kwargs)
        chunks.append(done)
        if len(chunks) == 1:
            db.queue_trials(study, QUEUED[:1])  # between our chunks
        return done

    monkeypatch.setattr(trials_module, "_insert_waiting", another_queues_after_the_first_chunk)
    assert db.queue_trials(study, QUEUED, after=6) == 2  # the first chunk, then stopped
    assert len(study.get_trials()) == 9
