"""auxopt: Optuna plugins for automated auxiliary learning.

Heavy modules (torch, transformers, optuna) load lazily, so ``import auxopt`` and ``auxopt --help``
stay fast. The training function is ``auxopt.train.train`` (the name ``auxopt.train`` is its
package, so it is not re-exported here).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from auxopt.version import __version__

_EXPORTS = {
    "AuxoptError": "auxopt.errors",
    "ContaminationWarning": "auxopt.tasks",
    "OverlapReport": "auxopt.tasks",
    "check_overlap": "auxopt.tasks",
    "Task": "auxopt.tasks",
    "load_task": "auxopt.tasks",
    "make_synthetic_suite": "auxopt.tasks",
    "TrainConfig": "auxopt.train",
    "TrainResult": "auxopt.train",
    "Objective": "auxopt.objective",
    "StudySpec": "auxopt.study",
    "export": "auxopt.outcome",
    "verify": "auxopt.outcome",
}

__all__ = [
    "AuxoptError",
    "ContaminationWarning",
    "Objective",
    "OverlapReport",
    "StudySpec",
    "Task",
    "TrainConfig",
    "TrainResult",
    "__version__",
    "check_overlap",
    "export",
    "load_task",
    "make_synthetic_suite",
    "verify",
]

if TYPE_CHECKING:  # pragma: no cover
    from auxopt.errors import AuxoptError
    from auxopt.objective import Objective
    from auxopt.outcome import export, verify
    from auxopt.study import StudySpec
    from auxopt.tasks import (
        ContaminationWarning,
        OverlapReport,
        Task,
        check_overlap,
        load_task,
        make_synthetic_suite,
    )
    from auxopt.train import TrainConfig, TrainResult


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'auxopt' has no attribute {name!r}")
