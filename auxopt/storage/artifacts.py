"""Checkpoints in Optuna's artifact store: the store's folder, and one trial's checkpoints.

Checkpoints go to Optuna's artifact store, a folder beside the storage by default
(:func:`artifact_dir`); :class:`TrialCheckpointStore` is the trainer's
:class:`~auxopt.train.checkpoint.CheckpointStore` for one trial, and finds the checkpoints of the
trials it retries. The top module of :mod:`auxopt.storage`: it imports :mod:`~auxopt.storage.urls`
and :mod:`~auxopt.storage.retry`.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from auxopt import _optuna, records
from auxopt.storage.retry import retried_trials
from auxopt.storage.urls import is_journal, journal_path

CHECKPOINT_PREFIX = "auxopt-ckpt-step-"
CHECKPOINT_STEP = records.CHECKPOINT_STEP


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

    def _lineage_ids(self) -> list[int]:
        """This trial and the trials it retries, newest first."""
        study_id = _optuna.study_id(self.trial.study)
        ids = [_optuna.trial_id(self.trial)]
        for number in reversed(retried_trials(self.trial)):
            ids.append(self.storage.get_trial_id_from_study_id_trial_number(study_id, number))
        return ids

    def save(self, step: int, data: bytes) -> None:
        trial_id = _optuna.trial_id(self.trial)
        artifact_id = _record_artifact(self.storage, trial_id, f"{CHECKPOINT_PREFIX}{step}.pt")
        self.store.write(artifact_id, io.BytesIO(data))
        self.trial.set_user_attr(CHECKPOINT_STEP, step)
        own = _checkpoints(self.storage.get_trial(trial_id), self.storage)
        old = [old_id for _, old_id in own[self.keep :]]
        for old_id in old:
            _remove(self.store, old_id)
        _forget_artifacts(self.storage, trial_id, old)  # after the files: none goes unnamed

    def candidates(self) -> Iterator[tuple[int, Any]]:
        seen = set()
        for trial_id in self._lineage_ids():
            for step, artifact_id in _checkpoints(self.storage.get_trial(trial_id), self.storage):
                if artifact_id not in seen:
                    seen.add(artifact_id)
                    yield step, _reader(self.store, artifact_id)

    def delete_all(self) -> int:
        """Remove the checkpoints of this trial and of the trials it retries (it has finished)."""
        removed = 0
        for trial_id in self._lineage_ids():
            ids = [artifact_id for _, artifact_id in _checkpoints(self.storage.get_trial(trial_id), self.storage)]
            for artifact_id in ids:
                removed += _remove(self.store, artifact_id)
            _forget_artifacts(self.storage, trial_id, ids)
        return removed


def _record_artifact(storage, trial_id: int, filename: str) -> str:
    """Record a new artifact on a trial exactly as ``optuna.artifacts.upload_artifact`` does (a trial
    system attr ``artifacts:<id>`` holding the JSON of an ``ArtifactMeta``), without writing any file;
    returns the new artifact id, under which the caller then writes the file. The attr key prefix
    (that ``get_all_artifact_meta`` and optuna-dashboard read) is Optuna's private name:
    :func:`auxopt._optuna.artifacts_attr_prefix`."""
    import json
    import uuid
    from dataclasses import asdict

    from optuna.artifacts import ArtifactMeta

    artifact_id = str(uuid.uuid4())
    meta = ArtifactMeta(artifact_id=artifact_id, filename=filename, mimetype="application/octet-stream", encoding=None)
    storage.set_trial_system_attr(trial_id, _optuna.artifacts_attr_prefix() + artifact_id, json.dumps(asdict(meta)))
    return artifact_id


def _forget_artifacts(storage, trial_id: int, artifact_ids: list[str]) -> None:
    """Delete the records (trial system attrs ``artifacts:<id>``) of these artifacts of a trial, whose
    files are gone, so that ``get_all_artifact_meta`` and optuna-dashboard stop listing them.

    Optuna's storage API can set a system attr but not delete one (nor touch a finished trial, such
    as the failed trial a retry cleans up after), so on an RDB storage (SQLite, PostgreSQL) this
    deletes the rows through Optuna's ORM model ``TrialSystemAttributeModel``
    (:func:`auxopt._optuna.rdb_models`), and drops them from the copy of a finished trial that
    Optuna's cache keeps in this process (:func:`auxopt._optuna.drop_cached_system_attrs`). A journal
    file is append-only and has no operation that deletes an attr: there the records stay, and
    ``auxopt dashboard`` does not list those whose file is gone (:func:`auxopt.dashboard.make_app`)."""
    if not artifact_ids:
        return
    backend = _optuna.rdb_backend(storage)
    if backend is None:
        return  # a journal (or in-memory) storage
    prefix = _optuna.artifacts_attr_prefix()
    keys = sorted({prefix + artifact_id for artifact_id in artifact_ids})
    attr = _optuna.rdb_models().TrialSystemAttributeModel
    session = backend.scoped_session()
    try:
        session.query(attr).filter(attr.trial_id == trial_id, attr.key.in_(keys)).delete(synchronize_session=False)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        backend.scoped_session.remove()
    _optuna.drop_cached_system_attrs(storage, trial_id, keys)


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
