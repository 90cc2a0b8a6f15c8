"""Heartbeat and retry of dead workers' trials, and the worker identity every trial records.

Every trial records the process that runs it (system attr :data:`auxopt.records.WORKER`: machine,
pid, start time). A worker on the same machine knows at once when that process is gone (SIGKILL,
OOM, a closed terminal) and retries the trial immediately, on any storage
(:func:`fail_gone_local_trials`). Other machines' trials are judged by a heartbeat (RDB storages:
SQLite, PostgreSQL): a trial whose worker stopped beating for ``grace`` seconds is marked FAIL by the
next worker that starts a trial, and a copy with the same parameters is queued
(:class:`RetryDeadTrials`). ``AUXOPT_HEARTBEAT_S``, ``AUXOPT_GRACE_S`` and ``AUXOPT_MAX_RETRY`` change
the defaults (30 s, 120 s, 3 retries). Journal storages have no heartbeat: :func:`reset_running`
retries other machines' trials on restart once the user says that no other worker is alive
(``auxopt worker … --reset-running``).

The lowest module of :mod:`auxopt.storage`: it imports none of its siblings.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

from auxopt import _optuna, records
from auxopt.errors import AuxoptError

logger = logging.getLogger("auxopt")

HEARTBEAT_S = 30  # a live worker writes a heartbeat this often …
GRACE_S = 120  # … and its trial counts as dead after this long without one
MAX_RETRY = 3  # a trial whose worker dies more often than this stays FAILED
RETRY_ATTR = records.RETRY_HISTORY  # alias: the system attr Optuna's retry callback writes
WORKER_ATTR = records.WORKER  # alias: trial system attr, the process that runs it (see worker_identity)


def _seconds(env: str, default: int) -> int:
    value = os.environ.get(env)
    if value is None:
        return default
    try:
        seconds = int(value)
    except ValueError:
        raise AuxoptError(f"{env} must be a whole number, not {value!r}") from None
    if seconds < 1:
        raise AuxoptError(f"{env} must be at least 1, not {seconds}")
    return seconds


def heartbeat_settings() -> tuple[int, int]:
    """(heartbeat interval, grace period) in seconds: ``AUXOPT_HEARTBEAT_S`` / ``AUXOPT_GRACE_S``
    or 30 s / 120 s."""
    interval = _seconds("AUXOPT_HEARTBEAT_S", HEARTBEAT_S)
    grace = _seconds("AUXOPT_GRACE_S", max(GRACE_S, 2 * interval))
    if grace <= interval:
        raise AuxoptError(f"AUXOPT_GRACE_S ({grace}) must be longer than the heartbeat interval ({interval})")
    return interval, grace


class RetryDeadTrials:
    """Optuna's :class:`~optuna.storages.RetryHeartbeatStaleTrialCallback`: a trial failed because
    its worker died is queued again (WAITING) with the same parameters and user_attrs, at most
    ``max_retry`` times. Its system attr ``retry_history`` lists the trials it retries, oldest first;
    read it with :func:`retried_trials` (Optuna 5's ``retry_history(trial)`` fails on a live
    :class:`~optuna.Trial`, which has no ``system_attrs``)."""

    def __init__(self, max_retry: int | None = None, *, quiet: bool = False):
        from optuna.storages import RetryHeartbeatStaleTrialCallback

        if max_retry is None:
            max_retry = _seconds("AUXOPT_MAX_RETRY", MAX_RETRY)  # a count, read the same way

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ExperimentalWarning
            self._callback = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
        self.max_retry, self.quiet = max_retry, quiet

    def __call__(self, study, trial) -> None:
        if not self.quiet:  # Optuna calls it for a trial whose heartbeat went stale
            logger.warning(
                "auxopt: trial %d's worker sent no heartbeat for over %d s (it died or lost the "
                "storage); the trial runs again from its last checkpoint",
                trial.number,
                heartbeat_settings()[1],
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._callback(study, trial)


def retried_trials(trial) -> list[int]:
    """The numbers of the trials ``trial`` retries (oldest first; empty for a fresh trial). Works on a
    live :class:`optuna.Trial` by reading its frozen copy from storage."""
    import optuna

    if isinstance(trial, optuna.Trial):
        trial = trial.storage.get_trial(_optuna.trial_id(trial))
    return list(trial.system_attrs.get(records.RETRY_HISTORY, []))


def has_heartbeat(storage) -> bool:
    return _optuna.heartbeat_enabled(storage)


def fail_dead_trials(study) -> list[int]:
    """Fail trials whose worker is dead and queue their retries; the numbers of those failed.

    A trial whose worker was a process of this machine that is gone is failed at once, on any
    storage (:func:`fail_gone_local_trials`). Other machines' trials are judged by their heartbeat
    (RDB storages): besides Optuna's stale trials (a heartbeat older than the grace period), a
    RUNNING trial that never beat and started longer than the grace period ago is dead too: its
    worker died between creating it and its first heartbeat, which Optuna's check never catches.
    (auxopt workers beat once right after ``ask``, under :func:`~auxopt.storage.ask_lock`, so this
    cannot hit a live one.)"""
    import optuna

    failed = fail_gone_local_trials(study)
    storage = _optuna.storage_of(study)
    if not has_heartbeat(storage):
        return failed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    never_beat = _never_beat(storage, _optuna.study_id(study))
    return failed + (_fail_and_retry(study, never_beat) if never_beat else [])


def _never_beat(storage, study_id: int) -> list[int]:
    """Trial ids of RUNNING trials with no heartbeat row that started over a grace period ago."""
    from datetime import datetime, timedelta

    from optuna.trial import TrialState
    from sqlalchemy import orm as sqlalchemy_orm

    storage = _optuna.rdb_backend(storage)
    if storage is None:
        return []
    models = _optuna.rdb_models()
    grace = timedelta(seconds=storage.grace_period or 2 * storage.get_heartbeat_interval())
    session = storage.scoped_session()
    try:
        rows = [
            (trial.trial_id, trial.datetime_start)
            for trial in session.query(models.TrialModel)
            .options(sqlalchemy_orm.selectinload(models.TrialModel.heartbeats))
            .filter(models.TrialModel.study_id == study_id, models.TrialModel.state == TrialState.RUNNING)
            .all()
            if not trial.heartbeats
        ]
        session.commit()
    finally:
        storage.scoped_session.remove()
    now = datetime.now()  # datetime_start is the creating worker's local time
    return [trial_id for trial_id, start in rows if start is None or now - start > grace]


def _fail_and_retry(study, trial_ids: list[int], max_retry: int | None = None, *, quiet: bool = False) -> list[int]:
    """Mark these RUNNING trials FAIL and queue their retries; the numbers of those it changed."""
    import copy

    import optuna

    storage = _optuna.storage_of(study)
    retry = RetryDeadTrials(max_retry, quiet=quiet)
    changed = []
    for trial_id in trial_ids:
        try:
            if not storage.set_trial_state_values(trial_id, state=optuna.trial.TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        frozen = copy.deepcopy(storage.get_trial(trial_id))
        retry(study, frozen)
        changed.append(frozen.number)
    return changed


# -- which process holds a trial: dead local workers are known at once ---------------------------
def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _machine() -> str:
    """This machine and PID namespace: host name, boot id and the PID namespace's inode (two
    containers on one host can share a host name but not a PID namespace)."""
    import socket

    try:
        ns = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        ns = ""
    return f"{socket.gethostname()}/{_read('/proc/sys/kernel/random/boot_id')[:8]}/{ns}"


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, from /proc; "" where /proc is
    missing); None when no such process exists."""
    stat = _read(f"/proc/{pid}/stat")
    if stat:
        return stat.rsplit(")", 1)[-1].split()[19]  # field 22, after the command name
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return ""
    return "" if not Path("/proc").is_dir() else None


def worker_identity(pid: int | None = None) -> dict[str, Any]:
    """``{"machine", "pid", "start"}`` of this process: what a trial records about its worker."""
    pid = os.getpid() if pid is None else pid
    return {"machine": _machine(), "pid": pid, "start": _start_time(pid) or ""}


def local_worker_gone(identity: Any) -> bool:
    """Whether ``identity`` (a :func:`worker_identity`) names a process of this machine that no
    longer runs (exited, or its pid now belongs to another process). Other machines' workers:
    False — only their heartbeat can tell."""
    if not isinstance(identity, dict) or identity.get("machine") != _machine():
        return False
    try:
        pid = int(identity["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    if pid == os.getpid():
        return False
    start = _start_time(pid)
    return start is None or bool(identity.get("start") and start and start != identity["start"])


def fail_gone_local_trials(study) -> list[int]:
    """Fail the RUNNING trials whose worker was a process of this machine that is gone, and queue
    their retries at once (any storage, journal files included): no heartbeat grace to wait out."""
    import optuna

    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    gone = [t for t in running if local_worker_gone(t.system_attrs.get(records.WORKER))]
    for t in gone:
        logger.warning(
            "auxopt: trial %d's worker (process %s on this machine) is gone; it runs again now",
            t.number,
            t.system_attrs[records.WORKER]["pid"],
        )
    return _fail_and_retry(study, [_optuna.trial_id(t) for t in gone], quiet=True) if gone else []


def reset_running(study, max_retry: int | None = None) -> list[int]:
    """Mark every RUNNING trial of ``study`` FAIL and queue its retry; the numbers of the trials
    reset. Only safe when no other worker is alive (a journal storage cannot tell)."""
    import optuna

    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    return _fail_and_retry(study, [_optuna.trial_id(t) for t in running], max_retry, quiet=True)
