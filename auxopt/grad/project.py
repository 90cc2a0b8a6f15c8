"""ATTITTUD's decomposition of an auxiliary gradient relative to the primary subspace, and its
recombination (Dery, Dauphin & Grangier, ICLR 2021, §3, Eq. 4–6).

With ``V`` (k × D, orthonormal rows) spanning the primary-task subspace, the auxiliary gradient's
coordinates are ``c = V g_aux`` and the primary gradient's ``p = V g_prim``. Then::

    g_aux = g_+ + g_- + g_⊥
    g_+ = Vᵀ (c ⊙ 1[c_j p_j > 0])      inside the span, agreeing in sign with the primary's coordinate
    g_- = Vᵀ (c ⊙ 1[c_j p_j ≤ 0])      inside the span, disagreeing (or the primary is flat there)
    g_⊥ = g_aux − Vᵀ c                 outside the span

and the update direction replacing ``g_aux`` is ``η_⊥ g_⊥ + η_+ g_+ + η_- g_-`` (:func:`combine`).
The trainer adds ``η_prim · g_prim``. Theorem 1 of the paper: when ``g_prim ∈ span(V)`` and
``η_- = 0``, ``η_⊥, η_+ ≥ 0``, the combined direction has a non-negative inner product with
``g_prim``, so a small enough step does not increase the primary loss. The same holds whenever
``η_+ ≥ 0 ≥ η_-`` (any η_⊥): ``⟨g_⊥, g_prim⟩ = 0`` and ``⟨d, g_prim⟩ = η_+ Σ_{agree} c_j p_j +
η_- Σ_{conflict} c_j p_j``, each sum of the sign that makes its term ≥ 0. The official run's
``(1, 1, −1)`` (preset ``"flip_conflicts"``, :data:`DEFAULT_ETA`) flips each conflicting coordinate
so that it agrees with the primary's. The η presets (:data:`ATTITTUD_PRESETS`) are here too.

All arithmetic runs in fp32 (or the inputs' wider dtype), whatever autocast is active.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from auxopt.errors import AuxoptError

#: ``(η_⊥, η_+, η_-)`` of the ATTITTUD authors' run command (ldery/ATTITTUD README, ChexPert,
#: ``-proj_lambda "(1.0, 1.0, -1.0)"``): keep ⊥ and +, flip − (:class:`GradientDecomposer`'s default).
DEFAULT_ETA: tuple[float, float, float] = (1.0, 1.0, -1.0)

#: name → ((η_⊥, η_+, η_-), basis). basis "subspace": the top-k primary subspace;
#: "primary_grad": the 1-D basis along the current primary gradient (PCGrad-like: drop the part of
#: g_aux along g_prim when it conflicts, keep everything else).
ATTITTUD_PRESETS: dict[str, tuple[tuple[float, float, float], str]] = {
    "multitask": ((1.0, 1.0, 1.0), "subspace"),
    "flip_conflicts": (DEFAULT_ETA, "subspace"),
    "drop_conflicts": ((1.0, 1.0, 0.0), "subspace"),
    "helpful_only": ((0.0, 1.0, 0.0), "subspace"),
    "pcgrad": ((1.0, 1.0, 0.0), "primary_grad"),
}


def resolve_eta(eta: tuple[float, float, float] | list[float] | str) -> tuple[tuple[float, float, float], str]:
    """``(η_⊥, η_+, η_-)`` and the basis kind ("subspace" or "primary_grad") for an eta or preset."""
    if isinstance(eta, str):
        if eta not in ATTITTUD_PRESETS:
            raise AuxoptError(
                f"unknown eta preset {eta!r}; choose one of {sorted(ATTITTUD_PRESETS)} or give (η⊥, η+, η−)"
            )
        return ATTITTUD_PRESETS[eta]
    try:
        values = tuple(float(x) for x in eta)
    except (TypeError, ValueError):
        raise AuxoptError(f"eta must be three numbers (η⊥, η+, η−) or a preset name, not {eta!r}") from None
    if len(values) != 3:
        raise AuxoptError(f"eta must be three numbers (η⊥, η+, η−), not {len(values)}: {eta!r}")
    if not all(math.isfinite(x) for x in values):
        raise AuxoptError(f"eta values must be finite numbers, not {eta!r}")
    return (values[0], values[1], values[2]), "subspace"


@dataclass
class Parts:
    """The three parts of an auxiliary gradient (flat vectors, each the size of ``g_aux``), and the
    coordinates they came from."""

    pos: torch.Tensor
    neg: torch.Tensor
    perp: torch.Tensor
    aux_coords: torch.Tensor
    prim_coords: torch.Tensor

    def norms(self) -> dict[str, float]:
        return {k: float(torch.linalg.vector_norm(getattr(self, k))) for k in ("pos", "neg", "perp")}


def _fp32(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def decompose(g_aux: torch.Tensor, basis: torch.Tensor, g_prim: torch.Tensor) -> Parts:
    """Split ``g_aux`` (D) into (+, −, ⊥) parts relative to ``basis`` (k × D, orthonormal rows) and
    the signs of ``g_prim``'s coordinates (Eq. 4–5); the parts sum to ``g_aux``."""
    if basis.dim() != 2 or basis.shape[1] != g_aux.numel() or g_prim.numel() != g_aux.numel():
        raise AuxoptError(
            f"decompose needs g_aux and g_prim of size D and a k × D basis; got {tuple(g_aux.shape)}, "
            f"{tuple(g_prim.shape)} and {tuple(basis.shape)}"
        )
    g_aux, g_prim, basis = _fp32(g_aux.reshape(-1)), _fp32(g_prim.reshape(-1)), _fp32(basis)
    c = basis @ g_aux
    p = basis @ g_prim
    agree = (c * p) > 0
    pos = basis.T @ torch.where(agree, c, torch.zeros_like(c))
    inside = basis.T @ c
    return Parts(pos=pos, neg=inside - pos, perp=g_aux - inside, aux_coords=c, prim_coords=p)


def combine(parts: Parts, eta: tuple[float, float, float] | str = DEFAULT_ETA) -> torch.Tensor:
    """``η_⊥ g_⊥ + η_+ g_+ + η_- g_-`` (Eq. 6); ``eta`` is ``(η_⊥, η_+, η_-)`` or a preset name."""
    eta_perp, eta_pos, eta_neg = resolve_eta(eta)[0]
    return eta_perp * parts.perp + eta_pos * parts.pos + eta_neg * parts.neg


def recombine(
    g_aux: torch.Tensor, basis: torch.Tensor, g_prim: torch.Tensor, eta: tuple[float, float, float]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``combine(decompose(g_aux, basis, g_prim), eta)`` in two passes over the basis.

    Since ``g_⊥ = g_aux − Vᵀc``, the combined direction is
    ``η_⊥ g_aux + Vᵀ((η_+ − η_⊥) c ⊙ a + (η_- − η_⊥) c ⊙ (1 − a))`` with ``a = 1[c_j p_j > 0]``: one
    pass for both coordinate vectors (two matrix-vector products) and one ``Vᵀ`` product, instead of
    the four of :func:`decompose`, and no D-sized parts. Returns ``(direction, c, p)``; with V orthonormal
    ``‖g_+‖ = ‖c ⊙ a‖`` and ``‖g_-‖ = ‖c ⊙ (1 − a)‖`` (see :func:`part_norms`).
    """
    eta_perp, eta_pos, eta_neg = eta
    g_aux, g_prim, basis = _fp32(g_aux.reshape(-1)), _fp32(g_prim.reshape(-1)), _fp32(basis)
    c, p = torch.mv(basis, g_aux), torch.mv(basis, g_prim)
    agree = (c * p) > 0
    weights = torch.where(agree, (eta_pos - eta_perp) * c, (eta_neg - eta_perp) * c)
    return torch.addmv(g_aux, basis.T, weights, beta=eta_perp), c, p


def recombine_(
    pair: torch.Tensor, basis: torch.Tensor, eta: tuple[float, float, float], coords: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`recombine` in place on ``pair`` (2 × D, fp32: row 0 ``g_prim``, row 1 ``g_aux``), the
    trainer's fast path: both coordinate vectors from one pass over the basis (``coords = pair Vᵀ``,
    2 × k; pass them when already computed), and row 1 overwritten by the direction (one more pass,
    no D-sized temporaries). Returns ``(c, p)``; row 1 no longer holds ``g_aux`` afterwards, so take
    :func:`part_norms` before."""
    if pair.dim() != 2 or pair.shape[0] != 2 or basis.dim() != 2 or basis.shape[1] != pair.shape[1]:
        raise AuxoptError(
            f"recombine_ needs a 2 × D pair and a k × D basis; got {tuple(pair.shape)} and {tuple(basis.shape)}"
        )
    if pair.dtype not in (torch.float32, torch.float64):
        raise AuxoptError(f"recombine_ works in place on a float32/float64 pair, not {pair.dtype}")
    eta_perp, eta_pos, eta_neg = eta
    if coords is None:
        coords = pair @ basis.to(pair.dtype).T  # 2 × k
    p, c = coords[0].clone(), coords[1].clone()
    weights = torch.where((c * p) > 0, (eta_pos - eta_perp) * c, (eta_neg - eta_perp) * c)
    pair[1].addmv_(basis.to(pair.dtype).T, weights, beta=eta_perp)
    return c, p


def part_norms(g_aux: torch.Tensor, basis: torch.Tensor, c: torch.Tensor, p: torch.Tensor) -> dict[str, float]:
    """``{"pos", "neg", "perp"}`` norms of the parts from the coordinates ``c``, ``p`` of
    :func:`recombine`: the in-span ones from ``c`` alone (V orthonormal), ``‖g_⊥‖ = ‖g_aux − Vᵀc‖``
    by one more pass over the basis (no cancellation, unlike ``√(‖g‖² − ‖c‖²)``)."""
    agree = (c * p) > 0
    zero = torch.zeros_like(c)
    perp = _fp32(g_aux.reshape(-1)) - _fp32(basis).T @ c
    return {
        "pos": float(torch.linalg.vector_norm(torch.where(agree, c, zero))),
        "neg": float(torch.linalg.vector_norm(torch.where(agree, zero, c))),
        "perp": float(torch.linalg.vector_norm(perp)),
    }


def primary_grad_basis(g_prim: torch.Tensor) -> torch.Tensor:
    """The PCGrad-like 1-D basis ``g_prim / ‖g_prim‖`` (1 × D); all-zero when ``g_prim`` is zero."""
    g = _fp32(g_prim.reshape(-1))
    norm = torch.linalg.vector_norm(g)
    return (g / norm if norm > 0 else torch.zeros_like(g)).unsqueeze(0)
