"""The model for ``transformers.Trainer``: auxopt's shared encoder with a head per task, whose ``forward``
takes the batch and returns the loss (:class:`MultiTaskModelForTrainer`, :func:`load_multitask_model`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from auxopt.errors import AuxoptError
from auxopt.models import MultiTaskModel, load_encoder
from auxopt.models.losses import per_example_loss as _per_example_loss
from auxopt.tasks.task import Task

__all__ = ["MultiTaskModelForTrainer", "load_multitask_model"]


class MultiTaskModelForTrainer(MultiTaskModel):
    """auxopt's shared encoder + mean pooling + a head per task (:class:`~auxopt.models.MultiTaskModel`,
    the same module and parameter names as auxopt's own trainer) with the ``forward`` that
    ``transformers.Trainer`` calls: the batch in, ``{"loss", "logits"}`` out.

    ``forward(input_ids, attention_mask, token_type_ids=None, labels=None, task_ids=None, task=None,
    reduction="mean")``: the task is ``task`` (a name) or ``task_ids`` (indices into
    :attr:`task_names`, one per example); a batch of one task returns its logits, a batch mixing
    tasks the size-weighted mean of their losses and no logits. ``reduction="none"`` returns one
    loss per example (ATTITTUD's per-example primary loss).
    """

    def __init__(self, encoder: nn.Module, hidden_size: int, tasks: Sequence[Task], dropout: float = 0.1):
        tasks = list(tasks)
        super().__init__(encoder, hidden_size, tasks, dropout=dropout)
        self.task_names = [t.name for t in tasks]
        self.tasks = {t.name: t for t in tasks}

    def _task_loss(self, task: Task, logits: torch.Tensor, labels: torch.Tensor, reduction: str) -> torch.Tensor:
        losses = _per_example_loss(task, logits, labels)  # fp32 cross-entropy / squared error
        return losses if reduction == "none" else losses.mean()

    def forward(  # type: ignore[override]
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        task_ids: torch.Tensor | None = None,
        task: str | None = None,
        reduction: str = "mean",
    ) -> dict[str, torch.Tensor]:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if task is None:
            if task_ids is None:
                if len(self.task_names) != 1:
                    raise AuxoptError(
                        f"MultiTaskModelForTrainer: a batch needs task_ids (or task=name) to pick one of "
                        f"the heads {self.task_names}"
                    )
                task = self.task_names[0]
            else:
                ids = torch.as_tensor(task_ids).view(-1)
                first = int(ids[0])
                if bool((ids == first).all()):
                    task = self.task_names[first]
        if task is not None:
            if task not in self.tasks:
                raise AuxoptError(f"MultiTaskModelForTrainer: unknown task {task!r}; the tasks are {self.task_names}")
            spec = self.tasks[task]
            logits = super().forward(spec.head_name, input_ids, attention_mask, token_type_ids)
            out = {"logits": logits}
            if labels is not None:
                out = {"loss": self._task_loss(spec, logits, labels, reduction), "logits": logits}
            return out
        # a batch mixing tasks: one encoder pass, each task's examples through its own head
        pooled = self.dropout(self.pool(input_ids, attention_mask, token_type_ids))
        if labels is None:
            raise AuxoptError("MultiTaskModelForTrainer: a batch mixing tasks returns only a loss; give labels")
        losses = torch.zeros(ids.shape[0], dtype=torch.float32, device=pooled.device)
        for value in ids.unique().tolist():
            spec = self.tasks[self.task_names[value]]
            rows = ids == value
            losses[rows] = self._task_loss(spec, self.heads[spec.head_name](pooled[rows]), labels[rows], "none")
        return {"loss": losses if reduction == "none" else losses.mean()}


def load_multitask_model(
    tasks: Sequence[Task], model: str = "tiny", *, seed: int = 0, dropout: float = 0.1, tiny=None
) -> tuple[MultiTaskModelForTrainer, Any]:
    """``(MultiTaskModelForTrainer, tokenizer)`` for ``tasks`` on encoder ``model`` (``"tiny"``,
    ``"minilm"``, a folder or a hub name, as :func:`auxopt.models.load_encoder` loads it; the tiny
    model's tokenizer is trained on the first task's train text, as auxopt's trainer does)."""
    tasks = list(tasks)
    loaded = load_encoder(model, corpus=tasks[0].train.texts, seed=seed, tiny=tiny)
    return MultiTaskModelForTrainer(loaded.model, loaded.hidden_size, tasks, dropout=dropout), loaded.tokenizer
