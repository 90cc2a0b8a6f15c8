"""Input transforms and representation masks: the second and third stages of an objective.

The representation is an attention pattern on the shared encoder, passed to a transformers
``BertModel`` as a ready 4-D additive mask of shape ``(batch, 1, query, key)`` (transformers 5 returns
a 4-D mask as is; 0 where a query may attend a key, the dtype's minimum elsewhere), combined with the
padding mask. Every query may attend itself, so that no row of the softmax is empty (padding rows
included).

* bidirectional — every real token;
* left-to-right — keys ``j <= i`` (causal, lower-triangular);
* right-to-left — keys ``j >= i`` (upper-triangular);
* random-factorised — a random permutation ``z`` of each sequence's real positions (XLNet,
  Yang et al. 2019, Eq. 3): query ``i`` attends key ``j`` when ``rank_z(j) <= rank_z(i)``.
"""

from __future__ import annotations

import torch


def select_tokens(real: torch.Tensor, special: torch.Tensor, prob: float, generator: torch.Generator) -> torch.Tensor:
    """A boolean mask of selected positions: each real, non-special token with probability ``prob``;
    at least one per sequence that has a candidate (so every loss has a target)."""
    candidates = real & ~special
    draw = torch.rand(real.shape, generator=generator)
    selected = (draw < prob) & candidates
    empty = ~selected.any(dim=1) & candidates.any(dim=1)
    if empty.any():  # select the candidate with the smallest draw in rows that got none
        fallback = draw.masked_fill(~candidates, 2.0).argmin(dim=1)
        rows = empty.nonzero().squeeze(1)
        selected[rows, fallback[rows]] = True
    return selected


def apply_transform(
    ids: torch.Tensor,
    selected: torch.Tensor,
    transform: str,
    *,
    mask_id: int | None,
    vocabulary: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """The corrupted input: ``mask`` → [MASK] at selected positions, ``replace`` → a random token
    (drawn from ``vocabulary``, the non-special ids), ``bert_op`` → 80 % [MASK], 10 % random, 10 %
    unchanged (Devlin et al. 2019, §3.1); ``none`` → unchanged."""
    if transform == "none":
        return ids
    out = ids.clone()
    random_ids = vocabulary[torch.randint(len(vocabulary), ids.shape, generator=generator)]
    if transform == "mask":
        out[selected] = mask_id
    elif transform == "replace":
        out[selected] = random_ids[selected]
    elif transform == "bert_op":
        u = torch.rand(ids.shape, generator=generator)
        out[selected & (u < 0.8)] = mask_id
        swap = selected & (u >= 0.8) & (u < 0.9)
        out[swap] = random_ids[swap]
    else:
        raise ValueError(f"unknown transform {transform!r}")
    return out


def factorisation_order(real: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A random order of each row's real positions (padding last, in place): ``(order, rank)`` where
    ``order[b, r]`` is the position at rank ``r`` and ``rank[b, i]`` the rank of position ``i``."""
    _, length = real.shape
    positions = torch.arange(length, dtype=torch.float32).expand(real.shape)
    keys = torch.where(real, torch.rand(real.shape, generator=generator), 2.0 + positions)
    order = keys.argsort(dim=1)
    rank = order.argsort(dim=1)
    return order, rank


def representation_mask(real: torch.Tensor, representation: str, rank: torch.Tensor | None = None) -> torch.Tensor:
    """Boolean ``(batch, query, key)``: may query ``i`` attend key ``j`` (see the module docstring)."""
    _, length = real.shape
    i = torch.arange(length).unsqueeze(1)
    j = torch.arange(length).unsqueeze(0)
    if representation == "bidirectional":
        allowed = torch.ones(length, length, dtype=torch.bool).expand(real.shape[0], -1, -1)
    elif representation == "left_to_right":
        allowed = (j <= i).expand(real.shape[0], -1, -1)
    elif representation == "right_to_left":
        allowed = (j >= i).expand(real.shape[0], -1, -1)
    elif representation == "random_factorised":
        if rank is None:
            raise ValueError("the random-factorised mask needs the factorisation ranks")
        allowed = rank.unsqueeze(1) <= rank.unsqueeze(2)
    else:
        raise ValueError(f"unknown representation {representation!r}")
    allowed = allowed & real.unsqueeze(1)
    return allowed | torch.eye(length, dtype=torch.bool).unsqueeze(0)


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The 4-D additive attention mask ``(batch, 1, query, key)`` BertModel takes as is."""
    bias = torch.zeros(allowed.shape, dtype=dtype)
    bias.masked_fill_(~allowed, torch.finfo(dtype).min)
    return bias.unsqueeze(1)


def next_token_targets(
    real: torch.Tensor, representation: str, order: torch.Tensor | None = None, rank: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each position, the position of the token it predicts and whether it has one:
    ``i + 1`` left-to-right, ``i - 1`` right-to-left, the next position of the factorisation order
    for random-factorised. Returns ``(target_position, valid)``."""
    batch, length = real.shape
    lengths = real.sum(dim=1, keepdim=True)
    pos = torch.arange(length).expand(batch, -1)
    if representation == "left_to_right":
        target = pos + 1
        valid = target < lengths
    elif representation == "right_to_left":
        target = pos - 1
        valid = (target >= 0) & (pos < lengths)
    elif representation == "random_factorised":
        nxt = rank + 1
        valid = nxt < lengths
        target = order.gather(1, nxt.clamp_max(length - 1))
    else:
        raise ValueError(f"next-token prediction has no order under {representation!r}")
    return target.clamp(0, length - 1), valid & real
