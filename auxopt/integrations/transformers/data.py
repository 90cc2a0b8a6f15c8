"""Data for ``transformers.Trainer``: tokenised task splits and task-tagged datasets, the padding collator,
the batch sampler that mixes tasks by ratios, and a ``compute_metrics`` for a task."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from auxopt.errors import AuxoptError
from auxopt.models import encode_split
from auxopt.tasks.batches import Batches
from auxopt.tasks.task import Task
from auxopt.train.schedules import make_schedule

__all__ = ["MixingBatchSampler", "MultiTaskCollator", "TaggedDataset", "TaskDataset", "task_metrics"]


class TaskDataset(Dataset):
    """One split of a :class:`~auxopt.tasks.Task`, tokenised (cached, :func:`auxopt.models.encode_split`),
    as examples ``{"input_ids", "attention_mask", "token_type_ids", "labels", "task_ids"}`` (unpadded)."""

    def __init__(self, task: Task, split: str, tokenizer, max_length: int = 128, task_id: int = 0):
        self.task, self.task_id = task, int(task_id)
        self.encoded = encode_split(tokenizer, task, split, max_length)
        labels = task.split(split).labels
        dtype = torch.long if task.kind == "classification" else torch.float32
        self.labels = torch.as_tensor(np.asarray(labels), dtype=dtype)

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, i: int) -> dict[str, Any]:
        n = int(self.encoded.lengths[i])
        return {
            "input_ids": self.encoded.input_ids[i, :n],
            "attention_mask": self.encoded.attention_mask[i, :n],
            "token_type_ids": self.encoded.token_type_ids[i, :n],
            "labels": self.labels[i],
            "task_ids": self.task_id,
        }


class TaggedDataset(Dataset):
    """``dataset``'s examples (dicts) with ``"task_ids": task_id`` added."""

    def __init__(self, dataset, task_id: int):
        self.dataset, self.task_id = dataset, int(task_id)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {**self.dataset[i], "task_ids": self.task_id}


def _tag(dataset, task_id: int):
    if isinstance(dataset, TaskDataset) and dataset.task_id == task_id:
        return dataset
    return TaggedDataset(dataset, task_id)


class MultiTaskCollator:
    """Pads a list of examples (dicts) into a batch: sequences (lists or 1-D tensors) to the longest
    of the batch, ``input_ids`` with ``pad_token_id``, sequence ``labels`` with -100, other sequences
    (attention mask, token types) with 0; scalars (class labels, ``task_ids``) stacked."""

    def __init__(self, pad_token_id: int = 0):
        self.pad_token_id = int(pad_token_id)

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {}
        for key in examples[0]:
            values = [e[key] for e in examples]
            first = values[0]
            if isinstance(first, list | tuple) or (isinstance(first, torch.Tensor) and first.dim() > 0):
                tensors = [torch.as_tensor(v) for v in values]
                pad = self.pad_token_id if key == "input_ids" else (-100 if key == "labels" else 0)
                batch[key] = torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True, padding_value=pad)
            elif isinstance(first, torch.Tensor):
                batch[key] = torch.stack(values)
            else:
                batch[key] = torch.tensor(values)
        return batch


class MixingBatchSampler(Sampler[list[int]]):
    """Batches of indices into the concatenation of the tasks' datasets (in ``sizes`` order), each
    batch from one task drawn by :func:`~auxopt.train.schedules.make_schedule` over ``ratios``
    (``kind``: ``"auto"``, ``"round_robin"`` or ``"proportional"``). With ``paired=True`` (ATTITTUD)
    every batch is one primary minibatch followed by one auxiliary minibatch, the auxiliary drawn
    from the same schedule (its primary draws skipped, as auxopt's trainer does). Each task's
    examples are visited in a seeded reshuffled order. ``counts`` counts the minibatches drawn per
    task (a dataloader may draw one ahead of training; ``MultiTaskTrainer.task_batches`` counts those trained);
    one pass (``len``) is ``num_batches`` batches (default: as many as the active tasks' examples
    fill)."""

    def __init__(
        self,
        sizes: Mapping[str, int],
        ratios: Mapping[str, float],
        batch_size: int,
        *,
        primary: str,
        kind: str = "auto",
        seed: int = 0,
        paired: bool = False,
        num_batches: int | None = None,
    ):
        if kind not in ("auto", "round_robin", "proportional"):
            raise AuxoptError(f"the mixing schedule must be 'auto', 'round_robin' or 'proportional', not {kind!r}")
        unknown = set(ratios) - set(sizes)
        if unknown:
            raise AuxoptError(
                f"ratios name task(s) {sorted(unknown)} without a training dataset; the tasks are {list(sizes)}"
            )
        self.primary, self.paired, self.batch_size = primary, paired, int(batch_size)
        self.offsets, start = {}, 0
        for name, n in sizes.items():
            self.offsets[name], start = start, start + int(n)
        self.schedule = make_schedule(ratios, kind, seed=seed)
        self.active = [n for n, r in ratios.items() if float(r) > 0]
        self.auxiliaries = [n for n in self.active if n != primary]
        if paired and not self.auxiliaries:
            raise AuxoptError(
                "ATTITTUD needs an auxiliary task with a positive mixing ratio; every auxiliary ratio is 0"
            )
        self.streams = {n: Batches(int(sizes[n]), self.batch_size, seed * 7919 + 101 + i) for i, n in enumerate(sizes)}
        per_batch = self.batch_size * (2 if paired else 1)
        self.num_batches = num_batches or max(1, math.ceil(sum(int(sizes[n]) for n in self.active) / per_batch))
        self.counts: Counter[str] = Counter()
        self._next_aux = 0

    def _auxiliary(self) -> str:
        for _ in range(4 * len(self.active)):
            name = self.schedule.next_task()
            if name != self.primary:
                return name
        name = self.auxiliaries[self._next_aux % len(self.auxiliaries)]
        self._next_aux += 1
        return name

    def next_batch(self) -> list[int]:
        names = [self.primary, self._auxiliary()] if self.paired else [self.schedule.next_task()]
        out: list[int] = []
        for name in names:
            self.counts[name] += 1
            out.extend((self.streams[name].next() + self.offsets[name]).tolist())
        return out

    def __iter__(self):
        for _ in range(self.num_batches):
            yield self.next_batch()

    def __len__(self) -> int:
        return self.num_batches


def task_metrics(task: Task) -> Callable[[Any], dict[str, float]]:
    """A ``compute_metrics`` for ``Trainer``: ``{task.metric: score}`` from the logits (argmax for
    classification, the single output for regression) and the labels."""

    def compute(eval_pred) -> dict[str, float]:
        logits, labels = eval_pred.predictions, eval_pred.label_ids
        logits = logits[0] if isinstance(logits, tuple) else logits
        logits = np.asarray(logits)
        preds = logits.argmax(-1) if task.kind == "classification" else logits.reshape(-1)
        return {task.metric: float(task.score(np.asarray(labels), preds))}

    return compute
