"""Every use of Optuna's private API in hpsearch, behind one door.

hpsearch needs a few things Optuna does not expose: an atomic claim of a WAITING trial that
never creates one, writes batched into one transaction, counts and best trials read by
query on a large study, a storage that waits out database outages, and a worker's trial
cache that skips the queued budget. Nothing outside this package touches a private name of
Optuna; :mod:`hpsearch.storage` re-exports what the other layers call. Optuna is pinned
exactly (``constraints.txt``), and ``tests/storage/test_optuna_contract.py`` checks every
name in :data:`PRIVATE_NAMES` and runs every use on SQLite, PostgreSQL and the journal
storage (overridden methods included: each is shown to be called).

The uses, by module:

- ``trials``: ``Study._storage``, ``Study._study_id``, ``Trial._trial_id`` (ids of a study
  and a trial); ``Study._pop_waiting_trial_id`` (claims on journal and in-memory storages);
  a subclass of ``optuna.storages._cached_storage._CachedStorage`` (its ``_backend``,
  ``_studies``, ``_lock``, ``_trial_id_to_study_id_and_number``,
  ``_study_id_and_number_to_trial_id``: a study's trials forgotten after some were taken
  off the queue, as its ``delete_study`` forgets them; overrides
  ``_read_trials_from_remote_storage`` and ``_add_trials_to_cache``) with ``_StudyInfo``;
  ``RDBStorage._get_trials``; a budget queued many trials a transaction into the ORM tables,
  and a lowered one's last WAITING trials deleted from them (``StudyModel.find_or_raise_by_id``
  locks the study as Optuna's trial creation does).
- ``rdb``: ``ResilientRDBStorage`` overrides ``RDBStorage._create_new_trial`` and
  ``RDBStorage._set_trial_param`` (Optuna's cache calls these, not the public methods) and
  the public ``delete_study`` (through ``sessions``),
  retries ``_get_stale_trial_ids``, ``_get_trials`` and ``_get_best_trial_id``, and swaps
  ``optuna.storages._rdb.storage._VersionManager`` while a storage is set up: a reader's
  builds none unless asked (no Alembic), a writer's overrides ``_create_alembic_script`` so
  that Optuna's migration scripts are read once a process.
- ``sessions``: ``optuna.storages._rdb.models`` (the ORM tables and their metadata: a
  study deleted a table at a time, children first) and
  ``optuna.storages._rdb.storage._create_scoped_session``;
  ``RDBStorage._set_trial_attr_without_commit`` (upserts on other databases).
- ``columns``: trials read as columns from the ORM tables of trials, values, params,
  attributes and intermediate values, with the private columns
  ``TrialModel._datetime_start_utc`` and ``TrialModel._datetime_complete_utc``; what
  ``ResilientRDBStorage.get_all_trials`` (overriding the public method), an export's pages
  and a report's sample read.
- ``queries``: the same private columns; ``RDBStorage._get_trials`` (the best trials); the
  ORM tables of studies, directions, params and values.
- ``copies``: a study copied into another storage: whole trials inserted into the ORM
  tables many a transaction (``sessions.insert_trials``, also what a queued chunk writes),
  the study's row renamed in ``StudyModel``'s table once the copy is whole.
- ``views``: calls and overrides ``Study._get_trials`` (a sampler's window of a study; a
  report's sample of a large one, a view that is also an ``optuna.Study`` for Optuna's
  plots).
"""

from __future__ import annotations

# (module or class path, private attribute): each must exist in the pinned Optuna.
PRIVATE_NAMES: tuple[tuple[str, str], ...] = (
    ("optuna.study.Study", "_get_trials"),
    ("optuna.study.Study", "_pop_waiting_trial_id"),
    ("optuna.storages._cached_storage", "_CachedStorage"),
    ("optuna.storages._cached_storage", "_StudyInfo"),
    ("optuna.storages._cached_storage._CachedStorage", "_read_trials_from_remote_storage"),
    ("optuna.storages._cached_storage._CachedStorage", "_add_trials_to_cache"),
    ("optuna.storages.RDBStorage", "_get_trials"),
    ("optuna.storages.RDBStorage", "_create_new_trial"),
    ("optuna.storages.RDBStorage", "_set_trial_param"),
    ("optuna.storages.RDBStorage", "_get_stale_trial_ids"),
    ("optuna.storages.RDBStorage", "_get_best_trial_id"),
    ("optuna.storages.RDBStorage", "_set_trial_attr_without_commit"),
    ("optuna.storages._rdb.storage", "_VersionManager"),
    ("optuna.storages._rdb.storage._VersionManager", "_create_alembic_script"),
    ("optuna.storages._rdb.storage", "_create_scoped_session"),
    ("optuna.storages._rdb.models.TrialModel", "_datetime_start_utc"),
    ("optuna.storages._rdb.models.TrialModel", "_datetime_complete_utc"),
)
