"""Optuna samplers for auxiliary learning.

``BetaBernoulliBandit`` and ``select_tasks`` are pure numpy (the training loop's online schedule
uses them without Optuna); ``ThompsonTaskSampler`` and ``MixingRatioSampler`` (which also needs
BoTorch) load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from auxopt.samplers._bandit import BetaBernoulliBandit, select_tasks

__all__ = ["ThompsonTaskSampler", "MixingRatioSampler", "select_tasks", "BetaBernoulliBandit"]

if TYPE_CHECKING:  # pragma: no cover
    from auxopt.samplers._mixing import MixingRatioSampler
    from auxopt.samplers._thompson import ThompsonTaskSampler


def __getattr__(name: str) -> Any:
    if name == "ThompsonTaskSampler":
        from auxopt.samplers._thompson import ThompsonTaskSampler

        globals()[name] = ThompsonTaskSampler
        return ThompsonTaskSampler
    if name == "MixingRatioSampler":
        from auxopt.samplers._mixing import MixingRatioSampler

        globals()[name] = MixingRatioSampler
        return MixingRatioSampler
    raise AttributeError(f"module 'auxopt.samplers' has no attribute {name!r}")
