"""AutoSeM's schedules and AANG's online weights in a plain PyTorch loop (issue 19): the schedules as
endless iterators that learn from the user's reward, ``Schedule.batches`` over the user's loaders,
``OnlineWeights`` on the user's own losses, auxopt's trainer running the same objects, and
``examples/autosem_schedule.py`` end to end."""

from __future__ import annotations

import importlib.util
import itertools
import math
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from auxopt.errors import AuxoptError
from auxopt.objectives.weighting import OnlineWeights
from auxopt.train.schedules import (
    OnlineThompson,
    ProportionalSchedule,
    RoundRobinSchedule,
    Schedule,
    ThompsonSchedule,
    make_schedule,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "autosem_schedule.py"


# -- fixed-ratio schedules as iterators ------------------------------------------------------------
def test_round_robin_iterates_the_ratios():
    schedule = RoundRobinSchedule({"p": 1, "a": 2, "b": 1, "off": 0})
    assert iter(schedule) is schedule
    assert list(itertools.islice(schedule, 8)) == ["p", "a", "a", "b"] * 2
    assert next(schedule) == "p"
    counts = Counter(itertools.islice(schedule, 4000))
    assert counts == {"p": 1000, "a": 2000, "b": 1000}


def test_proportional_frequencies_match_the_ratios():
    schedule = ProportionalSchedule({"p": 1.0, "a": 3.0, "b": 0.5}, seed=3)
    n = 9000
    counts = Counter(itertools.islice(schedule, n))
    for task, ratio in {"p": 1.0, "a": 3.0, "b": 0.5}.items():
        assert counts[task] / n == pytest.approx(ratio / 4.5, abs=0.02)
    again = ProportionalSchedule({"p": 1.0, "a": 3.0, "b": 0.5}, seed=3)
    assert list(itertools.islice(again, 50)) == list(
        itertools.islice(ProportionalSchedule({"p": 1.0, "a": 3.0, "b": 0.5}, seed=3), 50)
    )


def test_batches_cycles_each_loader_and_restarts_it():
    loaders = {"p": [("p", 0), ("p", 1)], "a": [("a", 0), ("a", 1), ("a", 2)]}
    pairs = list(itertools.islice(RoundRobinSchedule({"p": 1, "a": 2}).batches(loaders), 9))
    assert [t for t, _ in pairs] == ["p", "a", "a"] * 3
    assert [b for t, b in pairs if t == "p"] == [("p", 0), ("p", 1), ("p", 0)]  # a new epoch
    assert [b for t, b in pairs if t == "a"] == [("a", 0), ("a", 1), ("a", 2), ("a", 0), ("a", 1), ("a", 2)]
    with pytest.raises(AuxoptError, match="no loader"):
        list(itertools.islice(RoundRobinSchedule({"p": 1, "x": 1}).batches({"p": [1]}), 2))
    with pytest.raises(AuxoptError, match="empty"):
        next(RoundRobinSchedule({"p": 1}).batches({"p": []}))


def test_batches_over_a_torch_dataloader():
    from torch.utils.data import DataLoader, TensorDataset

    x = torch.arange(10.0).unsqueeze(1)
    loaders = {"p": DataLoader(TensorDataset(x, x), batch_size=4), "a": DataLoader(TensorDataset(-x, x), batch_size=5)}
    seen = [(task, xb) for task, (xb, _) in itertools.islice(RoundRobinSchedule({"p": 1, "a": 1}).batches(loaders), 8)]
    assert [len(xb) for task, xb in seen if task == "p"] == [4, 4, 2, 4]  # 10 rows, then again
    assert all((xb <= 0).all() for task, xb in seen if task == "a")


# -- the online Thompson schedule learns from the user's reward ---------------------------------
def test_bandit_favours_the_task_that_always_wins():
    schedule = ThompsonSchedule(["good", "bad"], OnlineThompson(steps_per_pull=2, gamma=0.3), seed=0)
    drawn = []
    for task in schedule:  # a plain loop: the reward is the user's verdict
        drawn.append(task)
        if schedule.pull_finished():
            assert schedule.reward(task == "good") == int(task == "good")
        if len(drawn) == 400:
            break
    late = Counter(drawn[200:])
    assert late["good"] > 0.65 * 200  # γ keeps exploring "bad" now and then, at its prior
    wins, pulls = schedule.bandit.tally()["good"]
    assert wins == pulls and schedule.bandit.tally()["bad"][0] == 0
    assert sum(p for _, p in schedule.bandit.tally().values()) == 200
    assert schedule.utilities()["good"] > 0.9 > 0.1 > schedule.utilities()["bad"]
    assert schedule.select(threshold=0.5) == ["good"]


def test_observe_a_dev_score_in_a_plain_loop():
    """``observe(score)`` (one argument) rewards a pull whose score rose: the score rises with each
    pull of "helps" and falls with each pull of "hurts"; the primary arm leaves it unchanged."""
    schedule = ThompsonSchedule(["primary", "helps", "hurts"], OnlineThompson(steps_per_pull=5), seed=1)
    score = 0.0
    assert schedule.observe(score) is None  # the reference
    for task in itertools.islice(schedule, 600):
        score += {"helps": 0.01, "hurts": -0.01, "primary": 0.0}[task]
        if schedule.pull_finished():
            schedule.observe(round(score, 6))
    utilities = schedule.utilities()
    assert utilities["helps"] > 0.8 and utilities["hurts"] < 0.2 and utilities["primary"] < 0.2
    pulls = schedule.bandit.pulls()
    assert pulls["helps"] > pulls["hurts"] + pulls["primary"]
    assert schedule.select(baseline="primary", none_arm="primary") == ["helps"]
    assert [h["step"] for h in schedule.history] == list(range(5, 601, 5))  # default step: draws so far


def test_reward_ends_the_pull_and_checks_its_input():
    schedule = ThompsonSchedule(["p", "a"], seed=0)  # default OnlineThompson(): 10 a pull
    assert schedule.spec == OnlineThompson()
    with pytest.raises(AuxoptError, match="no pull to reward"):
        schedule.reward(True)
    first = next(schedule)
    assert not schedule.pull_finished()
    schedule.reward(False)  # early: ends the pull
    assert schedule.pull_finished() and schedule.bandit.tally()[first] == (0, 1)
    next(schedule)
    assert schedule.remaining == 9
    for bad in (0.5, "yes", None, 2):
        with pytest.raises(AuxoptError, match="0 or 1"):
            schedule.reward(bad)
    with pytest.raises(AuxoptError, match="unknown task"):
        schedule.reward(True, task="nope")
    with pytest.raises(AuxoptError, match="observe takes"):
        schedule.observe(1, 2, 3)
    with pytest.raises(AuxoptError, match="repeat"):
        ThompsonSchedule(["p", "p"])
    with pytest.raises(AuxoptError, match="OnlineThompson"):
        ThompsonSchedule(["p"], {"steps_per_pull": 3})


def test_user_loop_state_dict_resumes_identically():
    a = ThompsonSchedule(["p", "a", "b"], OnlineThompson(steps_per_pull=3), seed=4)
    for task in itertools.islice(a, 31):
        if a.pull_finished():
            a.reward(task != "b")
    b = ThompsonSchedule(["p", "a", "b"], OnlineThompson(steps_per_pull=3), seed=123)
    b.load_state_dict(a.state_dict())
    assert b.steps == a.steps == 31
    for y in itertools.islice(zip(a, b, strict=True), 60):
        assert y[0] == y[1]
        if a.pull_finished():
            a.reward(y[0] == "a")
            b.reward(y[1] == "a")
    assert a.history == b.history


# -- auxopt's trainer runs the same objects --------------------------------------------------------
def test_trainer_schedules_are_these_classes(suite, monkeypatch):
    from auxopt.train import TrainConfig, loop, train

    assert loop.make_schedule is make_schedule
    for kind, cls in (
        ("round_robin", RoundRobinSchedule),
        ("proportional", ProportionalSchedule),
        (OnlineThompson(), ThompsonSchedule),
    ):
        assert isinstance(make_schedule({"p": 1, "a": 2}, kind), cls)
        assert isinstance(make_schedule({"p": 1, "a": 2}, kind), Schedule)
    calls = []
    original = ThompsonSchedule.observe

    def spy(self, *args):
        calls.append(args)
        return original(self, *args)

    monkeypatch.setattr(ThompsonSchedule, "observe", spy)
    config = TrainConfig(
        suite.primary,
        suite.auxiliaries,
        schedule=OnlineThompson(steps_per_pull=5, eval_batches=1),
        max_steps=20,
        eval_every=20,
        max_length=24,
        batch_size=8,
        eval_batch_size=32,
    )
    result = train(config)
    assert [step for step, _ in calls] == [0, 5, 10, 15, 20]
    assert len(result.extra["thompson"]["history"]) == 4


def test_aang_trainer_step_runs_online_weights_backward(monkeypatch):
    from auxopt.objectives import AANG, AuxObjective
    from auxopt.tasks import make_synthetic_suite
    from auxopt.train import TrainConfig, train

    small = make_synthetic_suite(
        n_helpful=1, n_neutral=0, n_harmful=0, n_train=120, n_aux_train=120, n_dev=64, n_test=64
    )
    returned = []
    original = OnlineWeights.backward

    def spy(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        returned.append(out)
        return out

    monkeypatch.setattr(OnlineWeights, "backward", spy)
    spec = AANG(objectives=[AuxObjective.parse("tapt"), AuxObjective.parse("gpt")], k=1, finetune=0.0, log_every=1)
    result = train(
        TrainConfig(
            small.primary, max_steps=3, eval_every=3, max_length=24, batch_size=8, device="cpu", objectives=spec
        )
    )
    assert len(returned) == 3
    logged = result.extra["aang_cosines"]
    assert [row[1] for row in logged] == [round(p, 5) for p, _ in returned]
    assert [row[2][1] for row in logged] == [round(a[0], 5) for _, a in returned]


# -- AANG's online weights on the user's own losses -------------------------------------------------
class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = torch.nn.Linear(6, 4)
        self.heads = torch.nn.ModuleList(torch.nn.Linear(4, 1) for _ in range(4))  # 0: primary

    def forward(self, x, head):
        return self.heads[head](torch.tanh(self.trunk(x))).squeeze(-1)


def test_online_weights_backward_matches_the_algebra():
    torch.manual_seed(0)
    net = _Net()
    x, y = torch.randn(16, 6), torch.randn(16)
    weights = OnlineWeights(["a", "b", "c"], lr=0.5, seed=0)
    assert weights.joint_lr == 0.5 and weights.codes.shape == (3, 0)
    sampled = weights.sample(2)
    assert len(set(sampled.tolist())) == 2
    shared = list(net.trunk.parameters())

    def losses():  # one forward pass for all heads: the losses share a graph
        h = torch.tanh(net.trunk(x))
        outs = [net.heads[i](h).squeeze(-1) for i in range(4)]
        return [F.mse_loss(o, y * (i + 1)) for i, o in enumerate(outs)]

    dev = F.mse_loss(net(x + 0.1, 0), y)
    flat = lambda loss: torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, shared, retain_graph=True)])  # noqa: E731
    expected_dev = flat(dev)
    lp, *la = losses()
    primary_weight, aux_weights = weights.loss_weights(sampled)
    assert primary_weight == pytest.approx(1.0)
    assert aux_weights == pytest.approx([0.5, 0.5])  # 2(1−λ)(n/k)w_t = 2·½·(3/2)·(1/3) at uniform w
    expected = {id(p): torch.zeros_like(p) for p in net.parameters()}
    expected_cos = []
    for loss, w in zip([lp, *(la[int(i)] for i in sampled)], [primary_weight, *aux_weights], strict=True):
        grads = torch.autograd.grad(loss, list(net.parameters()), retain_graph=True, allow_unused=True)
        for p, g in zip(net.parameters(), grads, strict=True):
            if g is not None:
                expected[id(p)] += w * g
        expected_cos.append(float(F.cosine_similarity(flat(loss), expected_dev, dim=0)))
    before = weights.weights().clone()
    lp, *la = losses()
    mapping = {name: la[i] for i, name in enumerate(weights.objectives)}
    primary_cos, aux_cos = weights.backward(
        sampled, lp, mapping, F.mse_loss(net(x + 0.1, 0), y), shared=shared, params=net.parameters()
    )
    assert [primary_cos, *aux_cos] == pytest.approx(expected_cos, abs=1e-6)
    for p in net.parameters():
        assert torch.allclose(p.grad if p.grad is not None else torch.zeros_like(p), expected[id(p)], atol=1e-6)
    after = weights.weights()
    best = int(sampled[int(torch.tensor(aux_cos).argmax())])
    assert after[best] > before[best]  # the update ran: the most aligned sampled objective gained


def test_online_weights_learn_in_a_plain_loop():
    """Objective 0 is the primary task again (its gradient agrees with dev), objective 1 fits the
    negated target (opposes it), objective 2 fits noise: w_0 rises, w_1 falls (objectives 0 and 1
    share the factor option "task", so the factor logits of position 0 tell them apart)."""
    torch.manual_seed(0)
    net = _Net()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
    x, y = torch.randn(64, 6), torch.randn(64)
    x_dev = torch.randn(64, 6)
    w_true = torch.randn(6)
    y, y_dev = torch.tanh(x @ w_true), torch.tanh(x_dev @ w_true)
    noise = torch.randn(64)
    targets = [y, -y, noise]
    weights = OnlineWeights([("same", "task"), ("flip", "task"), ("noise", "other")], lr=0.5, seed=1)
    assert weights.options == {0: ["flip", "noise", "same"], 1: ["other", "task"]}
    for _ in range(40):
        sampled = weights.sample(2)
        optimizer.zero_grad()
        weights.backward(
            sampled,
            lambda: F.mse_loss(net(x, 0), y),
            [(lambda i=int(i): F.mse_loss(net(x, 0), targets[i])) for i in sampled],
            lambda: F.mse_loss(net(x_dev, 0), y_dev),
            shared=net.trunk.parameters(),
            params=net.parameters(),
        )
        optimizer.step()
    w = weights.as_dict()
    assert w[("same", "task")] > 1 / 3 > w[("flip", "task")]
    assert w[("same", "task")] > w[("noise", "other")]
    first = dict(zip(weights.options[0], weights.factors[0].tolist(), strict=True))
    assert first["same"] > 0 > first["flip"]
    assert all(math.isfinite(v) for v in w.values())


def test_online_weights_bad_input():
    with pytest.raises(AuxoptError, match="at least one"):
        OnlineWeights([])
    with pytest.raises(AuxoptError, match="repeat"):
        OnlineWeights(["a", "a"])
    with pytest.raises(AuxoptError, match="different numbers"):
        OnlineWeights([("a", "b"), "c"])
    weights = OnlineWeights(["a", "b"])
    for k in (0, 3, True, 1.0):
        with pytest.raises(AuxoptError, match="k must be"):
            weights.sample(k)
    with pytest.raises(AuxoptError, match="one cosine per"):
        weights.update(torch.tensor([0, 1]), torch.tensor([0.1]), 0.0)
    p = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(AuxoptError, match="auxiliary losses"):
        weights.backward(torch.tensor([0]), (p * p).sum(), [], (p * 2).sum(), shared=[p], params=[p])
    with pytest.raises(AuxoptError, match="no loss given"):
        weights.backward(torch.tensor([1]), (p * p).sum(), {"a": p.sum()}, (p * 2).sum(), shared=[p], params=[p])
    with pytest.raises(AuxoptError, match="among params"):
        weights.backward(torch.tensor([0]), (p * p).sum(), [p.sum()], (p * 2).sum(), shared=[p], params=[])


# -- the example ------------------------------------------------------------------------------------
def test_example_runs_end_to_end():
    pytest.importorskip("sklearn", reason="the digits example needs scikit-learn (pip install 'auxopt[dev]')")
    spec = importlib.util.spec_from_file_location("autosem_schedule", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main(seeds=range(2), steps=40, steps_per_pull=5, verbose=False)
    for config in module.CONFIGS:
        assert len(out["accuracy"][config]) == 2
        assert all(math.isfinite(a) and 0 <= a <= 1 for a in out["accuracy"][config])
    assert all(math.isfinite(a) and a > 0.2 for a in out["accuracy"]["primary alone"])  # above chance
    for seed in range(2):  # every pull of 40 // 5 was rewarded
        assert sum(out["pulls"][t][seed] for t in module.TASKS) == 8
    assert all(set(s) <= {"helpful", "unrelated"} for s in out["selected"])
    assert all(0 < u < 1 for t in module.TASKS for u in out["utilities"][t])
