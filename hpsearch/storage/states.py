"""Groups of Optuna's trial states, the keys of Optuna's own attributes that hpsearch reads,
and the best-first order of completed trials: facts about Optuna's records, no rule of ours.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence

from optuna.study import StudyDirection
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
STARTED = (TrialState.RUNNING, *FINISHED)

# Optuna's own system attributes.
RETRY_HISTORY = "retry_history"  # RetryHeartbeatStaleTrialCallback: the trials this retries
FAILED_TRIAL = "failed_trial"  # RetryHeartbeatStaleTrialCallback: the first trial retried
FIXED_PARAMS = "fixed_params"  # enqueue_trial: the params a queued trial must take


def best_first(directions: Sequence[StudyDirection]) -> Callable[[FrozenTrial], float]:
    """A sort key that puts completed trials best first by their first objective."""
    sign = -1.0 if directions[0] == StudyDirection.MAXIMIZE else 1.0
    return lambda t: sign * t.values[0]
