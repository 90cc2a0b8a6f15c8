"""The primary-task subspace: top-k right singular vectors of the per-example gradient Jacobian.

Let ``ℓ(θ) = (ℓ_1(θ), …, ℓ_m(θ))`` be the per-example primary losses of a reference batch and
``J = ∂ℓ/∂θ`` (m × D) their Jacobian on the chosen shared parameters: row i is example i's gradient.
ATTITTUD (Dery, Dauphin & Grangier, ICLR 2021, §3) projects auxiliary gradients onto
``span(V)``, where ``V`` (k × D) holds the top-k right singular vectors of ``J``
(``J = U Σ Vᵀ``, rows of ``V`` orthonormal).

:func:`randomized_basis` computes ``V`` without forming ``J`` — randomised SVD (Halko, Martinsson &
Tropp 2011, Algorithms 4.3/4.4 + 5.1) applied to ``Jᵀ`` (D × m), built from two matrix-free products
written with ``torch.func``:

* ``Jᵀ Z`` (D × l) — a vector-Jacobian product of ``ℓ`` for each column of Z, ``vmap`` over ``vjp``;
* ``J Q`` (m × l) — a Jacobian-vector product along each column of Q, ``vmap`` over ``jvp``.

With ``l = k + oversample`` and ``q = power_iters``::

    Ω ~ N(0, 1)^{m × l};  Y = Jᵀ Ω;  Q = orth(Y)                       (range sketch of Jᵀ)
    repeat q times:        Y = Jᵀ (J Q);  Q = orth(Y)                   (power iteration)
    B = J Q (m × l);  B = U_B S W_Bᵀ;  V = (Q W_B)[:, :k]ᵀ               (SVD of the projection)

so that ``J ≈ J Q Qᵀ = U_B S (Q W_B)ᵀ``: V holds approximate *right singular vectors* ordered by
singular value, not merely a basis of the sketch. Cost: ``(q + 1)`` vmapped vjps and ``(q + 1)``
vmapped jvps of ``l`` directions over the m reference examples; memory ``2 l × D`` floats while it
runs and ``k × D`` floats for the result.

:func:`per_example_basis` computes ``V`` exactly by forming ``J``: :func:`per_example_jacobian` is one
``vmap`` of ``grad`` over the m examples (about one forward and backward pass of the m examples), and
:func:`exact_basis` takes the top-k right singular vectors of J through its m × m Gram matrix. It
holds ``m × D`` floats for a moment — when that fits, it is both exact and much cheaper than the
``2 (q + 1) l`` batched passes of :func:`randomized_basis`, whose memory does not grow with m.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

Params = dict[str, torch.Tensor]


def flatten(tree: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Concatenate the tensors of ``tree`` (in its order) into one flat vector."""
    return torch.cat([t.reshape(-1) for t in tree.values()])


def unflatten(vector: torch.Tensor, like: Mapping[str, torch.Tensor]) -> Params:
    """Split a flat vector back into tensors shaped like ``like`` (inverse of :func:`flatten`)."""
    out, start = {}, 0
    for name, t in like.items():
        out[name] = vector[start : start + t.numel()].view_as(t)
        start += t.numel()
    return out


def _orth(y: torch.Tensor) -> torch.Tensor:
    """Orthonormal rows spanning the rows of ``y`` (l × D), via a thin QR of ``yᵀ``."""
    q, _ = torch.linalg.qr(y.T, mode="reduced")
    return q.T.contiguous()


def randomized_basis(
    losses: Callable[[Params], torch.Tensor],
    params: Params,
    k: int,
    *,
    oversample: int = 5,
    power_iters: int = 1,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` right singular vectors of the Jacobian of ``losses`` at ``params`` (randomised SVD).

    Args:
        losses: ``params -> (m,)`` per-example losses (a pure function of ``params``; anything random
            in it, e.g. dropout, must be switched off, as every product must see the same ``J``).
        params: the differentiable parameters (name → tensor); ``D`` = their total size.
        k: rank of the basis (``k <= m``).
        oversample: extra sketch columns ``p`` (``l = min(k + p, m)``).
        power_iters: power iterations ``q`` (each sharpens the spectrum by ``(σ_j/σ_{k+1})^{2q}``).
        generator: seeds the Gaussian test matrix Ω (drawn on the CPU, then moved).
        chunk_size: passed to ``torch.func.vmap`` to bound the memory of the l batched passes.

    Returns:
        ``(V, s)``: V (k × D, orthonormal rows, fp32 or the params' dtype) and the k approximate
        singular values ``s`` (descending).
    """
    from torch.func import jvp, vjp, vmap

    primals = {n: p.detach() for n, p in params.items()}
    first = next(iter(primals.values()))
    out, vjp_fn = vjp(losses, primals)
    m = out.shape[0]
    if not 1 <= k <= m:
        raise ValueError(f"k must be in [1, m={m}], not {k}")
    l_cols = min(k + oversample, m)

    def jt(z: torch.Tensor) -> torch.Tensor:  # Jᵀ Z for the l rows of z (l × m) → l × D
        return vmap(lambda c: flatten(vjp_fn(c)[0]), chunk_size=chunk_size)(z.to(out.dtype))

    def j(q: torch.Tensor) -> torch.Tensor:  # J Q for the l rows of q (l × D) → l × m
        def one(t):
            return jvp(losses, (primals,), (unflatten(t, primals),))[1]

        return vmap(one, chunk_size=chunk_size)(q)

    omega = torch.randn(l_cols, m, generator=generator, dtype=torch.float64).to(out.device, out.dtype)
    q_rows = _orth(jt(omega))
    for _ in range(power_iters):
        q_rows = _orth(jt(j(q_rows)))
    b = j(q_rows).T  # m × l: B = J Q
    _, s, wh = torch.linalg.svd(b, full_matrices=False)
    v = wh[:k] @ q_rows  # (Q W_B)ᵀ restricted to the top k: k × D
    return v.detach().to(first.dtype), s[:k].detach()


def per_example_jacobian(
    losses: Callable[[Params, Any], torch.Tensor],
    params: Params,
    batch: Any,
    *,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """The per-example gradient matrix ``J`` (m × D): row i is example i's gradient of its loss.

    One ``vmap`` over the examples of ``grad`` of a single example's loss — about the work of one
    forward and backward pass over the m examples, but with the weight gradients kept per example.

    Args:
        losses: ``(params, batch) -> (b,)`` per-example losses of a batch (a pure function, as for
            :func:`randomized_basis`); called on one example at a time, ``b = 1``.
        params: the differentiable parameters (name → tensor); ``D`` = their total size.
        batch: a pytree (dict, tuple, …) of tensors whose leading dimension is the m examples.
        chunk_size: passed to ``torch.func.vmap`` (examples per pass) to bound activation memory.

    Returns:
        J (m × D, the params' dtype), columns in the order of :func:`flatten`. It holds ``m × D``
        numbers; assembling it needs up to one parameter's ``m ×`` size more for a moment.
    """
    from torch.func import grad, vmap
    from torch.utils._pytree import tree_map

    primals = {n: p.detach() for n, p in params.items()}

    def one(p: Params, example) -> torch.Tensor:  # the example's tensors lack the batch dim: add it
        return losses(p, tree_map(lambda t: t.unsqueeze(0), example)).sum()

    per_example = vmap(grad(one), in_dims=(None, 0), chunk_size=chunk_size)(primals, batch)
    first = next(iter(per_example.values()))
    m, dim = first.shape[0], sum(p.numel() for p in primals.values())
    jac = torch.empty(m, dim, dtype=first.dtype, device=first.device)
    start = 0
    for name in list(per_example):  # copy column blocks in, freeing each block as it goes
        block = per_example.pop(name).reshape(m, -1)
        jac[:, start : start + block.shape[1]] = block
        start += block.shape[1]
    return jac


def exact_basis(jacobian: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` right singular vectors (k × D, orthonormal rows) and singular values (descending) of
    an explicit Jacobian (m × D).

    A wide J (m <= D, the usual case) goes through its m × m Gram matrix: ``J Jᵀ = U Λ Uᵀ`` (``eigh``
    in float64), ``σ = √λ`` and ``V = orth(U_kᵀ J)`` — the rows of ``U_kᵀ J`` are ``σ_i v_iᵀ``, and
    orthonormalising them by QR instead of dividing by ``σ_i`` guards zero or tiny singular values
    (their rows become some orthonormal completion, as an SVD's would). This costs ``2 m² D`` flops,
    several times less than an SVD of J. A tall J uses ``torch.linalg.svd``.
    """
    m, dim = jacobian.shape
    if not 1 <= k <= min(m, dim):
        raise ValueError(f"k must be in [1, min(m, D)={min(m, dim)}], not {k}")
    jacobian = jacobian.detach()
    if m > dim:
        _, s, vh = torch.linalg.svd(jacobian, full_matrices=False)
        return vh[:k], s[:k]
    lam, u = torch.linalg.eigh((jacobian @ jacobian.T).double())
    lam, u = lam.flip(0)[:k], u.flip(1)[:, :k]  # descending
    v = _orth(u.T.to(jacobian.dtype) @ jacobian)
    return v, lam.clamp_min(0).sqrt().to(jacobian.dtype)


def per_example_basis(
    losses: Callable[[Params, Any], torch.Tensor],
    params: Params,
    batch: Any,
    k: int,
    *,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` right singular vectors of the per-example gradients, exactly: :func:`exact_basis` of
    :func:`per_example_jacobian` (same arguments). Returns ``(V, s)`` as :func:`randomized_basis`."""
    return exact_basis(per_example_jacobian(losses, params, batch, chunk_size=chunk_size), k)


def principal_angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Principal angles (radians, ascending) between the row spaces of ``a`` and ``b`` (each k × D,
    orthonormal rows): ``cos θ_i`` are the singular values of ``a bᵀ`` (Björck & Golub 1973)."""
    cos = torch.linalg.svdvals(a.double() @ b.double().T).clamp(-1.0, 1.0)
    return torch.arccos(cos).flip(0)


def basis_bytes(k: int, dim: int, dtype_bytes: int = 4) -> int:
    """Bytes held by a k × D fp32 basis."""
    return int(k) * int(dim) * dtype_bytes


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def is_orthonormal(v: torch.Tensor, atol: float = 1e-4) -> bool:
    eye = torch.eye(v.shape[0], dtype=v.dtype, device=v.device)
    return bool(torch.allclose(v @ v.T, eye, atol=atol))


__all__ = [
    "basis_bytes",
    "exact_basis",
    "flatten",
    "format_bytes",
    "is_orthonormal",
    "per_example_basis",
    "per_example_jacobian",
    "principal_angles",
    "randomized_basis",
    "unflatten",
]
