"""ATTITTUD (Dery, Dauphin & Grangier, ICLR 2021): decompose auxiliary gradients relative to the
primary task's gradient subspace and reweight the parts.

* :func:`randomized_basis` — top-k right singular vectors of the per-example primary gradients,
  by randomised SVD from ``torch.func`` vjp/jvp products (:mod:`auxopt.grad.subspace`);
* :func:`decompose` / :func:`combine` / :data:`PRESETS` (default :data:`DEFAULT_ETA` = the official
  (1, 1, −1), ``"flip_conflicts"``) — the (+, −, ⊥) parts and their weighting
  (:mod:`auxopt.grad.decompose`);
* :class:`GradientDecomposer` — the trainer plugin (``TrainConfig(decomposer=...)``).
"""

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
    "DEFAULT_ETA",
    "DEFAULT_PARAMS",
    "PRESETS",
    "DecomposerStep",
    "GradientDecomposer",
    "Parts",
    "combine",
    "decompose",
    "exact_basis",
    "primary_grad_basis",
    "principal_angles",
    "randomized_basis",
    "resolve_eta",
    "select_parameters",
]
