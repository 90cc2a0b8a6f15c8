"""The primary-task subspace: top-k right singular vectors of the per-example gradient Jacobian.

Let ``ℓ(θ) = (ℓ_1(θ), …, ℓ_m(θ))`` be the per-example primary losses of a reference batch and
``J = ∂ℓ/∂θ`` (m × D) their Jacobian on the chosen shared parameters: row i is example i's gradient.
ATTITTUD (Dery, Dauphin & Grangier, ICLR 2021, §3) projects auxiliary gradients onto
``span(V)``, where ``V`` (k × D) holds the top-k right singular vectors of ``J``
(``J = Σᵢ σᵢ uᵢ vᵢᵀ``; row i of ``V`` is ``vᵢᵀ``, so the rows are orthonormal and ``J ≈ U_k Σ_k V``).

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

:func:`per_example_basis` computes ``V`` exactly from the per-example gradients:
:func:`per_example_grads` is one ``vmap`` of ``grad`` over the m examples (about one forward and
backward pass of the m examples), and :func:`block_basis` takes the top-k right singular vectors of
``J`` through its m × m Gram matrix, block by block (J is never copied into one matrix). It holds
``m × D`` floats for a moment — when that fits, it is both exact and much cheaper than the
``2 (q + 1) l`` batched passes of :func:`randomized_basis`, whose memory does not grow with m.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

Params = dict[str, torch.Tensor]

GiB = 2**30
#: how :class:`~auxopt.grad.Attittud` may compute the basis
METHODS = ("auto", "per_example", "randomized")


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


class Groups(tuple):
    """The m examples of a reference batch as groups, each a batch of its own shapes (the examples
    of one group padded to that group's longest, say), given to :func:`per_example_grads` and
    :func:`randomized_basis` in place of one batch. The per-example losses do not depend on how the
    examples are grouped, and the basis not on the order of J's rows; only the padding computed
    changes: a batch padded to its longest example makes every example pay for that length."""

    def size(self) -> int:
        from torch.utils._pytree import tree_leaves

        return sum(next(int(t.shape[0]) for t in tree_leaves(g) if isinstance(t, torch.Tensor)) for g in self)


def group_losses(losses: Callable[[Params, Any], torch.Tensor], batch: Any) -> Callable[[Params], torch.Tensor]:
    """``params -> (m,)`` per-example losses of ``batch`` (one batch, or :class:`Groups` in order)."""
    if isinstance(batch, Groups):
        return lambda p: torch.cat([losses(p, g) for g in batch])
    return lambda p: losses(p, batch)


def per_example_grads(
    losses: Callable[[Params, Any], torch.Tensor],
    params: Params,
    batch: Any,
    *,
    chunk_size: int | None = None,
) -> list[torch.Tensor]:
    """The per-example gradient matrix ``J`` (m × D) as column blocks, one m × d_p block a parameter
    (in the order of ``params``, i.e. of :func:`flatten`): row i is example i's gradient of its loss.

    One ``vmap`` over the examples of ``grad`` of a single example's loss — about the work of one
    forward and backward pass over the m examples, but with the weight gradients kept per example.

    Args:
        losses: ``(params, batch) -> (b,)`` per-example losses of a batch (a pure function, as for
            :func:`randomized_basis`); called on one example at a time, ``b = 1``.
        params: the differentiable parameters (name → tensor); ``D`` = their total size.
        batch: a pytree (dict, tuple, …) of tensors whose leading dimension is the m examples, or
            :class:`Groups` of them (one ``vmap`` a group; the rows follow the groups' order).
        chunk_size: passed to ``torch.func.vmap`` (examples per pass) to bound activation memory.

    Returns:
        the blocks (m × d_p each, the params' dtype; views of vmap's output, no copy, for one
        batch): ``m × D`` numbers in all.
    """
    from torch.func import grad, vmap
    from torch.utils._pytree import tree_map

    primals = {n: p.detach() for n, p in params.items()}

    def one(p: Params, example) -> torch.Tensor:  # the example's tensors lack the batch dim: add it
        return losses(p, tree_map(lambda t: t.unsqueeze(0), example)).sum()

    if not isinstance(batch, Groups):
        per_example = vmap(grad(one), in_dims=(None, 0), chunk_size=chunk_size)(primals, batch)
        return [per_example[name].reshape(per_example[name].shape[0], -1) for name in primals]
    blocks = [torch.empty(batch.size(), p.numel(), dtype=p.dtype, device=p.device) for p in primals.values()]
    start = 0
    for group in batch:  # each group's rows written into place: the blocks are built once
        per_example = vmap(grad(one), in_dims=(None, 0), chunk_size=chunk_size)(primals, group)
        rows = next(iter(per_example.values())).shape[0]
        for block, name in zip(blocks, primals, strict=True):
            block[start : start + rows] = per_example[name].reshape(rows, -1)
        start += rows
        del per_example
    return blocks


def per_example_jacobian(
    losses: Callable[[Params, Any], torch.Tensor],
    params: Params,
    batch: Any,
    *,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """J (m × D) itself: :func:`per_example_grads`' blocks side by side (a copy of ``m × D``
    numbers; :func:`per_example_basis` works on the blocks and never makes it)."""
    return torch.cat(per_example_grads(losses, params, batch, chunk_size=chunk_size), dim=1)


def _cholesky_inverse(gram: torch.Tensor) -> torch.Tensor | None:
    """``L⁻¹`` for ``gram = L Lᵀ`` (k × k, float64), or None where it is not numerically positive definite."""
    chol, info = torch.linalg.cholesky_ex(gram)
    if int(info) != 0 or not bool(torch.isfinite(chol).all()):
        return None
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    return torch.linalg.solve_triangular(chol, eye, upper=False)


def _orth_scaled(w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Orthonormal rows from ``w`` (k × D) whose rows are ``s_i v_iᵀ`` with orthonormal ``v_i``.

    Cholesky-QR with the scaling folded in: ``C = S⁻¹ w wᵀ S⁻¹ ≈ I`` (float64, k × k), ``C = L Lᵀ``,
    ``V = (L⁻¹ S⁻¹) w`` — one ``w wᵀ`` and one k × k by k × D product, far cheaper than a
    Householder QR of the D × k matrix. Its rows are orthonormal to about ``ε κ(C)``; when C is not
    close to I (rounding in a wide spectrum) a second pass follows ("CholeskyQR2"). Where some
    ``s_i`` is zero, or C is numerically singular (rank below k), a QR of ``w`` gives the rows
    instead (some orthonormal completion, as an SVD's would be).
    """
    s = s.double()
    if bool((s > s.max() * torch.finfo(w.dtype).eps).all()):
        scaled = (w @ w.T).double() / torch.outer(s, s)
        inverse = _cholesky_inverse(scaled)
        if inverse is not None:
            v = (inverse / s.unsqueeze(0)).to(w.dtype) @ w
            eye = torch.eye(len(s), dtype=scaled.dtype, device=scaled.device)
            if float((scaled - eye).abs().max()) < 0.1:
                return v
            inverse = _cholesky_inverse((v @ v.T).double())
            if inverse is not None:
                return inverse.to(w.dtype) @ v
    return _orth(w)


def block_basis(blocks: list[torch.Tensor], k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` right singular vectors (k × D, orthonormal rows) and singular values (descending) of
    ``J = [B_1 … B_n]`` (column blocks, each m × d_b, m <= D), without forming J.

    Through the m × m Gram matrix ``J Jᵀ = Σ_b B_b B_bᵀ = U Λ Uᵀ`` (``eigh`` in float64):
    ``σ = √λ`` and the rows of ``U_kᵀ J = [U_kᵀ B_1 … U_kᵀ B_n]`` are ``σ_i v_iᵀ``, orthonormalised by
    :func:`_orth_scaled`. This costs about ``2 (m + k) m D`` flops and ``k × D`` numbers beyond the
    blocks, several times less than an SVD of J.
    """
    m = blocks[0].shape[0]
    dim = sum(b.shape[1] for b in blocks)
    if not 1 <= k <= min(m, dim):
        raise ValueError(f"k must be in [1, min(m, D)={min(m, dim)}], not {k}")
    gram = torch.zeros(m, m, dtype=torch.float64, device=blocks[0].device)
    for b in blocks:
        gram += (b @ b.T).double()
    lam, u = torch.linalg.eigh(gram)
    lam, u = lam.flip(0)[:k], u.flip(1)[:, :k]  # descending
    s = lam.clamp_min(0).sqrt()
    w = torch.empty(k, dim, dtype=blocks[0].dtype, device=blocks[0].device)
    start, ut = 0, u.T.to(blocks[0].dtype)
    for b in blocks:
        w[:, start : start + b.shape[1]] = ut @ b
        start += b.shape[1]
    return _orth_scaled(w, s.to(w.dtype)), s.to(w.dtype)


def exact_basis(jacobian: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` right singular vectors (k × D, orthonormal rows) and singular values (descending) of
    an explicit Jacobian (m × D): :func:`block_basis` of J as one block when it is wide (m <= D, the
    usual case), ``torch.linalg.svd`` when it is tall."""
    m, dim = jacobian.shape
    if not 1 <= k <= min(m, dim):
        raise ValueError(f"k must be in [1, min(m, D)={min(m, dim)}], not {k}")
    jacobian = jacobian.detach()
    if m > dim:
        _, s, vh = torch.linalg.svd(jacobian, full_matrices=False)
        return vh[:k], s[:k]
    return block_basis([jacobian], k)


def per_example_basis(
    losses: Callable[[Params, Any], torch.Tensor],
    params: Params,
    batch: Any,
    k: int,
    *,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` right singular vectors of the per-example gradients, exactly: :func:`block_basis` of
    :func:`per_example_grads` (same arguments), J never copied into one matrix. Returns ``(V, s)``
    as :func:`randomized_basis`; holds the m × D gradients and k × D more at its peak."""
    blocks = per_example_grads(losses, params, batch, chunk_size=chunk_size)
    if sum(b.shape[1] for b in blocks) < blocks[0].shape[0]:  # tall: fewer parameters than examples
        return exact_basis(torch.cat(blocks, dim=1), k)
    return block_basis(blocks, k)


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
    "Groups",
    "group_losses",
    "format_bytes",
    "is_orthonormal",
    "block_basis",
    "per_example_basis",
    "per_example_grads",
    "per_example_jacobian",
    "principal_angles",
    "randomized_basis",
    "unflatten",
]
