"""AANG: the objective space, objective losses and online weighting (auxopt.objectives)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from auxopt.errors import AuxoptError
from auxopt.objectives import (
    AANG,
    PRESETS,
    AuxObjective,
    ObjectiveSpace,
    OnlineWeights,
    why_illegal,
)
from auxopt.objectives.losses import head_key
from auxopt.objectives.masks import factorisation_order, next_token_targets, representation_mask
from auxopt.tasks import make_synthetic_suite
from auxopt.train import TrainConfig, train

DOMAIN = tuple(f"passage {i} about zig zag words and more words {i % 7}" for i in range(40))


@pytest.fixture(scope="module")
def small():
    return make_synthetic_suite(
        n_helpful=1, n_neutral=0, n_harmful=0, n_train=120, n_aux_train=120, n_dev=64, n_test=64
    )


def make_ctx(primary, auxiliaries=(), seed=0, max_steps=10, **kw):
    """A TrainContext as the training loop builds it (tiny model, CPU)."""
    from auxopt.models import encode_split
    from auxopt.tasks.batches import Batches
    from auxopt.train.loop import build_model
    from auxopt.train.runtime import seed_everything
    from auxopt.train.schedules import make_schedule
    from auxopt.train.step import TrainContext

    config = TrainConfig(
        primary, auxiliaries, max_length=24, batch_size=8, device="cpu", seed=seed, max_steps=max_steps, **kw
    )
    seed_everything(seed)
    tasks = {t.name: t for t in config.tasks}
    model, tok = build_model(config, list(tasks.values()))
    model.train()
    data = {n: encode_split(tok, t, "train", 24) for n, t in tasks.items()}
    labels = {n: torch.as_tensor(t.train.labels, dtype=torch.long) for n, t in tasks.items()}
    return TrainContext(
        config=config,
        model=model,
        tokenizer=tok,
        tasks=tasks,
        train_data=data,
        train_labels=labels,
        batches={n: Batches(len(d), 8, i) for i, (n, d) in enumerate(data.items())},
        dev_data=encode_split(tok, primary, "dev", 24),
        schedule=make_schedule(config.active_ratios(), "auto"),
        device=torch.device("cpu"),
        bf16=False,
    )


# -- enumeration --------------------------------------------------------------------------------
def test_default_space_counts():
    space = ObjectiveSpace()
    assert space.size_before_legality == 48
    assert len(space) == 27
    by_output = {o: sum(1 for x in space if x.output == o) for o in ("denoise", "next_token", "labels")}
    assert by_output == {"denoise": 12, "next_token": 12, "labels": 3}
    assert all(why_illegal(o) is None for o in space)
    assert len(set(space)) == len(space)


def test_space_counts_with_more_data():
    assert len(ObjectiveSpace(domain=DOMAIN)) == 51
    assert len(ObjectiveSpace(domain=DOMAIN, out_of_domain=DOMAIN)) == 75
    assert len(ObjectiveSpace(data=["task", "task:other"])) == 27 + 28
    assert len(ObjectiveSpace(transforms=["mask"], representations=["bidirectional"])) == 2  # denoise, labels
    assert len(ObjectiveSpace(outputs=["next_token"], representations=["left_to_right", "bidirectional"])) == 4


def test_for_task_adds_domain_text(small):
    assert len(ObjectiveSpace.for_task(small.primary)) == 27
    with_domain = dataclasses.replace(small.primary, domain_text=DOMAIN)
    assert len(ObjectiveSpace.for_task(with_domain)) == 51


def test_legality_rules():
    assert why_illegal(AuxObjective("domain", "mask", "bidirectional", "labels"))  # unlabelled
    assert why_illegal(AuxObjective("task", "mask", "left_to_right", "labels"))  # one-directional
    assert why_illegal(AuxObjective("task", "none", "bidirectional", "labels"))  # the primary loss
    assert why_illegal(AuxObjective("task", "mask", "bidirectional", "next_token"))
    assert why_illegal(AuxObjective("task", "none", "left_to_right", "denoise"))
    assert why_illegal(AuxObjective("task:x", "none", "bidirectional", "labels")) is None
    space = ObjectiveSpace(domain=DOMAIN, out_of_domain=DOMAIN)
    for name, obj in PRESETS.items():
        assert obj in space, name
        assert AuxObjective.parse(name) == obj == AuxObjective.parse(str(obj))


def test_nearest_maps_illegal_tuples_to_legal_ones():
    space = ObjectiveSpace(domain=DOMAIN)
    near = space.nearest(("domain", "mask", "left_to_right", "labels"))
    assert why_illegal(near) is None and near.data == "domain"
    near = space.nearest(("task", "none", "bidirectional", "denoise"))
    assert near.data == "task" and near.output == "denoise" and near.representation == "bidirectional"
    legal = ("task", "mask", "right_to_left", "next_token")
    assert space.nearest(legal).stages == legal


# -- bad input ----------------------------------------------------------------------------------
def test_bad_input_errors(tmp_path, small):
    with pytest.raises(AuxoptError, match="empty after the legality"):
        ObjectiveSpace(data=["domain"], outputs=["labels"], domain=DOMAIN)
    with pytest.raises(AuxoptError, match="does not exist"):
        ObjectiveSpace(domain=tmp_path / "missing.txt")
    with pytest.raises(AuxoptError, match="needs in-domain text"):
        ObjectiveSpace(data=["task", "domain"])
    with pytest.raises(AuxoptError, match="supervised output needs labelled data"):
        AANG(objectives=["domain|mask|bidirectional|labels"], learn=False)
    with pytest.raises(AuxoptError, match="k=28 is larger"):
        AANG(space=ObjectiveSpace(), k=28)
    with pytest.raises(AuxoptError, match="unknown transform"):
        AuxObjective.parse("task|blur|bidirectional|denoise")
    # problems only the run can see fail before the first step
    with pytest.raises(AuxoptError, match="not in this run"):
        train(
            TrainConfig(
                small.primary,
                max_steps=2,
                max_length=16,
                device="cpu",
                objectives=AANG(objectives=["task:nope|mask|bidirectional|labels"], learn=False),
            )
        )
    with pytest.raises(AuxoptError, match="has none"):
        train(
            TrainConfig(
                small.primary,
                max_steps=2,
                max_length=16,
                device="cpu",
                objectives=AANG(space=ObjectiveSpace(domain=True), k=2),
            )
        )
    # a task without domain.txt: the space says why it is small
    mlm = dict(transforms=["bert_op"], representations=["bidirectional"], outputs=["denoise"])
    assert len(ObjectiveSpace.for_task(small.primary, **mlm)) == 1  # tapt only (with domain text: dapt too)
    with pytest.raises(AuxoptError, match=r"task 'primary' has no domain text \(domain.txt.*only has 1 objectives"):
        AANG(space=ObjectiveSpace.for_task(small.primary, **mlm), k=2)
    with pytest.raises(AuxoptError, match=r"no domain text.*only has 27 objectives"):
        TrainConfig(small.primary, max_length=16, device="cpu", objectives=AANG(k=28)).validate()
    path = tmp_path / "d.txt"
    path.write_text("one passage\nanother one\n")
    space = ObjectiveSpace(domain=path)
    path.unlink()
    with pytest.raises(AuxoptError, match="does not exist"):
        train(TrainConfig(small.primary, max_steps=2, max_length=16, device="cpu", objectives=AANG(space=space, k=2)))


# -- representation masks -----------------------------------------------------------------------
def test_masks_respect_order_and_padding():
    real = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    l2r = representation_mask(real, "left_to_right")
    assert l2r[0, 2].tolist() == [True, True, True, False, False]
    assert not l2r[0, :, 4].any() or l2r[0, 4, 4]  # padding keys only seen by the pad query itself
    r2l = representation_mask(real, "right_to_left")
    assert r2l[0, 1].tolist() == [False, True, True, True, False]
    order, rank = factorisation_order(real, torch.Generator().manual_seed(0))
    assert sorted(order[0, :4].tolist()) == [0, 1, 2, 3] and order[0, 4] == 4
    rf = representation_mask(real, "random_factorised", rank)
    for b in range(2):
        n = int(real[b].sum())
        for i in range(n):
            assert rf[b, i, :n].sum() == rank[b, i] + 1  # sees itself and every earlier-ranked token
    target, valid = next_token_targets(real, "random_factorised", order, rank)
    assert valid[0].sum() == 3 and valid[1].sum() == 4
    i = int(order[1, 0])
    assert target[1, i] == order[1, 1]


@pytest.mark.parametrize("representation", ["left_to_right", "right_to_left", "random_factorised"])
def test_encoder_cannot_see_hidden_tokens(small, representation):
    from auxopt.objectives.masks import additive_mask

    ctx = make_ctx(small.primary)
    enc = ctx.model.encoder.eval()
    ids = ctx.train_data[small.primary.name].input_ids[:2, :10].clone()
    real = torch.ones_like(ids, dtype=torch.bool)
    order, rank = factorisation_order(real, torch.Generator().manual_seed(1))
    mask = additive_mask(representation_mask(real, representation, rank))
    changed = ids.clone()
    hidden_pos = {"left_to_right": 9, "right_to_left": 0}.get(representation, int(order[0, -1]))
    changed[:, hidden_pos] = (changed[:, hidden_pos] + 7) % 100 + 5
    with torch.no_grad():
        a = enc(input_ids=ids, attention_mask=mask).last_hidden_state
        b = enc(input_ids=changed, attention_mask=mask).last_hidden_state
    same = torch.isclose(a, b, atol=1e-5).all(dim=-1)[0]
    assert not same[hidden_pos]  # the changed token's own state changes ...
    others = [p for p in range(10) if p != hidden_pos]
    assert same[others].all()  # ... and no other position can see it (last in every order)


# -- every objective gives a finite loss and a gradient ------------------------------------------
_ALL = [str(o) for o in ObjectiveSpace(data=["task", "domain", "task:helpful_0"], domain=DOMAIN)]


@pytest.fixture(scope="module")
def loss_setup(small):
    from auxopt.objectives.losses import ObjectiveLosses

    ctx = make_ctx(small.primary, small.auxiliaries)
    objs = [AuxObjective.parse(o) for o in _ALL]
    losses = ObjectiveLosses(ctx, objs, select_prob=0.15, domain=DOMAIN, out_of_domain=None, seed=0)
    return ctx, losses


def test_space_for_the_loss_test_has_the_documented_size():
    assert len(_ALL) == 27 + 24 + 28


@pytest.mark.parametrize("name", _ALL)
def test_every_legal_objective_has_finite_loss_and_gradient(loss_setup, name):
    ctx, losses = loss_setup
    ctx.model.zero_grad(set_to_none=True)
    obj = AuxObjective.parse(name)
    loss, n = losses.loss(obj)
    assert n == 8 and loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    encoder_grads = [p.grad for p in ctx.model.encoder.parameters() if p.grad is not None]
    assert encoder_grads and all(torch.isfinite(g).all() for g in encoder_grads)
    assert sum(float(g.norm()) for g in encoder_grads) > 0
    layer = ctx.model.encoder.encoder.layer[0].attention.self.query.weight
    assert layer.grad is not None and float(layer.grad.norm()) > 0
    head = losses.heads[obj]  # the objective's own head, trained with the model
    assert ctx.model.aang_heads[head_key(obj)] is head
    if obj.output != "labels":  # a tied LM head: its decoder is the input embedding
        assert head.decoder_weight is ctx.model.encoder.embeddings.word_embeddings.weight
        assert float(head.dense.weight.grad.norm()) > 0
    else:
        assert float(head.weight.grad.norm()) > 0
        assert all(p.grad is None for p in ctx.model.heads.parameters())  # not the task's own head


# -- online weighting ---------------------------------------------------------------------------
def test_online_weights_follow_the_cosine():
    objs = [
        AuxObjective("task", "mask", "bidirectional", "denoise"),
        AuxObjective("task", "none", "left_to_right", "next_token"),
        AuxObjective("task", "mask", "bidirectional", "labels"),
    ]
    space_options = {
        "data": ["task"],
        "transform": ["mask", "none"],
        "representation": ["bidirectional", "left_to_right"],
        "output": ["denoise", "next_token", "labels"],
    }
    ow = OnlineWeights(objs, space_options, lr=0.5, joint_lr=0.5, primary_lr=0.5)
    start = ow.weights().clone()
    assert torch.allclose(start, torch.full((3,), 1 / 3))
    dev = torch.randn(500, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(3, 500, generator=torch.Generator().manual_seed(1))
    grads = [dev + 0.5 * noise[0], -dev + 0.5 * noise[1], noise[2]]  # aligned, opposed, unrelated
    cos = torch.stack([torch.nn.functional.cosine_similarity(g, dev, dim=0) for g in grads])
    for _ in range(5):
        ow.update(torch.tensor([0, 1, 2]), cos, primary_cosine=0.9)
    w = ow.weights()
    assert w[0] > start[0] and w[1] < start[1]
    assert w[0] > w[2] > w[1]
    assert ow.primary_share() > 0.5  # the primary gradient agrees with dev more than the mix


def _keyword_task():
    """An easy binary task (the label is the word "good" or "bad" among filler words): a tiny model
    learns it in a few dozen steps, so the primary head and the dev head come to agree."""
    from auxopt.tasks.loading import build_task

    rng = np.random.default_rng(0)
    filler = [f"w{i}" for i in range(40)]

    def records(n):
        out = []
        for _ in range(n):
            y = int(rng.integers(2))
            words = list(rng.choice(filler, 8))
            words.insert(int(rng.integers(8)), ("good", "bad")[y])
            out.append({"text": " ".join(words), "label": str(y)})
        return out

    return build_task("primary", {"train": records(200), "dev": records(64), "test": records(64)}, labels=["0", "1"])


def test_online_weights_move_toward_aligned_and_away_from_unrelated_objectives():
    primary = _keyword_task()
    rng = np.random.default_rng(1)
    same = dataclasses.replace(primary, name="same")  # the primary's own labels, under its own head
    noise = dataclasses.replace(  # the same text with random labels: its gradient is unrelated
        primary,
        name="noise",
        train=dataclasses.replace(primary.train, labels=rng.integers(2, size=len(primary.train.labels))),
    )
    space = ObjectiveSpace(
        data=["task:same", "task:noise"], transforms=["mask"], representations=["bidirectional"], outputs=["labels"]
    )
    assert len(space) == 2
    config = TrainConfig(
        primary,
        [same, noise],
        max_steps=40,
        eval_every=20,
        max_length=16,
        batch_size=16,
        lr=3e-3,
        dropout=0.0,
        device="cpu",
        seed=0,
        objectives=AANG(space=space, k=2, weight_lr=0.5, log_every=5, dev_batch_size=64, finetune=0.0),
    )
    result = train(config)
    record = result.extra["aang_weights"]
    names, rows = record["objectives"], np.array(record["weights"])
    assert rows.shape == (len(record["steps"]), 2) and record["steps"][0] == 1
    assert np.allclose(rows[0], 0.5)
    i_same = names.index("task:same|mask|bidirectional|labels")
    i_noise = names.index("task:noise|mask|bidirectional|labels")
    cosines = [dict(entry[2:]) for entry in result.extra["aang_cosines"]]
    mean = {i: np.mean([c[names[i]] for c in cosines if names[i] in c]) for i in (i_same, i_noise)}
    assert mean[i_same] > mean[i_noise]
    assert rows[-1, i_same] > 0.6 and rows[-1, i_same] > rows[-1, i_noise]
    assert "aang_finetune" not in result.extra


def test_fixed_objectives_and_state_round_trip(small):
    spec = AANG(objectives=["tapt", "gpt"], weights=[0.5, 0.25], learn=False, log_every=2)
    result = train(
        TrainConfig(
            small.primary, max_steps=4, eval_every=2, max_length=24, batch_size=8, device="cpu", objectives=spec
        )
    )
    rec = result.extra["aang_weights"]
    assert rec["steps"] == [1, 2, 4] and rec["weights"] == [[0.5, 0.25]] * 3
    assert rec["primary_weight"] == [1.0] * 3
    assert set(result.examples) >= {small.primary.name, str(PRESETS["tapt"]), str(PRESETS["gpt"])}

    online = AANG(space=ObjectiveSpace(), k=2, log_every=1)
    a = online.make_step(make_ctx(small.primary))
    for step in (1, 2, 3):
        a.backward(step)
    state = a.state_dict()
    b = online.make_step(make_ctx(small.primary))
    b.load_state_dict(state)
    assert a.current_weights() == b.current_weights()
    assert a.current_weights()[0] != [1 / 27] * 27  # the weights did move
    assert torch.equal(a._terms()[1], b._terms()[1])  # the same objectives come next
    assert b.summary()["aang_weights"] == a.summary()["aang_weights"]


# -- Optuna -------------------------------------------------------------------------------------
def test_tpe_study_over_the_space_end_to_end(tmp_path, small):
    import optuna

    from auxopt import StudySpec
    from auxopt.plots import aang_weights_data

    space = ObjectiveSpace()

    def search(trial):
        return {"objectives": AANG.suggest_fixed(trial, space, k=2)}

    spec = StudySpec(
        name="aang_test",
        primary=small.primary,
        space=search,
        base={"model": "tiny", "max_steps": 6, "eval_every": 3, "max_length": 24, "batch_size": 8, "device": "cpu"},
        sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=2),
        n_trials=5,
        storage=f"sqlite:///{tmp_path / 'aang.db'}",
    )
    study = spec.optimize(publish_every=None)
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 5
    for t in trials:
        chosen = t.user_attrs["aang_objectives"]
        assert len(chosen) == 2
        for slot in chosen:
            obj = AuxObjective.parse(slot["objective"])
            assert obj in space and why_illegal(obj) is None
            assert slot["mapped"] == (slot["suggested"] != slot["objective"])
            assert slot["suggested"] == "|".join(
                t.params[f"obj{slot['slot']}_{s}"] for s in ("data", "transform", "representation", "output")
            )
        assert set(t.user_attrs["aang_weights"]["objectives"]) == {c["objective"] for c in chosen}
        assert t.user_attrs["config"]["objectives"]["kind"] == "AANG"
    data = aang_weights_data(study)
    assert data is not None and data["steps"][0] == 1

    # AANG's own hyperparameters are Optuna parameters too
    def online(trial):
        return {"objectives": AANG.suggest(trial, space, k=(1, 3), log_every=2)}

    spec2 = dataclasses.replace(
        spec, name="aang_online", space=online, n_trials=2, sampler=optuna.samplers.TPESampler(seed=1)
    )
    study2 = spec2.optimize(publish_every=None)
    t = study2.trials[-1]
    assert {"aang_k", "aang_weight_lr", "aang_primary_lr"} <= set(t.params)
    rec = t.user_attrs["aang_weights"]
    assert len(rec["objectives"]) == 27 and len(rec["weights"][0]) == 27
