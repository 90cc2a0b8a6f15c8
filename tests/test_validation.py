"""Mistakes caught before anything is stored: the search space and the config it gives are run
and checked on a scratch trial before the study is created (``StudySpec.preflight``), and a stored
study opened with another search space is refused."""

from __future__ import annotations

import optuna
import pytest
import torch

from auxopt.cli import main
from auxopt.errors import AuxoptError
from auxopt.study import StudySpec
from auxopt.tasks import make_synthetic_suite

HEAD = """
import optuna
from auxopt import StudySpec, make_synthetic_suite
from auxopt.objectives import AANG, ObjectiveSpace
from auxopt.grad import GradientDecomposer

suite = make_synthetic_suite(n_helpful=1, n_neutral=1, n_harmful=0, n_train=40, n_aux_train=40, n_dev=20, n_test=20)

def space(trial):
    r = trial.suggest_int("ratio_helpful_0", 0, 2)
"""
TAIL = """
study = StudySpec(name="checked", primary=suite.primary, auxiliaries=suite.auxiliaries, space=space,
                  base={"max_steps": 4, "eval_every": 2, "max_length": 16, "batch_size": 8}, n_trials=1)
"""


def write_study(tmp_path, body: str):
    path = tmp_path / "study.py"
    path.write_text(HEAD + "".join(f"    {line}\n" for line in body.strip().splitlines()) + TAIL)
    return path


def assert_nothing_stored(tmp_path):
    db = tmp_path / "checked.db"
    if db.exists():
        assert optuna.get_all_study_names(f"sqlite:///{db}") == []


SPACES = [
    # an exception of the user's own code: named with the user's file and line
    ("return {'lr': 1 / (r - r)}", ["study 'checked'", "ZeroDivisionError", "study.py, line 11", "1 / (r - r)"]),
    ("return {'objectives': AANG(k=100)}", ["study 'checked'", "k=100", "27 objectives"]),
    (
        "return {'objectives': AANG(objectives=['task:nosuch|mask|bidirectional|labels'], learn=False)}",
        ["study 'checked'", "'task:nosuch'", "task 'nosuch'", "not in this run"],
    ),
    (
        "return {'decomposer': GradientDecomposer(k=2, m=4), 'ratios': {'primary': 1}}",
        ["study 'checked'", "GradientDecomposer needs at least one auxiliary task"],
    ),
    ("return {'lr_schedule': 'cosin'}", ["study 'checked'", "lr_schedule", "'cosin'"]),
    ("return {'schedule': 'roundrobin'}", ["study 'checked'", "unknown schedule 'roundrobin'"]),
    ("return {'ratios': {'primary': 1, 'helpfull_0': r}}", ["study 'checked'", "unknown task(s) ['helpfull_0']"]),
    ("return {'ratios': {'primary': 0, 'helpful_0': 0}}", ["study 'checked'", "primary task 'primary'", "> 0"]),
    ("return {'ratios': {'primary': 1, 'helpful_0': -r - 1}}", ["auxiliary task 'helpful_0'", ">= 0"]),
    ("return [r, 2]", ["must return a dict of TrainConfig fields", "returned list [", ", 2]"]),
]


@pytest.mark.parametrize("body, expected", SPACES, ids=[s[0][7:40] for s in SPACES])
def test_a_mistake_in_the_space_or_its_config_fails_before_storage(tmp_path, capsys, body, expected):
    path = write_study(tmp_path, body)
    assert main(["run", str(path), "--n-trials", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "auxopt/study.py" not in err
    for text in expected:
        assert text in err
    assert_nothing_stored(tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: device='cuda' is fine here")
def test_cuda_on_a_machine_without_it_fails_before_storage(tmp_path, capsys):
    path = write_study(tmp_path, "return {'device': 'cuda'}")
    assert main(["run", str(path), "--n-trials", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "study 'checked'" in err and "no CUDA device" in err
    assert_nothing_stored(tmp_path)


@pytest.fixture(scope="module")
def tiny_suite():
    return make_synthetic_suite(n_helpful=1, n_neutral=1, n_harmful=0, n_train=40, n_aux_train=40, n_dev=20, n_test=20)


def spec_with(suite, space, name="grown"):
    return StudySpec(
        name=name,
        primary=suite.primary,
        auxiliaries=suite.auxiliaries,
        space=space,
        base={"max_steps": 4, "eval_every": 2, "max_length": 16, "device": "cpu"},
    )


def test_the_scratch_trial_logs_nothing(tiny_suite, capfd):
    spec = spec_with(tiny_suite, lambda trial: {"lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True)})
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO)
    try:
        assert set(spec.dry_run_distributions()) == {"lr"}
        assert spec.dry_run_config().lr is not None
        assert optuna.logging.get_verbosity() == optuna.logging.INFO  # set back
    finally:
        optuna.logging.set_verbosity(before)
    assert "created in memory" not in capfd.readouterr().err


def _add_trials(study, spec, params_list):
    """Stored trials as the space made them (finished, with the config they recorded)."""
    for params in params_list:
        study.enqueue_trial(params)
        trial = study.ask()
        trial.set_user_attr("config", spec.build_config(trial).describe())
        study.tell(trial, 0.5)


def lr_space(trial):
    return {"lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True)}


def lr_and_ratio_space(trial):
    return {
        "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        "ratios": {"primary": 1, "helpful_0": trial.suggest_int("ratio_helpful_0", 0, 2)},
    }


def test_a_space_that_adds_or_drops_a_parameter_is_refused(tmp_path, tiny_suite):
    url = f"sqlite:///{tmp_path}/grown.db"
    spec = spec_with(tiny_suite, lr_space)
    study = spec.load_study(url)
    _add_trials(study, spec, [{"lr": 1e-3}])
    spec_with(tiny_suite, lr_space).load_study(url)  # the same space loads
    with pytest.raises(AuxoptError, match=r"now suggests \['ratio_helpful_0'\].*never had.*new name"):
        spec_with(tiny_suite, lr_and_ratio_space).load_study(url)

    url2 = f"sqlite:///{tmp_path}/shrunk.db"
    spec = spec_with(tiny_suite, lr_and_ratio_space, name="shrunk")
    study = spec.load_study(url2)
    _add_trials(study, spec, [{"lr": 1e-3, "ratio_helpful_0": 1}])
    with pytest.raises(AuxoptError, match=r"no longer suggests \['ratio_helpful_0'\].*keep the space as it was"):
        spec_with(tiny_suite, lr_space, name="shrunk").load_study(url2)
    for name, db in (("grown", url), ("shrunk", url2)):  # nothing was written by the refused loads
        assert (
            len(optuna.load_study(study_name=name, storage=db).get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
            == 1
        )


def conditional_space(trial):
    aux = trial.suggest_categorical("aux", ["none", "helpful_0"])
    ratios = {"primary": 1}
    if aux != "none":
        ratios[aux] = trial.suggest_int("ratio", 1, 2)
    return {"ratios": ratios}


def test_a_conditional_space_is_not_taken_for_a_changed_one(tmp_path, tiny_suite):
    url = f"sqlite:///{tmp_path}/cond.db"
    spec = spec_with(tiny_suite, conditional_space, name="cond")
    study = spec.load_study(url)
    _add_trials(study, spec, [{"aux": "none"}, {"aux": "helpful_0", "ratio": 2}])
    for _ in range(3):  # whichever branch a random draw would take, the same space loads
        spec_with(tiny_suite, conditional_space, name="cond").load_study(url)
