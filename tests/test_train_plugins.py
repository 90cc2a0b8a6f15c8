"""TrainConfig's one step-plugin slot (``plugin``, with ``objectives`` / ``decomposer`` as aliases) and
train()'s callbacks."""

import dataclasses

import pytest

from auxopt.errors import AuxoptError
from auxopt.grad import GradientDecomposer
from auxopt.objectives import AANG
from auxopt.train import StepPlugin, TrainCallback, TrainConfig, train
from auxopt.train.jd import JacobianDescent
from auxopt.train.step import ScheduleStep

FAST = dict(max_steps=40, eval_every=20, max_length=32, batch_size=16)


class Plain:
    """A third-party plugin: the plain schedule step, with no config_key."""

    def make_step(self, ctx):
        return ScheduleStep(ctx)

    def describe(self):
        return {"kind": "plain"}


def test_both_aliases_and_plugin_set_the_one_slot(suite):
    aang, grad, jd = AANG(), GradientDecomposer(), JacobianDescent()
    assert isinstance(aang, StepPlugin) and isinstance(grad, StepPlugin) and isinstance(Plain(), StepPlugin)
    by_alias = TrainConfig(suite.primary, suite.auxiliaries, objectives=aang)
    assert by_alias.plugin is aang and by_alias.objectives is aang and by_alias.decomposer is None
    by_alias = TrainConfig(suite.primary, suite.auxiliaries, decomposer=grad)
    assert by_alias.plugin is grad and by_alias.decomposer is grad and by_alias.objectives is None
    assert TrainConfig(suite.primary, decomposer=jd).plugin is jd
    direct = TrainConfig(suite.primary, suite.auxiliaries, plugin=aang)  # the alias its config_key names
    assert direct.plugin is aang and direct.objectives is aang and direct.decomposer is None
    assert TrainConfig(suite.primary, plugin=grad).decomposer is grad
    plain = TrainConfig(suite.primary, plugin=Plain())
    assert plain.objectives is None and plain.decomposer is None
    assert TrainConfig(suite.primary).plugin is None
    # replace() copies a config with its plugin (plugin and alias hold the same object)
    copy = dataclasses.replace(by_alias, seed=3)
    assert copy.plugin is grad and copy.describe()["decomposer"] == grad.describe()


@pytest.mark.parametrize(
    "given, names",
    [
        (dict(plugin=Plain(), objectives=AANG()), "objectives and plugin"),
        (dict(plugin=Plain(), decomposer=GradientDecomposer()), "decomposer and plugin"),
        (dict(plugin=AANG(), objectives=AANG(k=2)), "objectives and plugin"),
    ],
)
def test_setting_two_plugins_is_an_error_naming_both(suite, given, names):
    with pytest.raises(AuxoptError, match=f"one step plugin, but {names} are both set"):
        TrainConfig(suite.primary, suite.auxiliaries, **given)


def test_objectives_and_decomposer_together_keep_their_error(suite):
    with pytest.raises(AuxoptError, match="objectives .AANG. and decomposer .ATTITTUD. cannot be combined"):
        TrainConfig(suite.primary, suite.auxiliaries, objectives=AANG(), decomposer=GradientDecomposer())


def test_a_plugin_without_make_step_is_named_by_its_key(suite):
    with pytest.raises(AuxoptError, match="plugin must be an auxopt plugin with make_step"):
        TrainConfig(suite.primary, plugin=object())
    with pytest.raises(AuxoptError, match="objectives must be an auxopt plugin with make_step"):
        TrainConfig(suite.primary, objectives="tapt")


def test_describe_is_unchanged_by_the_slot(suite):
    aang, grad = AANG(k=2), GradientDecomposer(k=2)
    plain = TrainConfig(suite.primary, suite.auxiliaries).describe()
    assert "plugin" not in plain and "objectives" not in plain and "decomposer" not in plain
    by_alias = TrainConfig(suite.primary, suite.auxiliaries, objectives=aang).describe()
    assert by_alias == {**plain, "objectives": aang.describe()}
    at = list(plain).index("schedule")  # the plugin's key where it always was: before the schedule
    assert list(by_alias) == [*list(plain)[:at], "objectives", *list(plain)[at:]]
    assert TrainConfig(suite.primary, suite.auxiliaries, plugin=aang).describe() == by_alias
    by_alias = TrainConfig(suite.primary, suite.auxiliaries, decomposer=grad).describe()
    assert by_alias == {**plain, "decomposer": grad.describe()}
    assert TrainConfig(suite.primary, suite.auxiliaries, plugin=grad).describe() == by_alias
    assert TrainConfig(suite.primary, suite.auxiliaries, plugin=Plain()).describe() == {
        **plain,
        "plugin": {"kind": "plain"},
    }


def test_a_third_party_plugin_makes_the_step(suite):
    made = []

    class Counting(Plain):
        def make_step(self, ctx):
            made.append(ctx.config.primary.name)
            return super().make_step(ctx)

    result = train(TrainConfig(suite.primary, plugin=Counting(), **FAST))
    assert made == [suite.primary.name] and result.steps == 40


class Recorder(TrainCallback):
    def __init__(self, stop_after=None):
        self.steps, self.evals, self.stop_after = [], [], stop_after

    def on_step_end(self, step):
        self.steps.append(step)

    def on_evaluate(self, step, value):
        self.evals.append((step, value))

    def should_stop(self):
        return self.stop_after is not None and len(self.evals) >= self.stop_after


def test_callbacks_receive_step_ends_and_evaluations(suite):
    seen = []
    first, second = Recorder(), Recorder(stop_after=2)
    result = train(
        TrainConfig(suite.primary, **{**FAST, "max_steps": 60}),
        lambda step, value: seen.append((step, value)),
        callbacks=[first, second],
    )
    assert first.steps == second.steps == list(range(1, 41))
    assert first.evals == second.evals == seen == result.curve and [s for s, _ in seen] == [20, 40]
    assert result.stopped == "reporter"


def test_base_callback_is_a_no_op_and_needs_no_reporter(suite):
    plain = train(TrainConfig(suite.primary, **FAST))
    with_hooks = train(TrainConfig(suite.primary, **FAST), callbacks=[TrainCallback()])
    assert with_hooks.curve == plain.curve and with_hooks.stopped == "max_steps"


def test_a_callback_must_have_the_hooks(suite):
    with pytest.raises(AuxoptError, match="callbacks must be auxopt.train.TrainCallback objects, not function"):
        train(TrainConfig(suite.primary, **FAST), callbacks=[lambda step: None])


def test_a_callback_sees_the_built_model_before_the_first_step(suite):
    seen = {}

    class Hook(TrainCallback):
        def on_train_begin(self, model, tokenizer):
            seen["training"] = model.training
            seen["forwards"] = 0
            model.register_forward_pre_hook(lambda *a: seen.__setitem__("forwards", seen["forwards"] + 1))
            seen["tokenizer"] = tokenizer is not None

        def on_step_end(self, step):
            seen.setdefault("first_step_forwards", seen["forwards"])

    train(TrainConfig(suite.primary, **FAST), callbacks=[Hook()])
    assert seen["training"] and seen["tokenizer"] and seen["first_step_forwards"] >= 1
