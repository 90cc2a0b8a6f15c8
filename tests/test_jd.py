"""The torchjd peer baseline (``auxopt.train.jd.JacobianDescent``) as a step strategy."""

from __future__ import annotations

import math

import pytest
import torch

from auxopt import TrainConfig, make_synthetic_suite
from auxopt.errors import AuxoptError
from auxopt.models import encode_split
from auxopt.tasks.batches import Batches
from auxopt.train import train
from auxopt.train.loop import build_model
from auxopt.train.schedules import make_schedule
from auxopt.train.step import TrainContext

pytest.importorskip("torchjd", reason="torchjd is not installed (pip install 'auxopt[baselines]')")
from auxopt.train.jd import JacobianDescent  # noqa: E402

BASE = dict(model="tiny", max_length=24, batch_size=16, eval_batch_size=128, device="cpu")


@pytest.fixture(scope="module")
def suite():
    return make_synthetic_suite(n_helpful=1, n_neutral=0, n_harmful=1, n_train=200, seed=3)


def _context(config: TrainConfig) -> TrainContext:
    torch.manual_seed(0)
    tasks = {t.name: t for t in config.tasks}
    model, tokenizer = build_model(config, list(tasks.values()))
    data = {n: encode_split(tokenizer, t, "train", config.max_length) for n, t in tasks.items()}
    labels = {n: torch.as_tensor(t.train.labels, dtype=torch.long) for n, t in tasks.items()}
    return TrainContext(
        config=config,
        model=model,
        tokenizer=tokenizer,
        tasks=tasks,
        train_data=data,
        train_labels=labels,
        batches={n: Batches(len(d), config.batch_size, i) for i, (n, d) in enumerate(data.items())},
        dev_data=encode_split(tokenizer, config.primary, "dev", config.max_length),
        schedule=make_schedule(config.active_ratios(), seed=0),
        device=torch.device("cpu"),
        bf16=False,
    )


def _flat_grad(params) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])


def test_upgrad_direction_conflicts_with_neither_task(suite):
    """UPGrad's update d has d·g_primary >= 0 and d·g_aux >= 0 (it lies in the dual cone)."""
    harmful = suite.auxiliaries[1]
    config = TrainConfig(suite.primary, [harmful], decomposer=JacobianDescent("upgrad"), **BASE)
    ctx = _context(config)
    ctx.model.train()
    torch.manual_seed(1)
    step = config.decomposer.make_step(ctx)
    shared = step.shared
    # the two task gradients on the very batches the step will draw
    state = {n: b.state_dict() for n, b in ctx.batches.items()}
    schedule_state = ctx.schedule.state_dict()
    grads = {}
    for name in (suite.primary.name, harmful.name):
        ctx.model.eval()  # no dropout: both passes see the same function
        ctx.model.zero_grad()
        loss, _ = ctx.loss(name, 1)
        loss.backward()
        grads[name] = _flat_grad(shared).clone()
    for n, b in ctx.batches.items():
        b.load_state_dict(state[n])
    ctx.schedule.load_state_dict(schedule_state)
    ctx.model.zero_grad()
    used = step.backward(1)
    d = _flat_grad(shared)
    assert set(used) == {suite.primary.name, harmful.name}
    assert d.norm() > 0
    for g in grads.values():
        assert torch.dot(d, g) >= -1e-6 * d.norm() * g.norm()


def test_training_with_jacobian_descent_runs_and_is_finite(suite):
    config = TrainConfig(
        suite.primary, suite.auxiliaries, decomposer=JacobianDescent("pcgrad"), max_steps=20, eval_every=10, **BASE
    )
    result = train(config)
    assert math.isfinite(result.best_dev) and result.steps == 20
    assert result.examples[suite.primary.name] == 20 * 16  # a primary batch every step


def test_bad_aggregator_and_no_auxiliary(suite):
    with pytest.raises(AuxoptError, match="unknown aggregator"):
        JacobianDescent("adam")
    config = TrainConfig(suite.primary, [], decomposer=JacobianDescent(), max_steps=2, **BASE)
    with pytest.raises(AuxoptError, match="at least one auxiliary"):
        train(config)
