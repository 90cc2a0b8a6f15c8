"""Every use of Optuna's (and optuna-dashboard's) private API, in one place.

auxopt needs a few things Optuna keeps private: a study's storage and id, a trial's storage id, the
trial list without copies, the heartbeat thread, and (for two storage repairs Optuna has no public
operation for) the RDB storage's ORM models and the in-process trial cache. Each is named here
once; the rest of auxopt imports these names and never touches an underscore of Optuna's.
``SUPPORTED`` is the range of Optuna versions they are known to hold for (pyproject.toml pins the
same); :func:`check_version` says so when another one is installed, and
``tests/test_optuna_compat.py`` checks each name against the installed Optuna.
"""

from __future__ import annotations

import warnings
from collections.abc import Container, Sequence
from contextlib import AbstractContextManager
from types import ModuleType
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

SUPPORTED = (5, 6)  # optuna>=5.0,<6
"""Optuna major versions ``[from, to)`` this module is written against."""


def check_version(version: str | None = None) -> bool:
    """Whether ``version`` (default: the installed Optuna's) is in :data:`SUPPORTED`; warns if not."""
    version = version or optuna.__version__
    try:
        major = int(version.split(".")[0])
    except ValueError:
        major = -1
    ok = SUPPORTED[0] <= major < SUPPORTED[1]
    if not ok:
        warnings.warn(
            f"auxopt is written for optuna>={SUPPORTED[0]}.0,<{SUPPORTED[1]}; optuna {version} is installed, "
            "and auxopt's storage repairs may not hold for it",
            stacklevel=2,
        )
    return ok


# -- studies and trials ---------------------------------------------------------------------------
def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage a study object talks to (Optuna wraps an RDB storage in its cache)."""
    return study._storage


def study_id(study: optuna.Study) -> int:
    """A study's id in its storage."""
    return study._study_id


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """A trial's id in its storage (not its number)."""
    return trial._trial_id


def trials_of(
    study: optuna.Study, states: Container[TrialState] | None = None, *, use_cache: bool = True
) -> list[FrozenTrial]:
    """The study's trials without deep copies (do not mutate them); ``use_cache=False`` reads the
    storage again instead of the study's in-process cache."""
    return study._get_trials(deepcopy=False, states=states, use_cache=use_cache)


#: the system attr holding a queued trial's parameters (``Study.enqueue_trial`` writes it; so do
#: auxopt's workers, for the trials they propose)
FIXED_PARAMS = "fixed_params"


def proposed_params(trial: FrozenTrial) -> dict[str, Any]:
    """The parameters a queued trial was proposed with, else those it has suggested so far (a trial
    between its first and last suggestion holds only some of them in ``params``)."""
    return dict(trial.system_attrs.get(FIXED_PARAMS) or trial.params)


# -- heartbeat -------------------------------------------------------------------------------------
def heartbeat_enabled(storage: optuna.storages.BaseStorage) -> bool:
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return is_heartbeat_enabled(storage)


def heartbeat_thread(trial_id: int, storage: optuna.storages.BaseStorage) -> AbstractContextManager[Any]:
    """Optuna's own heartbeat thread for a trial (a no-op where heartbeats are off)."""
    from optuna.storages._heartbeat import get_heartbeat_thread

    return get_heartbeat_thread(trial_id, storage)


# -- RDB storage internals (storage repairs with no public operation) -----------------------------
def rdb_backend(storage: optuna.storages.BaseStorage) -> Any | None:
    """The :class:`optuna.storages.RDBStorage` under Optuna's cache wrapper, or None for a journal
    or in-memory storage."""
    backend = getattr(storage, "_backend", storage)
    return backend if hasattr(backend, "scoped_session") else None


def rdb_models() -> ModuleType:
    """Optuna's ORM models (``TrialModel``, ``TrialSystemAttributeModel``, ...)."""
    from optuna.storages._rdb import models

    return models


def drop_cached_system_attrs(storage: optuna.storages.BaseStorage, trial_id: int, keys: Sequence[str]) -> None:
    """Drop ``keys`` from the copy of a finished trial that Optuna's cache keeps in this process."""
    cached_trial = getattr(storage, "_get_cached_trial", None)
    if getattr(storage, "_backend", None) is None or cached_trial is None:
        return
    drop = set(keys)
    with storage._lock:
        frozen = cached_trial(trial_id)  # only finished trials are cached
        if frozen is not None:
            frozen._system_attrs = {k: v for k, v in frozen._system_attrs.items() if k not in drop}


def artifacts_attr_prefix() -> str:
    """The system-attr key prefix under which Optuna records a trial's artifacts."""
    from optuna.artifacts._upload import ARTIFACTS_ATTR_PREFIX

    return ARTIFACTS_ATTR_PREFIX


def dashboard_artifacts_attr_prefix() -> str:
    """The same prefix as optuna-dashboard names it (the two are the same string today)."""
    from optuna_dashboard.artifact._backend import ARTIFACTS_ATTR_PREFIX

    return ARTIFACTS_ATTR_PREFIX


def dashboard_plotly_graph_objects(system_attrs: dict[str, Any]) -> dict[str, str]:
    """``{graph id: plotly JSON}`` of the figures optuna-dashboard's ``save_plotly_graph_object``
    stored in a study's system attrs (optuna-dashboard has no public reader)."""
    from optuna_dashboard._custom_plot_data import get_plotly_graph_objects

    return get_plotly_graph_objects(system_attrs)
