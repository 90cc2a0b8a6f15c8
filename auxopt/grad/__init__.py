"""ATTITTUD (Dery, Dauphin & Grangier, ICLR 2021): decompose auxiliary gradients relative to the
primary task's gradient subspace and reweight the parts.

* :func:`randomized_basis` — top-k right singular vectors of the per-example primary gradients,
  by randomised SVD from ``torch.func`` vjp/jvp products (:mod:`auxopt.grad.subspace`);
* :func:`decompose` / :func:`combine` — the (+, −, ⊥) parts and their weighting
  (:mod:`auxopt.grad.project`);
* :class:`GradientDecomposer` — the trainer plugin's settings (``TrainConfig(decomposer=...)``)
  and their Optuna ``suggest``; :data:`ATTITTUD_PRESETS` (default :data:`DEFAULT_ETA` = the
  official (1, 1, −1), ``"flip_conflicts"``) and :func:`resolve_eta` (:mod:`auxopt.grad.spec`);
* :class:`Attittud` — the method as a functional core for any training loop: the primary subspace
  over given shared parameters, refreshed on schedule from a per-example loss, and a backward pass
  that leaves the decomposed update in ``.grad`` (:mod:`auxopt.grad.attittud`);
* :func:`basis_mode` — dropout off and eager attention while the subspace is computed
  (:mod:`auxopt.grad.modes`);
* :class:`DecomposerStep` — the trainer's step for :class:`GradientDecomposer`, a client of
  :class:`Attittud` (:mod:`auxopt.grad.trainer_step`);
* :func:`select_parameters` — which parameters are shared (:mod:`auxopt.models.heads`).
"""

from auxopt.grad.attittud import Attittud
from auxopt.grad.modes import basis_mode
from auxopt.grad.project import (
    ATTITTUD_PRESETS,
    DEFAULT_ETA,
    Parts,
    combine,
    decompose,
    primary_grad_basis,
    resolve_eta,
)
from auxopt.grad.spec import DEFAULT_PARAMS, GradientDecomposer
from auxopt.grad.subspace import exact_basis, principal_angles, randomized_basis
from auxopt.grad.trainer_step import DecomposerStep
from auxopt.models.heads import select_parameters

__all__ = [
    "ATTITTUD_PRESETS",
    "Attittud",
    "DEFAULT_ETA",
    "DEFAULT_PARAMS",
    "DecomposerStep",
    "GradientDecomposer",
    "Parts",
    "basis_mode",
    "combine",
    "decompose",
    "exact_basis",
    "primary_grad_basis",
    "principal_angles",
    "randomized_basis",
    "resolve_eta",
    "select_parameters",
]
