"""The multi-task training loop. It knows nothing about Optuna: it takes a :class:`TrainConfig` and an
optional reporter and callbacks, and returns a :class:`TrainResult`."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

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
    ratios = config.active_ratios()
    tasks = config.active_tasks()
    overlap = check_overlap(
        config.primary, [t for t in config.auxiliaries if t.name in tasks], on_overlap=config.on_overlap
    )
    seed_everything(config.seed)
    device = resolve_device(config.device)
    bf16 = use_bf16(config.bf16, device)
    model, tokenizer = build_model(config, list(tasks.values()))
    model.to(device).train()
    for hook in hooks:
        hook.on_train_begin(model, tokenizer)

    train_data = {n: encode_split(tokenizer, t, "train", config.max_length) for n, t in tasks.items()}
    train_labels = {
        n: torch.as_tensor(t.train.labels, dtype=torch.long if t.kind == "classification" else torch.float32)
        for n, t in tasks.items()
    }
    primary = config.primary
    dev_data = encode_split(tokenizer, primary, "dev", config.max_length)
    batches = {
        n: Batches(len(d), config.batch_size, config.seed * 1000 + i) for i, (n, d) in enumerate(train_data.items())
    }
    schedule = make_schedule(ratios, config.schedule, seed=config.seed)

    ctx = TrainContext(
        config=config,
        model=model,
        tokenizer=tokenizer,
        tasks=tasks,
        train_data=train_data,
        train_labels=train_labels,
        batches=batches,
        dev_data=dev_data,
        schedule=schedule,
        device=device,
        bf16=bf16,
        forward=compiled_forward(model, config.compile),
    )
    strategy = make_step(ctx)
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
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(config, s))

    feedback = getattr(schedule, "wants_feedback", False)

    def quick_dev() -> tuple[float, float]:  # the online schedule's reward: a bounded dev evaluation
        return evaluate(
            model,
            primary,
            dev_data,
            primary.dev.labels,
            device=device,
            batch_size=config.eval_batch_size,
            bf16=bf16,
            max_batches=schedule.spec.eval_batches,
            with_loss=True,
        )

    curve: list[tuple[int, float]] = []
    examples = dict.fromkeys(tasks, 0)
    best_dev, best_step, best_state = -math.inf, 0, None
    evals_since_best, stopped, step = 0, "max_steps", 0
    resumed_from, saver = None, None
    if config.checkpoint is not None:  # resume mid-run from the newest checkpoint that loads
        saver = TrainState(
            model=model, optimizer=optimizer, scheduler=scheduler, schedule=schedule, batches=batches, strategy=strategy
        )
        resumed = saver.resume(config.checkpoint.store)
        if resumed is not None:
            resumed_from = step = int(resumed["step"])
            loop = resumed["loop"]
            curve = [(int(s), float(v)) for s, v in loop["curve"]]
            examples, best_state = dict(loop["examples"]), loop["best_state"]
            best_dev, best_step = float(loop["best_dev"]), int(loop["best_step"])
            evals_since_best = int(loop["evals_since_best"])
            for s, v in curve:  # the retried trial shows the whole curve (no stop asked)
                for hook in hooks:
                    hook.on_evaluate(s, v)
    if feedback:  # the schedule's first reward, then one after each pull (after the other hooks)
        if resumed_from is None:
            schedule.observe(0, quick_dev())
        hooks.append(ScheduleFeedback(schedule, quick_dev))

    first_step = step + 1
    finetune_start = getattr(strategy, "finetune_start", None)  # a final primary-only phase (AANG)
    for step in range(first_step, config.max_steps + 1):
        if step == finetune_start:  # it starts from the best dev state, with fresh optimiser moments
            if best_state is not None:
                model.load_state_dict(best_state)
            optimizer.state.clear()
            evals_since_best = 0
        for name, n in strategy.backward(step).items():
            examples[name] = examples.get(name, 0) + n
        if config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        for hook in hooks:
            hook.on_step_end(step)

        if step % config.eval_every == 0 or step == config.max_steps:
            ctx.flush_checks()
            dev = evaluate(
                model,
                primary,
                dev_data,
                primary.dev.labels,
                device=device,
                batch_size=config.eval_batch_size,
                bf16=bf16,
                max_batches=config.eval_batches,
            )
            curve.append((step, dev))
            if dev > best_dev:
                best_dev, best_step, evals_since_best = dev, step, 0
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            else:
                evals_since_best += 1
            for hook in hooks:
                hook.on_evaluate(step, dev)
            if any([hook.should_stop() for hook in hooks]):  # every callback is asked
                stopped = "reporter"
                break
            if config.patience is not None and evals_since_best >= config.patience:
                stopped = "early_stopping"
                break
        if saver is not None and step % config.checkpoint.every == 0 and step < config.max_steps:
            saver.save(
                config.checkpoint.store,
                step,
                {
                    "curve": curve,
                    "examples": examples,
                    "best_dev": best_dev,
                    "best_step": best_step,
                    "best_state": best_state,
                    "evals_since_best": evals_since_best,
                },
            )

    ctx.flush_checks()
    test = None
    if best_state is not None and (primary.test is not None or keep_model):
        model.load_state_dict(best_state)
    if primary.test is not None and best_state is not None:
        test = evaluate(
            model,
            primary,
            encode_split(tokenizer, primary, "test", config.max_length),
            primary.test.labels,
            device=device,
            batch_size=config.eval_batch_size,
            bf16=bf16,
        )
    return TrainResult(
        metric=primary.metric,
        best_dev=float(best_dev),
        best_step=best_step,
        test_at_best=test,
        curve=curve,
        steps=step,
        examples=examples,
        wall_time=time.perf_counter() - start_time,
        stopped=stopped,
        device=str(device),
        extra={
            **({records.THOMPSON: schedule.summary()} if feedback else {}),
            **strategy.summary(),
            **({records.RESUMED_FROM_STEP: resumed_from} if resumed_from is not None else {}),
            **({records.CONTAMINATION: overlap.to_dict()} if overlap.contaminated else {}),
        },
        model=TrainedModel(model.eval(), tokenizer, primary, config.max_length, config.describe(), overlap.to_dict())
        if keep_model
        else None,
    )
