"""Where studies live: storage URLs, heartbeat and retry of dead trials, the ask lock, checkpoints.

One module per job, each importing only those below it:

- :mod:`auxopt.storage.retry`: heartbeat settings, the retry of dead workers' trials, and the
  worker identity each trial records (imports no sibling);
- :mod:`auxopt.storage.urls`: storage URLs (SQLite, journal, PostgreSQL), masking their passwords,
  and :func:`open_storage` (imports ``retry``);
- :mod:`auxopt.storage.lock`: :func:`storage_lock` / :func:`ask_lock`, one worker at a time
  creating the study or asking for a trial (imports ``urls``);
- :mod:`auxopt.storage.artifacts`: Optuna's artifact store and :class:`TrialCheckpointStore`
  (imports ``urls`` and ``retry``).

Everything other modules use is re-exported here: import it from :mod:`auxopt.storage`.
"""

from __future__ import annotations

from auxopt.storage.artifacts import (
    CHECKPOINT_PREFIX,
    CHECKPOINT_STEP,
    TrialCheckpointStore,
    artifact_dir,
    artifact_store,
)
from auxopt.storage.lock import ask_lock, storage_lock
from auxopt.storage.retry import (
    GRACE_S,
    HEARTBEAT_S,
    MAX_RETRY,
    RETRY_ATTR,
    WORKER_ATTR,
    RetryDeadTrials,
    fail_dead_trials,
    fail_gone_local_trials,
    has_heartbeat,
    heartbeat_settings,
    local_worker_gone,
    reset_running,
    retried_trials,
    worker_identity,
)
from auxopt.storage.urls import (
    JOURNAL_PREFIX,
    RDB_SCHEMES,
    SQLITE_TIMEOUT_S,
    default_storage_url,
    is_journal,
    journal_path,
    mask_url,
    open_existing,
    open_storage,
    validate_storage_url,
)

__all__ = [
    "CHECKPOINT_PREFIX",
    "CHECKPOINT_STEP",
    "GRACE_S",
    "HEARTBEAT_S",
    "JOURNAL_PREFIX",
    "MAX_RETRY",
    "RDB_SCHEMES",
    "RETRY_ATTR",
    "SQLITE_TIMEOUT_S",
    "WORKER_ATTR",
    "RetryDeadTrials",
    "TrialCheckpointStore",
    "artifact_dir",
    "artifact_store",
    "ask_lock",
    "default_storage_url",
    "fail_dead_trials",
    "fail_gone_local_trials",
    "has_heartbeat",
    "heartbeat_settings",
    "is_journal",
    "journal_path",
    "local_worker_gone",
    "mask_url",
    "open_existing",
    "open_storage",
    "reset_running",
    "retried_trials",
    "storage_lock",
    "validate_storage_url",
    "worker_identity",
]
