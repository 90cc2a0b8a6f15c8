"""OnlineThompson(reward="round"): every auxiliary judged against the others from the same saved state."""

import pytest
import torch

from auxopt.errors import AuxoptError
from auxopt.train import (
    Checkpoint,
    FolderCheckpointStore,
    OnlineThompson,
    ThompsonSchedule,
    TrainCallback,
    TrainConfig,
    train,
)

ROUND = OnlineThompson(steps_per_pull=2, reward="round", warmup_pulls=1)


def _pulls(schedule, n):
    """The task, whether it was judged, and whether a round starts after it, for ``n`` pulls."""
    out = []
    for _ in range(n):
        tasks = {schedule.next_task() for _ in range(schedule.spec.steps_per_pull)}
        out.append((tasks.pop(), schedule.judged(), schedule.round_starts()))
    return out


def test_warm_up_then_rounds_of_every_auxiliary_from_one_state_then_a_primary_pull():
    schedule = ThompsonSchedule(["p", "a", "b", "c"], ROUND)
    assert not schedule.round_starts()  # the warm-up comes first
    assert _pulls(schedule, 12) == [
        ("p", False, False),
        ("a", False, False),
        ("b", False, False),
        ("c", False, True),  # warm-up over: save the state the round starts from
        ("a", True, False),
        ("b", True, False),
        ("c", True, False),
        ("p", False, True),  # the run goes on with the primary, then the next round
        ("a", True, False),
        ("b", True, False),
        ("c", True, False),
        ("p", False, True),
    ]


def test_the_better_half_of_a_round_wins_a_tie_decided_by_the_loss():
    schedule = ThompsonSchedule(
        ["p", "a", "b", "c", "d"], OnlineThompson(steps_per_pull=1, reward="round", warmup_pulls=0)
    )
    scores = {"a": (0.70, 0.50), "b": (0.80, 0.40), "c": (0.70, 0.45), "d": (0.60, 0.30)}
    for task in "abcd":
        assert schedule.next_task() == task
        assert schedule.observe(scores[task]) is None
        assert schedule.history == [] or task == "d"  # rewards only once the round is complete
    assert {h["task"]: h["reward"] for h in schedule.history} == {"a": 0, "b": 1, "c": 1, "d": 0}
    assert schedule.bandit.evidence()["b"] == (2.0, 1.0) and schedule.bandit.evidence()["d"] == (1.0, 2.0)
    assert schedule.bandit.evidence()["p"] == (1.0, 1.0)  # the primary's own pulls are not judged
    assert schedule.select(top_k=3, none_arm="p") == ["b", "c"]
    schedule.next_task()  # the primary's pull: observe ignores it
    assert schedule.observe((0.9, 0.1)) is None and len(schedule.history) == 4


def test_bad_round_settings():
    with pytest.raises(AuxoptError, match="at least 2 auxiliary tasks, not 1"):
        ThompsonSchedule(["p", "a"], ROUND)
    with pytest.raises(AuxoptError, match="warmup_pulls"):
        OnlineThompson(reward="round", warmup_pulls=-1)
    with pytest.raises(AuxoptError, match="'rose', 'trend' or 'round'"):
        OnlineThompson(reward="rounds")
    schedule = ThompsonSchedule(["p", "a", "b"], OnlineThompson(steps_per_pull=1, reward="round", warmup_pulls=0))
    schedule.next_task()
    with pytest.raises(AuxoptError, match=r"observe\(\(metric, loss\)\)"):
        schedule.observe(0.7)


def test_a_schedule_saved_mid_round_resumes_at_the_start_of_that_round():
    spec = OnlineThompson(steps_per_pull=2, reward="round", warmup_pulls=1)
    a = ThompsonSchedule(["p", "a", "b", "c"], spec)
    _pulls(a, 4)  # the warm-up
    a.next_task(), a.next_task()
    a.observe((0.5, 0.5))  # the round's first judged pull
    a.next_task()  # and half of its second
    b = ThompsonSchedule(["p", "a", "b", "c"], spec)
    b.load_state_dict(a.state_dict())
    assert b.round_starts() and b.plan.scores == {}
    assert [t for t, *_ in _pulls(b, 4)] == ["a", "b", "c", "p"]


class Watch(TrainCallback):
    """The weights at the start and at each evaluation."""

    def __init__(self):
        self.states = []

    def on_train_begin(self, model, tokenizer):
        self.model = model
        self.states.append({k: v.detach().clone() for k, v in model.state_dict().items()})

    def on_evaluate(self, step, value):
        self.states.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})


def _config(suite, **kw):
    spec = OnlineThompson(steps_per_pull=2, reward="round", warmup_pulls=0, eval_batches=1)
    fast = dict(max_length=24, batch_size=16, eval_batch_size=64, device="cpu", seed=1, lr=3e-3)
    return TrainConfig(suite.primary, suite.auxiliaries, schedule=spec, **{**fast, **kw})


def test_a_round_leaves_the_shared_weights_as_they_were_and_each_own_head_trained(suite):
    watch = Watch()
    result = train(_config(suite, max_steps=6, eval_every=6), callbacks=[watch])  # one round: 3 pulls of 2 steps
    start, end = watch.states
    own = {f"heads.{t.head_name}." for t in suite.auxiliaries if t.head_name != suite.primary.head_name}
    assert own  # the suite has auxiliaries with heads of their own (the harmful one shares the primary's)
    for name in start:
        moved = not torch.equal(start[name], end[name])
        assert moved == any(name.startswith(h) for h in own), name
    history = result.extra["thompson"]["history"]
    assert sorted(h["task"] for h in history) == sorted(t.name for t in suite.auxiliaries)
    assert sum(h["reward"] for h in history) == 1 and {h["step"] for h in history} == {6}
    assert sum(result.examples.values()) == 6 * 16


def test_an_interrupted_round_run_resumes_and_judges_whole_rounds(suite, tmp_path):
    class Stop(Exception):
        pass

    def crash(step, value):
        if step == 20:
            raise Stop

    config = _config(
        suite, max_steps=32, eval_every=10, checkpoint=Checkpoint(FolderCheckpointStore(tmp_path), every=7)
    )
    with pytest.raises(Stop):
        train(config, crash)
    resumed = train(config)
    assert resumed.extra["resumed_from_step"] == 14  # mid-round: that round starts again
    history = resumed.extra["thompson"]["history"]
    rounds = {}
    for h in history:
        rounds.setdefault(h["step"], []).append(h["reward"])
    assert all(len(r) == 3 and sum(r) == 1 for r in rounds.values()) and len(rounds) >= 3


def test_autosem_selects_on_the_rounds_evidence(suite, tmp_path):
    from auxopt.pipelines import AutoSeM

    base = {"max_steps": 20, "eval_every": 10, "max_length": 24, "batch_size": 16, "eval_batch_size": 64}
    spec = OnlineThompson(steps_per_pull=2, reward="round", warmup_pulls=0, eval_batches=1)
    pipeline = AutoSeM(
        "rounds", suite.primary, suite.auxiliaries, base=base, stage1_steps=16, online=spec, stage2_trials=1,
        storage=f"sqlite:///{tmp_path / 'r.db'}",
    )  # fmt: skip
    pipeline.optimize()
    result = pipeline.result
    pulls = {t.name: sum(result.evidence[t.name]) - 2 for t in suite.auxiliaries}
    assert pulls == dict.fromkeys(pulls, 2)  # two rounds of 8 steps: every auxiliary judged twice
    assert set(result.evidence) - set(pulls) <= {"none"} and result.evidence.get("none", (1, 1)) == (1, 1)
    wins = {t: result.evidence[t][0] - 1 for t in pulls}
    assert sum(wins.values()) == 2  # one winner a round (3 auxiliaries: the better half is 1)
    median = sorted(wins.values())[1]
    assert result.selected == sorted((t for t in wins if wins[t] > median), key=lambda t: -wins[t])


def test_a_run_too_short_for_one_round_is_refused_before_it_starts(suite):
    config = _config(suite, max_steps=5, eval_every=5)  # one round of 3 pulls of 2 steps needs 6
    with pytest.raises(AuxoptError, match=r"judges no pull in 5 steps: .* take 6 steps"):
        config.validate()
    _config(suite, max_steps=6, eval_every=6).validate()
    schedule = ThompsonSchedule(["p", "a", "b", "c"], ROUND)  # warm-up 4 pulls, rounds of 4 pulls, 2 steps a pull
    assert [schedule.plan.rounds_in(n) for n in (13, 14, 21, 22, 29, 30)] == [0, 1, 1, 2, 2, 3]
