"""auxopt's plots as plain plotly figures, built from what a study keeps in storage.

Each ``plot_*`` function takes an :class:`optuna.Study` (loaded from any storage) and returns a
:class:`plotly.graph_objects.Figure`; each ``*_data`` function returns the numbers the figure draws,
so that they can be checked against the study. :mod:`auxopt.dashboard` publishes the same figures
into optuna-dashboard. Where a study holds nothing to draw, the ``*_data`` function returns ``None``
and the ``plot_*`` function raises :class:`NoData` (an :class:`~auxopt.errors.AuxoptError`).

What each plot reads (trial user_attrs written by the rest of auxopt):

* Thompson posteriors: ``thompson_posterior_mean`` / ``thompson_pulls`` (the
  :class:`~auxopt.samplers.ThompsonTaskSampler`), or ``thompson_posterior`` / ``thompson_history``
  (the online schedule, :class:`~auxopt.train.OnlineThompson`).
* Mixing-ratio landscape: the numerical parameters named ``*ratio*`` of the COMPLETE trials.
* AANG objective weights: ``aang_weights``.
* ATTITTUD gradient parts: ``grad_parts``.
* Dev curves: ``curve``.
"""

from __future__ import annotations

from auxopt.plots._autosem import (
    beta_interval,
    mixing_landscape_data,
    plot_mixing_landscape,
    plot_thompson,
    thompson_data,
)
from auxopt.plots._common import NoData
from auxopt.plots._methods import aang_weights_data, grad_parts_data, plot_aang_weights, plot_grad_parts
from auxopt.plots._study import best_summary, dev_curves_data, plot_dev_curves

__all__ = [
    "aang_weights_data",
    "NoData",
    "best_summary",
    "beta_interval",
    "dev_curves_data",
    "grad_parts_data",
    "mixing_landscape_data",
    "plot_aang_weights",
    "plot_dev_curves",
    "plot_grad_parts",
    "plot_mixing_landscape",
    "plot_thompson",
    "thompson_data",
]
