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

The same class weights objectives of your own in any PyTorch loop: name them (strings: joint logits
only; tuples of stage options, e.g. ``("mask", "token")``, share factor logits per position) and
let :meth:`OnlineWeights.backward` take your losses, a dev loss and the shared parameters::

    from auxopt.objectives.weighting import OnlineWeights

    weights = OnlineWeights(["rotation", "jigsaw", "noise"], lr=0.5, seed=0)
    for step in range(steps):
        sampled = weights.sample(2)                          # k objectives, uniformly
        optimizer.zero_grad()
        weights.backward(sampled, loss_primary, [aux_loss(i) for i in sampled.tolist()], dev_loss,
                         shared=model.trunk.parameters(), params=model.parameters())
        optimizer.step()                                     # .grad: 2λ∇L_prim + Σ 2(1−λ)(n/k)w_t∇L_t

AANG's trainer step (:class:`~auxopt.objectives.aang.AANGStep`) calls this same ``backward``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from auxopt.errors import AuxoptError
from auxopt.objectives.taxonomy import STAGES, AuxObjective

Loss = torch.Tensor | Callable[[], torch.Tensor]


def _flat(grads, params) -> torch.Tensor:
    """The gradients ``grads`` of ``params`` (None: zero) as one flat fp32 vector."""
    return torch.cat(
        [(g if g is not None else torch.zeros_like(p)).reshape(-1).float() for g, p in zip(grads, params, strict=True)]
    )


def _accumulate(params, grads, weight: float) -> None:
    """``param.grad += weight · grad`` for every parameter with a gradient, as a few multi-tensor
    kernels (not one per parameter: launches, not arithmetic, bound this on a GPU)."""
    fresh = [(p, g) for p, g in zip(params, grads, strict=True) if g is not None and p.grad is None]
    seen = [(p.grad, g) for p, g in zip(params, grads, strict=True) if g is not None and p.grad is not None]
    if seen:
        torch._foreach_add_([a for a, _ in seen], [g for _, g in seen], alpha=weight)
    if fresh:
        for (p, _), g in zip(fresh, torch._foreach_mul([g for _, g in fresh], weight), strict=True):
            p.grad = g


def _stages(objective: Any) -> tuple:
    """The factor options an objective is made of: an :class:`AuxObjective`'s four stages, a tuple's
    items, nothing for any other name (joint logit only)."""
    if isinstance(objective, AuxObjective):
        return tuple(objective.stages)
    if isinstance(objective, tuple):
        return objective
    return ()


class OnlineWeights:
    """Factored + joint logits over ``objectives``, and the primary/auxiliary split (see module doc).

    Args:
        objectives: AANG :class:`AuxObjective` s, or your own objectives: names (each gets its joint
            logit only) or equal-length tuples of options (position ``s`` of every tuple shares the
            factor logit of its option, e.g. ``("mask", "token")`` and ``("mask", "span")`` share
            ``mask``).
        options: the options of each factor (for :class:`AuxObjective` s: ``{stage: [option, …]}``;
            for tuples: one sequence per position); None: the options the objectives use, sorted.
        lr: learning rate of the factor logits θ.
        joint_lr: learning rate of the joint logits φ (None: ``lr``).
        primary_lr: learning rate of the primary/auxiliary split ψ.
        init_primary: the primary's share λ = σ(ψ) at the start.
        seed: seeds :meth:`sample` when it is given no generator.
    """

    def __init__(
        self,
        objectives: Sequence[Hashable],
        options: Mapping[str, Sequence[str]] | Sequence[Sequence[Hashable]] | None = None,
        *,
        lr: float = 0.5,
        joint_lr: float | None = None,
        primary_lr: float = 0.5,
        init_primary: float = 0.5,
        seed: int = 0,
    ):
        self.objectives = list(objectives)
        if not self.objectives:
            raise AuxoptError("OnlineWeights needs at least one objective")
        if len(set(self.objectives)) != len(self.objectives):
            raise AuxoptError(f"OnlineWeights: the objectives repeat ({self.objectives!r}); name each once")
        if not 0 < init_primary < 1:
            raise AuxoptError(f"OnlineWeights: init_primary must be in (0, 1), not {init_primary!r}")
        stages = [_stages(o) for o in self.objectives]
        width = len(stages[0])
        if any(len(t) != width for t in stages):
            raise AuxoptError(
                "OnlineWeights: mix of objectives with different numbers of factors; give "
                "all names, all Objectives, or tuples of one length"
            )
        keys = list(STAGES) if isinstance(self.objectives[0], AuxObjective) else list(range(width))
        if options is None:
            options = {key: sorted({t[i] for t in stages}, key=str) for i, key in enumerate(keys)}
        elif not isinstance(options, Mapping):
            options = dict(enumerate(options))
        self.options = {key: list(options[key]) for key in keys}
        try:
            codes = [[self.options[key].index(v) for key, v in zip(keys, t, strict=True)] for t in stages]
        except ValueError as exc:
            raise AuxoptError(f"OnlineWeights: an objective uses an option not in options ({exc})") from None
        self.codes = torch.tensor(codes, dtype=torch.long).reshape(len(stages), width)
        self.factors = [torch.zeros(len(self.options[key])) for key in keys]
        self.joint = torch.zeros(len(self.objectives))
        self.psi = torch.tensor(math.log(init_primary / (1 - init_primary)))
        self.lr, self.primary_lr = lr, primary_lr
        self.joint_lr = lr if joint_lr is None else joint_lr
        self.generator = torch.Generator().manual_seed(seed)

    def logits(self, factors=None, joint=None) -> torch.Tensor:
        factors = self.factors if factors is None else factors
        joint = self.joint if joint is None else joint
        return sum(f[self.codes[:, s]] for s, f in enumerate(factors)) + joint

    def weights(self) -> torch.Tensor:
        """``w = softmax(ℓ)``, one weight per objective (in the order of :attr:`objectives`)."""
        return torch.softmax(self.logits(), dim=0)

    def as_dict(self) -> dict[Hashable, float]:
        """``{objective: w_t}``."""
        return dict(zip(self.objectives, self.weights().tolist(), strict=True))

    def primary_share(self) -> float:
        """λ = σ(ψ), the primary's share of the loss."""
        return float(torch.sigmoid(self.psi))

    def sample(self, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``k`` distinct objectives' indices (into :attr:`objectives`), drawn uniformly (without
        replacement), whatever the weights; ``generator`` defaults to the one seeded by ``seed``."""
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(self.objectives):
            raise AuxoptError(f"sample: k must be an integer in [1, {len(self.objectives)}], not {k!r}")
        return torch.randperm(len(self.objectives), generator=self.generator if generator is None else generator)[:k]

    def step_weights(self, sampled: torch.Tensor) -> torch.Tensor:
        """The loss weights ``(n/k) w_t`` of the ``sampled`` objectives: each objective's expected
        weight under :meth:`sample` is its ``w_t``."""
        return self.weights()[sampled] * (len(self.objectives) / len(sampled))

    def loss_weights(self, sampled: torch.Tensor) -> tuple[float, list[float]]:
        """The step's loss weights: ``2λ`` for the primary and ``2(1 − λ)(n/k) w_t`` for each sampled
        objective (λ = ½ at the start gives the primary the weight it has alone)."""
        lam = self.primary_share()
        return 2 * lam, [2 * (1 - lam) * float(w) for w in self.step_weights(sampled)]

    def update(self, sampled: torch.Tensor, cosines: torch.Tensor, primary_cosine: float) -> None:
        """One meta-gradient step from the cosines of the sampled objectives (and the primary)."""
        cosines = torch.as_tensor(cosines, dtype=torch.float32)
        if cosines.shape != (len(sampled),):
            raise AuxoptError(
                f"update: one cosine per sampled objective ({len(sampled)}), not shape {tuple(cosines.shape)}"
            )
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

    def backward(
        self,
        sampled: torch.Tensor,
        primary_loss: Loss,
        aux_losses: Sequence[Loss] | Mapping[Hashable, Loss],
        dev: Loss,
        *,
        shared: Iterable[torch.Tensor],
        params: Iterable[torch.Tensor],
        update: bool = True,
    ) -> tuple[float, list[float]]:
        """One AANG step's backward pass and weight update.

        Each term (the primary, then the ``sampled`` objectives in order) is back-propagated on its
        own; its gradient is added, times its :meth:`loss_weights`, to ``.grad`` of ``params``, and
        its cosine with the dev gradient is taken over ``shared``. With ``update`` the weights then
        take their meta-gradient step (:meth:`update`).

        Args:
            sampled: what :meth:`sample` returned.
            primary_loss: a scalar loss tensor, or a zero-argument callable evaluated just before
                its backward pass (so that one graph lives at a time).
            aux_losses: the same kind, one per sampled objective, in order, or a mapping
                ``{objective: loss}`` covering the sampled ones (losses sharing a forward pass are fine).
            dev: the dev loss (a tensor or callable) whose gradient over ``shared`` the cosines use,
                or that gradient already flattened (a 1-D tensor of ``shared``'s total size).
            shared: the parameters the cosines are taken over (those every objective trains).
            params: every parameter to accumulate gradients into (``shared`` and the heads).

        Returns: ``(primary cosine, [cosine of each sampled objective])``.
        """
        params = [p for p in params if p.requires_grad]
        shared = list(shared)
        position = {id(p): i for i, p in enumerate(params)}
        missing = [i for i, p in enumerate(shared) if id(p) not in position]
        if missing:
            raise AuxoptError("backward: every shared parameter must be among params (and require grad)")
        if isinstance(aux_losses, Mapping):
            try:
                aux_losses = [aux_losses[self.objectives[int(i)]] for i in sampled]
            except KeyError as exc:
                raise AuxoptError(f"backward: no loss given for sampled objective {exc}") from None
        aux_losses = list(aux_losses)
        if len(aux_losses) != len(sampled):
            raise AuxoptError(f"backward: {len(aux_losses)} auxiliary losses for {len(sampled)} sampled objectives")
        if isinstance(dev, torch.Tensor) and dev.dim() == 1:
            dev_grad = dev
        else:
            loss = dev() if callable(dev) else dev
            dev_grad = _flat(torch.autograd.grad(loss, shared, allow_unused=True, retain_graph=True), shared)
        primary_weight, aux_weights = self.loss_weights(sampled)
        index = [position[id(p)] for p in shared]
        cosines = []
        terms = [(primary_loss, primary_weight), *zip(aux_losses, aux_weights, strict=True)]
        for j, (term, weight) in enumerate(terms):
            loss = term() if callable(term) else term
            grads = torch.autograd.grad(
                loss, params, allow_unused=True, retain_graph=not callable(term) and j < len(terms) - 1
            )
            flat = _flat([grads[i] for i in index], shared)
            cosines.append(F.cosine_similarity(flat, dev_grad, dim=0))  # read once, below: no wait per term
            _accumulate(params, grads, weight)
        cosines = torch.stack(cosines).tolist()
        if update:
            self.update(sampled, torch.tensor(cosines[1:]), cosines[0])
        return cosines[0], cosines[1:]

    def state_dict(self) -> dict:
        return {"factors": [f.clone() for f in self.factors], "joint": self.joint.clone(), "psi": self.psi.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.factors = [f.clone() for f in state["factors"]]
        self.joint = state["joint"].clone()
        self.psi = state["psi"].clone()
