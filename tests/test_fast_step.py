"""The step without waits: loss checks deferred on accelerators, width buckets and ``compile`` for a
compiled training forward, and the paths that need CUDA (skipped where there is none)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from test_objectives import make_ctx

from auxopt.errors import AuxoptError
from auxopt.objectives import AANG
from auxopt.tasks import build_task, make_synthetic_suite
from auxopt.train import TrainConfig, train
from auxopt.train.step import WIDTH_BUCKET

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; this machine has none")


@pytest.fixture(scope="module")
def small():
    return make_synthetic_suite(n_helpful=1, n_neutral=0, n_harmful=0, n_train=96, n_aux_train=96, n_dev=48, n_test=48)


def test_loss_checks_wait_for_a_flush_on_an_accelerator_and_name_the_first_bad_step(small):
    ctx = replace(make_ctx(small.primary), device=torch.device("cuda"))  # only check_finite reads it here
    ctx.check_finite(torch.tensor(0.5), "task 'a'", 3)
    ctx.check_finite(torch.tensor(float("nan")), "task 'b'", 4)
    ctx.check_finite(torch.tensor(float("inf")), "task 'a'", 5)
    assert len(ctx.pending) == 3  # nothing raised yet: the step did not wait for the device
    with pytest.raises(AuxoptError, match=r"loss of task 'b' became nan at step 4; lower the learning rate"):
        ctx.flush_checks()
    assert ctx.pending == []
    ctx.flush_checks()  # nothing left: no error, no wait


def test_loss_checks_on_the_cpu_raise_at_once(small):
    ctx = make_ctx(small.primary)
    with pytest.raises(AuxoptError, match="became inf at step 2"):
        ctx.check_finite(torch.tensor(float("inf")), "task 'a'", 2)
    assert ctx.pending == []


def test_width_buckets_round_up_within_the_split(small):
    ctx = make_ctx(small.primary)
    enc = ctx.train_data[small.primary.name]
    index = torch.arange(5)
    plain = enc.batch(index)["input_ids"].shape[1]
    assert plain == int(enc.lengths[index].max())
    bucketed = enc.batch(index, multiple=WIDTH_BUCKET)["input_ids"].shape[1]
    assert bucketed == min(-(-plain // WIDTH_BUCKET) * WIDTH_BUCKET, enc.input_ids.shape[1]) >= plain
    assert enc.batch(index, multiple=1000)["input_ids"].shape[1] == enc.input_ids.shape[1]  # never past the split


def test_compile_is_recorded_only_when_on_and_checked(small):
    assert "compile" not in TrainConfig(small.primary).describe()  # settings of earlier runs stay equal
    assert TrainConfig(small.primary, compile="reduce-overhead").describe()["compile"] == "reduce-overhead"
    for bad in ("", 3, None):
        with pytest.raises(AuxoptError, match="compile must be True, False or a torch.compile mode"):
            TrainConfig(small.primary, compile=bad)


@pytest.mark.slow
def test_compiled_forward_computes_what_the_eager_one_does(small):
    """One compiled forward and backward (dropout off) against the eager ones on the same batch, then a
    short compiled run through the loop."""
    from auxopt.train.loop import compiled_forward

    ctx = make_ctx(small.primary)
    model = ctx.model.eval()
    compiled = compiled_forward(model, True)
    inputs, labels = ctx.batch(small.primary.name)
    head = small.primary.head_name
    grads = []
    for forward in (model, compiled):
        model.zero_grad(set_to_none=True)
        logits = forward(head, **inputs)
        torch.nn.functional.cross_entropy(logits, labels).backward()
        grads.append((logits.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (eager_logits, eager_grads), (comp_logits, comp_grads) = grads
    assert torch.allclose(eager_logits, comp_logits, atol=1e-5)
    assert len(eager_grads) == len(comp_grads) and all(
        torch.allclose(a, b, atol=1e-5) for a, b in zip(eager_grads, comp_grads, strict=True)
    )
    result = train(TrainConfig(small.primary, max_steps=6, eval_every=3, max_length=24, batch_size=8, compile=True))
    assert result.steps == 6 and math.isfinite(result.best_dev)


# -- on CUDA --------------------------------------------------------------------------------------
@CUDA
def test_a_nan_loss_on_cuda_is_the_same_clear_error():
    records = {
        "train": [{"text": f"word {i}", "label": 1e30 * (i + 1)} for i in range(40)],
        "dev": [{"text": "word", "label": 1.5}, {"text": "other", "label": 2.5}],
    }
    task = build_task("huge", records, kind="regression", test_fraction=0.1)
    with pytest.raises(AuxoptError, match=r"loss of task 'huge' became .* at step \d+"):
        train(TrainConfig(task, max_steps=40, eval_every=20, max_length=32, batch_size=16, device="cuda"))


@CUDA
def test_aang_trains_on_cuda_with_its_dev_head_fitted_on_the_cpu(small):
    objectives = ["tapt", "gpt"]
    config = TrainConfig(
        small.primary, max_steps=12, eval_every=6, max_length=24, batch_size=8, device="cuda",
        objectives=AANG(objectives=objectives, k=1, log_every=2),
    )  # fmt: skip
    result = train(config)
    assert result.device.startswith("cuda") and math.isfinite(result.best_dev)
    assert len(result.extra["aang_weights"]["weights"]) >= 2 and result.extra["aang_cosines"]


@CUDA
@pytest.mark.slow
def test_compiled_run_on_cuda(small):
    config = TrainConfig(small.primary, max_steps=8, eval_every=4, max_length=24, batch_size=8, device="cuda")
    result = train(replace(config, compile=True))
    assert result.device.startswith("cuda") and math.isfinite(result.best_dev)
