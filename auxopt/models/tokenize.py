"""Tokenisation with an in-process cache: each (tokenizer, task, split, max length) is encoded once,
however many trials of a study train on it."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

from auxopt.tasks.task import Task

_CACHE: OrderedDict[tuple, Encoded] = OrderedDict()
_CACHE_SIZE = 64


@dataclass(frozen=True)
class Encoded:
    """A split as padded id tensors (padded to its longest example) and per-example lengths."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor
    lengths: torch.Tensor

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """Rows ``index``, trimmed to the longest of them (dynamic padding)."""
        width = int(self.lengths[index].max())
        return {
            "input_ids": self.input_ids[index, :width],
            "attention_mask": self.attention_mask[index, :width],
            "token_type_ids": self.token_type_ids[index, :width],
        }


def tokenizer_key(tokenizer) -> tuple:
    return (type(tokenizer).__name__, getattr(tokenizer, "name_or_path", ""), len(tokenizer))


def encode_split(tokenizer, task: Task, split: str, max_length: int) -> Encoded:
    key = (tokenizer_key(tokenizer), task.fingerprint, split, max_length)
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    data = task.split(split)
    out = tokenizer(
        list(data.texts),
        list(data.pairs) if data.pairs is not None else None,
        truncation=True,
        max_length=max_length,
        padding="longest",
        return_tensors="pt",
        return_token_type_ids=True,
    )
    mask = out["attention_mask"]
    encoded = Encoded(out["input_ids"], mask, out["token_type_ids"], mask.sum(dim=1))
    _CACHE[key] = encoded
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return encoded
