"""The modes a model runs in while ATTITTUD's primary subspace is computed: every submodule in eval
mode (dropout off) and transformers models on eager attention (:func:`basis_mode`,
:func:`eager_attention`), and transformers' attention masks made buildable under ``torch.func.vmap``
(:func:`vmap_safe_masks`). The randomised SVD multiplies by the same Jacobian several times, which
only means something if the function is deterministic; ``jvp`` needs a forward-mode derivative,
which fused SDPA kernels lack; the per-example method vmaps the model's forward.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import torch


@contextlib.contextmanager
def basis_mode(module: torch.nn.Module):
    """Run ``module`` as the subspace computation needs it: every submodule in eval mode (dropout
    off, batch norm on its running statistics) and transformers models on their eager (matmul +
    softmax) attention, whose forward-mode derivative ``jvp`` needs (fused SDPA kernels have none).
    On exit each submodule gets back its own training flag and each config its attention.

        with basis_mode(model):
            V, s = randomized_basis(lambda p: per_example_loss(p, batch), params, k)

    :meth:`Attittud.refresh` enters it for you when given ``module=``.
    """
    modes = [(sub, sub.training) for sub in module.modules()]
    configs: dict[int, tuple[Any, Any]] = {}
    for sub in module.modules():
        config = getattr(sub, "config", None)
        old = getattr(config, "_attn_implementation", None)
        if config is not None and old not in (None, "eager") and id(config) not in configs:
            configs[id(config)] = (config, old)
    module.eval()
    for config, _ in configs.values():
        config._attn_implementation = "eager"
    try:
        yield module
    finally:
        for config, old in configs.values():
            config._attn_implementation = old
        for sub, training in modes:
            sub.training = training


@contextlib.contextmanager
def eager_attention(module: torch.nn.Module):
    """Run a transformers model with eager attention inside (SDPA kernels have no forward-mode AD);
    the attention half of :func:`basis_mode`, on ``module.config`` alone."""
    config = getattr(module, "config", None)
    old = getattr(config, "_attn_implementation", None)
    if config is None or old in (None, "eager"):
        yield
        return
    config._attn_implementation = "eager"
    try:
        yield
    finally:
        config._attn_implementation = old


_MASK_CHECKS = ("_ignore_bidirectional_mask_sdpa", "_ignore_causal_mask_sdpa")


def vmap_safe_masks() -> None:
    """Let transformers build attention masks under ``torch.func.vmap`` (the per-example method).

    transformers 5 drops a 2-D padding mask that masks nothing by testing ``padding_mask.all()`` (in
    ``masking_utils``), a data-dependent branch that vmap cannot take. This wraps those tests, once per
    process, so that where one raises the mask is built instead — the same attention, with an explicit
    all-visible mask; everywhere else they answer as before. Versions without the tests are left alone.
    """
    try:
        from transformers import masking_utils
    except ImportError:  # pragma: no cover - transformers is a dependency
        return
    for name in _MASK_CHECKS:
        check = getattr(masking_utils, name, None)
        if check is None or getattr(check, "_auxopt_vmap_safe", False):
            continue

        def safe(*args, _check=check, **kwargs) -> bool:
            try:
                return _check(*args, **kwargs)
            except RuntimeError:  # undecidable under vmap: keep (materialise) the mask
                return False

        safe._auxopt_vmap_safe = True
        setattr(masking_utils, name, functools.wraps(check)(safe))


__all__ = ["basis_mode", "eager_attention", "vmap_safe_masks"]
