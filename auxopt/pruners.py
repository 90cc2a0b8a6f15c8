"""Pruners for auxopt's searches: any Optuna pruner, with the points a search must finish protected.

:class:`ProtectedPruner` wraps a pruner (successive halving, Hyperband, median, …) and never prunes a
trial queued as protected (``study.enqueue_trial(params, user_attrs={"protected": True})``):
AutoSeM's stage-2 candidate points (the primary alone, equal mixing, the stage-1 utilities) always
run to their last step, so a search that prunes the rest can still never end worse on dev than
either of them. (Optuna's own ``fixed_params`` mark will not do: auxopt's distinct proposer fixes
every trial's parameters that way.)
"""

from __future__ import annotations

from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial

from auxopt import records


class ProtectedPruner(optuna.pruners.BasePruner):
    """``pruner``'s decisions, except for protected trials, which are never pruned: those queued with
    user_attr ``protected`` true, and those for which ``protect(trial)`` is true."""

    def __init__(self, pruner: optuna.pruners.BasePruner, protect: Callable[[FrozenTrial], bool] | None = None):
        if not isinstance(pruner, optuna.pruners.BasePruner):
            raise TypeError(f"ProtectedPruner wraps an Optuna pruner, not {type(pruner).__name__}")
        self.pruner, self.protect = pruner, protect

    def is_protected(self, trial: FrozenTrial) -> bool:
        return bool(trial.user_attrs.get(records.PROTECTED)) or bool(self.protect and self.protect(trial))

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        return not self.is_protected(trial) and self.pruner.prune(study, trial)


__all__ = ["ProtectedPruner"]
