"""The gradient-alignment reward of the online Thompson schedule (``OnlineThompson(reward="alignment")``).

A pull's gradient ``g`` is the sum of the training gradients of its minibatches (taken before clipping,
as the step strategy left them in ``param.grad``); at the end of the pull the primary's dev-loss
gradient ``d`` is taken on the next ``align_examples`` dev examples (a shuffled stream through the dev
split, the model in eval mode, ``param.grad`` untouched). The reward is 1 when ``cos(g, d) > 0``: to first
order, a small step along the pull's gradient lowers the primary's dev loss. That is the quantity
AutoSeM's reward estimates from the dev metric after the pull, without the noise of a few dev
batches' accuracy or the other pulls' progress; GradTS and AANG select auxiliary objectives on the same
alignment. The cosine of each pull is kept in the schedule's history (``"cos"``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from auxopt.models.losses import task_loss
from auxopt.models.precision import autocast
from auxopt.tasks.batches import Batches
from auxopt.train.callbacks import TrainCallback


class PullAlignment(TrainCallback):
    """Rewards a :class:`~auxopt.train.ThompsonSchedule` with the alignment of each pull's gradient
    with the primary's dev-loss gradient. The loop calls :meth:`after_backward` after every step's
    backward pass and :meth:`on_step_end` after the optimiser step."""

    def __init__(self, schedule, model: torch.nn.Module, dev_loss: Callable[[], torch.Tensor]):
        self.schedule, self.dev_loss = schedule, dev_loss
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.sums: list[torch.Tensor | None] = [None] * len(self.params)

    def after_backward(self) -> None:
        """Add this step's gradient to the pull's."""
        with torch.no_grad():
            for i, p in enumerate(self.params):
                if p.grad is None:
                    continue
                if self.sums[i] is None:
                    self.sums[i] = p.grad.detach().float().clone()
                else:
                    self.sums[i].add_(p.grad.detach().float())

    def cosine(self) -> float:
        """cos(pull gradient, dev-loss gradient) over every trainable parameter (0 when either is 0)."""
        loss = self.dev_loss()
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        dot = pull = dev = torch.zeros((), dtype=torch.float64)
        for s, d in zip(self.sums, grads, strict=True):
            if d is not None:
                d = d.detach().double()
                dev = dev + (d * d).sum().cpu()
            if s is not None:
                s = s.double()
                pull = pull + (s * s).sum().cpu()
                if d is not None:
                    dot = dot + (s * d).sum().cpu()
        norm = math.sqrt(float(pull) * float(dev))
        return float(dot) / norm if norm > 0 else 0.0

    def on_step_end(self, step: int) -> None:
        if not self.schedule.pull_finished():
            return
        cos = self.cosine()
        self.sums = [None] * len(self.params)
        self.schedule.reward(cos > 0, step=step, info={"cos": round(cos, 6)})


def dev_loss_stream(model, task, encoded, labels, *, examples: int, device, bf16: bool, seed: int):
    """A function returning the primary's mean loss on the next ``examples`` dev examples (a seeded,
    shuffled stream through the dev split), with gradients, the model in eval mode."""
    stream = Batches(len(encoded), examples, seed)
    targets = torch.as_tensor(labels, dtype=torch.long if task.kind == "classification" else torch.float32)

    def dev_loss() -> torch.Tensor:
        index = stream.next()
        batch = {k: v.to(device) for k, v in encoded.batch(index).items()}
        was_training = model.training
        model.eval()
        try:
            with torch.enable_grad(), autocast(device, bf16):
                out = model(task.head_name, **batch)
            return task_loss(task, out, targets[index].to(device))
        finally:
            model.train(was_training)

    return dev_loss
