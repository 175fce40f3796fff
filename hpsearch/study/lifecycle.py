"""A study's life on its storage: opening it, creating or resuming it (its definition and
labels stored, a changed definition refused), queueing its budget, copying it into another
storage, deleting it.

Only the process that creates or resumes a study queues trials (:func:`top_up`); workers
only claim them (:mod:`hpsearch.study.worker`), so the budget is exact across any number of
processes and hosts.
"""

from __future__ import annotations

from collections.abc import Mapping
import contextlib
import dataclasses
import logging
from pathlib import Path
from typing import Any
import warnings

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

import hpsearch
from hpsearch import storage as db
from hpsearch.errors import ConfigError
from hpsearch.errors import StorageError
from hpsearch.spec.config import TrainConfig
from hpsearch.spec.datasource import DataSource
from hpsearch.spec.datasource import fingerprint
from hpsearch.spec.datasource import fingerprint_changes
from hpsearch.spec.space import point_key
from hpsearch.spec.studyfile import definition_changes
from hpsearch.spec.studyfile import StudySpec
from hpsearch.storage import open_storage
from hpsearch.storage import redact
from hpsearch.study import budget
from hpsearch.study import record
from hpsearch.study.budget import MAX_RETRIES
from hpsearch.study.budget import RetryCleanly
from hpsearch.study.samplers import make_pruner
from hpsearch.study.samplers import make_sampler

_log = logging.getLogger(__name__)

# Optuna's own lines ("Using an existing study ...", "Trial 3 finished ...") on stderr: every
# command that creates, resumes or runs a study says what happened in its own words
optuna.logging.set_verbosity(optuna.logging.WARNING)


def open_spec_storage(spec: StudySpec, create: bool = False, wait: bool = False) -> BaseStorage:
    """Opens the storage a study file names, with its heartbeat settings, for writing.

    Args:
        spec: The study file.
        create: Whether a missing SQLite file may be created (when creating the study).
        wait: Wait out an outage while opening (a worker joining an existing study).
    """
    return open_storage(
        spec.storage,
        heartbeat_interval=spec.heartbeat_interval,
        grace_period=spec.grace_period,
        create=create,
        on_stale=RetryCleanly(MAX_RETRIES),
        wait=wait,
    )


def create_study(
    spec: StudySpec,
    storage: BaseStorage,
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
) -> optuna.Study:
    """Creates the study, or loads it if it exists with the same objectives.

    Args:
        spec: The study file.
        storage: Its opened storage.
        sampler: The file's sampler, if already built (:func:`make_sampler`).
        pruner: The file's pruner, if already built (:func:`make_pruner`).

    Raises:
        StorageError: A study of that name exists with other directions.
    """
    study = optuna.create_study(
        study_name=spec.name,
        storage=storage,
        sampler=make_sampler(spec) if sampler is None else sampler,
        pruner=make_pruner(spec) if pruner is None else pruner,
        directions=[optuna.study.StudyDirection[d.upper()] for d in spec.directions],
        load_if_exists=True,
    )
    _check_directions(study, spec)
    check_definition(study, spec)
    if record.study_summary(study) is None:
        record_study(study, spec, hpsearch.__version__)
    label_study(study, spec)
    return study


def _check_directions(study: optuna.Study, spec: StudySpec) -> None:
    existing = [d.name.lower() for d in study.directions]
    if existing != spec.directions:
        raise StorageError(
            f"study {spec.name!r} already exists in {redact(spec.storage)} with directions "
            f"{existing}, not {spec.directions}: pick another name or delete it"
        )


def check_definition(
    study: optuna.Study, spec: StudySpec, compare_data: bool = True, store: bool = True
) -> None:
    """Refuses to resume a study whose file now defines its values differently.

    A changed space, objective, data set or fixed trainer setting would make new trials
    incomparable with the stored ones (or fail outright: Optuna refuses a categorical
    parameter with other choices). The first run stores the definition; later runs compare.

    Args:
        study: The study.
        spec: The study file.
        compare_data: Also compare a user's data with its stored fingerprint (each file
            hashed: a caller that compared it already in this process passes ``False``).
        store: Store the definition and data fingerprint of a study that has none yet
            (``False``: compare only, writing nothing).

    Raises:
        ConfigError: Each changed key, ``old -> new``; a changed data file.
    """
    attrs = db.study_system_attrs(study)
    if compare_data:
        _check_data(study, spec, attrs.get(record.DATA), store)
    stored = attrs.get(record.DEFINITION)
    current = spec.definition()
    if stored is None:  # a new study, or one created before definitions were stored
        if store:
            db.set_study_system_attr(study, record.DEFINITION, current)
        return
    # A trainer setting added to hpsearch after the study was created changes nothing
    # while it keeps its default.
    defaults = TrainConfig().to_dict()
    old_fixed = stored.get("fixed", {})
    current["fixed"] = {
        k: v for k, v in current["fixed"].items() if k in old_fixed or v != defaults.get(k)
    }
    changes = definition_changes(stored, current)
    if changes:
        raise ConfigError(
            [
                f"study {spec.name!r} in {redact(spec.storage)} was created with another "
                "definition; new trials would not be comparable with its trials:",
                *(f"  {change}" for change in changes),
                "give the changed study a new `name:` (or delete the old one with "
                "`hpsearch delete`)",
            ],
            spec.path,
        )


def _check_data(study: optuna.Study, spec: StudySpec, stored: Any, store: bool) -> None:
    """Refuses to resume a study on a user's data set whose files changed (compared by
    content: a moved file with the same rows is the same data); stores the fingerprint of a
    new study's data (with ``store``)."""
    source = spec.base.dataset
    if not isinstance(source, DataSource):
        return
    current = fingerprint(source)
    if stored is None:
        if store:
            db.set_study_system_attr(study, record.DATA, current)
        return
    changes = fingerprint_changes(stored, current)
    if changes:
        raise ConfigError(
            [
                f"study {spec.name!r} in {redact(spec.storage)} was created on other data; new "
                "trials would not be comparable with its trials:",
                *(f"  {change}" for change in changes),
                "give the study on the new data a new `name:` (or delete the old one with "
                "`hpsearch delete`)",
            ],
            spec.path,
        )


def load_existing_study(
    spec: StudySpec, storage: BaseStorage, compare_data: bool = True
) -> optuna.Study:
    """Loads an existing study with the file's sampler and pruner, its definition checked
    (see :func:`check_definition`).

    Raises:
        StorageError: There is no such study in the storage.
    """
    try:
        study = optuna.load_study(
            study_name=spec.name,
            storage=storage,
            sampler=make_sampler(spec),
            pruner=make_pruner(spec),
        )
    except KeyError as e:
        raise StorageError(
            f"no study {spec.name!r} in {redact(spec.storage)}: create it with "
            "`hpsearch create` (workers join later), `hpsearch run` or `hpsearch launch`"
        ) from e
    check_definition(study, spec, compare_data)
    return study


def preflight(spec: StudySpec, train: bool = True) -> StudySpec:
    """Checks, before anything is queued or claimed, that this process can run the study's
    trials: its data set loads and passes its checks, its device exists, and one batch of its
    fixed settings trains (unless ``train`` is ``False``: the data alone).

    Returns:
        The spec fitted to its data's task (inferred from a user's data where the file does
        not name it; see :meth:`StudySpec.for_task`): what the study runs.

    Raises:
        HPSearchError: Naming what is missing (device, data files), what is wrong in the
            data (file, row, column), or what failed.
    """
    fitted = fit_task(spec)  # bad data is refused before torch loads
    # torch only here: creating, resuming and deleting a study must not load it
    from hpsearch.training.trainer import preflight as preflight_config

    preflight_config(fitted.base, train)
    return fitted


def fit_task(spec: StudySpec) -> StudySpec:
    """The spec fitted to its data's task (read from a user's data where the file does not
    name it: every problem in the data is found here); no torch.

    Raises:
        DataError: The data cannot be read or fails a check.
        ConfigError: The file's loss or objective does not fit the task.
    """
    from hpsearch.training.sources import check_data  # reads the data: only when needed

    return spec.for_task(check_data(spec.base.dataset, spec.base.val_fraction))


def data_line(spec: StudySpec) -> str | None:
    """A user's data set, its task and split sizes, in one line (``None`` for a built-in)."""
    from hpsearch.training.sources import describe

    source = spec.base.dataset
    if not isinstance(source, DataSource):
        return None
    return describe(source, spec.base.val_fraction, tuple(o.metric for o in spec.objectives))


def top_up(study: optuna.Study, spec: StudySpec) -> int:
    """Queues WAITING trials for whatever the budget still lacks, or takes those queued
    beyond a lowered budget (``--trials 3`` on a study that queued 40) off the queue, the last
    queued first.

    Only the process that creates or resumes a study calls this; workers never do. Two
    processes starting the same study at once (``launch`` on two hosts) do not both fill
    the gap: the trials are queued only while the study holds as many trials as were
    counted to choose them (checked under the study's lock); else they are counted and
    chosen again.

    Returns:
        How many trials it queued; negative: how many it took off the queue. A journal
        storage cannot take a trial off (it only appends): a warning says how many stay.
    """
    queued = 0
    for _ in range(TOP_UP_ATTEMPTS):
        counts = db.trial_counts(study)
        room = spec.budget() - budget.used(counts)
        if room < 0:
            return queued - _take_off(study, spec, -room, _waiting(counts))
        missing, left = _missing(study, spec, room)
        done = db.queue_trials(study, missing, after=sum(counts.states.values()))
        queued += done
        if done == len(missing):
            if left:
                _log.warning(
                    "%s: %d of its start_with points not queued: its budget of %d trials has "
                    "no room left for them (--trials raises it)",
                    spec.name,
                    left,
                    spec.budget(),
                )
            return queued
        # another process queued or took off trials meanwhile: count again
    raise StorageError(
        f"study {spec.name!r} in {redact(spec.storage)}: its trials kept changing while its "
        f"budget was queued ({TOP_UP_ATTEMPTS} attempts); start it again"
    )


# Counts and queues of a start, each undone by another process's queueing in between: each
# such process makes progress, so a few suffice; a bound, not a hang, if one never stops.
TOP_UP_ATTEMPTS = 100


def _take_off(study: optuna.Study, spec: StudySpec, surplus: int, waiting: int) -> int:
    """Takes up to ``surplus`` of the ``waiting`` queued trials off (a lowered budget);
    returns how many."""
    if db.can_unqueue(study):
        return db.unqueue_trials(study, surplus)
    if waiting:
        _log.warning(
            "%s: budget %d, but %d queued trials beyond it stay queued and will run: "
            "%s cannot take a trial off its queue",
            spec.name,
            spec.budget(),
            min(waiting, surplus),
            redact(spec.storage),
        )
    return 0


def _waiting(counts: db.TrialCounts) -> int:
    return counts.states.get(TrialState.WAITING.name, 0)


def _missing(study: optuna.Study, spec: StudySpec, room: int) -> tuple[list[db.QueuedTrial], int]:
    """The trials to queue for ``room`` more: the file's known points that no trial holds
    yet, then blank ones; or a grid's or one-factor study's points that no counted trial
    holds yet. Also how many known points are left out for want of room."""
    if not spec.is_finite:
        starts = [db.QueuedTrial(p) for p in _starts_left(study, spec)]
        room = max(room, 0)
        return starts[:room] + [db.QueuedTrial()] * (room - len(starts)), len(starts[room:])
    if room <= 0:
        return [], 0
    counted = budget.counted_trials(study)  # a grid's or one-factor study's points
    done = {point_key(record.fixed_params(t)) for t in counted}
    missing = [pt for pt in spec.points() if point_key(pt[2]) not in done][:room]
    return [db.QueuedTrial(p, record.one_factor_attrs(f, v)) for f, v, p in missing], 0


def _starts_left(study: optuna.Study, spec: StudySpec) -> list[Mapping[str, Any]]:
    """The file's ``start_with`` points that no trial was queued with: each is queued once
    in a study's life (a failed one is queued again by ``retry``, not by a start)."""
    if not spec.start_points:
        return []  # no load of every trial
    held = {point_key(record.fixed_params(t)) for t in study.get_trials(deepcopy=False)}
    return [p for p in spec.start_points if point_key(p) not in held]


@dataclasses.dataclass(frozen=True)
class Plan:
    """What starting a study file (``run``, ``create``, ``launch``) would find and do now.

    Attributes:
        counts: The stored study's trials by state; ``None``: there is no such study yet.
        change: Trials it would queue; negative: take off the queue (a lowered budget).
        starts: How many of those it queues are ``start_with`` points (queued first).
        left: How many ``start_with`` points it leaves out for want of room in the budget.
        stopped: Why its workers would start no trial: the stored study ends early already
            (:func:`hpsearch.study.budget.stop_reason`), or ``None``.
        request: A ``hpsearch stop`` request that starting the study would withdraw.
    """

    counts: db.TrialCounts | None
    change: int
    starts: int = 0
    left: int = 0
    stopped: str | None = None
    request: budget.StopRequest | None = None


def plan(spec: StudySpec) -> Plan:
    """What starting ``spec`` would find in its storage and queue there, found by reading
    only: nothing is created or written, not even a missing SQLite file.

    Raises:
        StorageError: The storage would refuse the study (another tool's database, a server
            that does not answer), or it holds the study with other directions.
        ConfigError: The file's sampler or pruner options, which Optuna refuses together; a
            stored study with another definition, or on other data.
    """
    sampler, pruner = make_sampler(spec), make_pruner(spec)  # as a start refuses them
    fit = min(len(spec.start_points), spec.budget())
    new = Plan(None, spec.budget(), fit, len(spec.start_points) - fit)
    if not db.holds_studies(spec.storage):
        return new
    storage = open_storage(spec.storage, read_only=True)
    try:
        study = optuna.load_study(
            study_name=spec.name, storage=storage, sampler=sampler, pruner=pruner
        )
    except KeyError:
        return new
    _check_directions(study, spec)
    check_definition(study, spec, store=False)
    counts = db.trial_counts(study)
    room = spec.budget() - budget.used(counts)
    stopped = budget.stop_reason(study, spec, requests=False)  # starting withdraws one
    request = budget.stop_request(study)
    if room < 0:  # at most what waits; none where the storage cannot take one off (a journal)
        change = -min(-room, _waiting(counts)) if db.can_unqueue(study) else 0
        return Plan(counts, change, stopped=stopped, request=request)
    missing, left = _missing(study, spec, room)
    starts = 0 if spec.is_finite else sum(1 for trial in missing if trial.params)
    return Plan(counts, len(missing), starts, left, stopped, request)


def prepare(spec: StudySpec) -> tuple[BaseStorage, optuna.Study, int]:
    """Opens the storage, creates or loads the study, withdraws a stop request standing for
    it (starting it is asking it to go on: :func:`hpsearch.study.budget.withdraw_stop`) and
    tops up its budget.

    Raises:
        ConfigError: The file's sampler or pruner options, which Optuna refuses together,
            before a database exists.
    """
    sampler, pruner = make_sampler(spec), make_pruner(spec)  # refused before a file exists
    storage = open_spec_storage(spec, create=True)
    study = create_study(spec, storage, sampler, pruner)
    if (request := budget.withdraw_stop(study)) is not None:
        # said, not logged at info: whoever asked may not be whoever starts it again
        _log.warning("study %s: withdrew the stop request (%s)", spec.name, request.reason)
    return storage, study, top_up(study, spec)


def check_not_deleted(study: optuna.Study, who: str) -> None:
    """Refuses to go on with a study that was deleted (``hpsearch delete``) while ``who``
    (this worker, the launch) ran it: its trials' records are gone, and every write fails.

    Raises:
        StorageError: Saying so, in one line.
    """
    if not db.study_exists(study):
        raise StorageError(
            f"study {study.study_name!r} was deleted while {who} ran it; {who} stopped"
        )


def delete_study(study: optuna.Study) -> None:
    """Deletes a study and all its trials from its storage."""
    optuna.delete_study(study_name=study.study_name, storage=db.storage_of(study))


COPY_PAGE = 500  # whole trials read from the source at a time


@dataclasses.dataclass(frozen=True)
class Copied:
    """A study copied into another storage (:func:`copy_study`).

    Attributes:
        study: The copy, opened in its storage.
        trials: How many trials it holds: the source's, and a queued copy of each running one.
        requeued: The numbers of the trials that were running in the source: failed in the
            copy and queued again, as a trial whose worker stopped is (their workers still
            write to the source, not to the copy).
    """

    study: optuna.Study
    trials: int
    requeued: tuple[int, ...]


def copy_study(study: optuna.Study, url: str, name: str | None = None) -> Copied:
    """Copies a study, every trial of it, into the storage at ``url``, to be resumed there
    (from SQLite to PostgreSQL for many hosts, or into another file).

    Every trial keeps its number, state, values, params, curves and attributes, and the
    study its directions and records (its definition, its data's fingerprint): a start of
    the same study file on the new storage resumes it as it would have resumed the source.
    A trial running in the source is failed in the copy and queued again. On a database the
    copy is written under a passing name and takes ``name`` once whole; whatever stops it
    (an error, Ctrl-C) deletes what it wrote, and a database file it created.

    Args:
        study: The study to copy (opened for reading).
        url: The storage to copy it into; a SQLite or journal file is created if missing.
        name: The copy's name (default: the study's).

    Raises:
        StorageError: ``url`` cannot be opened, or holds a study of that name.
    """
    name = name or study.study_name
    file = db.storage_file(url)
    created = file is not None and not file.exists()
    storage = open_storage(url, create=True)
    taken = StorageError(
        f"{redact(url)} already holds a study {name!r}: copy it under another name with "
        "--name, or delete that one first"
    )
    if name in {s.study_name for s in storage.get_all_studies()}:
        raise taken
    copy: optuna.Study | None = None
    try:
        passing = record.copying_name(name) if db.can_rename(storage) else name
        copy = db.create_copy(study, storage, passing)
        trials, running = 0, []
        for page in db.trial_pages(study, by_value=False, size=COPY_PAGE, user_keys=None):
            ids = db.add_trials(copy, page)
            trials += len(page)
            running += [
                (t.number, i)
                for t, i in zip(page, ids, strict=True)
                if t.state == TrialState.RUNNING
            ]
        for _, trial_id in running:
            budget.requeue(copy, trial_id, "running in the source storage when it was copied")
        if passing != name and not db.rename_study(copy, name):
            raise taken  # created there while this copy was written
    except BaseException:
        _discard(copy, file if created else None)
        raise
    copied = optuna.load_study(study_name=name, storage=storage)
    return Copied(copied, trials + len(running), tuple(n for n, _ in running))


def _discard(copy: optuna.Study | None, file: Path | None) -> None:
    """Deletes a copy stopped half way, and the database file it created."""
    with contextlib.suppress(Exception):  # already gone, or the storage itself failed
        if copy is not None:
            delete_study(copy)
    if file is not None:
        db.close_storages()
        for path in (file, *(file.with_name(file.name + s) for s in ("-wal", "-shm"))):
            path.unlink(missing_ok=True)


def record_study(study: optuna.Study, spec: StudySpec, version: str) -> None:
    """Stores the :class:`record.StudySummary` (and the file's base config) with a study."""
    db.set_study_system_attr(
        study,
        record.STUDY_SUMMARY,
        {
            "file": spec.path,
            "sampler": spec.sampler,
            "sampler_options": dict(spec.sampler_options),
            "pruner": spec.pruner,
            "objectives": [vars(o) for o in spec.objectives],
            "base_config": spec.base.to_dict(),
            "params": [p.name for p in spec.space.params],
            "version": version,
        },
    )


def label_study(study: optuna.Study, spec: StudySpec) -> None:
    """Names the objectives (so optuna-dashboard and Optuna's plots say ``val_accuracy``, not
    "Objective 0") and stores the file's main settings as flat, readable user attributes
    (:func:`record.study_labels`); only what is missing or changed, so a resume labels a study
    created before labels existed."""
    names = [o.metric for o in spec.objectives]
    if study.metric_names != names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(names)
    stored = study.user_attrs
    for key, value in record.study_labels(spec).items():
        if stored.get(key) != value:
            study.set_user_attr(key, value)
