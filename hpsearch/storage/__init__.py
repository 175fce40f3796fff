"""The storage layer: opening a storage from its URL, waiting out database outages, and
every use of Optuna's private API (:mod:`hpsearch.storage._optuna`), re-exported here.

It owns how trials are stored and read, never what they mean: which trials count against a
budget, what a retry keeps, which attributes a trial carries are the study layer's rules,
passed in as parameters. It imports only :mod:`hpsearch.spec` (a default URL) and
:mod:`hpsearch.errors` of hpsearch, never the study, results, launch or cli layers
(``make lint`` checks).

Modules: ``urls`` (redaction), ``outages`` (what to wait out), ``opening``
(:func:`open_storage`), ``states`` (Optuna's state groups and attribute keys), ``_optuna``
(the private API: claims, batched writes, queries, trials read as columns, copies into
another storage, the worker's cache, the resilient RDB storage).
"""

from __future__ import annotations

from hpsearch.spec.defaults import outage_wait
from hpsearch.spec.defaults import OUTAGE_WAIT_ENV
from hpsearch.storage._optuna.copies import add_trials
from hpsearch.storage._optuna.copies import can_rename
from hpsearch.storage._optuna.copies import create_copy
from hpsearch.storage._optuna.copies import rename_study
from hpsearch.storage._optuna.queries import count_trials
from hpsearch.storage._optuna.queries import param_names
from hpsearch.storage._optuna.queries import retried_numbers
from hpsearch.storage._optuna.queries import sample_trials
from hpsearch.storage._optuna.queries import study_overviews
from hpsearch.storage._optuna.queries import StudyOverview
from hpsearch.storage._optuna.queries import top_trials
from hpsearch.storage._optuna.queries import trial_by_number
from hpsearch.storage._optuna.queries import trial_counts
from hpsearch.storage._optuna.queries import trial_pages
from hpsearch.storage._optuna.queries import TrialCounts
from hpsearch.storage._optuna.queries import user_attr_sum
from hpsearch.storage._optuna.rdb import first_trials
from hpsearch.storage._optuna.rdb import in_or_after_outage
from hpsearch.storage._optuna.rdb import ResilientRDBStorage
from hpsearch.storage._optuna.trials import can_unqueue
from hpsearch.storage._optuna.trials import claim_waiting_trial
from hpsearch.storage._optuna.trials import drop_session
from hpsearch.storage._optuna.trials import fail_running_trial
from hpsearch.storage._optuna.trials import get_trial
from hpsearch.storage._optuna.trials import grace_period
from hpsearch.storage._optuna.trials import heartbeat_interval
from hpsearch.storage._optuna.trials import may_go_stale
from hpsearch.storage._optuna.trials import params_together
from hpsearch.storage._optuna.trials import queue_trials
from hpsearch.storage._optuna.trials import QueuedTrial
from hpsearch.storage._optuna.trials import retry_of
from hpsearch.storage._optuna.trials import set_study_system_attr
from hpsearch.storage._optuna.trials import set_trial_params
from hpsearch.storage._optuna.trials import set_trial_user_attrs
from hpsearch.storage._optuna.trials import stale_trial_callback
from hpsearch.storage._optuna.trials import stale_trial_ids
from hpsearch.storage._optuna.trials import storage_of
from hpsearch.storage._optuna.trials import study_exists
from hpsearch.storage._optuna.trials import study_id
from hpsearch.storage._optuna.trials import study_system_attrs
from hpsearch.storage._optuna.trials import trial_for
from hpsearch.storage._optuna.trials import trial_id
from hpsearch.storage._optuna.trials import unqueue_trials
from hpsearch.storage._optuna.trials import worker_storage
from hpsearch.storage._optuna.views import as_study
from hpsearch.storage._optuna.views import cache_version
from hpsearch.storage._optuna.views import started_trials
from hpsearch.storage._optuna.views import study_key
from hpsearch.storage._optuna.views import study_of_trials
from hpsearch.storage._optuna.views import TrialListView
from hpsearch.storage.opening import check_url
from hpsearch.storage.opening import close_storages
from hpsearch.storage.opening import holds_studies
from hpsearch.storage.opening import open_storage
from hpsearch.storage.opening import preload
from hpsearch.storage.opening import SQLITE_TIMEOUT_S
from hpsearch.storage.opening import storage_file
from hpsearch.storage.outages import disk_full
from hpsearch.storage.outages import transient
from hpsearch.storage.urls import JOURNAL_PREFIX
from hpsearch.storage.urls import redact
from hpsearch.storage.urls import scrub
from hpsearch.storage.urls import secrets_in
from hpsearch.storage.urls import sqlite_path

__all__ = [
    "JOURNAL_PREFIX",
    "OUTAGE_WAIT_ENV",
    "SQLITE_TIMEOUT_S",
    "QueuedTrial",
    "ResilientRDBStorage",
    "StudyOverview",
    "TrialCounts",
    "TrialListView",
    "add_trials",
    "as_study",
    "cache_version",
    "can_rename",
    "can_unqueue",
    "check_url",
    "claim_waiting_trial",
    "close_storages",
    "count_trials",
    "create_copy",
    "disk_full",
    "drop_session",
    "fail_running_trial",
    "first_trials",
    "get_trial",
    "grace_period",
    "heartbeat_interval",
    "holds_studies",
    "in_or_after_outage",
    "may_go_stale",
    "open_storage",
    "outage_wait",
    "param_names",
    "params_together",
    "preload",
    "queue_trials",
    "redact",
    "rename_study",
    "retried_numbers",
    "retry_of",
    "sample_trials",
    "scrub",
    "secrets_in",
    "set_study_system_attr",
    "set_trial_params",
    "set_trial_user_attrs",
    "sqlite_path",
    "stale_trial_callback",
    "stale_trial_ids",
    "started_trials",
    "storage_file",
    "storage_of",
    "study_exists",
    "study_id",
    "study_key",
    "study_of_trials",
    "study_overviews",
    "study_system_attrs",
    "top_trials",
    "transient",
    "trial_by_number",
    "trial_counts",
    "trial_for",
    "trial_id",
    "trial_pages",
    "unqueue_trials",
    "user_attr_sum",
    "worker_storage",
]
