"""Storage URLs, heartbeat and retry of dead workers' trials, the artifact store, and checkpoints.

Three kinds of storage, spelled as URLs:

- ``sqlite:///path/to/study.db``: the default, a file beside the study; a few local workers (and a
  dashboard) share it: SQLite waits up to a minute on a locked database.
- ``postgresql+psycopg://user:password@host/dbname``: many workers on many machines.
- ``journal:///path/to/study.journal``: Optuna's journal file, for shared filesystems without a
  database server (``journal://relative.journal`` is relative to the current folder).

Every trial records the process that runs it (system attr ``auxopt:worker``: machine, pid, start
time). A worker on the same machine knows at once when that process is gone (SIGKILL, OOM, a closed
terminal) and retries the trial immediately, on any storage (:func:`fail_gone_local_trials`). Other
machines' trials are judged by a heartbeat (RDB storages: SQLite, PostgreSQL): a trial whose worker
stopped beating for ``grace`` seconds is marked FAIL by the next worker that starts a trial, and a
copy with the same parameters is queued (:class:`RetryDeadTrials`). ``AUXOPT_HEARTBEAT_S``,
``AUXOPT_GRACE_S`` and ``AUXOPT_MAX_RETRY`` change the defaults (30 s, 120 s, 3 retries). Journal
storages have no heartbeat: :func:`reset_running` retries other machines' trials on restart once
the user says that no other worker is alive (``auxopt worker … --reset-running``).

Creating a study and "count the trials, then ask for one" run under :func:`storage_lock`, so that
workers started at the same moment neither race to create the schema nor overshoot the trial count.

Checkpoints go to Optuna's artifact store, a folder beside the storage by default
(:func:`artifact_dir`); :class:`TrialCheckpointStore` is the trainer's
:class:`~auxopt.train.checkpoint.CheckpointStore` for one trial, and finds the checkpoints of the
trials it retries. Storage URLs are only ever shown through :func:`mask_url`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from auxopt.errors import AuxoptError

logger = logging.getLogger("auxopt")

RDB_SCHEMES = ("sqlite", "postgresql", "mysql")
JOURNAL_PREFIX = "journal://"
SQLITE_TIMEOUT_S = 60
HEARTBEAT_S = 30  # a live worker writes a heartbeat this often …
GRACE_S = 120  # … and its trial counts as dead after this long without one
MAX_RETRY = 3  # a trial whose worker dies more often than this stays FAILED
CHECKPOINT_PREFIX = "auxopt-ckpt-step-"
RETRY_ATTR = "retry_history"  # the system attr Optuna's retry callback writes


def default_storage_url(name: str, folder: str | Path = ".") -> str:
    """``sqlite:///<folder>/<name>.db``: the default storage, a file beside the study."""
    return f"sqlite:///{(Path(folder) / f'{name}.db').resolve()}"


def is_journal(url: str) -> bool:
    return isinstance(url, str) and url.startswith(JOURNAL_PREFIX)


def journal_path(url: str) -> Path:
    """The file of a ``journal://`` URL (``journal:///abs/file`` or ``journal://relative/file``)."""
    return Path(url[len(JOURNAL_PREFIX) :]).expanduser().resolve()


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (safe to print and log)."""
    if is_journal(url):
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


def validate_storage_url(url: str) -> str:
    """Check that ``url`` parses as a storage Optuna can use; return it unchanged."""
    if not isinstance(url, str) or not url.strip():
        raise AuxoptError("the storage URL is empty; use e.g. sqlite:///study.db")
    if is_journal(url):
        if not url[len(JOURNAL_PREFIX) :].strip():
            raise AuxoptError("a journal storage needs a file: journal:///path/to/study.journal")
        if not journal_path(url).parent.is_dir():
            raise AuxoptError(f"the folder of the journal file {str(journal_path(url))!r} does not exist")
        return url
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise AuxoptError(
            f"storage URL {mask_url(url)!r} does not parse; use sqlite:///path/to/file.db, "
            "postgresql+psycopg://user:password@host/dbname or journal:///path/to/file.journal"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in RDB_SCHEMES:
        raise AuxoptError(
            f"storage URL {mask_url(url)!r} names the database {backend!r}; auxopt supports "
            f"{', '.join(RDB_SCHEMES)} and journal:// files"
        )
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise AuxoptError("an SQLite storage needs a file: sqlite:///path/to/file.db")
        folder = Path(parsed.database).expanduser().resolve().parent
        if not folder.is_dir():
            raise AuxoptError(f"the folder of the SQLite file {parsed.database!r} does not exist")
    if backend == "postgresql" and parsed.get_driver_name() in ("psycopg", "psycopg2"):
        import importlib.util

        if importlib.util.find_spec(parsed.get_driver_name()) is None:
            raise AuxoptError(
                f"storage URL {mask_url(url)!r} needs the {parsed.get_driver_name()} driver; "
                "install it with: pip install 'auxopt[postgres]'"
            )
    return url


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
            logger.warning("auxopt: trial %d's worker sent no heartbeat for over %d s (it died or lost the "
                           "storage); the trial runs again from its last checkpoint",
                           trial.number, heartbeat_settings()[1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._callback(study, trial)


def retried_trials(trial) -> list[int]:
    """The numbers of the trials ``trial`` retries (oldest first; empty for a fresh trial). Works on a
    live :class:`optuna.Trial` by reading its frozen copy from storage."""
    import optuna

    if isinstance(trial, optuna.Trial):
        trial = trial.storage.get_trial(trial._trial_id)
    return list(trial.system_attrs.get(RETRY_ATTR, []))


def open_storage(url: str, *, heartbeat: bool = True):
    """An Optuna storage for ``url``. RDB storages get the heartbeat and :class:`RetryDeadTrials`
    (``heartbeat=False`` for read-only use); SQLite waits up to a minute on a locked database."""
    import optuna

    validate_storage_url(url)
    if is_journal(url):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(journal_path(url))))
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    elif url.startswith("postgresql"):
        kwargs["engine_kwargs"] = {"pool_pre_ping": True}
    if heartbeat:
        interval, grace = heartbeat_settings()
        kwargs.update(heartbeat_interval=interval, grace_period=grace,
                      heartbeat_stale_trial_callback=RetryDeadTrials())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat
            return optuna.storages.RDBStorage(url, **kwargs)
    except Exception as e:
        if type(e).__module__.startswith("sqlalchemy"):
            reason = str(getattr(e, "orig", e)).strip()[:300]
            if url.startswith("sqlite"):
                from sqlalchemy.engine import make_url

                path = str(Path(make_url(url).database).expanduser().resolve())
                low = reason.lower()
                if "not a database" in low or "malformed" in low or "file is encrypted" in low:
                    hint = "it is not an SQLite database, or it is damaged; give another file name"
                elif "locked" in low or "busy" in low:
                    hint = (f"it is locked by another process (waited {SQLITE_TIMEOUT_S} s); "
                            "wait for it to finish or stop it")
                elif "readonly" in low or "read-only" in low or "permission" in low:
                    hint = "it or its folder is not writable; fix the permissions or use another path"
                else:
                    hint = "check that it is an SQLite database and that it and its folder are writable"
                raise AuxoptError(f"cannot open the SQLite file {path!r}: {hint} (SQLite: {reason})") from None
            raise AuxoptError(
                f"cannot open the storage {mask_url(url)}: {reason}; "
                "check that the server runs and the URL (host, port, user, database) is right"
            ) from None
        raise


def has_heartbeat(storage) -> bool:
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return is_heartbeat_enabled(storage)


def fail_dead_trials(study) -> list[int]:
    """Fail trials whose worker is dead and queue their retries; the numbers of those failed.

    A trial whose worker was a process of this machine that is gone is failed at once, on any
    storage (:func:`fail_gone_local_trials`). Other machines' trials are judged by their heartbeat
    (RDB storages): Optuna's stale trials (a heartbeat older than the grace period) and, besides Optuna's stale trials (a heartbeat older than the grace period), a RUNNING trial that
    never beat and started longer than the grace period ago is dead too: its worker died between
    creating it and its first heartbeat, which Optuna's check never catches. (auxopt workers
    beat once right after ``ask``, under :func:`ask_lock`, so this cannot hit a live one.)"""
    import optuna

    failed = fail_gone_local_trials(study)
    if not has_heartbeat(study._storage):
        return failed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    never_beat = _never_beat(study._storage, study._study_id)
    return failed + (_fail_and_retry(study, never_beat) if never_beat else [])


def _never_beat(storage, study_id: int) -> list[int]:
    """Trial ids of RUNNING trials with no heartbeat row that started over a grace period ago."""
    from datetime import datetime, timedelta

    from optuna.storages._rdb import models
    from optuna.trial import TrialState
    from sqlalchemy import orm as sqlalchemy_orm

    storage = getattr(storage, "_backend", storage)  # Optuna wraps an RDBStorage in a cache
    if not hasattr(storage, "scoped_session"):
        return []
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

    storage = study._storage
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
WORKER_ATTR = "auxopt:worker"  # trial system attr: the process that runs it (see worker_identity)


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
    gone = [t for t in running if local_worker_gone(t.system_attrs.get(WORKER_ATTR))]
    for t in gone:
        logger.warning("auxopt: trial %d's worker (process %s on this machine) is gone; it runs again now",
                       t.number, t.system_attrs[WORKER_ATTR]["pid"])
    return _fail_and_retry(study, [t._trial_id for t in gone], quiet=True) if gone else []


def reset_running(study, max_retry: int | None = None) -> list[int]:
    """Mark every RUNNING trial of ``study`` FAIL and queue its retry; the numbers of the trials
    reset. Only safe when no other worker is alive (a journal storage cannot tell)."""
    import optuna

    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    return _fail_and_retry(study, [t._trial_id for t in running], max_retry, quiet=True)


# -- one worker at a time: creating the study, and "count trials, then ask" ------------------------
_LOCK_ENGINES: dict[str, Any] = {}
_LOCK_KEY = 0x6175786F7074  # "auxopt"


def _lock_file(url: str) -> Path | None:
    if is_journal(url):
        return journal_path(url).with_name(journal_path(url).name + ".auxopt-lock")
    if url.startswith("sqlite"):
        from sqlalchemy.engine import make_url

        db = Path(make_url(url).database).expanduser().resolve()
        return db.with_name(db.name + ".auxopt-lock")
    return None


@contextlib.contextmanager
def storage_lock(url: str, storage=None) -> Iterator[None]:
    """Serialise a critical section across every auxopt process on ``url``: creating the study
    (its schema and tables), and "decide whether another trial is needed, then create it" so that
    a study never gets more trials than asked for. A lock file beside an SQLite or journal file, a
    PostgreSQL advisory lock on a server (through ``storage``'s engine, or an engine of its own
    before the storage exists); other databases: no lock."""
    path = _lock_file(url)
    if path is not None:
        import fcntl

        with open(path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    engine = getattr(getattr(storage, "_backend", storage), "engine", None)  # Optuna's cache wraps it
    if engine is None and url.startswith("postgresql"):
        if url not in _LOCK_ENGINES:
            from sqlalchemy import create_engine

            _LOCK_ENGINES[url] = create_engine(url, pool_pre_ping=True, pool_size=1)
        engine = _LOCK_ENGINES[url]
    if engine is not None and engine.dialect.name == "postgresql":
        from sqlalchemy import text

        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _LOCK_KEY})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
                conn.commit()
        return
    yield


def ask_lock(storage, url: str):
    """:func:`storage_lock` around "count trials, then ask" (the name the worker loop uses)."""
    return storage_lock(url, storage)


# -- artifacts and checkpoints -------------------------------------------------------------------
def artifact_dir(url: str) -> Path | None:
    """The artifact folder beside a SQLite or journal file (``<file>.artifacts``); ``None`` for a
    database server (give a shared folder: ``--artifacts DIR`` or ``AUXOPT_ARTIFACTS``)."""
    if os.environ.get("AUXOPT_ARTIFACTS"):
        return Path(os.environ["AUXOPT_ARTIFACTS"]).expanduser().resolve()
    if is_journal(url):
        path = journal_path(url)
    else:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        if parsed.get_backend_name() != "sqlite" or not parsed.database:
            return None
        path = Path(parsed.database).expanduser().resolve()
    return path.with_name(path.name + ".artifacts")


def artifact_store(folder: str | Path):
    from optuna.artifacts import FileSystemArtifactStore

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(folder))


def _checkpoints(frozen, storage) -> list[tuple[int, str]]:
    """(step, artifact id) of the checkpoints uploaded to one trial, newest first."""
    from optuna.artifacts import get_all_artifact_meta

    found = []
    for meta in get_all_artifact_meta(frozen, storage=storage):
        m = re.fullmatch(re.escape(CHECKPOINT_PREFIX) + r"(\d+)\.pt", meta.filename)
        if m:
            found.append((int(m.group(1)), meta.artifact_id))
    return sorted(found, reverse=True)


class TrialCheckpointStore:
    """Checkpoints of one trial in Optuna's artifact store, recorded on the trial as Optuna's own
    artifacts (:func:`optuna.artifacts.get_all_artifact_meta` and optuna-dashboard list them; read
    back with the artifact store's reader). Keeps the newest ``keep`` of the trial's own; resumes from
    its own or, for a retried trial, from the trials it retries (newest first). The trial's user_attr
    ``checkpoint_step`` names its newest checkpoint.

    A checkpoint is recorded on the trial *before* its file is written (Optuna's ``upload_artifact``
    does the opposite), so that a worker killed at any instant leaves no file that no trial names:
    at worst a record whose file is missing or cut short, which resuming skips (it does not load) and
    :meth:`delete_all` tolerates. Removing a checkpoint's file removes its record too
    (:func:`_forget_artifacts`), so that the dashboard lists only checkpoints that exist."""

    def __init__(self, trial, store, keep: int = 2):
        self.trial, self.store, self.keep = trial, store, keep
        self.storage = trial.storage

    @property
    def label(self) -> str:
        """How messages name the run: ``trial 5`` or ``trial 0 (as trial 5)`` for a retry."""
        retried = retried_trials(self.trial)
        own = f"trial {self.trial.number}"
        return f"trial {retried[0]} (as {own})" if retried else own

    def _trial_ids(self) -> list[int]:
        """This trial and the trials it retries, newest first."""
        study_id = self.trial.study._study_id
        ids = [self.trial._trial_id]
        for number in reversed(retried_trials(self.trial)):
            ids.append(self.storage.get_trial_id_from_study_id_trial_number(study_id, number))
        return ids

    def save(self, step: int, data: bytes) -> None:
        artifact_id = _record_artifact(self.storage, self.trial._trial_id, f"{CHECKPOINT_PREFIX}{step}.pt")
        self.store.write(artifact_id, io.BytesIO(data))
        self.trial.set_user_attr("checkpoint_step", step)
        own = _checkpoints(self.storage.get_trial(self.trial._trial_id), self.storage)
        old = [old_id for _, old_id in own[self.keep :]]
        for old_id in old:
            _remove(self.store, old_id)
        _forget_artifacts(self.storage, self.trial._trial_id, old)  # after the files: none goes unnamed

    def candidates(self) -> Iterator[tuple[int, Any]]:
        seen = set()
        for trial_id in self._trial_ids():
            for step, artifact_id in _checkpoints(self.storage.get_trial(trial_id), self.storage):
                if artifact_id not in seen:
                    seen.add(artifact_id)
                    yield step, _reader(self.store, artifact_id)

    def delete_all(self) -> int:
        """Remove the checkpoints of this trial and of the trials it retries (it has finished)."""
        removed = 0
        for trial_id in self._trial_ids():
            ids = [artifact_id for _, artifact_id in _checkpoints(self.storage.get_trial(trial_id), self.storage)]
            for artifact_id in ids:
                removed += _remove(self.store, artifact_id)
            _forget_artifacts(self.storage, trial_id, ids)
        return removed


def _record_artifact(storage, trial_id: int, filename: str) -> str:
    """Record a new artifact on a trial exactly as ``optuna.artifacts.upload_artifact`` does (a trial
    system attr ``artifacts:<id>`` holding the JSON of an ``ArtifactMeta``), without writing any file;
    returns the new artifact id, under which the caller then writes the file.

    Optuna's private names are used here and only here: ``ARTIFACTS_ATTR_PREFIX`` (the attr key
    prefix that ``get_all_artifact_meta`` and optuna-dashboard read; optuna/artifacts/_upload.py)."""
    import json
    import uuid
    from dataclasses import asdict

    from optuna.artifacts import ArtifactMeta
    from optuna.artifacts._upload import ARTIFACTS_ATTR_PREFIX  # private: see the docstring

    artifact_id = str(uuid.uuid4())
    meta = ArtifactMeta(artifact_id=artifact_id, filename=filename, mimetype="application/octet-stream",
                        encoding=None)
    storage.set_trial_system_attr(trial_id, ARTIFACTS_ATTR_PREFIX + artifact_id, json.dumps(asdict(meta)))
    return artifact_id


def _forget_artifacts(storage, trial_id: int, artifact_ids: list[str]) -> None:
    """Delete the records (trial system attrs ``artifacts:<id>``) of these artifacts of a trial, whose
    files are gone, so that ``get_all_artifact_meta`` and optuna-dashboard stop listing them.

    Optuna's storage API can set a system attr but not delete one (nor touch a finished trial, such
    as the failed trial a retry cleans up after), so on an RDB storage (SQLite, PostgreSQL) this
    deletes the rows through Optuna's private ORM model ``optuna.storages._rdb.models
    .TrialSystemAttributeModel``, and drops them from the copy of a finished trial that Optuna's
    ``_CachedStorage`` (``_backend``, ``_lock``, ``_get_cached_trial``) keeps in this process. Optuna's
    private API is used here and only here. A journal file is append-only and has no operation that
    deletes an attr: there the records stay, and ``auxopt dashboard`` does not list those whose file
    is gone (:func:`auxopt.dashboard.make_app`)."""
    if not artifact_ids:
        return
    from optuna.artifacts._upload import ARTIFACTS_ATTR_PREFIX  # private: see _record_artifact

    backend = getattr(storage, "_backend", storage)  # Optuna wraps an RDBStorage in a cache
    if not hasattr(backend, "scoped_session"):
        return  # a journal (or in-memory) storage
    from optuna.storages._rdb import models

    keys = {ARTIFACTS_ATTR_PREFIX + artifact_id for artifact_id in artifact_ids}
    attr = models.TrialSystemAttributeModel
    session = backend.scoped_session()
    try:
        session.query(attr).filter(attr.trial_id == trial_id, attr.key.in_(sorted(keys))).delete(
            synchronize_session=False)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        backend.scoped_session.remove()
    cached_trial = getattr(storage, "_get_cached_trial", None)
    if backend is not storage and cached_trial is not None:
        with storage._lock:
            frozen = cached_trial(trial_id)  # only finished trials are cached
            if frozen is not None:
                frozen._system_attrs = {k: v for k, v in frozen._system_attrs.items() if k not in keys}


def _reader(store, artifact_id: str):
    def read() -> bytes:
        with store.open_reader(artifact_id) as f:
            return f.read()

    return read


def _remove(store, artifact_id: str) -> int:
    from optuna.artifacts.exceptions import ArtifactNotFound

    try:
        store.remove(artifact_id)
    except ArtifactNotFound:
        return 0
    return 1
