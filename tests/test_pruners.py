import optuna
import pytest

from auxopt import StudySpec, records
from auxopt.pruners import ProtectedPruner, WarmupPruner, search_pruner


class PruneEverything(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return True


def _curve_trainer(curve, runs, test=None, wall=0.0):
    """A stand-in for ``train``: reports ``curve[config.x]`` step by step, stops when the pruner says
    so, and appends each run's ``x`` to ``runs``."""
    from auxopt.train import TrainResult

    def fake_train(config, reporter):
        runs.append(config.x)
        done = []
        for step, value in curve[config.x]:
            done.append((step, value))
            reporter.report(step, value)
            if reporter.should_stop():
                break
        stopped = "reporter" if len(done) < len(curve[config.x]) else "max_steps"
        best = max(done, key=lambda sv: sv[1])
        return TrainResult("accuracy", best[1], best[0], test, done, done[-1][0], {}, wall, stopped, "cpu")

    return fake_train


def test_protected_pruner_lets_queued_points_of_a_users_study_finish(suite, tmp_path):
    """The recipe of docs/tutorials/autosem.md for a study of one's own: points queued as protected run to their last
    step under a pruner that would stop every run; the others end PRUNED with the steps they ran."""
    spec = StudySpec(
        name="lr",
        primary=suite.primary,
        auxiliaries=suite.auxiliaries,
        n_trials=3,
        space=lambda t: {"lr": t.suggest_float("lr", 1e-5, 1e-3, log=True)},
        base={"model": "tiny", "max_steps": 20, "eval_every": 10, "max_length": 32, "batch_size": 16},
        pruner=ProtectedPruner(PruneEverything()),
        storage=f"sqlite:///{tmp_path / 's.db'}",
    )
    study = spec.load_study()
    study.enqueue_trial({"lr": 1e-4}, user_attrs={records.PROTECTED: True})
    spec.optimize()
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] + [optuna.trial.TrialState.PRUNED] * 2
    assert trials[0].params["lr"] == pytest.approx(1e-4)
    assert [t.user_attrs[records.STEPS] for t in trials] == [20, 10, 10]


def test_protected_pruner_checks_what_it_wraps_and_asks_the_predicate():
    with pytest.raises(TypeError, match="Optuna pruner"):
        ProtectedPruner(object())
    pruner = ProtectedPruner(PruneEverything(), protect=lambda t: t.params.get("x") == 0)
    study = optuna.create_study()
    kept = optuna.trial.create_trial(
        params={"x": 0}, distributions={"x": optuna.distributions.IntDistribution(0, 1)}, value=0.0
    )
    cut = optuna.trial.create_trial(
        params={"x": 1}, distributions={"x": optuna.distributions.IntDistribution(0, 1)}, value=0.0
    )
    assert not pruner.prune(study, kept) and pruner.prune(study, cut)
    default = search_pruner()
    assert isinstance(default, WarmupPruner) and isinstance(default.pruner, optuna.pruners.MedianPruner)
    assert default.fraction == 0.5


def test_warmup_pruner_judges_a_run_from_a_fraction_of_its_own_length_on():
    study = optuna.create_study()
    pruner = WarmupPruner(PruneEverything(), 0.5)

    def trial(last_step, max_steps=None):
        attrs = {} if max_steps is None else {records.CONFIG: {"max_steps": max_steps}}
        values = {} if last_step is None else {last_step: 0.1}
        return optuna.trial.create_trial(
            state=optuna.trial.TrialState.RUNNING, intermediate_values=values, user_attrs=attrs
        )

    assert not pruner.prune(study, trial(None, 300))  # nothing reported yet
    assert not pruner.prune(study, trial(100, 300)) and pruner.prune(study, trial(150, 300))
    assert pruner.prune(study, trial(50, 100))  # a shorter run: its own half
    assert pruner.prune(study, trial(10))  # no length known: judged from its first report
    with pytest.raises(ValueError, match="fraction must be a number in"):
        WarmupPruner(PruneEverything(), 1.5)
    with pytest.raises(TypeError, match="wraps an Optuna pruner"):
        WarmupPruner("median")


def test_a_study_judges_each_run_from_its_own_middle_by_default(suite):
    """StudySpec's default pruner: the median rule after 4 finished runs, from half of each run's own
    max_steps on, so a space that searches the run length does not stop a long run in its first half."""
    spec = StudySpec(name="d", primary=suite.primary, base={"model": "tiny", "max_steps": 100})
    pruner = spec.default_pruner()
    study = optuna.create_study(direction="maximize")
    for score in (0.6, 0.7, 0.8, 0.9):
        curve = {step: score for step in range(50, 401, 50)}
        study.add_trial(optuna.trial.create_trial(value=score, intermediate_values=curve))

    def trailing(step, max_steps):
        return optuna.trial.create_trial(
            state=optuna.trial.TrialState.RUNNING,
            intermediate_values={s: 0.1 for s in range(50, step + 1, 50)},
            user_attrs={records.CONFIG: {"max_steps": max_steps}},
        )

    assert pruner.prune(study, trailing(50, 100))  # half of its 100 steps
    assert not pruner.prune(study, trailing(100, 400)) and pruner.prune(study, trailing(200, 400))
    fresh = optuna.create_study(direction="maximize")  # fewer than 4 finished runs: nothing is stopped
    assert not pruner.prune(fresh, trailing(50, 100))


def test_pruner_replay_counts_the_steps_a_pruned_search_spent():
    """benchmarks/search/pruner_replay.py's replay: the protected rows run first and finish; a
    candidate below the median of the earlier runs at its first evaluation stops there (50 steps)
    under the median rule, but not under auxopt's default, which judges from half a run on; the
    answer is the best finished run."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "search"))
    try:
        import pruner_replay
    finally:
        sys.path.pop(0)
    curve = lambda *v: [(50 * (i + 1), x) for i, x in enumerate(v)]  # noqa: E731
    runs = {
        "primary-only": (curve(0.5, 0.6, 0.7), 0.7, 0.69),
        "all-equal": (curve(0.4, 0.5, 0.6), 0.6, 0.58),
        "single:good": (curve(0.6, 0.7, 0.8), 0.8, 0.79),
        "single:bad": (curve(0.1, 0.9, 0.9), 0.9, 0.88),  # trails at step 50: the median rule stops it there
    }
    order = ["primary-only", "all-equal", "single:bad", "single:good"]
    assert pruner_replay.replay(optuna.pruners.NopPruner, order, runs) == ("single:bad", 600)
    median = lambda: optuna.pruners.MedianPruner(n_startup_trials=2)  # noqa: E731
    assert pruner_replay.replay(median, order, runs) == ("single:good", 500)
    assert pruner_replay.replay(search_pruner, order, runs) == ("single:bad", 600)  # judged from step 75 on
    assert pruner_replay.replay(lambda: PruneEverything(), order, runs) == ("primary-only", 400)


def test_a_repeat_of_a_pruned_run_is_pruned_again_without_training_unless_the_pruner_lets_it_through():
    """Training is deterministic given its settings: a trial that repeats a PRUNED trial's settings
    replays its curve to the pruner. Stopped at the same step, it ends PRUNED with 0 steps of its own;
    let through, it trains, and its curve is reported once."""
    import types
    import warnings

    from auxopt.objective import Objective

    curve = {"bad": [(10, 0.40), (20, 0.45), (30, 0.60)]}
    runs = []

    fake_train = _curve_trainer(curve, runs)

    def build(trial):
        x = trial.suggest_categorical("x", ["bad"])
        return types.SimpleNamespace(x=x, checkpoint=None, describe=lambda: {"x": x})

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.5))
    objective = Objective(build, train_fn=fake_train)
    study.optimize(objective, n_trials=2)
    first, repeat = study.trials
    assert runs == ["bad"]  # trained once
    assert first.state == repeat.state == optuna.trial.TrialState.PRUNED
    assert first.user_attrs["steps"] == 10 and repeat.user_attrs["steps"] == 0
    assert repeat.user_attrs["reused_from"] == 0 and repeat.intermediate_values == {10: 0.40}

    study.pruner = optuna.pruners.NopPruner()  # its peers changed: the same curve is no longer stopped
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna warns when a step is reported twice
        study.optimize(objective, n_trials=1)
    last = study.trials[-1]
    assert runs == ["bad", "bad"] and last.state == optuna.trial.TrialState.COMPLETE
    assert last.intermediate_values == dict(curve["bad"]) and last.value == 0.60
    assert "reused_from" not in last.user_attrs and last.user_attrs["steps"] == 30


def test_a_study_takes_runs_another_study_trained_and_replays_its_pruned_curves():
    """``reuse_from``: a finished run of another study of the storage is taken (with what it cost
    there), a pruned one is replayed to this study's pruner, a repeat within the study costs
    nothing more, and a run the other study had itself taken from elsewhere is not taken."""
    import types

    from auxopt.objective import Objective, run_cost

    curve = {"good": [(10, 0.6), (20, 0.7)], "bad": [(10, 0.40), (20, 0.45)]}
    runs = []

    fake_train = _curve_trainer(curve, runs, test=0.5, wall=2.0)

    def build(trial):
        x = trial.suggest_categorical("x", ["good", "bad"])
        trial.set_user_attr("asked_in", trial.study.study_name)  # what a space records, e.g. AutoSeM's ratios
        return types.SimpleNamespace(x=x, checkpoint=None, describe=lambda: {"x": x})

    storage = optuna.storages.InMemoryStorage()
    pruner = optuna.pruners.ThresholdPruner(lower=0.5)
    old = optuna.create_study(study_name="old", storage=storage, direction="maximize", pruner=pruner)
    for x in ("good", "bad"):
        old.enqueue_trial({"x": x})
    old.optimize(Objective(build, train_fn=fake_train), n_trials=2)
    assert runs == ["good", "bad"]

    new = optuna.create_study(study_name="new", storage=storage, direction="maximize", pruner=pruner)
    for x in ("good", "bad", "good"):
        new.enqueue_trial({"x": x})
    new.optimize(Objective(build, train_fn=fake_train, reuse_from=["missing", "old"]), n_trials=3)
    assert runs == ["good", "bad"]  # nothing trained again
    good, bad, again = new.trials
    assert (
        good.value == 0.7 and good.user_attrs["test_metric"] == 0.5 and good.intermediate_values == {10: 0.6, 20: 0.7}
    )
    assert good.user_attrs["reused_study"] == "old" and good.user_attrs["reused_from"] == 0
    assert good.user_attrs["asked_in"] == "new"  # the trial's own records are not overwritten
    assert run_cost(good) == (20, 2.0) and good.user_attrs["steps"] == 0
    assert bad.state == optuna.trial.TrialState.PRUNED and run_cost(bad)[0] == 10
    assert again.user_attrs["reused_study"] == "old" and run_cost(again) == (0, 0.0)  # paid once already

    third = optuna.create_study(study_name="third", storage=storage, direction="maximize")
    third.enqueue_trial({"x": "good"})
    third.optimize(Objective(build, train_fn=fake_train, reuse_from=["new"]), n_trials=1)
    assert runs == ["good", "bad", "good"]  # "new" trained nothing itself: its copies are not taken
    assert "reused_study" not in third.trials[0].user_attrs and run_cost(third.trials[0])[0] == 20


def test_reuse_from_names_other_studies(suite):
    base = {"model": "tiny", "max_steps": 20}
    with pytest.raises(Exception, match="list of study names"):
        StudySpec(name="s", primary=suite.primary, base=base, reuse_from="old")
    with pytest.raises(Exception, match="names the study itself"):
        StudySpec(name="s", primary=suite.primary, base=base, reuse_from=["s"])
