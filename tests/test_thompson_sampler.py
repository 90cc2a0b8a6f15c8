"""ThompsonTaskSampler (AutoSeM stage 1) and its Beta-Bernoulli bandit core."""

from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.testing.pytest_samplers import BasicSamplerTestCase
from optuna.trial import TrialState, create_trial

from auxopt.errors import AuxoptError
from auxopt.samplers import BetaBernoulliBandit, ThompsonTaskSampler, select_tasks

optuna.logging.set_verbosity(optuna.logging.WARNING)

ARMS = ("none", "good", "neutral", "bad")
ARM_DIST = CategoricalDistribution(ARMS)
ARM_MEANS = {"none": 0.5, "good": 0.8, "neutral": 0.5, "bad": 0.2}


def _assert_posterior(got, expected):
    assert set(got) == set(expected)
    for arm, ab in expected.items():
        assert got[arm] == pytest.approx(ab), arm


# -- Optuna's conformance suite ------------------------------------------------------------------
class TestConformance(BasicSamplerTestCase):
    @pytest.fixture
    def sampler(self):
        return lambda: ThompsonTaskSampler(seed=0)


class TestConformanceWithBanditParam(BasicSamplerTestCase):
    """The suite again with its categorical ``category`` parameter chosen by the bandit."""

    @pytest.fixture
    def sampler(self):
        return lambda: ThompsonTaskSampler("category", seed=0)


# -- the bandit core ----------------------------------------------------------------------------
def test_decay_rule_hand_worked():
    bandit = BetaBernoulliBandit(["a", "b"], alpha0=1, beta0=1, gamma=0.3)
    # pull 1 (a, 1): both arms sit at the prior, decay leaves them there; a gains a success.
    bandit.update("a", 1)
    _assert_posterior(bandit.posterior(), {"a": (2.0, 1.0), "b": (1.0, 1.0)})
    # pull 2 (b, 0): a decays to (0.7*2 + 0.3, 0.7*1 + 0.3) = (1.7, 1); b gains a failure.
    bandit.update("b", 0)
    assert bandit.posterior()["a"] == pytest.approx((1.7, 1.0))
    assert bandit.posterior()["b"] == pytest.approx((1.0, 2.0))
    # pull 3 (a, 0): a -> (0.7*1.7 + 0.3, 1) + (0, 1) = (1.49, 2); b -> (1, 0.7*2 + 0.3) = (1, 1.7).
    bandit.update("a", 0)
    assert bandit.posterior()["a"] == pytest.approx((1.49, 2.0))
    assert bandit.posterior()["b"] == pytest.approx((1.0, 1.7))
    assert bandit.means() == pytest.approx({"a": 1.49 / 3.49, "b": 1.0 / 2.7})
    assert bandit.pulls() == {"a": 2, "b": 1}


def test_decay_with_other_prior():
    bandit = BetaBernoulliBandit(["a", "b"], alpha0=2, beta0=0.5, gamma=0.5)
    bandit.update("a", 1)  # a: (2, 0.5) + (1, 0) = (3, 0.5)
    bandit.update("b", 1)  # a: (0.5*3 + 0.5*2, 0.5) = (2.5, 0.5); b: (2, 0.5) + (1, 0) = (3, 0.5)
    _assert_posterior(bandit.posterior(), {"a": (2.5, 0.5), "b": (3.0, 0.5)})


def test_gamma_zero_is_plain_counting():
    rng = np.random.default_rng(1)
    bandit = BetaBernoulliBandit(["a", "b", "c"], gamma=0)
    wins, losses = Counter(), Counter()
    for _ in range(200):
        arm = ["a", "b", "c"][rng.integers(3)]
        r = int(rng.random() < 0.6)
        bandit.update(arm, r)
        wins[arm] += r
        losses[arm] += 1 - r
    for arm in "abc":
        assert bandit.posterior()[arm] == (1.0 + wins[arm], 1.0 + losses[arm])
        assert bandit.pulls()[arm] == wins[arm] + losses[arm]


def test_bandit_choose_state_dict_and_errors():
    bandit = BetaBernoulliBandit(["a", "b"], gamma=0.1)
    for _ in range(30):
        bandit.update("a", 1)
        bandit.update("b", 0)
    rng = np.random.default_rng(0)
    assert Counter(bandit.choose(rng) for _ in range(100))["a"] > 95
    # pending pulls are fantasised failures for the draw only
    picks = Counter(bandit.choose(rng, pending={"a": 1000}) for _ in range(100))
    assert picks["b"] > 95
    assert bandit.choose(np.random.RandomState(0), arms=["b"]) == "b"
    assert bandit.choose(0, arms=["new"]) == "new" and bandit.posterior()["new"] == (1.0, 1.0)

    clone = BetaBernoulliBandit()
    clone.load_state_dict(bandit.state_dict())
    assert clone.posterior() == bandit.posterior() and clone.pulls() == bandit.pulls()
    assert clone.gamma == 0.1
    with pytest.raises(AuxoptError, match="0 or 1"):
        bandit.update("a", 2)
    with pytest.raises(AuxoptError, match="unknown bandit arm"):
        bandit.update("zzz", 1)
    with pytest.raises(AuxoptError, match="state_dict"):
        clone.load_state_dict({"arms": ["a"]})


@pytest.mark.parametrize(
    "kwargs",
    [{"alpha0": 0}, {"alpha0": -1}, {"beta0": 0}, {"gamma": 1}, {"gamma": -0.1}, {"gamma": 1.5}],
)
def test_bad_bandit_parameters(kwargs):
    with pytest.raises(AuxoptError):
        BetaBernoulliBandit(["a"], **kwargs)
    with pytest.raises(AuxoptError):
        ThompsonTaskSampler(**kwargs)


def test_select_tasks():
    posterior = {"none": (9, 1), "a": (3, 1), "b": (1, 1), "c": (1, 3), "d": (6, 1)}
    assert select_tasks(posterior) == ["d", "a"]  # means 6/7, 3/4; b sits at the prior 1/2, c at 1/4
    assert select_tasks(posterior, threshold=0.49) == ["d", "a", "b"]
    assert select_tasks(posterior, threshold=0.6) == ["d", "a"]
    assert select_tasks(posterior, threshold=0.0, top_k=2) == ["d", "a"]
    assert select_tasks(posterior, top_k=0) == []
    assert select_tasks(posterior, threshold=0.9) == []  # none (0.9) is never selected
    assert select_tasks(posterior, none_arm="d") == ["none", "a"]
    with pytest.raises(AuxoptError):
        select_tasks(posterior, threshold=1.5)
    with pytest.raises(AuxoptError):
        select_tasks(posterior, top_k=-1)


def test_select_tasks_against_a_baseline_the_data_gives():
    posterior = {"p": (5, 3), "a": (6, 2), "b": (5, 3), "c": (2, 6), "d": (7, 1)}  # means .625 .75 .625 .25 .875
    assert select_tasks(posterior, baseline="p", none_arm="p") == ["d", "a"]  # b ties p: not kept
    assert select_tasks(posterior, baseline="p", none_arm="p", top_k=1) == ["d"]
    assert select_tasks(posterior, baseline="median", none_arm="p") == ["d", "a"]  # median of a b c d: .6875
    assert select_tasks({"p": (9, 1), "a": (6, 2)}, baseline="p", none_arm="p") == []
    with pytest.raises(AuxoptError, match="baseline 'x'"):
        select_tasks(posterior, baseline="x")


def test_decay_steers_the_policy_while_the_evidence_keeps_every_pull():
    bandit = BetaBernoulliBandit(["a", "b"], gamma=0.3)
    for _ in range(10):
        bandit.update("a", 1)
    for _ in range(5):
        bandit.update("b", 0)
    # decayed: a's ten wins fade toward the prior while b is pulled
    alpha, beta = bandit.posterior()["a"]
    assert alpha < 1 + 10 * 0.7**5 + 1e-9 and beta == pytest.approx(1.0)
    assert bandit.tally() == {"a": (10, 10), "b": (0, 5)}
    assert bandit.evidence() == {"a": (11.0, 1.0), "b": (1.0, 6.0)}
    assert bandit.utilities()["a"] == pytest.approx(11 / 12)
    again = BetaBernoulliBandit()
    again.load_state_dict(bandit.state_dict())
    assert again.evidence() == bandit.evidence() and bandit.copy().tally() == bandit.tally()


# -- the sampler: helpers -----------------------------------------------------------------------
def _add(study, arm, value=None, state=TrialState.COMPLETE):
    study.add_trial(
        create_trial(
            params={"aux_task": arm},
            distributions={"aux_task": ARM_DIST},
            value=value,
            state=state,
        )
    )


def _arm_value(arm: str, number: int) -> float:
    """A deterministic noisy objective: the arm's mean plus noise keyed by the trial number."""
    return ARM_MEANS[arm] + 0.1 * float(np.random.default_rng(1000 + number).normal())


def _objective(trial):
    arm = trial.suggest_categorical("aux_task", ARMS)
    trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    return _arm_value(arm, trial.number)


def _replay_previous(trials, gamma=0.3):
    """An independent, single-process replay of the "previous" rule in trial-number order."""
    bandit = BetaBernoulliBandit(ARMS, gamma=gamma)
    last = None
    for t in sorted(trials, key=lambda t: t.number):
        if t.state == TrialState.COMPLETE:
            if last is not None:
                bandit.update(t.params["aux_task"], t.value >= last)
            last = t.value
        elif t.state == TrialState.PRUNED:
            bandit.update(t.params["aux_task"], 0)
    return bandit.posterior()


# -- the sampler: rewards -----------------------------------------------------------------------
def test_reward_previous_maximize_and_minimize():
    for direction, expected in [
        # t0 a 1.0 (no reference), t1 b 2.0 (>= 1.0: 1), t2 a 1.5 (>= 2.0: 0), t3 b 1.5 (>= 1.5: 1)
        ("maximize", {"good": (1.0, 2.0), "bad": (3.0, 1.0)}),
        # minimize: t1 b 2.0 <= 1.0: 0, t2 a 1.5 <= 2.0: 1, t3 b 1.5 <= 1.5: 1
        ("minimize", {"good": (2.0, 1.0), "bad": (2.0, 2.0)}),
    ]:
        sampler = ThompsonTaskSampler(reward="previous", gamma=0, seed=0)
        study = optuna.create_study(direction=direction, sampler=sampler)
        for arm, value in [("good", 1.0), ("bad", 2.0), ("good", 1.5), ("bad", 1.5)]:
            _add(study, arm, value)
        posterior = sampler.posterior(study)
        assert {k: posterior[k] for k in expected} == expected, direction
        assert posterior["none"] == posterior["neutral"] == (1.0, 1.0)
        assert sampler.pulls(study) == {"none": 0, "good": 1, "neutral": 0, "bad": 2}


def test_reward_baseline_with_primary_only_trials():
    sampler = ThompsonTaskSampler(gamma=0, seed=0)  # reward="baseline"
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for arm, value in [
        ("none", 1.0),  # no earlier none trial, no previous trial: no pull
        ("good", 1.2),  # baseline mean(1.0) = 1.0: 1
        ("bad", 0.8),  # 0
        ("none", 2.0),  # against the earlier none trials: 2.0 >= 1.0: 1
        ("good", 1.4),  # baseline mean(1.0, 2.0) = 1.5: 0
        ("bad", 1.4),  # 0 (the "previous" rule would have said 1)
        ("good", 1.5),  # 1.5 >= 1.5: 1
    ]:
        _add(study, arm, value)
    assert sampler.posterior(study) == {
        "none": (2.0, 1.0),
        "good": (3.0, 2.0),
        "neutral": (1.0, 1.0),
        "bad": (1.0, 3.0),
    }


def test_reward_baseline_without_primary_only_trials_falls_back_to_previous():
    baseline = ThompsonTaskSampler(seed=0)
    previous = ThompsonTaskSampler(reward="previous", seed=0)
    study = optuna.create_study(direction="maximize", sampler=baseline)
    for arm, value in [("good", 1.0), ("bad", 2.0), ("good", 1.5), ("neutral", 1.7), ("bad", 0.1)]:
        _add(study, arm, value)
    assert baseline.posterior(study) == previous.posterior(study)
    _assert_posterior(baseline.posterior(study), _replay_previous(study.trials))


def test_reward_callable_and_bad_callable():
    seen = []

    def positive(study, trial, previous_trials):
        assert all(t.number < trial.number and t.state.is_finished() for t in previous_trials)
        seen.append((trial.number, len(previous_trials)))
        return trial.value > 0

    sampler = ThompsonTaskSampler(reward=positive, gamma=0, seed=0)
    study = optuna.create_study(sampler=sampler)
    _add(study, "good", 1.0)
    _add(study, "good", None, TrialState.FAIL)
    _add(study, "bad", -1.0)
    _add(study, "bad", None, TrialState.PRUNED)  # reward 0, the callable is not asked
    _add(study, "good", 2.0)
    posterior = sampler.posterior(study)
    assert posterior["good"] == (3.0, 1.0) and posterior["bad"] == (1.0, 3.0)
    assert seen == [(0, 0), (2, 2), (4, 4)]

    two = ThompsonTaskSampler(reward=lambda study, trial, previous: 2, seed=0)
    study = optuna.create_study(sampler=two)
    _add(study, "good", 1.0)
    with pytest.raises(AuxoptError, match="0 or 1"):
        two.posterior(study)
    with pytest.raises(AuxoptError, match="0 or 1"):
        study.optimize(_objective, n_trials=1)


def test_pruned_is_reward_zero_and_fail_is_skipped():
    sampler = ThompsonTaskSampler(reward="previous", gamma=0.3, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    _add(study, "good", 1.0)
    before = sampler.posterior(study)
    _add(study, "bad", None, TrialState.FAIL)  # no pull, no decay
    assert sampler.posterior(study) == before
    assert sampler.pulls(study)["bad"] == 0
    _add(study, "bad", None, TrialState.PRUNED)  # reward 0, even with no reference value yet
    assert sampler.posterior(study)["bad"] == pytest.approx((1.0, 2.0))
    assert sampler.pulls(study)["bad"] == 1
    # a pruned trial's intermediate value is not a "previous" value: 1.5 is compared with 1.0
    _add(study, "neutral", 1.5)
    assert sampler.posterior(study)["neutral"] == pytest.approx((2.0, 1.0))


# -- the sampler: bad input ---------------------------------------------------------------------
def test_bad_input():
    with pytest.raises(AuxoptError, match="reward"):
        ThompsonTaskSampler(reward="best")
    with pytest.raises(AuxoptError, match="param_names"):
        ThompsonTaskSampler(param_names=[])
    with pytest.raises(AuxoptError, match="seed"):
        ThompsonTaskSampler(seed=-1)

    study = optuna.create_study(sampler=ThompsonTaskSampler(seed=0))
    with pytest.raises(AuxoptError, match="suggest_categorical"):
        study.optimize(lambda t: t.suggest_float("aux_task", 0, 1), n_trials=1)

    trial = study.ask()
    empty = CategoricalDistribution(["a"])
    empty.choices = ()  # Optuna refuses to build one; the sampler must still say what is wrong
    with pytest.raises(AuxoptError, match="no auxiliary choices"):
        study.sampler.sample_independent(study, study._storage.get_trial(trial._trial_id), "aux_task", empty)
    with pytest.raises(AuxoptError, match="no auxiliary choices"):  # only the primary-only arm
        study.sampler.sample_independent(
            study,
            study._storage.get_trial(trial._trial_id),
            "aux_task",
            CategoricalDistribution(["none"]),
        )

    # other parameters, even categorical ones, go to the independent sampler
    assert trial.suggest_categorical("other", ["none"]) == "none"
    assert 0 <= trial.suggest_float("x", 0, 1) <= 1


# -- the sampler: workers, resume, pending pulls ------------------------------------------------
def test_two_workers_equal_one_replay(tmp_path):
    url = f"sqlite:///{tmp_path / 'two.db'}"
    optuna.create_study(study_name="s", storage=url, direction="maximize")
    workers = [
        optuna.load_study(study_name="s", storage=url, sampler=ThompsonTaskSampler(reward="previous", seed=s))
        for s in (1, 2)
    ]

    def ask(w):
        trial = workers[w].ask()
        trial.suggest_categorical("aux_task", ARMS)
        return trial

    def tell(w, trial):
        workers[w].tell(trial, _arm_value(trial.params["aux_task"], trial.number))

    for _ in range(7):  # worker 0 holds trial 3r while worker 1 runs 3r+1 and 3r+2
        slow = ask(0)
        for _ in range(2):
            tell(1, ask(1))  # drawn with trial 3r pending
        # finished trials numbered after a running one are in the posterior already
        assert workers[1].sampler.posterior(workers[1]) == _replay_previous(workers[1].trials)
        tell(0, slow)

    study = optuna.load_study(study_name="s", storage=url)
    trials = study.trials
    assert len(trials) == 21 and all(t.state == TrialState.COMPLETE for t in trials)
    expected = _replay_previous(trials)
    assert ThompsonTaskSampler(reward="previous").posterior(study) == expected
    for worker in workers:  # their caches were built while trials ran: same answer
        assert worker.sampler.posterior(worker) == expected
    # the user attrs of the last trial to finish (number 18) hold the final posterior
    last = max(trials, key=lambda t: t.datetime_complete)
    assert last.number == 18
    assert last.user_attrs["thompson_posterior_mean"] == pytest.approx(
        {a: al / (al + be) for a, (al, be) in expected.items()}
    )


def test_resumed_study_suggests_what_the_original_would(tmp_path):
    url = f"sqlite:///{tmp_path / 'run.db'}"
    study = optuna.create_study(study_name="r", storage=url, direction="maximize", sampler=ThompsonTaskSampler(seed=7))
    study.optimize(_objective, n_trials=10)
    shutil.copy(tmp_path / "run.db", tmp_path / "resumed.db")  # the state at the crash

    study.optimize(_objective, n_trials=8)  # the original keeps going
    original = [t.params["aux_task"] for t in study.trials[10:]]

    resumed = optuna.load_study(
        study_name="r",
        storage=f"sqlite:///{tmp_path / 'resumed.db'}",
        sampler=ThompsonTaskSampler(seed=7),  # a new process: new sampler, empty cache
    )
    resumed.optimize(_objective, n_trials=8)
    assert [t.params["aux_task"] for t in resumed.trials[10:]] == original


def test_running_trials_are_pending_pulls():
    sampler = ThompsonTaskSampler(seed=3)
    study = optuna.create_study(sampler=sampler)
    dist = CategoricalDistribution(["x", "y", "z"])

    def share_of_x():
        picks = []
        for _ in range(200):
            trial = study.ask()
            picks.append(trial.suggest_categorical("aux_task", dist.choices))
            study.tell(trial, state=TrialState.FAIL)  # FAIL: no pull, so every draw is alike
        return Counter(picks)["x"] / len(picks)

    assert 0.2 < share_of_x() < 0.47  # a uniform prior: about 1/3
    other = optuna.load_study(study_name=study.study_name, storage=study._storage)
    for _ in range(15):  # another worker runs 15 trials on x
        other.enqueue_trial({"aux_task": "x"})
        other.ask().suggest_categorical("aux_task", ["x", "y", "z"])
    assert share_of_x() < 0.05


def test_concentrates_on_the_best_arm():
    sampler = ThompsonTaskSampler(seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(_objective, n_trials=60)
    pulls = sampler.pulls(study)
    assert max(pulls, key=pulls.get) == "good"
    counts = Counter(t.params["aux_task"] for t in study.trials)
    assert max(counts, key=counts.get) == "good"
    assert "good" in select_tasks(sampler.posterior(study))
    assert "bad" not in select_tasks(sampler.posterior(study))


def test_user_attrs_after_trial():
    sampler = ThompsonTaskSampler(reward="previous", gamma=0, seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(_objective, n_trials=5)
    for k, trial in enumerate(study.trials):
        partial = optuna.create_study(sampler=ThompsonTaskSampler(reward="previous", gamma=0))
        for t in study.trials[: k + 1]:
            partial.add_trial(t)
        expected = sampler.posterior(partial)
        assert trial.user_attrs["thompson_posterior_mean"] == pytest.approx(
            {a: al / (al + be) for a, (al, be) in expected.items()}
        )
        assert trial.user_attrs["thompson_pulls"] == sampler.pulls(partial)
    assert sum(study.trials[-1].user_attrs["thompson_pulls"].values()) == 4  # t0: no reference


def test_several_bandit_params_and_none_choice_values():
    sampler = ThompsonTaskSampler(["aux_a", "aux_b"], seed=0)
    study = optuna.create_study(sampler=sampler)

    def objective(trial):
        a = trial.suggest_categorical("aux_a", ["none", "p", "q"])
        b = trial.suggest_categorical("aux_b", [None, 1, 2])
        return (a == "p") + (b == 2) + trial.suggest_float("x", 0, 0.1)

    study.optimize(objective, n_trials=8)
    last = study.trials[-1].user_attrs
    assert set(last["thompson_posterior_mean:aux_a"]) == {"none", "p", "q"}
    assert set(last["thompson_pulls:aux_b"]) == {"None", "1", "2"}
    assert set(sampler.posterior(study, "aux_b")) == {None, 1, 2}
    with pytest.raises(AuxoptError, match="not a bandit parameter"):
        sampler.posterior(study, "x")


def test_seeded_draw_depends_on_trial_number_only():
    study = optuna.create_study()
    frozen = [study._storage.get_trial(study._storage.create_new_trial(study._study_id)) for _ in range(20)]
    a, b = ThompsonTaskSampler(seed=11), ThompsonTaskSampler(seed=11)
    picks_a = [a.sample_independent(study, t, "aux_task", ARM_DIST) for t in frozen]
    picks_b = [b.sample_independent(study, t, "aux_task", ARM_DIST) for t in reversed(frozen)]
    assert picks_a == picks_b[::-1]
    assert len(set(picks_a)) > 1
    assert FloatDistribution(0, 1)._contains(a.sample_independent(study, frozen[0], "y", FloatDistribution(0, 1)))
