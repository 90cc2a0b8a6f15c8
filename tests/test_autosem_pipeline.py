import subprocess
import sys
import textwrap

import optuna
import pytest

from auxopt import records
from auxopt.errors import AuxoptError
from auxopt.pipelines import AutoSeM
from auxopt.train import OnlineThompson

BASE = {"max_steps": 30, "eval_every": 15, "max_length": 32, "batch_size": 16, "eval_batch_size": 128}


def real_tasks():
    from auxopt import load_task

    primary = load_task("trec", max_train=400)
    auxiliaries = [
        load_task("sst2", max_train=400),
        load_task("cola", max_train=400),
    ]  # never sst2 with mr or subj: their texts overlap
    return primary, auxiliaries


def test_bad_pipeline_settings(suite):
    with pytest.raises(AuxoptError, match="at least one auxiliary"):
        AutoSeM("x", suite.primary, [])
    with pytest.raises(AuxoptError, match="stage1"):
        AutoSeM("x", suite.primary, suite.auxiliaries, stage1="bandit")
    with pytest.raises(AuxoptError, match="ratio_range"):
        AutoSeM("x", suite.primary, suite.auxiliaries, ratio_range=(3, 1))
    with pytest.raises(AuxoptError, match="ratio_range"):
        AutoSeM("x", suite.primary, suite.auxiliaries, ratio_range=(0, 4))  # log scale: low > 0
    with pytest.raises(AuxoptError, match="baseline"):
        AutoSeM("x", suite.primary, suite.auxiliaries, baseline="best")
    with pytest.raises(AuxoptError, match="unknown setting"):
        AutoSeM("x", suite.primary, suite.auxiliaries, base={"steps": 3})
    with pytest.raises(AuxoptError, match="pruner must be an Optuna pruner"):  # before stage 1 trains
        AutoSeM("x", suite.primary, suite.auxiliaries, pruner="median")


@pytest.mark.slow
def test_pipeline_end_to_end_on_real_data(shared_data, tmp_path):
    primary, auxiliaries = real_tasks()
    pipeline = AutoSeM(
        "trec_aux",
        primary,
        auxiliaries,
        base=BASE,
        stage1_steps=60,
        online=OnlineThompson(steps_per_pull=5, eval_batches=1),
        threshold=0.0,
        baseline=None,
        stage2_trials=3,
        n_startup_trials=2,
        storage=f"sqlite:///{tmp_path / 'p.db'}",
    )
    final = pipeline.optimize()
    result = pipeline.result
    assert result.selected and set(result.selected) <= {"sst2", "cola"}
    assert final.study_name == "trec_aux.stage2" and len(final.trials) == 3
    assert set(final.best_trial.params) == {f"ratio_{t}" for t in result.selected}
    assert result.ratios["trec"] == 1.0 and result.best_dev == final.best_value
    assert 0 <= result.test_at_best <= 1
    stage1 = optuna.load_study(study_name="trec_aux.stage1", storage=pipeline.storage_url())
    assert stage1.user_attrs["stages"] == ["trec_aux.stage1", "trec_aux.stage2"]
    assert stage1.user_attrs["selected_tasks"] == result.selected
    assert final.user_attrs["selected_tasks"] == result.selected
    assert len(stage1.trials) == 1 and "thompson_posterior" in stage1.trials[0].user_attrs


KILL_BETWEEN_STAGES = """
import os, signal, sys
sys.path.insert(0, {repo!r})
from auxopt.pipelines import AutoSeM, autosem
from auxopt.tasks import make_synthetic_suite
from auxopt.train import OnlineThompson

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)  # as if the machine went away right after stage 1

AutoSeM._stage2_spec = die
suite = make_synthetic_suite(n_helpful=1, n_neutral=1, n_harmful=0, n_train=200, n_aux_train=300, n_dev=100, n_test=100)
AutoSeM("killed", suite.primary, suite.auxiliaries, base={base!r}, stage1_steps=40,
        online=OnlineThompson(steps_per_pull=5, eval_batches=1), threshold=0.0, baseline=None,
        stage2_trials=2, n_startup_trials=1, storage={storage!r}).optimize()
"""


def test_rerun_after_kill_between_stages_does_not_redo_stage1(tmp_path):
    from pathlib import Path

    from auxopt.tasks import make_synthetic_suite

    storage = f"sqlite:///{tmp_path / 'k.db'}"
    repo = str(Path(__file__).resolve().parents[1])
    script = textwrap.dedent(KILL_BETWEEN_STAGES).format(repo=repo, base=BASE, storage=storage)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == -9, done.stderr
    stage1 = optuna.load_study(study_name="killed.stage1", storage=storage)
    (trial,) = stage1.trials
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert "killed.stage2" not in optuna.get_all_study_names(storage)

    suite = make_synthetic_suite(
        n_helpful=1, n_neutral=1, n_harmful=0, n_train=200, n_aux_train=300, n_dev=100, n_test=100
    )
    pipeline = AutoSeM(
        "killed",
        suite.primary,
        suite.auxiliaries,
        base=BASE,
        stage1_steps=40,
        online=OnlineThompson(steps_per_pull=5, eval_batches=1),
        threshold=0.0,
        baseline=None,
        stage2_trials=2,
        n_startup_trials=1,
        storage=storage,
    )
    final = pipeline.optimize()
    stage1 = optuna.load_study(study_name="killed.stage1", storage=storage)
    assert [t.number for t in stage1.trials] == [0]  # stage 1 was read back, not trained again
    assert stage1.trials[0].datetime_complete == trial.datetime_complete
    assert final.study_name == "killed.stage2" and len(final.trials) == 2
    # and a third run has nothing left to do
    again = AutoSeM(
        "killed",
        suite.primary,
        suite.auxiliaries,
        base=BASE,
        stage1_steps=40,
        online=OnlineThompson(steps_per_pull=5, eval_batches=1),
        threshold=0.0,
        baseline=None,
        stage2_trials=2,
        n_startup_trials=1,
        storage=storage,
    ).optimize()
    assert len(again.trials) == 2


def test_sampler_stage1_resumes_with_only_missing_trials(suite, tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    kwargs = dict(base=BASE, stage1="sampler", threshold=1.0, baseline=None, storage=storage)  # no mean is above 1
    first = AutoSeM("thompson", suite.primary, suite.auxiliaries, stage1_trials=2, **kwargs)
    first.optimize()
    stage1 = optuna.load_study(study_name="thompson.stage1", storage=storage)
    assert len(stage1.trials) == 2
    assert first.result.selected == [] and first.result.ratios == {"primary": 1.0}
    # the score is a primary-only run: stage 1's "none" arm if it pulled it, else one stage-2 run
    primary_only = [t for t in stage1.trials if t.params["aux_task"] == "none"]
    expected = (
        max(t.value for t in primary_only)
        if primary_only
        else optuna.load_study(study_name="thompson.stage2", storage=storage).best_value
    )
    assert first.result.best_dev == expected
    second = AutoSeM("thompson", suite.primary, suite.auxiliaries, stage1_trials=3, **kwargs)
    second.optimize()
    assert len(optuna.load_study(study_name="thompson.stage1", storage=storage).trials) == 3


def test_sampler_stage1_runs_take_stage1_steps_and_stage2_runs_the_base_steps(suite, tmp_path):
    storage = f"sqlite:///{tmp_path / 'short.db'}"
    pipeline = AutoSeM(
        "short", suite.primary, suite.auxiliaries[:2], base=BASE, stage1="sampler", stage1_trials=3,
        stage1_steps=15, threshold=0.0, baseline=None, stage2_trials=2, pruner=None, storage=storage,
    )  # fmt: skip
    final = pipeline.optimize()
    stage1 = optuna.load_study(study_name="short.stage1", storage=storage).trials
    assert {t.user_attrs["config"]["max_steps"] for t in stage1} == {15}
    assert all(t.user_attrs["steps"] in (0, 15) for t in stage1)  # 0: a repeat reuses a finished run
    assert {t.user_attrs["config"]["max_steps"] for t in final.trials} == {BASE["max_steps"]}
    # stage 1's primary-only runs are shorter than stage 2's: no stand-in for the primary alone, which
    # stage 2 runs (protected) at its own length, so the answer is never worse on dev than it
    alone = [t for t in final.trials if _alone(t, suite)]
    assert len(alone) == 1 and alone[0].user_attrs[records.PROTECTED]
    assert pipeline.result.trial_study == "short.stage2" and pipeline.result.best_dev >= alone[0].value


def _alone(trial, suite) -> bool:
    """A stage-2 trial of the primary alone: every kept task off."""
    return all(v == 0 for k, v in trial.user_attrs[records.RATIOS].items() if k != suite.primary.name)


def test_sampler_stage1_full_length_primary_only_runs_are_stage2s_primary_alone(suite, tmp_path):
    storage = f"sqlite:///{tmp_path / 'full.db'}"
    pipeline = AutoSeM(
        "full", suite.primary, suite.auxiliaries[:2], base=BASE, stage1="sampler", stage1_trials=3,
        threshold=0.0, baseline=None, stage2_trials=2, pruner=None, storage=storage,
    )  # fmt: skip
    final = pipeline.optimize()
    stage1 = optuna.load_study(study_name="full.stage1", storage=storage).trials
    alone = [t for t in stage1 if t.params["aux_task"] == "none" and t.state == optuna.trial.TrialState.COMPLETE]
    assert alone  # the sampler's first trial is the primary alone
    assert not any(_alone(t, suite) for t in final.trials)  # not run again
    assert pipeline.result.best_dev >= max(t.value for t in alone)


def test_online_stage1_that_keeps_nothing_trains_the_primary_alone(suite, tmp_path):
    storage = f"sqlite:///{tmp_path / 'none.db'}"
    kwargs = dict(
        base=BASE,
        stage1_steps=20,
        online=OnlineThompson(steps_per_pull=5, eval_batches=1),
        threshold=1.0,
        baseline=None,
        stage2_trials=3,
        storage=storage,
    )  # no posterior mean is above 1
    pipeline = AutoSeM("nothing", suite.primary, suite.auxiliaries, **kwargs)
    final = pipeline.optimize()
    result = pipeline.result
    assert result.selected == [] and result.ratios == {"primary": 1.0}
    # every candidate's undecayed stage-1 evidence, (1 + wins, 1 + losses), under its new name
    assert set(result.evidence) >= {t.name for t in suite.auxiliaries}
    assert all(a >= 1 and b >= 1 for a, b in result.evidence.values())
    with pytest.warns(FutureWarning, match="now AutoSeMResult.evidence"):
        assert result.posterior == result.evidence  # the old name still reads it
    # the score is a run of the primary alone, not stage 1's run (which mixed every task)
    assert result.stage2 == "nothing.stage2" and final.study_name == "nothing.stage2" and len(final.trials) == 1
    (trial,) = final.trials
    assert set(trial.user_attrs["examples"]) == {"primary"} or all(
        n == 0 for task, n in trial.user_attrs["examples"].items() if task != "primary"
    )
    assert result.best_dev == trial.value and result.test_at_best == trial.user_attrs["test_metric"]
    stage1 = optuna.load_study(study_name="nothing.stage1", storage=storage)
    assert any(n > 0 for task, n in stage1.trials[0].user_attrs["examples"].items() if task != "primary")
    # running it again has nothing left to do
    again = AutoSeM("nothing", suite.primary, suite.auxiliaries, **kwargs)
    assert len(again.optimize().trials) == 1 and again.result.best_dev == result.best_dev


def test_stage2_candidate_points(suite):
    pipeline = AutoSeM("x", suite.primary, suite.auxiliaries)
    u = {"a": 0.8, "b": 0.6, "c": 0.7}
    # the protected points first, the best kept task (first in ``selected``) alone leading
    best, alone, equal, utility = pipeline.candidate_points(["a", "c", "b"], u)
    assert best == {"ratio_a": 1.0, "ratio_c": 0.0625, "ratio_b": 0.0625}
    assert equal == {"ratio_a": 1.0, "ratio_b": 1.0, "ratio_c": 1.0}
    assert alone == {"ratio_a": 0.0625, "ratio_b": 0.0625, "ratio_c": 0.0625}  # the "off" band
    assert utility == pytest.approx({"ratio_a": 2.0, "ratio_b": 0.5, "ratio_c": 1.0})  # log2 −1 … 1
    assert pipeline.protected_points(["a", "c", "b"]) == [best, alone, equal]
    assert pipeline.candidate_points(["a"], u) == [{"ratio_a": 0.0625}, {"ratio_a": 1.0}]  # one task: off, 1:1
    assert len(pipeline.candidate_points(["a", "b"], u, with_primary_alone=False)) == 3
    ints = AutoSeM("x", suite.primary, suite.auxiliaries, integer_ratios=True, ratio_range=(0, 5))
    assert ints.candidate_points(["a", "b"], u)[:3] == [
        {"ratio_a": 1, "ratio_b": 0},
        {"ratio_a": 0, "ratio_b": 0},
        {"ratio_a": 1, "ratio_b": 1},
    ]


def test_stage1_online_runs_at_a_constant_learning_rate(suite):
    from auxopt.train import TrainConfig
    from auxopt.train.loop import lr_factor

    pipeline = AutoSeM("x", suite.primary, suite.auxiliaries, base=BASE)
    assert pipeline._stage1_spec().space(None)["lr_schedule"] == "constant"
    constant = TrainConfig(suite.primary, max_steps=100, warmup_ratio=0.1, lr_schedule="constant")
    linear = TrainConfig(suite.primary, max_steps=100, warmup_ratio=0.1)
    assert [lr_factor(constant, s) for s in (0, 9, 10, 99)] == [0.1, 1.0, 1.0, 1.0]
    assert [lr_factor(linear, s) for s in (0, 9, 10, 55, 100)] == pytest.approx([0.1, 1.0, 1.0, 0.5, 0.0])
    with pytest.raises(AuxoptError, match="lr_schedule"):
        TrainConfig(suite.primary, lr_schedule="cosine")


def test_stage2_starts_at_the_best_task_alone_primary_alone_equal_mixing_and_utilities(suite, tmp_path):
    """Stage 2's result can be no worse on dev than the best kept task alone, the primary alone or
    equal mixing: they run first and finish (the default pruner may stop the runs after them); the
    ratios are the primary-relative ones."""
    storage = f"sqlite:///{tmp_path / 'c.db'}"
    pipeline = AutoSeM(
        "cand",
        suite.primary,
        suite.auxiliaries,
        base=BASE,
        stage1_steps=40,
        online=OnlineThompson(steps_per_pull=5, eval_batches=1),
        threshold=0.0,
        baseline=None,
        top_k=2,
        stage2_trials=4,
        storage=storage,
    )
    final = pipeline.optimize()
    result = pipeline.result
    assert len(result.selected) == 2
    trials = sorted(final.trials, key=lambda t: t.number)
    ratios = [t.user_attrs["ratios"] for t in trials]
    first, second = result.selected
    assert ratios[0] == {"primary": 1, first: 1.0, second: 0.0}  # the best kept task alone
    alone = 1
    assert all(ratios[alone][t] == 0 for t in result.selected)  # the primary alone, second
    assert ratios[2] == {"primary": 1, first: 1.0, second: 1.0}  # equal mixing
    assert set(trials[alone].user_attrs["examples"]) == {"primary"} or all(
        n == 0 for task, n in trials[alone].user_attrs["examples"].items() if task != "primary"
    )
    done = optuna.trial.TrialState.COMPLETE
    assert len(trials) == 4 and trials[0].state == trials[alone].state == trials[2].state == done
    assert all(t.state in (done, optuna.trial.TrialState.PRUNED) for t in trials)
    assert all(t.user_attrs.get("protected") for t in trials[:3]) and not trials[3].user_attrs.get("protected")
    finished = [t.value for t in trials if t.state == done]
    assert result.best_dev == max(finished) >= max(t.value for t in trials[:3])
    assert result.ratios == {"primary": 1.0, **final.best_trial.user_attrs["ratios"]}
    # resumed: nothing is queued or run twice
    again = AutoSeM(
        "cand",
        suite.primary,
        suite.auxiliaries,
        base=BASE,
        stage1_steps=40,
        online=OnlineThompson(steps_per_pull=5, eval_batches=1),
        threshold=0.0,
        baseline=None,
        top_k=2,
        stage2_trials=4,
        storage=storage,
    )
    assert len(again.optimize().trials) == 4
    # the finished pipeline read back: the same answer, and nothing written
    reader = AutoSeM("cand", suite.primary, suite.auxiliaries, base=BASE, stage1_steps=40, threshold=0.0,
                     baseline=None, top_k=2, stage2_trials=4, storage=storage)  # fmt: skip
    writes = []

    def spy(name):
        real = getattr(optuna.Study, name)

        def method(study, *args, **kwargs):
            # a space's dry run writes to an in-memory scratch study, which is not storage
            if not isinstance(study._storage, optuna.storages.InMemoryStorage):
                writes.append(name)
            return real(study, *args, **kwargs)

        return method

    with pytest.MonkeyPatch.context() as patch:
        for name in ("set_user_attr", "enqueue_trial", "ask", "tell"):
            patch.setattr(optuna.Study, name, spy(name))
        assert reader.load_result() == result
    assert writes == []


class PruneEverything(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return True


def test_pruner_never_stops_the_fixed_points(suite, tmp_path):
    """With a pruner that would stop every run at its first evaluation, the best kept task alone,
    equal mixing and the primary alone still run to the end, so the result is still the best of them
    on dev; the other runs (the stage-1 utilities' point included) end PRUNED with the steps they
    really ran."""
    from auxopt import records

    pipeline = AutoSeM(
        "pruned",
        suite.primary,
        suite.auxiliaries[:2],
        base={**BASE, "model": "tiny"},
        stage1_steps=20,
        online=OnlineThompson(steps_per_pull=5, eval_batches=1),
        threshold=0.0,
        baseline=None,
        top_k=2,
        stage2_trials=4,
        pruner=PruneEverything(),
        storage=f"sqlite:///{tmp_path / 'p.db'}",
    )
    study = pipeline.optimize()
    trials = study.get_trials(deepcopy=False)
    fixed = [t for t in trials if t.user_attrs.get(records.PROTECTED)]
    others = [t for t in trials if not t.user_attrs.get(records.PROTECTED)]
    assert len(fixed) == 3 and all(t.state == optuna.trial.TrialState.COMPLETE for t in fixed)
    assert others and all(t.state == optuna.trial.TrialState.PRUNED for t in others)
    assert all(t.user_attrs[records.STEPS] == BASE["eval_every"] for t in others)
    alone = next(t for t in fixed if all(v < pipeline.ratio_range[0] for v in t.params.values()))
    equal = next(t for t in fixed if all(v == 1.0 for v in t.params.values()))
    assert pipeline.result.best_dev == max(t.value for t in fixed) >= max(alone.value, equal.value)


def test_sampler_stage1_pruner_keeps_the_primary_only_runs_and_counts_pruned_pulls_as_losses(suite, tmp_path):
    """The sampler's stage 1 takes the pipeline's pruner too: the primary-only (``none``) runs, the
    reward's baseline, always finish; a pruned candidate run is a lost pull of its arm and keeps the
    steps it ran; by default the pruner is the median rule."""
    from auxopt import records
    from auxopt.pruners import search_pruner

    assert isinstance(AutoSeM("d", suite.primary, suite.auxiliaries).pruner, type(search_pruner()))
    pipeline = AutoSeM(
        "pruned1",
        suite.primary,
        suite.auxiliaries[:2],
        base={**BASE, "model": "tiny"},
        stage1="sampler",
        stage1_trials=5,
        stage2_trials=1,
        pruner=PruneEverything(),
        storage=f"sqlite:///{tmp_path / 'p.db'}",
    )
    pipeline.optimize()
    stage1 = optuna.load_study(study_name=pipeline.stage1_name, storage=pipeline.storage)
    trials = stage1.get_trials(deepcopy=False)
    alone = [t for t in trials if t.params["aux_task"] == "none"]
    others = [t for t in trials if t.params["aux_task"] != "none"]
    assert alone and all(t.state == optuna.trial.TrialState.COMPLETE for t in alone)
    assert others and all(t.state == optuna.trial.TrialState.PRUNED for t in others)
    first = {}  # each arm's first pruned run keeps the steps it ran; a repeat is pruned again untrained
    for t in others:
        first.setdefault(t.params["aux_task"], t.number)
        repeat = first[t.params["aux_task"]] != t.number
        assert t.user_attrs[records.STEPS] == (0 if repeat else BASE["eval_every"])
        assert t.user_attrs.get(records.REUSED_FROM) == (first[t.params["aux_task"]] if repeat else None)
    evidence = pipeline._stage1_spec().sampler.evidence(stage1)
    for t in others:  # Beta(1, 1) prior: every pull of a pruned arm is a loss
        wins = evidence[t.params["aux_task"]][0] - 1
        assert wins == 0


def test_a_search_rerun_under_a_new_name_takes_the_runs_the_earlier_one_trained(suite, tmp_path):
    """``reuse_from``: a pipeline rerun under a new name (e.g. after a change to stage 2) trains none
    of the runs the earlier one trained with the same settings; it gets the same answer, and each
    trial records where its run came from and what that run cost there."""
    from auxopt.objective import run_cost

    storage = f"sqlite:///{tmp_path / 'r.db'}"
    kwargs = dict(
        base=BASE,
        stage1_steps=30,
        online=OnlineThompson(steps_per_pull=5, eval_batches=1),
        threshold=0.0,
        baseline=None,
        top_k=2,
        stage2_trials=3,
        pruner=None,
        storage=storage,
    )
    old = AutoSeM("old", suite.primary, suite.auxiliaries, **kwargs)
    old.optimize(publish_every=None)
    new = AutoSeM("new", suite.primary, suite.auxiliaries, reuse_from=["old", "never-ran"], **kwargs)
    new.optimize(publish_every=None)
    assert (new.result.selected, new.result.ratios) == (old.result.selected, old.result.ratios)
    assert (new.result.best_dev, new.result.test_at_best) == (old.result.best_dev, old.result.test_at_best)
    for stage in (1, 2):
        before = {t.number: t for t in optuna.load_study(study_name=f"old.stage{stage}", storage=storage).trials}
        for t in optuna.load_study(study_name=f"new.stage{stage}", storage=storage).trials:
            assert t.user_attrs[records.STEPS] == 0 and t.user_attrs[records.REUSED_STUDY] == f"old.stage{stage}"
            origin = before[t.user_attrs[records.REUSED_FROM]]
            assert t.value == origin.value and t.user_attrs[records.CONFIG] == origin.user_attrs[records.CONFIG]
            assert run_cost(t)[0] == origin.user_attrs[records.STEPS] > 0
    with pytest.raises(AuxoptError, match="list of AutoSeM names"):
        AutoSeM("x", suite.primary, suite.auxiliaries, reuse_from="old")
