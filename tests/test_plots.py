"""auxopt.plots: the figures draw what the study holds (built from storage, checked against it)."""

from __future__ import annotations

import math
import random

import numpy as np
import optuna
import pytest

from auxopt import plots
from auxopt.errors import AuxoptError
from auxopt.samplers import ThompsonTaskSampler

GAINS = {"none": 0.0, "helpful_0": 0.06, "neutral_0": 0.0, "harmful_0": -0.06}
OBJECTIVES = ["mlm-in", "mlm-out", "cls-aux", "rep-pair", "denoise"]


def aang_record(number: int) -> dict:
    steps = [10, 20, 30, 40]
    weights = [[1 / (1 + j) + 0.01 * i * (number + 1) for j in range(len(OBJECTIVES))] for i in range(4)]
    return {"steps": steps, "objectives": OBJECTIVES, "weights": weights, "primary_weight": [1.0] * 4}


def grad_record(number: int) -> dict:
    steps = [10, 20, 30]
    return {
        "steps": steps,
        "pos": [1.0, 0.8, 0.6 + number],
        "neg": [0.5, 0.4, 0.3],
        "perp": [2.0, 1.9, 1.8],
        "prim": [1.5, 1.2, 1.0],
    }


def make_study(url: str | None = None, n: int = 12, seed: int = 0, extras: bool = True):
    """A study shaped like AutoSeM's: ``aux_task`` chosen by a ThompsonTaskSampler, a mixing ratio
    (best near 1.5), the dev curve and (``extras``) AANG / ATTITTUD records on each trial. The
    objective is a formula, not a training run, so it is quick."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = ThompsonTaskSampler(seed=seed)
    study = optuna.create_study(study_name="demo", storage=url, direction="maximize", sampler=sampler)
    study.set_user_attr("metric", "accuracy")

    def objective(trial: optuna.Trial) -> float:
        aux = trial.suggest_categorical("aux_task", list(GAINS))
        ratio = trial.suggest_float("aux_ratio", 0.5, 3.0)
        lr = trial.suggest_float("lr", 3e-4, 3e-3, log=True)
        value = 0.7 + GAINS[aux] - 0.03 * (ratio - 1.5) ** 2 + random.Random(trial.number).gauss(0, 0.005)
        trial.set_user_attr("curve", [[s, value - 0.1 * math.exp(-s / 30)] for s in (20, 40, 60)])
        ratios = {"primary": 1} if aux == "none" else {"primary": 1, aux: ratio}
        trial.set_user_attr("config", {"primary": "primary", "ratios": ratios, "lr": lr})
        trial.set_user_attr("metric", "accuracy")
        trial.set_user_attr("test_metric", value - 0.01)
        if extras:
            trial.set_user_attr("aang_weights", aang_record(trial.number))
            trial.set_user_attr("grad_parts", grad_record(trial.number))
        return value

    study.optimize(objective, n_trials=n)
    return study, sampler


@pytest.fixture(scope="module")
def demo():
    return make_study()


def test_thompson_evidence_matches_the_sampler(demo):
    study, sampler = demo
    data = plots.thompson_data(study, sampler)
    posterior = sampler.evidence(study)  # what selection reads, not the decayed posterior
    assert data["source"] == "ThompsonTaskSampler"
    assert data["tasks"] == [str(k) for k in posterior]
    for task, mean, low, high in zip(data["tasks"], data["mean"], data["low"], data["high"], strict=True):
        a, b = posterior[task]
        assert mean == pytest.approx(a / (a + b))
        assert 0 <= low < mean < high <= 1
    # the figure draws those numbers: bars at the means, error bars to the interval
    fig = plots.plot_thompson(study, sampler)
    bar = fig.data[0]
    assert list(bar.y) == pytest.approx(data["mean"])
    assert [m + e for m, e in zip(bar.y, bar.error_y.array, strict=True)] == pytest.approx(data["high"])
    # pulls over time are the per-trial records the sampler wrote, ending at its own count
    pulls = sampler.pulls(study)
    last = study.trials[-1].user_attrs["thompson_pulls"]
    for task in data["tasks"]:
        assert data["pulls"][task][-1] == last[task] == pulls[task]
    assert data["time"] == [t.number for t in study.trials]


def test_thompson_reads_the_study_sampler_without_being_given_one(demo):
    study, sampler = demo
    assert plots.thompson_data(study)["mean"] == plots.thompson_data(study, sampler)["mean"]


def test_thompson_interval_narrows_with_more_pulls():
    low1, high1 = plots.beta_interval(2, 2)
    low2, high2 = plots.beta_interval(20, 20)
    assert high2 - low2 < high1 - low1
    assert low1 == pytest.approx(1 - high1)  # symmetric Beta: symmetric interval


def test_thompson_online_schedule_record():
    from auxopt.objective import record_result
    from auxopt.train import TrainResult

    history = [
        {"step": s, "task": task, "reward": r, "dev": 0.5}
        for s, task, r in [(10, "a", 1), (20, "b", 0), (30, "a", 1), (40, "a", 0)]
    ]
    thompson = {
        "posterior": {"a": [3.0, 2.0], "b": [1.0, 2.0]},
        "means": {"a": 0.6, "b": 1 / 3},
        "pulls": {"a": 3, "b": 1},
        "history": history,
    }
    result = TrainResult(
        metric="accuracy",
        best_dev=0.7,
        best_step=40,
        test_at_best=0.6,
        curve=[(20, 0.6), (40, 0.7)],
        steps=40,
        examples={},
        wall_time=1.0,
        stopped="max_steps",
        device="cpu",
        extra={"thompson": thompson},
    )
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    record_result(trial, result)
    study.tell(trial, 0.7)
    data = plots.thompson_data(study)
    assert data["source"] == "online schedule" and data["tasks"] == ["a", "b"]
    assert data["mean"] == pytest.approx([0.6, 1 / 3])  # a record without evidence: the posterior
    thompson["evidence"] = {"a": [3.0, 2.0], "b": [1.0, 2.0]}
    thompson["posterior"] = {"a": [1.5, 1.2], "b": [1.0, 1.3]}
    again = optuna.create_study(direction="maximize")
    trial = again.ask()
    record_result(trial, result)
    again.tell(trial, 0.7)
    assert plots.thompson_data(again)["mean"] == pytest.approx([0.6, 1 / 3])  # the evidence, not decayed
    assert data["time"] == [0, 10, 20, 30, 40]
    assert data["pulls"] == {"a": [0, 1, 1, 2, 3], "b": [0, 0, 1, 1, 1]}


def test_mixing_landscape_fits_the_observed_trials():
    study, _ = make_study(n=16, extras=False)
    data = plots.mixing_landscape_data(study)
    assert data["params"] == ["aux_ratio"]  # lr is numerical, but not a ratio
    curve = data["curves"]["aux_ratio"]
    trials = sorted(study.trials, key=lambda t: t.number)
    assert curve["observed_x"] == [t.params["aux_ratio"] for t in trials]
    assert curve["observed_y"] == pytest.approx([t.value for t in trials])
    assert data["best"]["aux_ratio"] == pytest.approx(study.best_trial.params["aux_ratio"])
    x, mean = np.array(curve["x"]), np.array(curve["mean"])
    assert x[0] == pytest.approx(0.5) and x[-1] == pytest.approx(3.0)
    assert np.all(np.array(curve["low"]) <= mean) and np.all(mean <= np.array(curve["high"]))
    # the GP mean through the best point stays in the range of what was seen
    values = [t.value for t in trials]
    assert min(values) - 0.1 < mean.min() and mean.max() < max(values) + 0.1
    fig = plots.plot_mixing_landscape(study)
    assert {tr.name for tr in fig.data} == {"GP mean ± 2σ", "GP mean", "trials"}
    # other parameters on request; an unknown one is a clear error
    assert plots.mixing_landscape_data(study, ["lr"])["params"] == ["lr"]
    with pytest.raises(AuxoptError, match="no finished trial has numerical parameter"):
        plots.mixing_landscape_data(study, ["ratio_nope"])


def test_mixing_landscape_gp_mean_finds_a_clear_optimum():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(lambda t: -((t.suggest_float("ratio_a", 0.0, 5.0) - 3.0) ** 2), n_trials=14)
    curve = plots.mixing_landscape_data(study)["curves"]["ratio_a"]
    peak = curve["x"][int(np.argmax(curve["mean"]))]
    assert abs(peak - 3.0) < 0.5


def test_aang_weights_keep_the_top_objectives(demo):
    study, _ = demo
    data = plots.aang_weights_data(study, top=3)
    best = study.best_trial
    assert data["trial"] == best.number
    record = best.user_attrs["aang_weights"]
    assert data["steps"] == record["steps"]
    assert [n for n, _, _ in data["top"]] == OBJECTIVES[:3]  # weights fall with the index
    column = [row[0] for row in record["weights"]]
    assert data["weights"]["mlm-in"] == pytest.approx(column)
    other = [sum(row[3:]) for row in record["weights"]]
    assert data["weights"]["other"] == pytest.approx(other)
    fig = plots.plot_aang_weights(study, top=3)
    assert {tr.name for tr in fig.data} >= {"mlm-in", "other", "primary"}
    assert plots.aang_weights_data(study, trial=0)["trial"] == 0


def test_aang_malformed_record_is_a_clear_error():
    study = optuna.create_study()
    trial = study.ask()
    trial.set_user_attr("aang_weights", {"steps": [1, 2], "objectives": ["a"], "weights": [[1.0]]})
    study.tell(trial, 1.0)
    with pytest.raises(AuxoptError, match="malformed"):
        plots.aang_weights_data(study)


def test_grad_parts_follow_the_record(demo):
    study, _ = demo
    data = plots.grad_parts_data(study)
    record = study.best_trial.user_attrs["grad_parts"]
    for key in ("pos", "neg", "perp", "prim"):
        assert data["parts"][key] == pytest.approx(record[key])
    fig = plots.plot_grad_parts(study)
    assert [tr.name for tr in fig.data] == ["aux ∥ +", "aux ∥ −", "aux ⊥", "primary"]
    assert list(fig.data[0].y) == pytest.approx(record["pos"])


def test_dev_curves_one_line_per_trial(demo):
    study, _ = demo
    data = plots.dev_curves_data(study)
    assert set(data["curves"]) == {t.number for t in study.trials}
    assert data["best"] == study.best_trial.number
    assert data["curves"][0]["dev"] == pytest.approx([v for _, v in study.trials[0].user_attrs["curve"]])
    assert len(plots.dev_curves_data(study, max_trials=3)["curves"]) == 3
    assert study.best_trial.number in plots.dev_curves_data(study, max_trials=1)["curves"]


def test_empty_study_has_nothing_to_plot():
    study = optuna.create_study()
    for data in (
        plots.thompson_data,
        plots.mixing_landscape_data,
        plots.aang_weights_data,
        plots.grad_parts_data,
        plots.dev_curves_data,
    ):
        assert data(study) is None
    with pytest.raises(plots.NoData, match="no Thompson"):
        plots.plot_thompson(study)
    assert "No trial has completed yet" in plots.best_summary(study)


def test_best_summary_says_the_best_configuration_in_words(demo):
    study, _ = demo
    note = plots.best_summary(study)
    best = study.best_trial
    aux = best.params["aux_task"]
    assert f"trial {best.number}" in note and f"{best.value:.4f}" in note
    if aux != "none":
        assert f"**{aux}** at ratio" in note
    assert "Thompson utilities" in note
    assert f"| aux_task | {aux} |" in note
