"""No repeated trials: reruns, resumes and other workers draw configurations the study does not hold
yet (``auxopt.propose.Distinct``), and processes started at the same moment share one new storage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import optuna
import pytest
from optuna.trial import TrialState
from test_workers import postgres_url

from auxopt.propose import Distinct, derived_seed
from auxopt.storage import open_storage
from auxopt.worker import run_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)


def space(trial):
    return {"a": trial.suggest_categorical("a", [1, 2, 3]), "b": trial.suggest_categorical("b", ["x", "y"])}


def objective(trial):
    settings = space(trial)
    trial.set_user_attr("config", settings)
    return settings["a"] + (settings["b"] == "x")


def _run(url, n, sampler=None, name="d"):
    study = optuna.create_study(
        study_name=name,
        storage=open_storage(url),
        load_if_exists=True,
        direction="maximize",
        sampler=sampler or optuna.samplers.TPESampler(seed=0),
    )
    run_trials(study, objective, url=url, n_trials=n, propose=Distinct(space, 0, sampler=sampler))
    return study.get_trials()


def test_a_rerun_draws_what_the_study_does_not_hold_until_the_space_is_exhausted(tmp_path):
    url = f"sqlite:///{tmp_path / 'd.db'}"
    first = [t.params for t in _run(url, 3)]
    # each "process" builds its sampler afresh with the same seed, as a rerun of the study file does
    trials = _run(url, 3)
    keys = [json.dumps(t.params, sort_keys=True) for t in trials]
    assert [t.params for t in trials[:3]] == first and len(set(keys)) == 6  # all 6 configurations
    again = _run(url, 1)  # nothing new is left: a repeat is allowed, not an endless search
    assert len(again) == 7 and again[-1].params in [t.params for t in trials]


def test_a_seeded_study_on_one_worker_is_reproducible(tmp_path):
    runs = [[t.params for t in _run(f"sqlite:///{tmp_path / f'r{i}.db'}", 5)] for i in range(2)]
    assert runs[0] == runs[1]


def test_a_given_sampler_that_repeats_itself_is_followed_by_seeded_random_draws(tmp_path):
    # a sampler that always proposes the same point (like a GP sure of its optimum)
    fixed = optuna.samplers.PartialFixedSampler({"a": 1, "b": "x"}, optuna.samplers.RandomSampler(seed=0))
    runs = [[t.params for t in _run(f"sqlite:///{tmp_path / f'g{i}.db'}", 4, sampler=fixed)] for i in range(2)]
    assert runs[0][0] == {"a": 1, "b": "x"}
    assert len({json.dumps(p, sort_keys=True) for p in runs[0]}) == 4
    assert runs[0] == runs[1]  # the fallback draws are seeded, not random


def test_settings_not_parameters_decide_what_repeats(tmp_path, caplog):
    url = f"sqlite:///{tmp_path / 's.db'}"

    def same_run(trial):  # two parameter values that mean the same run
        return {"off": trial.suggest_float("r", 0.0, 1.0) < 2.0}

    study = optuna.create_study(storage=open_storage(url), direction="maximize")
    propose = Distinct(same_run, 0)
    run_trials(study, lambda t: float(same_run(t)["off"]), url=url, n_trials=1, propose=propose)
    with caplog.at_level("INFO", logger="auxopt"):
        assert propose(study) is not None  # every r means the run trial 0 made: exhausted, and it says so
    assert "seems exhausted" in caplog.text


def test_a_trial_between_its_first_and_last_suggestion_is_not_drawn_again(tmp_path):
    """Another worker's trial that has suggested "a" but not yet "b" holds its proposed settings:
    a sampler that keeps proposing them gets something else."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    _run(url, 1)
    study = optuna.load_study(study_name="d", storage=open_storage(url))
    taken = {"a": 3, "b": "y"}
    study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING, system_attrs={"fixed_params": taken}))
    trial = study.ask()
    trial.suggest_categorical("a", [1, 2, 3])  # "b" not yet
    stubborn = optuna.samplers.PartialFixedSampler(taken, optuna.samplers.RandomSampler(seed=0))
    drawn = Distinct(space, 0, sampler=stubborn)(study)
    assert drawn != taken and drawn != study.trials[0].params


def test_derived_seeds_differ_by_every_key():
    seeds = {derived_seed(0, n, a) for n in range(20) for a in range(5)}
    assert len(seeds) == 100 and derived_seed(0, 3, 1) == derived_seed(0, 3, 1)


STUDY = """
import optuna, torch
from auxopt import StudySpec, make_synthetic_suite

suite = make_synthetic_suite(n_helpful=1, n_neutral=1, n_harmful=0, n_train=100, n_aux_train=100, n_dev=50, n_test=50)

def space(trial):
    trial.set_user_attr("threads", torch.get_num_threads())
    aux = trial.suggest_categorical("aux_task", ["none", "helpful_0", "neutral_0"])
    lr = trial.suggest_categorical("lr", [1e-3, 2e-3, 3e-3, 5e-3])
    return {"ratios": {"primary": 1} if aux == "none" else {"primary": 1, aux: 1}, "lr": lr}

study = StudySpec(name="NAME", primary=suite.primary, auxiliaries=suite.auxiliaries, space=space,
                  base={"max_steps": 4, "eval_every": 2, "max_length": 16, "batch_size": 8, "model": "tiny"},
                  n_trials=2, pruner=optuna.pruners.NopPruner())
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "journal", "postgres"])
def test_runs_started_at_the_same_moment_and_a_rerun_share_one_study_without_repeats(tmp_path, backend):
    """Three ``auxopt run`` processes on a storage that does not exist yet, started together (they
    race to create the schema), then the same command again: every trial COMPLETE, none repeats."""
    url = {"sqlite": f"sqlite:///{tmp_path / 'q.db'}", "journal": f"journal:///{tmp_path / 'q.journal'}"}.get(backend)
    url = url or postgres_url()
    name = f"together-{uuid.uuid4().hex[:8]}"
    study_file = tmp_path / "together.py"
    study_file.write_text(STUDY.replace("NAME", name))
    command = [sys.executable, "-m", "auxopt.cli", "run", str(study_file), "--storage", url, "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)
    ]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and "Traceback" not in err, err[-3000:]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = optuna.load_study(study_name=name, storage=open_storage(url, heartbeat=False)).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 8
    settings = [json.dumps(t.user_attrs["config"], sort_keys=True) for t in trials]
    assert len(set(settings)) == 8, [t.params for t in trials]


@pytest.mark.slow
def test_workers_get_their_share_of_the_cores(tmp_path):
    from auxopt.cli import cpu_count

    name = f"threads-{uuid.uuid4().hex[:8]}"
    study_file = tmp_path / "threads.py"
    study_file.write_text(STUDY.replace("NAME", name))
    url = f"sqlite:///{tmp_path / 't.db'}"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    done = subprocess.run(
        [sys.executable, "-m", "auxopt.cli", "run", str(study_file), "--storage", url, "--workers", "2", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    expected = max(1, cpu_count() // 2)
    assert f"({expected} CPU thread" in done.stdout
    trials = optuna.load_study(study_name=name, storage=open_storage(url, heartbeat=False)).get_trials()
    assert len(trials) == 2 and {t.user_attrs["threads"] for t in trials} == {expected}
