import subprocess
import sys
import textwrap

import optuna
import pytest

from auxopt.errors import AuxoptError
from auxopt.pipelines import AutoSeM
from auxopt.train import OnlineThompson

BASE = {"max_steps": 30, "eval_every": 15, "max_length": 32, "batch_size": 16, "eval_batch_size": 128}


def real_tasks():
    from auxopt import load_task

    primary = load_task("trec", max_train=400)
    auxiliaries = [load_task("sst2", max_train=400), load_task("subj", max_train=400)]
    return primary, auxiliaries


def test_bad_pipeline_settings(suite):
    with pytest.raises(AuxoptError, match="at least one auxiliary"):
        AutoSeM("x", suite.primary, [])
    with pytest.raises(AuxoptError, match="stage1"):
        AutoSeM("x", suite.primary, suite.auxiliaries, stage1="bandit")
    with pytest.raises(AuxoptError, match="ratio_range"):
        AutoSeM("x", suite.primary, suite.auxiliaries, ratio_range=(3, 1))
    with pytest.raises(AuxoptError, match="unknown setting"):
        AutoSeM("x", suite.primary, suite.auxiliaries, base={"steps": 3})


@pytest.mark.slow
def test_pipeline_end_to_end_on_real_data(shared_data, tmp_path):
    primary, auxiliaries = real_tasks()
    pipeline = AutoSeM(
        "trec_aux", primary, auxiliaries, base=BASE, stage1_steps=60,
        online=OnlineThompson(steps_per_pull=5, eval_batches=1), threshold=0.0,
        stage2_trials=3, n_startup_trials=2, storage=f"sqlite:///{tmp_path / 'p.db'}",
    )
    final = pipeline.optimize()
    result = pipeline.result
    assert result.selected and set(result.selected) <= {"sst2", "subj"}
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
        online=OnlineThompson(steps_per_pull=5, eval_batches=1), threshold=0.0,
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

    suite = make_synthetic_suite(n_helpful=1, n_neutral=1, n_harmful=0, n_train=200, n_aux_train=300, n_dev=100, n_test=100)
    pipeline = AutoSeM(
        "killed", suite.primary, suite.auxiliaries, base=BASE, stage1_steps=40,
        online=OnlineThompson(steps_per_pull=5, eval_batches=1), threshold=0.0,
        stage2_trials=2, n_startup_trials=1, storage=storage,
    )
    final = pipeline.optimize()
    stage1 = optuna.load_study(study_name="killed.stage1", storage=storage)
    assert [t.number for t in stage1.trials] == [0]  # stage 1 was read back, not trained again
    assert stage1.trials[0].datetime_complete == trial.datetime_complete
    assert final.study_name == "killed.stage2" and len(final.trials) == 2
    # and a third run has nothing left to do
    again = AutoSeM(
        "killed", suite.primary, suite.auxiliaries, base=BASE, stage1_steps=40,
        online=OnlineThompson(steps_per_pull=5, eval_batches=1), threshold=0.0,
        stage2_trials=2, n_startup_trials=1, storage=storage,
    ).optimize()
    assert len(again.trials) == 2


def test_sampler_stage1_resumes_with_only_missing_trials(suite, tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    kwargs = dict(base=BASE, stage1="sampler", threshold=1.0, storage=storage)  # no mean is above 1
    first = AutoSeM("thompson", suite.primary, suite.auxiliaries, stage1_trials=2, **kwargs)
    first.optimize()
    stage1 = optuna.load_study(study_name="thompson.stage1", storage=storage)
    assert len(stage1.trials) == 2
    assert first.result.selected == [] and first.result.ratios == {"primary": 1.0}
    # the score is a primary-only run: stage 1's "none" arm if it pulled it, else one stage-2 run
    primary_only = [t for t in stage1.trials if t.params["aux_task"] == "none"]
    expected = max(t.value for t in primary_only) if primary_only else optuna.load_study(
        study_name="thompson.stage2", storage=storage).best_value
    assert first.result.best_dev == expected
    second = AutoSeM("thompson", suite.primary, suite.auxiliaries, stage1_trials=3, **kwargs)
    second.optimize()
    assert len(optuna.load_study(study_name="thompson.stage1", storage=storage).trials) == 3


def test_online_stage1_that_keeps_nothing_trains_the_primary_alone(suite, tmp_path):
    storage = f"sqlite:///{tmp_path / 'none.db'}"
    kwargs = dict(base=BASE, stage1_steps=20, online=OnlineThompson(steps_per_pull=5, eval_batches=1),
                  threshold=1.0, stage2_trials=3, storage=storage)  # no posterior mean is above 1
    pipeline = AutoSeM("nothing", suite.primary, suite.auxiliaries, **kwargs)
    final = pipeline.optimize()
    result = pipeline.result
    assert result.selected == [] and result.ratios == {"primary": 1.0}
    # the score is a run of the primary alone, not stage 1's run (which mixed every task)
    assert result.stage2 == "nothing.stage2" and final.study_name == "nothing.stage2" and len(final.trials) == 1
    (trial,) = final.trials
    assert set(trial.user_attrs["examples"]) == {"primary"} or all(
        n == 0 for task, n in trial.user_attrs["examples"].items() if task != "primary")
    assert result.best_dev == trial.value and result.test_at_best == trial.user_attrs["test_metric"]
    stage1 = optuna.load_study(study_name="nothing.stage1", storage=storage)
    assert any(n > 0 for task, n in stage1.trials[0].user_attrs["examples"].items() if task != "primary")
    # running it again has nothing left to do
    again = AutoSeM("nothing", suite.primary, suite.auxiliaries, **kwargs)
    assert len(again.optimize().trials) == 1 and again.result.best_dev == result.best_dev
