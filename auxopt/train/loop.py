"""The multi-task training loop. It knows nothing about Optuna: it takes a :class:`TrainConfig` and an
optional reporter and callbacks, and returns a :class:`TrainResult`."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from auxopt import records
from auxopt.models import MultiTaskModel, encode_split, load_encoder
from auxopt.models.precision import autocast, use_bf16
from auxopt.models.tokenize import Encoded
from auxopt.tasks.batches import Batches
from auxopt.tasks.overlap import check_overlap
from auxopt.tasks.task import Task
from auxopt.train.callbacks import ReporterLike, TrainCallback, as_callbacks
from auxopt.train.checkpoint import TrainState
from auxopt.train.config import TrainConfig, TrainResult
from auxopt.train.export import TrainedModel
from auxopt.train.runtime import resolve_device, seed_everything
from auxopt.train.schedules import make_schedule
from auxopt.train.step import TrainContext, make_step


@torch.no_grad()
def evaluate(
    model: MultiTaskModel,
    task: Task,
    encoded: Encoded,
    labels: np.ndarray,
    *,
    device: torch.device,
    batch_size: int,
    bf16: bool,
    max_batches: int | None = None,
    with_loss: bool = False,
) -> float | tuple[float, float]:
    """The task's metric on ``encoded`` (first ``max_batches`` batches when given); with
    ``with_loss``, ``(metric, mean loss)`` (cross-entropy, or squared error for regression)."""
    was_training = model.training
    model.eval()
    n = len(encoded) if max_batches is None else min(len(encoded), max_batches * batch_size)
    preds, loss = [], 0.0
    for start in range(0, n, batch_size):
        index = torch.arange(start, min(start + batch_size, n))
        batch = {k: v.to(device) for k, v in encoded.batch(index).items()}
        with autocast(device, bf16):
            out = model(task.head_name, **batch).float()
        if with_loss:
            target = torch.as_tensor(labels[start : start + len(index)], device=device)
            if task.kind == "classification":
                loss += float(torch.nn.functional.cross_entropy(out, target.long(), reduction="sum"))
            else:
                loss += float(((out.squeeze(-1) - target.float()) ** 2).sum())
        preds.append(out.argmax(-1) if task.kind == "classification" else out.squeeze(-1))
    model.train(was_training)
    score = task.score(labels[:n], torch.cat(preds).cpu().numpy())
    return (score, loss / max(1, n)) if with_loss else score


def lr_factor(config: TrainConfig, step: int) -> float:
    """The learning rate at optimiser step ``step`` (from 0) as a fraction of ``config.lr``: linear
    warm-up over ``warmup_ratio · max_steps``, then constant or a linear decay to 0."""
    warmup = int(config.warmup_ratio * config.max_steps)
    if step < warmup:
        return (step + 1) / warmup
    if config.lr_schedule == "constant":
        return 1.0
    return max(0.0, (config.max_steps - step) / max(1, config.max_steps - warmup))


class ScheduleFeedback(TrainCallback):
    """Rewards an online schedule (``wants_feedback``: :class:`~auxopt.train.ThompsonSchedule`) at the
    end of each of its pulls with ``reward()``, a bounded dev evaluation."""

    def __init__(self, schedule, reward: Callable[[], tuple[float, float]]):
        self.schedule, self.reward = schedule, reward

    def on_step_end(self, step: int) -> None:
        if self.schedule.pull_finished():
            self.schedule.observe(step, self.reward())


class RoundFeedback(TrainCallback):
    """An online schedule judged in rounds (:mod:`auxopt.train.rounds`): saves the shared weights,
    their optimiser moments and the learning-rate schedule when a round starts, scores each judged
    pull (``score()``: dev metric and loss) and puts the saved state back after it. The heads that
    only auxiliaries use are not saved: each keeps its own training."""

    def __init__(self, schedule, score: Callable[[], tuple[float, float]], model, optimizer, scheduler, head: str):
        self.schedule, self.score, self.optimizer, self.scheduler = schedule, score, optimizer, scheduler
        own = tuple(f"heads.{name}." for name in model.heads if name != head)
        self.shared = [p for name, p in model.named_parameters() if not name.startswith(own)]
        self.saved: tuple | None = None
        if schedule.round_starts():
            self.save()

    @staticmethod
    def _cloned(state: dict) -> dict:
        return {k: v.clone() if torch.is_tensor(v) else v for k, v in state.items()}

    def save(self) -> None:
        with torch.no_grad():
            weights = [p.detach().clone() for p in self.shared]
        moments = [self._cloned(self.optimizer.state.get(p, {})) for p in self.shared]
        self.saved = (weights, moments, self.scheduler.state_dict())

    def restore(self) -> None:
        weights, moments, lr_state = self.saved
        with torch.no_grad():
            for p, w in zip(self.shared, weights, strict=True):
                p.copy_(w)
        for p, m in zip(self.shared, moments, strict=True):
            if m:
                self.optimizer.state[p] = self._cloned(m)
            else:  # saved before the optimiser's first step
                self.optimizer.state.pop(p, None)
        self.scheduler.load_state_dict(lr_state)

    def on_step_end(self, step: int) -> None:
        if self.schedule.judged():
            self.schedule.observe(step, self.score())
            self.restore()
        if self.schedule.round_starts():
            self.save()


def compiled_forward(model: MultiTaskModel, mode: bool | str):
    """``torch.compile(model)`` for the training forward (``mode``: True or a mode name), or None."""
    if not mode:
        return None
    return torch.compile(model, mode=None if mode is True or mode == "default" else mode)


def build_model(config: TrainConfig, tasks: list[Task]):
    """The encoder (tokenizer trained on the primary's train text for ``"tiny"``) with task heads."""
    loaded = load_encoder(config.model, corpus=config.primary.train.texts, seed=config.seed, tiny=config.tiny)
    model = MultiTaskModel(loaded.model, loaded.hidden_size, tasks, dropout=config.dropout)
    return model, loaded.tokenizer


def train(
    config: TrainConfig,
    reporter: ReporterLike = None,
    callbacks: Sequence[TrainCallback] = (),
    *,
    keep_model: bool = False,
) -> TrainResult:
    """Train the primary task jointly with the auxiliaries that have a positive ratio.

    Every ``eval_every`` steps the primary dev metric is computed and passed to ``reporter`` and to
    each of ``callbacks`` (:class:`TrainCallback`; the reporter is adapted into one); the
    model state at the best dev step is kept (on the CPU) and scored on the primary test split at the
    end. On the CPU, equal configs give identical results.

    First the train splits of the tasks trained on are checked against the primary's dev and test
    splits (:func:`~auxopt.tasks.check_overlap`, cached per task): an overlap warns, fails or is
    ignored as ``config.on_overlap`` says, and is recorded in ``extra["contamination"]``.

    With ``keep_model=True`` the result carries the model at the best dev step
    (:class:`~auxopt.train.export.TrainedModel`, in eval mode); ``result.save_pretrained(folder)``
    writes it as a folder that ``transformers.pipeline("text-classification", model=folder)`` loads.
    """
    start_time = time.perf_counter()
    hooks = as_callbacks(reporter, callbacks)
    config.validate()  # the checks that StudySpec.preflight makes before anything is stored
    tasks = config.active_tasks()
    overlap = check_overlap(
        config.primary, [t for t in config.auxiliaries if t.name in tasks], on_overlap=config.on_overlap
    )
    seed_everything(config.seed)
    ctx = build_context(config, tasks)
    for hook in hooks:
        hook.on_train_begin(ctx.model, ctx.tokenizer)
    strategy = make_step(ctx)  # after the model is whole: a strategy may attach modules to it
    optimizer, scheduler = build_optimizer(config, ctx.model, ctx.device)
    run = RunState(examples=dict.fromkeys(tasks, 0))
    saver = None
    if config.checkpoint is not None:  # resume mid-run from the newest checkpoint that loads
        saver = TrainState(
            model=ctx.model,
            optimizer=optimizer,
            scheduler=scheduler,
            schedule=ctx.schedule,
            batches=ctx.batches,
            strategy=strategy,
        )
        run.resume(saver.resume(config.checkpoint.store), hooks)
    if getattr(ctx.schedule, "wants_feedback", False):  # the online schedule's rewards, after the other hooks
        hooks.append(schedule_feedback(ctx, run.resumed_from is None, optimizer, scheduler))

    finetune_start = getattr(strategy, "finetune_start", None)  # a final primary-only phase (AANG)
    for step in range(run.step + 1, config.max_steps + 1):
        run.step = step
        if step == finetune_start:  # it starts from the best dev state, with fresh optimiser moments
            run.start_finetune(ctx.model, optimizer)
        run.count(strategy.backward(step))
        optimizer_step(config, ctx.model, optimizer, scheduler)
        for hook in hooks:
            hook.on_step_end(step)
        if (step % config.eval_every == 0 or step == config.max_steps) and run.evaluate(step, ctx, hooks):
            break
        if saver is not None and step % config.checkpoint.every == 0 and step < config.max_steps:
            saver.save(config.checkpoint.store, step, run.state_dict())

    ctx.flush_checks()
    test = run.test(ctx, keep_model)
    return TrainResult(
        metric=config.primary.metric,
        best_dev=float(run.best_dev),
        best_step=run.best_step,
        test_at_best=test,
        curve=run.curve,
        steps=run.step,
        examples=run.examples,
        wall_time=time.perf_counter() - start_time,
        stopped=run.stopped,
        device=str(ctx.device),
        extra={
            **({records.THOMPSON: ctx.schedule.summary()} if getattr(ctx.schedule, "wants_feedback", False) else {}),
            **strategy.summary(),
            **({records.RESUMED_FROM_STEP: run.resumed_from} if run.resumed_from is not None else {}),
            **({records.CONTAMINATION: overlap.to_dict()} if overlap.contaminated else {}),
        },
        model=TrainedModel(
            ctx.model.eval(), ctx.tokenizer, config.primary, config.max_length, config.describe(), overlap.to_dict()
        )
        if keep_model
        else None,
    )


# -- the parts of train() --------------------------------------------------------------------------
def build_context(config: TrainConfig, tasks: dict[str, Task]) -> TrainContext:
    """The model on its device, the tokenised splits, the minibatch streams and the task schedule."""
    device = resolve_device(config.device)
    model, tokenizer = build_model(config, list(tasks.values()))
    model.to(device).train()
    train_data = {n: encode_split(tokenizer, t, "train", config.max_length) for n, t in tasks.items()}
    train_labels = {
        n: torch.as_tensor(t.train.labels, dtype=torch.long if t.kind == "classification" else torch.float32)
        for n, t in tasks.items()
    }
    batches = {
        n: Batches(len(d), config.batch_size, config.seed * 1000 + i) for i, (n, d) in enumerate(train_data.items())
    }
    return TrainContext(
        config=config,
        model=model,
        tokenizer=tokenizer,
        tasks=tasks,
        train_data=train_data,
        train_labels=train_labels,
        batches=batches,
        dev_data=encode_split(tokenizer, config.primary, "dev", config.max_length),
        schedule=make_schedule(config.active_ratios(), config.schedule, seed=config.seed),
        device=device,
        bf16=use_bf16(config.bf16, device),
        forward=compiled_forward(model, config.compile),
    )


def build_optimizer(config: TrainConfig, model: torch.nn.Module, device: torch.device):
    """AdamW (no weight decay on biases and norms) and its warm-up/decay schedule (:func:`lr_factor`)."""
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
    params = [
        {
            "params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
            "weight_decay": config.weight_decay,
        },
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    # fused: one kernel for the whole update on CUDA (per-step overhead, not arithmetic, bounds small models)
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, fused=device.type == "cuda")
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(config, s))


def optimizer_step(config: TrainConfig, model: torch.nn.Module, optimizer, scheduler) -> None:
    """Clip the gradient the step strategy left, update, advance the learning rate, clear the gradient."""
    if config.max_grad_norm:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def dev_score(ctx: TrainContext, max_batches: int | None, with_loss: bool = False):
    """The primary's dev metric on the first ``max_batches`` dev batches (all: None)."""
    primary = ctx.config.primary
    return evaluate(
        ctx.model,
        primary,
        ctx.dev_data,
        primary.dev.labels,
        device=ctx.device,
        batch_size=ctx.config.eval_batch_size,
        bf16=ctx.bf16,
        max_batches=max_batches,
        with_loss=with_loss,
    )


def schedule_feedback(ctx: TrainContext, first: bool, optimizer, scheduler) -> TrainCallback:
    """The online schedule's rewards: a bounded dev evaluation (metric and loss) after each pull, and
    once before training as the reference (``first``; not again on a resumed run). Judged in rounds
    (``OnlineThompson(reward="round")``), after each judged pull, which then starts again from the
    round's saved state (:class:`RoundFeedback`)."""
    schedule = ctx.schedule

    def quick_dev() -> tuple[float, float]:
        return dev_score(ctx, schedule.spec.eval_batches, with_loss=True)

    if schedule.plan is not None:
        return RoundFeedback(schedule, quick_dev, ctx.model, optimizer, scheduler, ctx.primary.head_name)
    if first:
        schedule.observe(0, quick_dev())
    return ScheduleFeedback(schedule, quick_dev)


@dataclass
class RunState:
    """Where a run stands: its step, the dev curve, the examples seen per task, the best dev score
    with its step and weights (on the CPU), the evaluations since, and why it stopped. A checkpoint
    holds it (:meth:`state_dict`) beside the model's and the optimiser's."""

    examples: dict[str, int]
    step: int = 0
    curve: list[tuple[int, float]] = field(default_factory=list)
    best_dev: float = -math.inf
    best_step: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    evals_since_best: int = 0
    stopped: str = "max_steps"
    resumed_from: int | None = None

    def count(self, used: dict[str, int]) -> None:
        for name, n in used.items():
            self.examples[name] = self.examples.get(name, 0) + n

    def start_finetune(self, model: torch.nn.Module, optimizer) -> None:
        """A final phase starts from the best dev state so far, with fresh optimiser moments."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
        optimizer.state.clear()
        self.evals_since_best = 0

    def evaluate(self, step: int, ctx: TrainContext, hooks: Sequence[TrainCallback]) -> bool:
        """Score dev, keep the best weights, tell the hooks; True when the run should stop (a hook
        asked, or ``patience`` evaluations passed without a better dev score)."""
        ctx.flush_checks()
        dev = dev_score(ctx, ctx.config.eval_batches)
        self.curve.append((step, dev))
        if dev > self.best_dev:
            self.best_dev, self.best_step, self.evals_since_best = dev, step, 0
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in ctx.model.state_dict().items()}
        else:
            self.evals_since_best += 1
        for hook in hooks:
            hook.on_evaluate(step, dev)
        if any([hook.should_stop() for hook in hooks]):  # every callback is asked
            self.stopped = "reporter"
            return True
        patience = ctx.config.patience
        if patience is not None and self.evals_since_best >= patience:
            self.stopped = "early_stopping"
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {
            "curve": self.curve,
            "examples": self.examples,
            "best_dev": self.best_dev,
            "best_step": self.best_step,
            "best_state": self.best_state,
            "evals_since_best": self.evals_since_best,
        }

    def resume(self, resumed: dict[str, Any] | None, hooks: Sequence[TrainCallback]) -> None:
        """Continue from a checkpoint's state (None: nothing to resume); the hooks see the restored
        curve again (a retried trial shows the whole curve; no stop is asked)."""
        if resumed is None:
            return
        self.resumed_from = self.step = int(resumed["step"])
        loop = resumed["loop"]
        self.curve = [(int(s), float(v)) for s, v in loop["curve"]]
        self.examples, self.best_state = dict(loop["examples"]), loop["best_state"]
        self.best_dev, self.best_step = float(loop["best_dev"]), int(loop["best_step"])
        self.evals_since_best = int(loop["evals_since_best"])
        for s, v in self.curve:
            for hook in hooks:
                hook.on_evaluate(s, v)

    def test(self, ctx: TrainContext, keep_model: bool) -> float | None:
        """Load the best dev weights (when there is a test split or the model is kept) and score the
        primary's test split with them."""
        primary = ctx.config.primary
        if self.best_state is not None and (primary.test is not None or keep_model):
            ctx.model.load_state_dict(self.best_state)
        if primary.test is None or self.best_state is None:
            return None
        return evaluate(
            ctx.model,
            primary,
            encode_split(ctx.tokenizer, primary, "test", ctx.config.max_length),
            primary.test.labels,
            device=ctx.device,
            batch_size=ctx.config.eval_batch_size,
            bf16=ctx.bf16,
        )
