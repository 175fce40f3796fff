"""The budget: which trials count against it, which have finished, and what a retry keeps.

One definition each, whether Python computes it over loaded trials or the database counts
it (:func:`hpsearch.storage.trial_counts`): a trial counts against the budget unless it
FAILed and some trial's retry history names it (Optuna's ``retry_history``, written when a
failed trial is queued again). A trial has *finished* when it is COMPLETE, PRUNED or FAIL
and counts. ``tests/study/test_budget.py`` checks the two ways agree on random mixes.

A study may end before its budget is spent (:func:`stop_reason`): once its best value reaches
``budget.target``, or ``budget.plateau`` trials after its best have not beaten it, or when
``hpsearch stop`` asked its workers to stop (:func:`ask_to_stop`, a request stored with the
study that every worker on every host reads); its queued trials then stay queued, as after a
timeout.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
import dataclasses
from datetime import datetime
from datetime import UTC
import getpass
import operator
import socket
from typing import Any
from typing import TYPE_CHECKING

import optuna
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from hpsearch import storage as db
from hpsearch.storage import TrialCounts
from hpsearch.storage.states import FINISHED
from hpsearch.storage.states import RETRY_HISTORY
from hpsearch.storage.states import STARTED
from hpsearch.study import record

if TYPE_CHECKING:
    from hpsearch.spec.studyfile import StudySpec

MAX_RETRIES = 3  # a trial whose worker died is re-queued at most this often


def counted(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """Trials that use up budget: all but those failed and then queued again as a retry."""
    trials = list(trials)
    again = db.retried_numbers(trials)
    return [t for t in trials if not (t.state == TrialState.FAIL and t.number in again)]


def _sum(counts: TrialCounts, states: tuple[TrialState, ...]) -> int:
    return sum(counts.states.get(s.name, 0) for s in states)


def used(counts: TrialCounts) -> int:
    """Trials that use up budget, in any state: the length of :func:`counted`."""
    return sum(counts.states.values()) - counts.retried_failed


def finished(counts: TrialCounts) -> int:
    """Budget trials that finished: complete, pruned, or failed and not retried."""
    return _sum(counts, FINISHED) - counts.retried_failed


def failed(counts: TrialCounts) -> int:
    """Budget trials that failed: FAIL, less those queued again (a retry took their place)."""
    return counts.states.get(TrialState.FAIL.name, 0) - counts.retried_failed


def started(counts: TrialCounts) -> int:
    """Trials that are not WAITING (retried or not: a seeded sampler moves on past them)."""
    return _sum(counts, STARTED)


def counted_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The study's trials that use up budget (a load of every trial)."""
    return counted(study.get_trials(deepcopy=False))


def finished_count(study: optuna.Study) -> int:
    """Budget trials of the study that have finished (a few queries, no load)."""
    return finished(db.trial_counts(study))


def used_budget(study: optuna.Study) -> int:
    """Trials of the study that use up budget, in any state (a few queries, no load)."""
    return used(db.trial_counts(study))


def _retry(trial: FrozenTrial) -> db.QueuedTrial:
    """Optuna's retry of a failed trial (:func:`hpsearch.storage.retry_of`: a WAITING copy
    with its params and a grown retry history), minus the attempt's attributes: the copy
    keeps only what describes its point (:data:`record.POINT_ATTRS`)."""
    return db.retry_of(trial, record.point_attrs(trial))


@dataclasses.dataclass(frozen=True)
class RetryCleanly:
    """The callback that queues a failed trial again (:func:`_retry`), as Optuna's
    ``RetryHeartbeatStaleTrialCallback(max_retry)`` does: not once its point has been
    retried ``max_retry`` times (``None``: no limit)."""

    max_retry: int | None = None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        again = _retry(trial)
        if self.max_retry is None or len(again.system_attrs[RETRY_HISTORY]) <= self.max_retry:
            db.queue_trials(study, [again])


def requeue(study: optuna.Study, trial_id: int, reason: str) -> bool:
    """Fails a RUNNING trial with ``reason`` and queues a copy of its params.

    Returns:
        ``False`` (and changes nothing) if the trial was no longer RUNNING.
    """
    if not db.fail_running_trial(study, trial_id, record.fail_attrs(reason)):
        return False
    RetryCleanly()(study, db.get_trial(study, trial_id))
    return True


def retry_failed(study: optuna.Study) -> list[int]:
    """Queues again the params of every FAILed trial that was not retried yet, so that they
    count against the budget again (after the cause of the failures was fixed).

    Returns:
        The numbers of the failed trials that were queued again.
    """
    failed = [t for t in counted_trials(study) if t.state == TrialState.FAIL]
    # many a transaction: one each, through Optuna, took 59 s for 10,000 on SQLite
    db.queue_trials(study, [_retry(t) for t in failed])
    return [t.number for t in failed]


REQUESTED = "`hpsearch stop"  # how a stop request's reason starts


def asked(reason: str) -> bool:
    """Whether a :func:`stop_reason` is a ``hpsearch stop`` request (not a study file's
    rule, which only a changed file lifts)."""
    return reason.startswith(REQUESTED)


@dataclasses.dataclass(frozen=True)
class StopRequest:
    """``hpsearch stop``'s request to every worker of a study: claim no more trials (with
    ``now``: also stop the running ones at their next epoch end and queue them again). It
    stands, for workers that join later too, until the study is started again (``run``,
    ``launch`` or ``create``: :func:`withdraw_stop`).

    Attributes:
        at: When it was made (UTC, to the second).
        by: Who made it, ``user@host``.
        now: Whether running trials stop too.
    """

    at: datetime
    by: str
    now: bool = False

    @property
    def command(self) -> str:
        """The command that made it, as a reason quotes it."""
        return "`hpsearch stop --now`" if self.now else "`hpsearch stop`"

    @property
    def reason(self) -> str:
        """What a worker that it stopped says."""
        return f"{self.command} at {self.at:%Y-%m-%d %H:%M:%S} UTC by {self.by}"

    def to_dict(self) -> dict[str, Any]:
        """As stored, and as ``status --format json`` shows it."""
        return {"at": self.at.isoformat(), "by": self.by, "now": self.now}


def _asker() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container's uid without a passwd entry
        user = "?"
    return f"{user}@{socket.gethostname()}"


def ask_to_stop(study: optuna.Study, now: bool = False) -> StopRequest:
    """Asks every worker of ``study``, wherever it runs, to stop (see :class:`StopRequest`);
    a later request replaces an earlier one."""
    request = StopRequest(datetime.now(UTC).replace(microsecond=0), _asker(), now)
    db.set_study_system_attr(study, record.STOP_REQUEST, request.to_dict())
    return request


def stop_request(study: optuna.Study) -> StopRequest | None:
    """The stop request standing for ``study``, or ``None`` (one small query)."""
    return request_in(db.study_system_attrs(study))


def request_in(attrs: Mapping[str, Any]) -> StopRequest | None:
    """The stop request in a study's system attributes (read once for several things), or
    ``None``."""
    doc = attrs.get(record.STOP_REQUEST)
    if not isinstance(doc, dict):
        return None
    try:
        at = datetime.fromisoformat(str(doc.get("at")))
    except ValueError:  # written by hand: still a request
        at = datetime.fromtimestamp(0, UTC)
    return StopRequest(at, str(doc.get("by", "?")), doc.get("now") is True)


def withdraw_stop(study: optuna.Study) -> StopRequest | None:
    """Withdraws the stop request standing for ``study``, and forgets why its workers last
    ended by a rule (:func:`record_end`): the study starts again. Returns the request
    (``None``: there was none)."""
    attrs = db.study_system_attrs(study)
    request = request_in(attrs)
    for key in (record.STOP_REQUEST, record.ENDED):
        if attrs.get(key) is not None:
            db.set_study_system_attr(study, key, None)
    return request


def record_end(study: optuna.Study, reason: str, finished: int) -> None:
    """Remembers why a worker ended the study by a rule of its file (``budget.target``,
    ``budget.plateau``) with ``finished`` trials of its budget finished: ``status``, which
    reads no study file, names it (:func:`end_of`)."""
    db.set_study_system_attr(study, record.ENDED, {"reason": reason, "finished": finished})


def end_of(attrs: Mapping[str, Any], finished: int) -> str | None:
    """Why the study's workers last ended it by a rule, from its system attributes, while
    that holds: ``None`` if no rule ended it, or once more trials have finished than had
    then (it went on)."""
    doc = attrs.get(record.ENDED)
    if not isinstance(doc, dict) or doc.get("finished") != finished:
        return None
    return str(doc.get("reason"))


def stop_reason(
    study: optuna.Study,
    spec: StudySpec,
    own: Iterable[FrozenTrial] = (),
    requests: bool = True,
) -> str | None:
    """Why a study should start no more trials before its budget is spent, or ``None``:
    ``hpsearch stop`` asked (:class:`StopRequest`); its best value reached
    ``budget.target``; or ``budget.plateau`` trials numbered after its best one finished
    (complete or pruned) without beating it.

    The best is the first trial to reach the best value: a later tie does not beat it. Every
    worker asks before it claims, the launcher when its workers have stopped; the answer
    depends on what is stored alone, so all of them agree.

    Args:
        study: The study, read as its caller reads it (a worker's view of other workers'
            trials may be a second old: see :func:`hpsearch.storage.worker_storage`).
        spec: Its study file (``target``, ``plateau``, the direction).
        own: Trials the caller finished itself, newer than its view may be yet.
        requests: Whether a stop request counts (``False``: the study file's rules alone,
            as starting the study again, which withdraws a request, would find them).
    """
    if requests and (request := stop_request(study)) is not None:
        return request.reason
    if spec.target is None and spec.plateau is None:
        return None
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    known = {t.number: t for t in study.get_trials(deepcopy=False, states=finished)}
    known.update((t.number, t) for t in own if t.state in finished)
    trials = [known[n] for n in sorted(known)]
    better = operator.gt if spec.objectives[0].direction == "maximize" else operator.lt
    best: tuple[int, float] | None = None  # its number and value
    for trial in trials:
        value = trial.value if trial.state == TrialState.COMPLETE else None
        if value is not None and (best is None or better(value, best[1])):
            best = (trial.number, value)
    if best is None:
        return None
    number, value = best
    if spec.target is not None and not better(spec.target, value):
        sign = ">=" if spec.objectives[0].direction == "maximize" else "<="
        return f"trial {number} reached budget.target ({value:.4g} {sign} {spec.target:g})"
    after = sum(1 for t in trials if t.number > number)
    if spec.plateau is not None and after >= spec.plateau:
        return (
            f"{after} trials after the best (trial {number}, {value:.4g}) finished without "
            f"beating it (budget.plateau {spec.plateau})"
        )
    return None
