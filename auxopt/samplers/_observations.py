"""Which trials count as :class:`~auxopt.samplers.MixingRatioSampler`'s data, as points and values.

The data rule, shared by the sampler and by :mod:`auxopt.plots`: COMPLETE trials count with their
value, PRUNED ones with the last intermediate value they reported (the one at the largest step), or
not at all if they reported none; FAIL, RUNNING and WAITING trials, non-finite values and trials
whose parameters are missing or outside the space's current bounds do not count. Values are negated
for a minimised study (the GP maximises).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from auxopt._optuna import trials_of
from auxopt.samplers._cube import UnitCube

if TYPE_CHECKING:
    from optuna.study import Study

__all__ = ["MixingObservations", "mixing_observations", "observations", "observed_trials"]


@dataclass(frozen=True)
class MixingObservations:
    """The data :class:`~auxopt.samplers.MixingRatioSampler`'s GP is fitted to.

    Attributes:
        cube: the unit cube of the search space (:class:`~auxopt.samplers.UnitCube`).
        trials: the trials that count, in trial order; row ``i`` of ``X`` and ``y`` is ``trials[i]``.
        X: ``(n, d)`` their points on the unit cube.
        y: ``(n,)`` their values, negated when ``minimize`` (larger is better).
        minimize: whether the study minimises.
    """

    cube: UnitCube
    trials: list[FrozenTrial]
    X: np.ndarray
    y: np.ndarray
    minimize: bool


def mixing_observations(
    study: Study,
    search_space: Mapping[str, BaseDistribution],
    *,
    trials: Sequence[FrozenTrial] | None = None,
) -> MixingObservations:
    """The trials of ``study`` that :class:`~auxopt.samplers.MixingRatioSampler` would fit its GP to
    for ``search_space`` (float and int distributions), with their unit-cube points and values.

    Args:
        study: a single-objective study.
        search_space: ``{name: distribution}``; its bounds decide which trials are inside.
        trials: look only at these trials of the study (default: all of them).

    See the module docstring for which trials count.
    """
    cube = UnitCube(search_space)
    minimize = study.direction == StudyDirection.MINIMIZE
    trials = trials_of(study) if trials is None else trials
    kept = observed_trials(trials, cube)
    X, y = observations(kept, cube, minimize)
    return MixingObservations(cube=cube, trials=kept, X=X, y=y, minimize=minimize)


def observations(trials: Sequence[FrozenTrial], cube: UnitCube, minimize: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)``: the unit-cube points and values (negated when minimising) that count as data."""
    xs, ys = [], []
    for t in trials:
        value = _value(t)
        if value is None:
            continue
        u = cube.encode(t.params)
        if u is None:
            continue
        xs.append(u)
        ys.append(-float(value) if minimize else float(value))
    return np.array(xs, dtype=np.float64).reshape(-1, cube.dim), np.array(ys, dtype=np.float64)


def observed_trials(trials: Sequence[FrozenTrial], cube: UnitCube) -> list[FrozenTrial]:
    """The trials :func:`observations` keeps, in the same order."""
    return [t for t in trials if _value(t) is not None and cube.encode(t.params) is not None]


def _value(t: FrozenTrial) -> float | None:
    """The value a trial counts with, or ``None`` if it does not count."""
    if t.state == TrialState.COMPLETE and t.values is not None:
        value = t.values[0]
    elif t.state == TrialState.PRUNED and t.intermediate_values:
        value = t.intermediate_values[max(t.intermediate_values)]
    else:
        return None
    if value is None or not math.isfinite(value):
        return None
    return value
