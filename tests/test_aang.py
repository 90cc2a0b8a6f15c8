"""AANG as the official method runs it: the dev head on separate data, objectives weighted once,
a head per objective, and the final fine-tuning on the primary task."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_objectives import make_ctx  # the TrainContext the training loop builds

from auxopt.errors import AuxoptError
from auxopt.objectives import AANG, AuxObjective, ObjectiveLosses
from auxopt.objectives.losses import head_key
from auxopt.tasks import make_synthetic_suite
from auxopt.train import TrainConfig, train

TAPT = AuxObjective.parse("tapt")
GPT = AuxObjective.parse("gpt")
LABELS_MASK = AuxObjective("task", "mask", "bidirectional", "labels")
LABELS_REPLACE = AuxObjective("task", "replace", "bidirectional", "labels")


@pytest.fixture(scope="module")
def small():
    return make_synthetic_suite(
        n_helpful=1, n_neutral=0, n_harmful=0, n_train=120, n_aux_train=120, n_dev=64, n_test=64
    )


def _rows(ids: torch.Tensor, mask: torch.Tensor) -> set[tuple[int, ...]]:
    return {tuple(r[m.bool()].tolist()) for r, m in zip(ids, mask, strict=True)}


# -- 1. the dev head is fitted on other data than its gradient is taken on -------------------------
def test_dev_head_never_sees_the_batch_its_gradient_is_taken_on(small):
    ctx = make_ctx(small.primary)
    step = AANG(objectives=[TAPT, GPT], k=1, dev_batch_size=16, dev_fit_size=24).make_step(ctx)
    train_enc, dev_enc = ctx.train_data[small.primary.name], ctx.dev_data
    train_rows = _rows(train_enc.input_ids, train_enc.attention_mask)
    dev_rows = _rows(dev_enc.input_ids, dev_enc.attention_mask)
    assert not train_rows & dev_rows  # the suite's splits are disjoint

    calls = []
    pool = ctx.model.pool

    def recording_pool(input_ids, attention_mask, token_type_ids=None):
        calls.append((input_ids.clone(), attention_mask.clone(), torch.is_grad_enabled(), ctx.model.training))
        return pool(input_ids, attention_mask, token_type_ids)

    ctx.model.pool = recording_pool
    fitted = []
    fit = step.fit_dev_head

    def recording_fit(features, labels):
        fitted.append(len(features))
        fit(features, labels)

    step.fit_dev_head = recording_fit
    for _ in range(3):  # three weight updates: the fit and the gradient batches never meet
        calls.clear()
        grad = step.dev_gradient()
        assert grad.ndim == 1 and torch.isfinite(grad).all() and float(grad.norm()) > 0
        (fit_ids, fit_mask, fit_grad, fit_mode), (g_ids, g_mask, g_grad, g_mode) = calls
        fit_rows, grad_rows = _rows(fit_ids, fit_mask), _rows(g_ids, g_mask)
        assert fitted[-1] == len(fit_ids) == 24 and len(g_ids) == 16
        assert fit_rows <= train_rows  # fitted on the primary's train split ...
        assert grad_rows <= dev_rows  # ... the gradient taken on its dev split ...
        assert not fit_rows & grad_rows  # ... so the head never sees the gradient's batch
        assert not fit_grad and g_grad  # frozen features for the fit, a gradient for the loss
        assert fit_mode == g_mode is True  # both in the model's (training) mode


def test_dev_head_is_fitted_on_the_steps_own_primary_minibatch_by_default(small):
    """With the default sizes the fit reuses the primary term's forward: one encoder pass fewer a
    step, the fit still on train rows and the gradient on dev rows."""
    ctx = make_ctx(small.primary)
    step = AANG(objectives=[TAPT, GPT], k=1).make_step(ctx)
    assert step.reuse_primary
    train_enc, dev_enc = ctx.train_data[small.primary.name], ctx.dev_data
    train_rows = _rows(train_enc.input_ids, train_enc.attention_mask)
    dev_rows = _rows(dev_enc.input_ids, dev_enc.attention_mask)
    calls, fitted = [], []
    pool, fit = ctx.model.pool, step.fit_dev_head

    def recording_pool(input_ids, attention_mask, token_type_ids=None):
        calls.append(_rows(input_ids, attention_mask))
        return pool(input_ids, attention_mask, token_type_ids)

    def recording_fit(features, labels):
        fitted.append((features.detach().clone(), labels.clone()))
        fit(features, labels)

    ctx.model.pool, step.fit_dev_head = recording_pool, recording_fit
    used = step.backward(1)
    primary_rows, grad_rows = calls[:2]  # the primary term, then the dev batch (then TAPT's own pass)
    assert len(fitted) == 1 and len(fitted[0][0]) == ctx.config.batch_size == used[small.primary.name]
    assert primary_rows <= train_rows and grad_rows <= dev_rows and not primary_rows & grad_rows
    assert len(calls) == 2  # TAPT encodes through the encoder itself, not pool: no third pooled pass
    assert step.dev_w.device.type == "cpu" and float(step.dev_w.abs().sum()) > 0
    p = next(p for p in ctx.model.encoder.parameters() if p.requires_grad)
    assert p.grad is not None and torch.isfinite(p.grad).all()


# -- 2. objectives are sampled uniformly and weighted once -----------------------------------------
def test_expected_objective_weight_is_linear_in_w(small):
    objs = [TAPT, GPT, LABELS_MASK, LABELS_REPLACE]
    step = AANG(objectives=objs, k=2).make_step(make_ctx(small.primary))
    target = torch.tensor([0.1, 0.2, 0.3, 0.4])
    step.online.joint = target.log()  # factor logits at 0: w = softmax(joint) = target
    assert torch.allclose(step.online.weights(), target)
    lam = step.online.primary_share()
    draws = 4000
    total, count = np.zeros(4), np.zeros(4)
    for _ in range(draws):
        terms, sampled = step._terms()
        assert terms[0] == (None, 2 * lam) and len(sampled) == 2
        for obj, weight in terms[1:]:
            i = objs.index(obj)
            total[i] += weight / (2 * (1 - lam))
            count[i] += 1
    assert np.allclose(count / draws, 0.5, atol=0.03)  # uniform: each objective in k/n of the steps
    effective = total / draws
    assert np.allclose(effective, target.numpy(), atol=0.02)  # E[weight] = w, linear ...
    assert effective[3] / effective[0] == pytest.approx(4, rel=0.15)  # ... not w² (which gives 16)


# -- 3. a head per objective -----------------------------------------------------------------------
def test_each_objective_has_its_own_head(small):
    ctx = make_ctx(small.primary)
    objs = [TAPT, GPT, LABELS_MASK, LABELS_REPLACE]
    losses = ObjectiveLosses(ctx, objs, select_prob=0.15, domain=None, out_of_domain=None, seed=0)
    heads = [losses.heads[o] for o in objs]
    assert len({id(h) for h in heads}) == 4
    own = [{id(p) for p in h.parameters()} for h in heads]
    assert all(not own[i] & own[j] for i in range(4) for j in range(i + 1, 4))  # no parameter shared
    embedding = ctx.model.encoder.get_input_embeddings().weight
    assert heads[0].decoder_weight is embedding and heads[1].decoder_weight is embedding  # tied decoders
    assert all(id(embedding) not in o for o in own)
    model_params = {id(p) for p in ctx.model.parameters()}  # so the run's optimiser trains them
    assert all(o <= model_params for o in own)
    assert set(ctx.model.aang_heads) == {head_key(o) for o in objs}
    primary_head = {id(p) for p in ctx.model.heads.parameters()}
    assert all(not o & primary_head for o in own)  # supervised objectives skip the primary's head

    for a, b in ((TAPT, GPT), (LABELS_MASK, LABELS_REPLACE)):  # an update from A leaves B's head alone
        before = {o: [p.detach().clone() for p in losses.heads[o].parameters()] for o in objs}
        primary_before = [p.detach().clone() for p in ctx.model.heads.parameters()]
        opt = torch.optim.SGD(ctx.model.parameters(), lr=0.5)
        opt.zero_grad(set_to_none=True)
        loss, _ = losses.loss(a)
        loss.backward()
        assert all(p.grad is None for o in objs if o != a for p in losses.heads[o].parameters())
        opt.step()
        changed = {
            o: any(not torch.equal(p, q) for p, q in zip(losses.heads[o].parameters(), before[o], strict=True))
            for o in objs
        }
        assert changed == {o: o == a for o in objs}, (a, b)
        assert all(torch.equal(p, q) for p, q in zip(ctx.model.heads.parameters(), primary_before, strict=True))

    # a second ObjectiveLosses on the same model (a resumed or re-made step) reuses the heads
    again = ObjectiveLosses(ctx, objs, select_prob=0.15, domain=None, out_of_domain=None, seed=0)
    assert all(again.heads[o] is losses.heads[o] for o in objs)


# -- 4. the final fine-tuning on the primary task --------------------------------------------------
def test_final_finetuning_from_the_best_state(small, monkeypatch):
    import auxopt.train.loop as loop
    from auxopt.objectives.aang import AANGStep

    dev_values = iter([0.5, 0.1, 0.1, 0.9])  # dev at steps 2, 4, 6, 8: the best in search is step 2

    def scripted_evaluate(model, task, encoded, labels, **kw):
        return next(dev_values, 0.0)

    monkeypatch.setattr(loop, "evaluate", scripted_evaluate)
    states: dict[int, torch.Tensor] = {}
    backward = AANGStep.backward

    def recording_backward(self, step):  # the parameters each step starts from
        states[step] = torch.cat([p.detach().reshape(-1).clone() for p in self.ctx.model.parameters()])
        return backward(self, step)

    monkeypatch.setattr(AANGStep, "backward", recording_backward)
    spec = AANG(objectives=["tapt"], weights=[1.0], learn=False, finetune=0.25, log_every=1)
    result = train(
        TrainConfig(
            small.primary, max_steps=8, eval_every=2, max_length=24, batch_size=8, device="cpu", objectives=spec
        )
    )
    assert result.extra["aang_finetune"] == {"start": 7, "steps": 2}
    assert torch.equal(states[7], states[3])  # the fine-tune starts from the state evaluated at step 2
    assert not torch.equal(states[7], states[6])
    assert result.examples == {small.primary.name: 8 * 8, str(TAPT): 6 * 8}  # steps 7-8: primary only
    assert result.extra["aang_weights"]["steps"] == [1, 2, 3, 4, 5, 6]  # no weights in the fine-tune
    assert result.best_step == 8 and result.best_dev == 0.9  # the fine-tune's evaluations count
    assert [s for s, _ in result.curve] == [2, 4, 6, 8]


def test_finetune_steps_and_online_finetune(small):
    def start(finetune, max_steps):
        return (
            AANG(objectives=["tapt"], learn=False, finetune=finetune)
            .make_step(make_ctx(small.primary, max_steps=max_steps))
            .finetune_start
        )

    assert start(0.1, 10) == 10 and start(0.25, 8) == 7 and start(0.0, 10) is None
    assert start(0.1, 4) is None  # rounds to no step
    assert start(0.9, 1) is None  # at least one step of search
    spec = AANG(objectives=[TAPT, GPT], k=1, finetune=0.5, log_every=1)
    result = train(
        TrainConfig(
            small.primary, max_steps=4, eval_every=2, max_length=24, batch_size=8, device="cpu", objectives=spec
        )
    )
    assert result.extra["aang_finetune"] == {"start": 3, "steps": 2}
    record = result.extra["aang_weights"]
    assert record["steps"] == [1, 2, 3]  # 3: the weights the run ends with (after step 2's update)
    final = dict(zip(record["objectives"], record["weights"][-1], strict=True))
    assert all(final[name] == weight for name, weight in result.extra["aang_top"])
    assert record["weights"][-1] != record["weights"][-2]  # step 2 updated them
    assert result.examples[small.primary.name] == 4 * 8
    assert sum(n for k, n in result.examples.items() if k != small.primary.name) == 2 * 8


# -- settings --------------------------------------------------------------------------------------
def test_new_settings_are_checked_and_described():
    d = AANG(dev_fit_size=64, finetune=0.2).describe()
    assert d["dev_fit_size"] == 64 and d["finetune"] == 0.2
    assert d["dev_fit_split"] == "train" and d["sampling"] == "uniform" and d["heads"] == "per_objective"
    assert AANG().describe()["finetune"] == 0.1
    assert AANG().describe() != AANG(finetune=0.0).describe()
    for bad in (1.0, -0.1, math.nan, True, "0.1"):
        with pytest.raises(AuxoptError, match="finetune must be a share of max_steps"):
            AANG(finetune=bad)
    for key in ("dev_fit_size", "dev_batch_size"):
        with pytest.raises(AuxoptError, match=f"{key} must be an integer >= 1"):
            AANG(**{key: 0})


def test_in_domain_objectives_on_a_task_without_domain_text_name_the_missing_file(small):
    from auxopt.train import TrainConfig

    assert not small.primary.domain_text  # the synthetic primary has no domain.txt
    config = TrainConfig(small.primary, objectives=AANG(objectives=["dapt"], learn=False), max_steps=2)
    with pytest.raises(AuxoptError, match=rf"needs domain=PATH .*task '{small.primary.name}' has no domain.txt"):
        config.validate()
