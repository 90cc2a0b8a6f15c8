import subprocess
import sys

import optuna
import pytest

from auxopt.errors import AuxoptError
from auxopt.objective import Objective
from auxopt.train import OnlineThompson, ThompsonSchedule, TrainConfig, make_schedule, train


def test_pulls_are_runs_of_steps_per_pull():
    schedule = ThompsonSchedule(["p", "a", "b"], OnlineThompson(steps_per_pull=3), seed=0)
    schedule.observe(0, 0.5)
    for _ in range(5):
        tasks = [schedule.next_task() for _ in range(3)]
        assert len(set(tasks)) == 1 and schedule.pull_finished()
        schedule.observe(0, 0.5)
    assert sum(schedule.bandit.pulls().values()) == 5


def test_reward_rose_ties_by_loss_with_decay_and_undecayed_evidence():
    """Hand-worked: gamma 0.3, prior Beta(1, 1); values are (dev metric, dev loss)."""
    schedule = ThompsonSchedule(["p", "a"], OnlineThompson(steps_per_pull=1, gamma=0.3), seed=0)
    schedule.observe(0, (0.50, 0.9))  # the untrained model: a reference, no pull yet
    pulls = []
    for step, value in enumerate([(0.60, 0.8), (0.60, 0.7), (0.60, 0.75), (0.55, 0.5)], start=1):
        pulls.append(schedule.next_task())
        schedule.observe(step, value)
    rewards = [1, 1, 0, 0]  # rose; tie, loss fell; tie, loss rose; dropped (loss ignored)
    assert [h["reward"] for h in schedule.history] == rewards
    # replay by hand: decay every arm toward (1, 1) by 0.3, then add the reward to the pulled arm
    post = {"p": [1.0, 1.0], "a": [1.0, 1.0]}
    tally = {"p": [0, 0], "a": [0, 0]}
    for arm, reward in zip(pulls, rewards, strict=True):
        for ab in post.values():
            ab[0], ab[1] = 0.7 * ab[0] + 0.3, 0.7 * ab[1] + 0.3
        post[arm][0] += reward
        post[arm][1] += 1 - reward
        tally[arm][0] += reward
        tally[arm][1] += 1
    got = schedule.bandit.posterior()
    for arm in post:
        assert got[arm] == pytest.approx(tuple(post[arm]))
        # the evidence selection reads is not decayed: prior + wins, prior + losses
        wins, n = tally[arm]
        assert schedule.bandit.evidence()[arm] == (1 + wins, 1 + n - wins)
    assert schedule.summary()["evidence"] == {k: list(v) for k, v in schedule.bandit.evidence().items()}


def test_plain_metric_tie_is_no_win():
    schedule = ThompsonSchedule(["p"], OnlineThompson(steps_per_pull=1), seed=0)
    schedule.observe(0, 0.5)
    schedule.next_task()
    schedule.observe(1, 0.5)
    assert schedule.history[-1]["reward"] == 0


def test_trend_reward_judges_the_loss_change_against_the_recent_median():
    """Hand-worked, window 3: the first three pulls need the loss to fall at all; from the fourth
    on, a pull wins when its change beats the median change of the previous three (every arm's)."""
    schedule = ThompsonSchedule(["p", "a"], OnlineThompson(steps_per_pull=1, reward="trend", window=3), seed=0)
    schedule.observe(0, (0.5, 1.00))
    losses = [0.90, 0.85, 0.86, 0.84, 0.83, 0.835, 0.80]
    # changes:  -.10  -.05  +.01  -.02  -.01  +.005  -.035
    # bar:       0     0     0    -.05  -.02  -.01   -.01
    for step, loss in enumerate(losses, start=1):
        schedule.next_task()
        schedule.observe(step, (0.5, loss))  # the metric never moves: only the loss decides
    assert [h["reward"] for h in schedule.history] == [1, 1, 0, 0, 0, 0, 1]
    resumed = ThompsonSchedule(["p", "a"], OnlineThompson(steps_per_pull=1, reward="trend", window=3), seed=0)
    resumed.load_state_dict(schedule.state_dict())
    assert resumed.changes == pytest.approx([-0.01, 0.005, -0.035])
    with pytest.raises(AuxoptError, match="dev loss"):
        resumed.observe(9, 0.5)
    with pytest.raises(AuxoptError, match="reward"):
        OnlineThompson(reward="fell")
    with pytest.raises(AuxoptError, match="window"):
        OnlineThompson(reward="trend", window=0)


def test_state_dict_resumes_identically():
    a = ThompsonSchedule(["p", "a", "b"], OnlineThompson(steps_per_pull=2), seed=5)
    a.observe(0, 0.1)
    for i in range(7):
        a.next_task()
        if a.pull_finished():
            a.observe(i, 0.1 * (i % 3))
    b = ThompsonSchedule(["p", "a", "b"], OnlineThompson(steps_per_pull=2), seed=99)
    b.load_state_dict(a.state_dict())
    assert [a.next_task() for _ in range(20)] == [b.next_task() for _ in range(20)]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"steps_per_pull": 0}, "steps_per_pull"),
        ({"gamma": 1.0}, "gamma"),
        ({"alpha0": 0}, "alpha0"),
        ({"eval_batches": 0}, "eval_batches"),
    ],
)
def test_bad_online_settings(kwargs, message):
    with pytest.raises(AuxoptError, match=message):
        OnlineThompson(**kwargs)


def test_make_schedule_thompson_uses_positive_ratio_tasks_as_arms():
    schedule = make_schedule({"p": 1, "a": 0, "b": 2.5}, "thompson")
    assert set(schedule.bandit.arms) == {"p", "b"}


def test_online_run_returns_and_stores_posterior(suite, tmp_path):
    config = TrainConfig(
        suite.primary,
        suite.auxiliaries,
        schedule=OnlineThompson(steps_per_pull=5, eval_batches=1),
        max_steps=60,
        eval_every=30,
        max_length=24,
        batch_size=16,
        eval_batch_size=64,
    )
    result = train(config)
    info = result.extra["thompson"]
    assert set(info["posterior"]) == {t.name for t in config.tasks}
    assert sum(info["pulls"].values()) == 12 == len(info["history"])
    assert sum(result.examples.values()) == 60 * 16
    assert [h["step"] for h in info["history"]] == list(range(5, 61, 5))

    study = optuna.create_study(direction="maximize", storage=f"sqlite:///{tmp_path / 's.db'}")
    study.optimize(Objective(lambda trial: config), n_trials=1)
    attrs = study.trials[0].user_attrs
    assert attrs["thompson_pulls"] == info["pulls"]
    assert attrs["thompson_means"] == pytest.approx(info["means"])
    assert len(attrs["thompson_history"]) == 12
    assert attrs["config"]["schedule"]["kind"] == "OnlineThompson"


def test_training_and_bandit_core_import_no_optuna():
    code = "import sys, auxopt.train, auxopt.samplers; print('optuna' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
