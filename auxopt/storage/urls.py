"""Storage URLs: parsing and checking them, masking their passwords, and opening the storage.

Three kinds of storage, spelled as URLs:

- ``sqlite:///path/to/study.db``: the default, a file beside the study; a few local workers (and a
  dashboard) share it: SQLite waits up to a minute on a locked database.
- ``postgresql+psycopg://user:password@host/dbname``: many workers on many machines.
- ``journal:///path/to/study.journal``: Optuna's journal file, for shared filesystems without a
  database server (``journal://relative.journal`` is relative to the current folder).

Storage URLs are only ever shown through :func:`mask_url`. :func:`open_storage` gives RDB storages
the heartbeat and the retry of dead trials (:mod:`auxopt.storage.retry`, the one sibling it imports).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from auxopt import _optuna
from auxopt.errors import AuxoptError
from auxopt.storage.retry import RetryDeadTrials, heartbeat_settings

RDB_SCHEMES = ("sqlite", "postgresql", "mysql")
JOURNAL_PREFIX = "journal://"
SQLITE_TIMEOUT_S = 60

_version_checked = False


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


def _check_optuna_version() -> None:
    """Warn (once per process) when the installed Optuna is outside :data:`auxopt._optuna.SUPPORTED`."""
    global _version_checked
    if not _version_checked:
        _version_checked = True
        _optuna.check_version()


def open_storage(url: str, *, heartbeat: bool = True):
    """An Optuna storage for ``url``. RDB storages get the heartbeat and :class:`RetryDeadTrials`
    (``heartbeat=False`` for read-only use); SQLite waits up to a minute on a locked database."""
    import optuna

    _check_optuna_version()
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
        kwargs.update(heartbeat_interval=interval, grace_period=grace, heartbeat_stale_trial_callback=RetryDeadTrials())
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
                    hint = (
                        f"it is locked by another process (waited {SQLITE_TIMEOUT_S} s); "
                        "wait for it to finish or stop it"
                    )
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


def open_existing(url: str):
    """:func:`open_storage` for a storage that must already exist: an SQLite file or a journal file
    that is not there is an :class:`AuxoptError`, never created."""
    validate_storage_url(url)
    if is_journal(url):
        path = journal_path(url)
    elif url.startswith("sqlite"):
        from sqlalchemy.engine import make_url

        path = Path(make_url(url).database).expanduser()
    else:
        path = None
    if path is not None and not path.is_file():
        raise AuxoptError(
            f"no study database at {mask_url(url)}; run a study first (auxopt run STUDY.py) or check the path"
        )
    return open_storage(url)
