"""Losses of task heads: cross-entropy or mean squared error by the task's kind (the batch mean, or one
per example for ATTITTUD's subspace), and the check
that a loss is finite (with a message that says what to change)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from auxopt.errors import AuxoptError
from auxopt.tasks.task import Task


def task_loss(task: Task, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for classification, mean squared error for regression (in fp32)."""
    logits = logits.float()
    if task.kind == "classification":
        return F.cross_entropy(logits, labels)
    return F.mse_loss(logits.squeeze(-1), labels)


def check_finite(loss: torch.Tensor, what: str, step: int, lr: float) -> None:
    if not torch.isfinite(loss):
        raise AuxoptError(
            f"the loss of {what} became {loss.item()} at step {step}; "
            f"lower the learning rate (now {lr:g}) or check the task's labels"
        )


def per_example_loss(task: Task, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-example cross-entropy (classification) or squared error (regression), in fp32."""
    logits = logits.float()
    if task.kind == "classification":
        return F.cross_entropy(logits, labels, reduction="none")
    return (logits.squeeze(-1) - labels) ** 2
