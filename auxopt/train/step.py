"""What one optimisation step computes, as a pluggable strategy.

The loop owns the optimiser, the learning-rate schedule, clipping, evaluation and checkpoints; a
:class:`StepStrategy` owns how the gradient of one step is formed and leaves it in ``param.grad``.
The default, :class:`ScheduleStep`, draws one task from the task schedule and back-propagates its
loss. AANG's online weighting (``auxopt.objectives``) and ATTITTUD's decomposition (``auxopt.grad``)
are other strategies, made by the :class:`StepPlugin` in ``TrainConfig.plugin``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from auxopt.models import MultiTaskModel
from auxopt.models.losses import check_finite, task_loss
from auxopt.models.precision import autocast
from auxopt.models.tokenize import Encoded
from auxopt.tasks.batches import Batches
from auxopt.tasks.task import Task
from auxopt.train.config import (
    StepPlugin as StepPlugin,  # re-exported: the plugin that makes a strategy
)
from auxopt.train.config import TrainConfig

#: with a compiled forward, minibatch widths are rounded up to a multiple of this
WIDTH_BUCKET = 16


@dataclass
class TrainContext:
    """Everything a step strategy may use: the model, the encoded data, the device and the schedule."""

    config: TrainConfig
    model: MultiTaskModel
    tokenizer: Any
    tasks: dict[str, Task]
    train_data: dict[str, Encoded]
    train_labels: dict[str, torch.Tensor]
    batches: dict[str, Batches]
    dev_data: Encoded
    schedule: Any
    device: torch.device
    bf16: bool
    extra: dict[str, Any] = field(default_factory=dict)
    #: the training forward (``model`` itself, or ``torch.compile(model)`` with ``config.compile``)
    forward: Any = None
    #: (what, step, finite flag on the device) of losses not yet checked (see :meth:`check_finite`)
    pending: list = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.forward is None:
            self.forward = self.model

    @property
    def primary(self) -> Task:
        return self.config.primary

    def batch(self, name: str) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The next training minibatch of task ``name`` on the device: (inputs, labels). A compiled
        forward gets widths rounded up to a multiple of :data:`WIDTH_BUCKET` (fewer shapes to compile)."""
        index = self.batches[name].next()
        bucket = WIDTH_BUCKET if self.forward is not self.model else 1
        batch = self.train_data[name].batch(index, multiple=bucket)
        inputs = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        return inputs, self.train_labels[name][index].to(self.device, non_blocking=True)

    def loss(self, name: str, step: int) -> tuple[torch.Tensor, int]:
        """The loss of one minibatch of task ``name`` (checked finite) and its size."""
        task = self.tasks[name]
        inputs, labels = self.batch(name)
        with autocast(self.device, self.bf16):
            logits = self.forward(task.head_name, **inputs)
        loss = task_loss(task, logits, labels)
        self.check_finite(loss, f"task {name!r}", step)
        return loss, len(labels)

    def check_finite(self, loss: torch.Tensor, what: str, step: int) -> None:
        """Raise when ``loss`` is not finite. On the CPU at once; on an accelerator the check waits
        for :meth:`flush_checks` (the loop calls it before every evaluation and at the end), so that
        a step does not stop to wait for the device: the error still names the first bad step."""
        if self.device.type == "cpu":
            check_finite(loss, what, step, self.config.learning_rate)
        else:
            self.pending.append((what, step, loss.detach()))

    def flush_checks(self) -> None:
        """Check the losses :meth:`check_finite` left pending (one wait for the device)."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        finite = torch.isfinite(torch.stack([loss.float() for _, _, loss in pending])).tolist()
        for (what, step, loss), ok in zip(pending, finite, strict=True):
            if not ok:
                check_finite(loss, what, step, self.config.learning_rate)


@runtime_checkable
class StepStrategy(Protocol):
    """Forms the gradient of one step in ``param.grad`` and says how many examples of which task it
    used. ``summary()`` goes into ``TrainResult.extra``; ``state_dict`` into checkpoints.

    A strategy may also have ``finetune_start`` (an int step or None): the first step of a final phase
    (AANG's fine-tuning on the primary task), before which the loop restores the best dev state so
    far and clears the optimiser's moments; evaluation and the best-step choice go on as before."""

    def backward(self, step: int) -> dict[str, int]: ...

    def summary(self) -> dict[str, Any]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class StatelessStep:
    """Base of step strategies that keep no state of their own and record nothing."""

    def summary(self) -> dict[str, Any]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class ScheduleStep(StatelessStep):
    """The plain multi-task step: the schedule names a task; its minibatch loss is back-propagated."""

    def __init__(self, ctx: TrainContext):
        self.ctx = ctx

    def backward(self, step: int) -> dict[str, int]:
        name = self.ctx.schedule.next_task()
        loss, n = self.ctx.loss(name, step)
        loss.backward()
        return {name: n}


def make_step(ctx: TrainContext) -> StepStrategy:
    """The strategy the config asks for: a plugin's (AANG, ATTITTUD) or the plain schedule step.

    A strategy that trains extra modules (an LM head, …) attaches them to ``ctx.model`` when it is
    made: the optimiser is built afterwards, from ``ctx.model.named_parameters()``."""
    plugin = ctx.config.plugin
    return ScheduleStep(ctx) if plugin is None else plugin.make_step(ctx)
