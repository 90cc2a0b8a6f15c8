"""Task schedules: which task the next minibatch comes from.

A schedule is a small object with ``next_task() -> str`` and ``state_dict()``/``load_state_dict()``
(so a run can be checkpointed and resumed). Ratios map task name → weight; the primary task usually
has weight 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np

from auxopt.errors import AuxoptError


class TaskSchedule(Protocol):
    def next_task(self) -> str: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class RoundRobinSchedule:
    """AutoSeM's deterministic schedule for integer mixing ratios.

    One round visits the tasks in the given order and takes ``ratio[t]`` consecutive minibatches of
    each: ratios ``{"p": 1, "a": 2, "b": 1}`` give ``p a a b p a a b …``.
    """

    def __init__(self, ratios: Mapping[str, int]):
        self.ratios = {name: int(r) for name, r in _check(ratios).items()}
        for name, r in ratios.items():
            if float(r) != int(r):
                raise AuxoptError(f"round-robin needs integer ratios; {name!r} has {r}")
        self.cycle = [name for name, r in self.ratios.items() for _ in range(r)]
        self.position = 0

    def next_task(self) -> str:
        name = self.cycle[self.position % len(self.cycle)]
        self.position += 1
        return name

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.position = int(state["position"])


class ProportionalSchedule:
    """Sample each minibatch's task with probability ``ratio[t] / sum(ratios)`` (seeded)."""

    def __init__(self, ratios: Mapping[str, float], seed: int = 0):
        ratios = _check(ratios)
        self.names = list(ratios)
        weights = np.array([ratios[n] for n in self.names], dtype=np.float64)
        self.probs = weights / weights.sum()
        self.rng = np.random.default_rng(seed)

    def next_task(self) -> str:
        return self.names[int(self.rng.choice(len(self.names), p=self.probs))]

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


def make_schedule(ratios: Mapping[str, float], kind: str = "auto", seed: int = 0) -> TaskSchedule:
    """``kind``: ``"round_robin"``, ``"proportional"``, or ``"auto"`` (round-robin when every ratio is a
    whole number, else proportional)."""
    if kind == "auto":
        kind = "round_robin" if all(float(r).is_integer() for r in ratios.values()) else "proportional"
    if kind == "round_robin":
        return RoundRobinSchedule(ratios)
    if kind == "proportional":
        return ProportionalSchedule(ratios, seed=seed)
    raise AuxoptError(f"unknown schedule {kind!r}; use 'auto', 'round_robin' or 'proportional'")


def _check(ratios: Mapping[str, float]) -> dict[str, float]:
    out = {}
    for name, r in ratios.items():
        r = float(r)
        if not np.isfinite(r) or r < 0:
            raise AuxoptError(f"mixing ratio of {name!r} must be a finite number >= 0, not {r}")
        if r > 0:
            out[name] = r
    if not out:
        raise AuxoptError("every mixing ratio is 0: give at least one task a positive ratio")
    return out
