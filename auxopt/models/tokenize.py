"""Tokenisation with an in-process cache: each (tokenizer, task, split, max length) is encoded once,
however many trials of a study train on it."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

from auxopt.errors import AuxoptError
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

    def batch(self, index: torch.Tensor, multiple: int = 1) -> dict[str, torch.Tensor]:
        """Rows ``index``, trimmed to the longest of them (dynamic padding), its width rounded up to
        a multiple of ``multiple`` where the split is that wide."""
        width = int(self.lengths[index].max())
        width = min(-(-width // multiple) * multiple, self.input_ids.shape[1])
        return {
            "input_ids": self.input_ids[index, :width],
            "attention_mask": self.attention_mask[index, :width],
            "token_type_ids": self.token_type_ids[index, :width],
        }


def tokenizer_key(tokenizer) -> tuple:
    return (type(tokenizer).__name__, getattr(tokenizer, "name_or_path", ""), len(tokenizer))


def check_max_length(max_length: int, *, pair: bool = False, special: int | None = None, what: str = "") -> None:
    """An :class:`AuxoptError` when ``max_length`` leaves no room for a token of each text beyond the
    special tokens: BERT-style tokenizers spend 2 on a single text (``[CLS] x [SEP]``) and 3 on a
    pair (``[CLS] a [SEP] b [SEP]``), so the least is 3 and 5; ``special`` gives a tokenizer's own
    count (``tokenizer.num_special_tokens_to_add(pair)``), ``what`` names the task."""
    special = (3 if pair else 2) if special is None else int(special)
    need = special + (2 if pair else 1)
    if max_length < need:
        texts = "a text pair" if pair else "a text"
        raise AuxoptError(
            f"max_length={max_length} leaves no room for the text{' of ' + what if what else ''}: "
            f"{special} tokens of {texts} are special ([CLS], [SEP]), so the model would see those "
            f"alone; use max_length >= {need} (typically 64 to 128)"
        )


def check_room(tokenizer, task: Task, max_length: int) -> None:
    """:func:`check_max_length` for ``task`` with ``tokenizer``'s own count of special tokens."""
    pair = task.train.pairs is not None
    check_max_length(
        max_length, pair=pair, special=tokenizer.num_special_tokens_to_add(pair=pair), what=f"task {task.name!r}"
    )


def encode_split(tokenizer, task: Task, split: str, max_length: int) -> Encoded:
    key = (tokenizer_key(tokenizer), task.fingerprint, split, max_length)
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    check_room(tokenizer, task, max_length)
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
