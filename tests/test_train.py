import math

import numpy as np
import pytest

from auxopt.errors import AuxoptError
from auxopt.tasks import build_task, load_task
from auxopt.train import TrainConfig, train

FAST = dict(max_steps=40, eval_every=20, max_length=32, batch_size=16)


def test_config_rejects_unknown_ratio_names(suite):
    with pytest.raises(AuxoptError, match="unknown task"):
        TrainConfig(suite.primary, suite.auxiliaries, ratios={"nope": 1})


def test_config_rejects_duplicate_tasks(suite):
    with pytest.raises(AuxoptError, match="unique"):
        TrainConfig(suite.primary, [suite.primary])


@pytest.mark.parametrize(
    "key, value", [("max_steps", 0), ("batch_size", -1), ("lr", float("nan")), ("warmup_ratio", 1.5)]
)
def test_config_rejects_bad_numbers(suite, key, value):
    with pytest.raises(AuxoptError, match=key):
        TrainConfig(suite.primary, **{key: value})


@pytest.mark.parametrize(
    "ratios, message",
    [
        ({"primary": 0}, "primary task 'primary' must be a finite number > 0 (the run trains and scores it), not 0"),
        (
            {"primary": -1, "helpful_0": 1},
            "primary task 'primary' must be a finite number > 0 (the run trains and scores it), not -1",
        ),
        (
            {"primary": 1, "helpful_0": -0.5},
            "auxiliary task 'helpful_0' must be a finite number >= 0 (0: not trained on), not -0.5",
        ),
        ({"primary": 1, "helpful_0": float("nan")}, "auxiliary task 'helpful_0' must be a finite number"),
        ({"primary": 1, "helpful_0": "2"}, "ratio of task 'helpful_0' must be a number, not '2'"),
    ],
)
def test_config_rejects_bad_ratios_naming_the_task_and_value(suite, ratios, message):
    with pytest.raises(AuxoptError) as info:
        TrainConfig(suite.primary, suite.auxiliaries, ratios=ratios)
    assert message in str(info.value)


def test_config_and_tokenisation_reject_a_max_length_with_no_room_for_text(suite):
    with pytest.raises(AuxoptError, match=r"max_length=1 leaves no room for the text of task 'primary'.*>= 3"):
        TrainConfig(suite.primary, max_length=1)
    with pytest.raises(AuxoptError, match="max_length=2"):
        TrainConfig(suite.primary, max_length=2)
    assert TrainConfig(suite.primary, max_length=3).max_length == 3
    pairs = build_task("pairs", {"train": [{"text": f"a{i}", "text_pair": f"b{i}", "label": i % 2} for i in range(20)]})
    with pytest.raises(AuxoptError, match=r"task 'pairs'.*a text pair.*>= 5"):
        TrainConfig(pairs, max_length=4)
    # the tokenizer's own count of special tokens, where the text is encoded
    from auxopt.models import encode_split, load_encoder

    tokenizer = load_encoder("tiny", corpus=suite.primary.train.texts).tokenizer
    with pytest.raises(AuxoptError, match=r"max_length=2 leaves no room for the text of task 'primary'"):
        encode_split(tokenizer, suite.primary, "dev", 2)
    assert len(encode_split(tokenizer, suite.primary, "dev", 3)) == len(suite.primary.dev)


def test_active_ratios(suite):
    helpful, neutral, harmful = suite.auxiliaries
    assert TrainConfig(suite.primary, suite.auxiliaries).active_ratios() == {
        "primary": 1.0,
        helpful.name: 1.0,
        neutral.name: 1.0,
        harmful.name: 1.0,
    }
    config = TrainConfig(suite.primary, suite.auxiliaries, ratios={neutral.name: 2, harmful.name: 0})
    assert config.active_ratios() == {"primary": 1.0, neutral.name: 2.0}


def test_training_is_deterministic_on_cpu(suite):
    config = TrainConfig(suite.primary, suite.auxiliaries, ratios={"helpful_0": 1}, device="cpu", seed=3, **FAST)
    a, b = train(config), train(config)
    assert a.curve == b.curve
    assert a.test_at_best == b.test_at_best
    c = train(TrainConfig(suite.primary, suite.auxiliaries, ratios={"helpful_0": 1}, device="cpu", seed=4, **FAST))
    assert c.curve != a.curve


def test_result_accounts_examples_by_schedule(suite):
    config = TrainConfig(suite.primary, suite.auxiliaries, ratios={"primary": 1, "neutral_0": 3}, **FAST)
    result = train(config)
    assert result.steps == 40 and result.stopped == "max_steps"
    assert result.examples == {"primary": 10 * 16, "neutral_0": 30 * 16}
    assert [s for s, _ in result.curve] == [20, 40]
    assert result.best_dev == max(v for _, v in result.curve)
    assert 0 <= result.test_at_best <= 1


def test_reporter_can_stop_training(suite):
    seen = []

    def reporter(step, value):
        seen.append((step, value))
        return True

    result = train(TrainConfig(suite.primary, **FAST), reporter)
    assert result.stopped == "reporter" and result.steps == 20 and seen == result.curve


def test_callbacks_see_every_step_and_every_evaluation(suite):
    from auxopt.train import TrainCallback

    class Recorder(TrainCallback):
        def __init__(self):
            self.steps, self.reports = [], []

        def on_step_end(self, step):
            self.steps.append(step)

        def on_evaluate(self, step, value):
            self.reports.append(step)

        def should_stop(self):
            return len(self.reports) >= 2

    recorder = Recorder()
    result = train(TrainConfig(suite.primary, **{**FAST, "max_steps": 60}), callbacks=[recorder])
    assert recorder.steps == list(range(1, 41)) and recorder.reports == [20, 40]
    assert result.stopped == "reporter"


def test_early_stopping(suite):
    config = TrainConfig(
        suite.primary, lr=1e-9, warmup_ratio=0.0, patience=1, max_steps=200, eval_every=10, max_length=32
    )
    result = train(config)
    assert result.stopped == "early_stopping"
    assert result.steps < 200


def test_shared_head_tasks_train_together(suite):
    harmful = next(t for t in suite.auxiliaries if suite.ground_truth[t.name] == "harmful")
    assert harmful.head == "primary"
    result = train(TrainConfig(suite.primary, [harmful], **FAST))
    assert result.examples[harmful.name] > 0


def test_nan_loss_is_a_clear_error():
    records = {
        "train": [{"text": f"word {i}", "label": 1e30 * (i + 1)} for i in range(40)],
        "dev": [{"text": "word", "label": 1.5}, {"text": "other", "label": 2.5}],
    }
    task = build_task("huge", records, kind="regression", test_fraction=0.1)
    with pytest.raises(AuxoptError, match="loss of task 'huge' became"):
        train(TrainConfig(task, **FAST))


def test_regression_and_pairs_train(shared_data):
    task = load_task("stsb", max_train=300)
    result = train(TrainConfig(task, **FAST))
    assert task.metric == "pearson" and math.isfinite(result.best_dev)


@pytest.mark.slow
def test_tiny_model_beats_majority_on_trec(shared_data):
    task = load_task("trec")
    result = train(TrainConfig(task, max_steps=600, eval_every=150, max_length=48, batch_size=32, seed=0))
    majority = task.majority_baseline("test")
    assert result.test_at_best > majority + 0.2, (result.test_at_best, majority)


@pytest.mark.slow
def test_synthetic_roles_show_in_training():
    """The synthetic suite's ground truth is real: helpful aux > primary alone > harmful aux."""
    from auxopt.tasks import make_synthetic_suite

    suite = make_synthetic_suite(n_helpful=1, n_neutral=0, n_harmful=1)
    names = {suite.ground_truth[t.name]: t for t in suite.auxiliaries}
    settings = dict(max_steps=400, eval_every=100, max_length=32)
    scores = {}
    for role, aux in (("alone", []), ("helpful", [names["helpful"]]), ("harmful", [names["harmful"]])):
        scores[role] = np.mean(
            [train(TrainConfig(suite.primary, aux, seed=s, **settings)).test_at_best for s in (0, 1)]
        )
    assert scores["helpful"] > scores["alone"] > scores["harmful"], scores
