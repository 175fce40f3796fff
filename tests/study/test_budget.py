"""One definition of "counted against the budget" and of "finished": the database's counts
(hpsearch.storage.trial_counts, a few queries) and the Python rule over loaded trials
(hpsearch.study.budget.counted) agree on random mixes of states and retries, including
retry histories that name trials which did not fail."""

from __future__ import annotations

import random

import optuna
from optuna.trial import TrialState
import pytest

from hpsearch import storage as db
from hpsearch.storage import open_storage
from hpsearch.storage.states import FINISHED
from hpsearch.storage.states import RETRY_HISTORY
from hpsearch.study import budget

STATES = [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING]


def _random_study(url: str, seed: int) -> optuna.Study:
    rng = random.Random(seed)
    study = optuna.create_study(study_name=f"s{seed}", storage=open_storage(url, create=True))
    n = rng.randint(0, 25)
    for number in range(n):
        state = rng.choice(STATES)
        # a retry names earlier trials: failed ones mostly, any state sometimes
        earlier = rng.sample(range(number), k=min(number, rng.choice([0, 0, 1, 2])))
        trial = optuna.trial.create_trial(
            state=state,
            value=rng.random() if state == TrialState.COMPLETE else None,
            system_attrs={RETRY_HISTORY: earlier} if earlier else {},
        )
        study.add_trial(trial)
    for _ in range(rng.randint(0, 4)):
        study.enqueue_trial({})  # WAITING
    return study


@pytest.mark.parametrize("seed", range(30))
def test_sql_counts_and_the_python_rule_agree(any_storage_url: str, seed: int) -> None:
    study = _random_study(any_storage_url, seed)
    trials = study.get_trials(deepcopy=False)
    counted = budget.counted(trials)
    counts = db.trial_counts(study)
    loaded = db.count_trials(trials)  # the database counts what a load counts
    assert (counts.states, counts.retried, counts.retried_failed) == (
        loaded.states,
        loaded.retried,
        loaded.retried_failed,
    )
    assert budget.used(counts) == len(counted) == budget.used_budget(study)
    finished = [t for t in counted if t.state in FINISHED]
    assert budget.finished(counts) == len(finished) == budget.finished_count(study)
    assert budget.started(counts) == sum(t.state != TrialState.WAITING for t in trials)


def test_a_retry_of_a_trial_that_did_not_fail_takes_nothing_off_the_budget(
    any_storage_url: str,
) -> None:
    # The two definitions once agreed only while every retried number was a FAIL trial.
    study = optuna.create_study(storage=open_storage(any_storage_url, create=True))
    study.add_trial(optuna.trial.create_trial(state=TrialState.COMPLETE, value=1.0))
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))
    retry = optuna.trial.create_trial(
        state=TrialState.COMPLETE, value=2.0, system_attrs={RETRY_HISTORY: [0, 1]}
    )
    study.add_trial(retry)
    assert budget.used_budget(study) == 2 and budget.finished_count(study) == 2


def test_a_stale_trial_is_retried_with_its_point_at_most_max_retry_times(
    any_storage_url: str,
) -> None:
    study = optuna.create_study(study_name="r", storage=open_storage(any_storage_url, create=True))
    study.enqueue_trial({"x": 0.5}, user_attrs={"ofat_factor": "x", "ofat_value": 0.5})
    retry = budget.RetryCleanly(max_retry=2)
    for attempt in range(3):
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        trial.set_user_attr("curves", [1.0])  # the attempt's: not carried to the copy
        study.tell(trial, state=TrialState.FAIL)
        retry(study, study.get_trials()[-1])
        copies = study.get_trials(states=(TrialState.WAITING,))
        if attempt == 2:  # the point has been retried twice: no third copy
            assert copies == []
            break
        assert len(copies) == 1 and copies[0].params == {"x": 0.5}
        assert copies[0].user_attrs == {"ofat_factor": "x", "ofat_value": 0.5}
        assert copies[0].system_attrs[RETRY_HISTORY] == list(range(attempt + 1))
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL] * 3
