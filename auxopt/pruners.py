"""Pruners for auxopt's searches: any Optuna pruner, with the points a search must finish protected.

:class:`ProtectedPruner` wraps a pruner (successive halving, Hyperband, median, …) and never prunes a
trial queued as protected (``study.enqueue_trial(params, user_attrs={"protected": True})``):
AutoSeM's stage-2 candidate points (the primary alone, equal mixing, the stage-1 utilities) always
run to their last step, so a search that prunes the rest can still never end worse on dev than
either of them. (Optuna's own ``fixed_params`` mark will not do: auxopt's distinct proposer fixes
every trial's parameters that way.)

:class:`WarmupPruner` lets a pruner judge a run only from a fraction of its length on, whatever
that length. :func:`search_pruner` is the pruner AutoSeM's searches use by default, chosen by
replaying Optuna's pruners on the payoff benchmark's real dev curves
(``benchmarks/search/pruner_replay.py``).
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


class WarmupPruner(optuna.pruners.BasePruner):
    """``pruner``'s decisions once a run is ``fraction`` of the way through; before that no run is
    stopped (early dev scores are noisy, and a run that starts slowly may still win). A run's length
    is the ``max_steps`` of its settings (user_attr ``config``, which auxopt writes before training),
    so one pruner serves runs of different lengths, such as the sampler stage 1's and stage 2's; a
    trial without it is judged from its first report."""

    def __init__(self, pruner: optuna.pruners.BasePruner, fraction: float = 0.5):
        if not isinstance(pruner, optuna.pruners.BasePruner):
            raise TypeError(f"WarmupPruner wraps an Optuna pruner, not {type(pruner).__name__}")
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 <= fraction <= 1:
            raise ValueError(f"WarmupPruner: fraction must be a number in [0, 1], not {fraction!r}")
        self.pruner, self.fraction = pruner, float(fraction)

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None:
            return False
        length = (trial.user_attrs.get(records.CONFIG) or {}).get("max_steps")
        if length and step < self.fraction * length:
            return False
        return self.pruner.prune(study, trial)


def search_pruner() -> optuna.pruners.BasePruner:
    """AutoSeM's default: from the middle of a run on, stop it when its dev score at an evaluation is
    below the median of the earlier runs' at the same step, once two runs have finished (the
    protected points, which run first).

    Chosen by replaying Optuna's pruners on the payoff benchmark's dev curves
    (``benchmarks/search/pruner_replay.py``, 2026-12-05). On AutoSeM's own stage-2 curves (4 seeds on
    sentiment, 3 on dsp) the median rule from the first evaluation stopped the eventual best run in
    2 of 4 sentiment seeds (its answer lost 0.019 and 0.013 dev) for 0.68 of stage 2's steps; from
    half a run it kept every answer, at 0.92 (sentiment) and 0.80 (dsp) of the steps. Replayed over
    random orders of 1:1 runs, it spent 0.85 and 0.68 of the unpruned search's steps; successive
    halving and Hyperband lost more dev on sentiment or spent more on dsp."""
    return WarmupPruner(optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0), 0.5)


__all__ = ["ProtectedPruner", "WarmupPruner", "search_pruner"]
