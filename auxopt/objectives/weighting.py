"""AANG's online objective weights (Dery et al., ICLR 2023, §4).

Each legal objective ``t = (t_1, …, t_4)`` of the space gets a logit made of one factor logit per
stage plus its own joint logit, and the weights are their softmax over the space::

    ℓ_t = Σ_s θ_s[t_s] + φ_t,        w = softmax(ℓ)                                   (AANG Eq. 4)

The factor logits share what is learnt about one stage option (say the ``mask`` transform) across
every objective that uses it; the joint logit lets one tuple differ from its parts. A learned split
``λ = σ(ψ)`` divides the loss between the primary task and the auxiliaries.

Each step ``k`` objectives ``S`` are drawn **uniformly** (without replacement) and the sampled ones
weighted by ``(n/k) w_t`` (:meth:`OnlineWeights.step_weights`, n the number of objectives): each
objective is in ``S`` with probability ``k/n``, so its expected weight is exactly ``w_t`` —
linear in ``w`` (sampling with probability ``w`` *and* weighting by ``w`` would make it ``∝ w²``).
This is the official code's uniform draw (``SearchOptions.sample_configurations``); where it
renormalises the softmax over the sampled objectives (bounded, but not linear in ``w`` unless
``k = n``), the ``n/k`` factor keeps the expectation exact and the expected total auxiliary weight 1.

Updates use the first-order meta-gradient: the change of the dev loss when an objective's weight
grows is ``∂L_dev/∂w_t ≈ −η ⟨∇L_dev, ∇L_t⟩`` on the shared encoder, normalised here to the cosine
``c_t = cos(∇L_dev, ∇L_t)`` (scale-free across objectives whose losses differ in size). For the
``k`` objectives ``S`` sampled this step, the logits take a gradient-ascent step on
``J = (n/k) Σ_{t∈S} w_t c_t`` (learning rates ``lr`` for θ, ``joint_lr`` for φ), an unbiased
estimate of ``Σ_t w_t c_t`` under the uniform draw (the factor ``n/k`` also keeps the step size
from shrinking as the space grows, since each ``w_t`` starts at ``1/n``), and the split on
``λ c_prim + (1 − λ) Σ_{t∈S} ŵ_t c_t`` with ``ŵ_t = w_t / Σ_{u∈S} w_u``: objectives whose gradients
agree with the dev gradient gain weight, those that oppose it lose weight.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from auxopt.objectives.taxonomy import STAGES, Objective


class OnlineWeights:
    """Factored + joint logits over ``objectives``, and the primary/auxiliary split (see module doc)."""

    def __init__(
        self,
        objectives: Sequence[Objective],
        options: Mapping[str, Sequence[str]],
        *,
        lr: float,
        joint_lr: float,
        primary_lr: float,
        init_primary: float = 0.5,
    ):
        self.objectives = list(objectives)
        self.options = {s: list(options[s]) for s in STAGES}
        self.codes = torch.tensor(
            [[self.options[s].index(v) for s, v in zip(STAGES, o.stages, strict=True)] for o in self.objectives],
            dtype=torch.long,
        )
        self.factors = [torch.zeros(len(self.options[s])) for s in STAGES]
        self.joint = torch.zeros(len(self.objectives))
        self.psi = torch.tensor(math.log(init_primary / (1 - init_primary)))
        self.lr, self.joint_lr, self.primary_lr = lr, joint_lr, primary_lr

    def logits(self, factors=None, joint=None) -> torch.Tensor:
        factors = self.factors if factors is None else factors
        joint = self.joint if joint is None else joint
        return sum(f[self.codes[:, s]] for s, f in enumerate(factors)) + joint

    def weights(self) -> torch.Tensor:
        return torch.softmax(self.logits(), dim=0)

    def primary_share(self) -> float:
        return float(torch.sigmoid(self.psi))

    def sample(self, k: int, generator: torch.Generator) -> torch.Tensor:
        """``k`` distinct objectives, drawn uniformly (without replacement), whatever the weights."""
        return torch.randperm(len(self.objectives), generator=generator)[:k]

    def step_weights(self, sampled: torch.Tensor) -> torch.Tensor:
        """The loss weights ``(n/k) w_t`` of the ``sampled`` objectives: each objective's expected
        weight under :meth:`sample` is its ``w_t``."""
        return self.weights()[sampled] * (len(self.objectives) / len(sampled))

    def update(self, sampled: torch.Tensor, cosines: torch.Tensor, primary_cosine: float) -> None:
        """One meta-gradient step from the cosines of the sampled objectives (and the primary)."""
        with torch.enable_grad():
            factors = [f.clone().requires_grad_(True) for f in self.factors]
            joint = self.joint.clone().requires_grad_(True)
            w = torch.softmax(self.logits(factors, joint), dim=0)[sampled]
            objective = (w * cosines).sum() * (len(self.objectives) / len(sampled))
            *g_factors, g_joint = torch.autograd.grad(objective, [*factors, joint])
        for f, g in zip(self.factors, g_factors, strict=True):
            f.add_(self.lr * g)
        self.joint.add_(self.joint_lr * g_joint)
        w = w.detach()
        aux = float((w / w.sum() * cosines).sum())
        lam = torch.sigmoid(self.psi)
        self.psi = self.psi + self.primary_lr * lam * (1 - lam) * (primary_cosine - aux)

    def state_dict(self) -> dict:
        return {"factors": [f.clone() for f in self.factors], "joint": self.joint.clone(), "psi": self.psi.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.factors = [f.clone() for f in state["factors"]]
        self.joint = state["joint"].clone()
        self.psi = state["psi"].clone()
