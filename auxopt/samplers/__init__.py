"""Optuna samplers for auxiliary learning.

``BetaBernoulliBandit`` and ``select_tasks`` are re-exported from :mod:`auxopt.bandit` (pure
numpy; the training loop's online schedule uses them from there, without Optuna).
``ThompsonTaskSampler``, ``MixingRatioSampler`` (which also needs BoTorch), its default
candidates function ``logei_candidates`` (to wrap in a custom ``candidates_func``), ``UnitCube``
and ``mixing_observations`` load on first use.

Modules: ``_thompson`` (the stage-1 sampler), ``_mixing`` (the stage-2 sampler), ``_cube`` (ratios
↔ unit cube), ``_observations`` (which trials are the GP's data), ``_gp`` (GP fit and acquisition
search).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from auxopt.bandit import BetaBernoulliBandit, select_tasks

__all__ = [
    "ThompsonTaskSampler",
    "MixingRatioSampler",
    "select_tasks",
    "BetaBernoulliBandit",
    "UnitCube",
    "MixingObservations",
    "mixing_observations",
    "logei_candidates",
]

if TYPE_CHECKING:  # pragma: no cover
    from auxopt.samplers._cube import UnitCube
    from auxopt.samplers._gp import logei_candidates
    from auxopt.samplers._mixing import MixingRatioSampler
    from auxopt.samplers._observations import MixingObservations, mixing_observations
    from auxopt.samplers._thompson import ThompsonTaskSampler

_LAZY = {
    "ThompsonTaskSampler": "auxopt.samplers._thompson",
    "MixingRatioSampler": "auxopt.samplers._mixing",
    "UnitCube": "auxopt.samplers._cube",
    "MixingObservations": "auxopt.samplers._observations",
    "mixing_observations": "auxopt.samplers._observations",
    "logei_candidates": "auxopt.samplers._gp",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'auxopt.samplers' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
