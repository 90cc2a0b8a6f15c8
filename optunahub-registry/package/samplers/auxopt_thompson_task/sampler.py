"""OptunaHub's entry to auxopt's ThompsonTaskSampler: the sampler itself lives in auxopt."""

from __future__ import annotations

try:
    from auxopt.samplers import ThompsonTaskSampler, select_tasks
except ImportError as e:  # pragma: no cover - what a user without auxopt sees
    raise ImportError("this OptunaHub package wraps auxopt's sampler: pip install auxopt") from e


__all__ = ["ThompsonTaskSampler", "select_tasks"]
