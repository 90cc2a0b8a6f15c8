"""One worker at a time: creating the study, and "count the trials, then ask for one".

Creating a study and "count the trials, then ask for one" run under :func:`storage_lock`, so that
workers started at the same moment neither race to create the schema nor overshoot the trial count.
Imports :mod:`auxopt.storage.urls` only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from auxopt import _optuna
from auxopt.storage.urls import is_journal, journal_path

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
    engine = getattr(_optuna.rdb_backend(storage), "engine", None)  # None: no storage, or not an RDB
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
