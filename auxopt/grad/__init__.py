"""ATTITTUD (Dery, Dauphin & Grangier, ICLR 2021): decompose auxiliary gradients relative to the
primary task's gradient subspace and reweight the parts.

* :func:`randomized_basis` — top-k right singular vectors of the per-example primary gradients,
  by randomised SVD from ``torch.func`` vjp/jvp products (:mod:`auxopt.grad.subspace`);
* :func:`decompose` / :func:`combine` / :data:`PRESETS` (default :data:`DEFAULT_ETA` = the official
  (1, 1, −1), ``"flip_conflicts"``) — the (+, −, ⊥) parts and their weighting
  (:mod:`auxopt.grad.decompose`);
* :class:`Attittud` — the method as a functional core for any training loop: the primary subspace
  over given shared parameters, refreshed on schedule from a per-example loss, and a backward pass
  that leaves the decomposed update in ``.grad``; :func:`basis_mode` — dropout off and eager
  attention while the subspace is computed (:mod:`auxopt.grad.attittud`);
* :class:`GradientDecomposer` — the trainer plugin (``TrainConfig(decomposer=...)``), a client of
  :class:`Attittud`.
"""

from auxopt.grad.attittud import Attittud, basis_mode
from auxopt.grad.decompose import (
    DEFAULT_ETA,
    PRESETS,
    Parts,
    combine,
    decompose,
    primary_grad_basis,
    resolve_eta,
)
from auxopt.grad.decomposer import (
    DEFAULT_PARAMS,
    DecomposerStep,
    GradientDecomposer,
    select_parameters,
)
from auxopt.grad.subspace import exact_basis, principal_angles, randomized_basis

__all__ = [
    "Attittud",
    "DEFAULT_ETA",
    "DEFAULT_PARAMS",
    "PRESETS",
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
