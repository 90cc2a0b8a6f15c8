"""Storage URLs: parsing, defaults, and masking credentials for display."""

from __future__ import annotations

from pathlib import Path

from auxopt.errors import AuxoptError

RDB_SCHEMES = ("sqlite", "postgresql", "mysql")
SQLITE_TIMEOUT_S = 60


def default_storage_url(name: str, folder: str | Path = ".") -> str:
    """``sqlite:///<folder>/<name>.db``: the default storage, a file beside the study."""
    return f"sqlite:///{(Path(folder) / f'{name}.db').resolve()}"


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (safe to print and log)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


def validate_storage_url(url: str) -> str:
    """Check that ``url`` parses as a database URL Optuna can use; return it unchanged."""
    if not isinstance(url, str) or not url.strip():
        raise AuxoptError("the storage URL is empty; use e.g. sqlite:///study.db")
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise AuxoptError(
            f"storage URL {mask_url(url)!r} does not parse; use sqlite:///path/to/file.db or "
            "postgresql+psycopg://user:password@host/dbname"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in RDB_SCHEMES:
        raise AuxoptError(
            f"storage URL {mask_url(url)!r} names the database {backend!r}; auxopt supports "
            f"{', '.join(RDB_SCHEMES)}"
        )
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise AuxoptError("an SQLite storage needs a file: sqlite:///path/to/file.db")
        folder = Path(parsed.database).expanduser().resolve().parent
        if not folder.is_dir():
            raise AuxoptError(f"the folder of the SQLite file {parsed.database!r} does not exist")
    return url


def open_storage(url: str):
    """An Optuna storage for ``url``; SQLite waits up to a minute on a locked database."""
    import optuna

    validate_storage_url(url)
    kwargs = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    return optuna.storages.RDBStorage(url, **kwargs)
