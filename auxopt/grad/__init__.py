"""ATTITTUD (Dery, Dauphin & Grangier, ICLR 2021): decompose auxiliary gradients relative to the
primary task's gradient subspace and reweight the parts.

* :func:`randomized_basis` — top-k right singular vectors of the per-example primary gradients,
  by randomised SVD from ``torch.func`` vjp/jvp products (:mod:`auxopt.grad.subspace`);
* :func:`decompose` / :func:`combine` / :data:`PRESETS` — the (+, −, ⊥) parts and their weighting
  (:mod:`auxopt.grad.decompose`);
* :class:`GradientDecomposer` — the trainer plugin (``TrainConfig(decomposer=...)``).
"""

from auxopt.grad.decompose import (
    PRESETS,
    Parts,
    combine,
    decompose,
    primary_grad_basis,
    resolve_eta,
)
from auxopt.grad.decomposer import DecomposerStep, GradientDecomposer, select_parameters
from auxopt.grad.subspace import exact_basis, principal_angles, randomized_basis

__all__ = [
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
