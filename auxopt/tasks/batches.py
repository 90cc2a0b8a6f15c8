"""Minibatch index streams: an endless, seeded, reshuffled order over one task's train split.

The trainer, AANG's data stages, ATTITTUD's reference batches and the ``transformers`` batch sampler
all draw minibatches this way, so a run's stream depends only on its seed and is checkpointable.
"""

from __future__ import annotations

import torch


class Batches:
    """An endless stream of shuffled minibatch indices over one task's train split (seeded)."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size = n, min(batch_size, n)
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(n, generator=self.generator)
        self.position = 0

    def next(self) -> torch.Tensor:
        if self.position + self.batch_size > self.n:
            self.order = torch.randperm(self.n, generator=self.generator)
            self.position = 0
        index = self.order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return index

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order.clone(), "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order, self.position = state["order"].clone(), int(state["position"])
