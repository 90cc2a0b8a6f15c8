"""Pruners for auxopt's searches: any Optuna pruner, with the points a search must finish protected.

:class:`ProtectedPruner` wraps a pruner (successive halving, Hyperband, median, …) and never prunes a
trial queued as protected (``study.enqueue_trial(params, user_attrs={"protected": True})``):
AutoSeM's stage-2 candidate points (the primary alone, equal mixing, the stage-1 utilities) always
run to their last step, so a search that prunes the rest can still never end worse on dev than
either of them. (Optuna's own ``fixed_params`` mark will not do: auxopt's distinct proposer fixes
every trial's parameters that way.)

:func:`search_pruner` is the pruner AutoSeM's searches use by default, chosen by replaying Optuna's
pruners on the payoff benchmark's real dev curves (``benchmarks/search/pruner_replay.py``).
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


def search_pruner() -> optuna.pruners.BasePruner:
    """AutoSeM's default: stop a run whose dev score, at any evaluation, is below the median of the
    earlier runs' at the same step, once two runs have finished (the protected points, which run
    first).

    Replayed on the payoff benchmark's dev curves (``benchmarks/search/pruner_replay.py``: the primary
    alone and equal mixing protected, then one 1:1 run per candidate; 4 seeds on sentiment, 3 on dsp,
    2026-12-05), it spent 0.74 (sentiment) and 0.52 (dsp) of the steps of the search without pruning,
    for 0.005 dev lost on average (sentiment; none on dsp). Successive halving (min resource one
    evaluation, η 3) spent 0.58 and 0.71 for 0.0075 lost; Hyperband 0.78 and 0.82; the median rule
    with a warm-up of half a run 0.84 and 0.68 for 0.003. The dev lost is within one evaluation's
    noise on a 377-example dev split."""
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)


__all__ = ["ProtectedPruner", "search_pruner"]
