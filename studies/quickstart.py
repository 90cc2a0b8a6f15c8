"""Quickstart: which auxiliary task helps a small end task, and how much of it to mix in.

The tasks are auxopt's synthetic benchmark (``auxopt.make_synthetic_suite``): a primary task with 500
training examples and one helpful, one neutral and one harmful auxiliary task, whose roles are known
(stored on the study as ``ground_truth``). Each trial trains the tiny encoder for 300 steps on the
primary task plus (maybe) one auxiliary at a mixing ratio, and scores primary dev accuracy.

    auxopt run studies/quickstart.py            # or: auxopt quickstart
"""

import optuna

from auxopt import StudySpec, make_synthetic_suite

suite = make_synthetic_suite(n_helpful=1, n_neutral=1, n_harmful=1, seed=0)


def space(trial: optuna.Trial) -> dict:
    aux = trial.suggest_categorical("aux_task", ["none", *(t.name for t in suite.auxiliaries)])
    ratios = {"primary": 1}
    if aux != "none":
        ratios[aux] = trial.suggest_int("aux_ratio", 1, 3)
    return {"ratios": ratios, "lr": trial.suggest_float("lr", 3e-4, 3e-3, log=True)}


study = StudySpec(
    name="quickstart",
    primary=suite.primary,
    auxiliaries=suite.auxiliaries,
    space=space,
    base={"model": "tiny", "max_steps": 300, "eval_every": 50, "max_length": 32, "batch_size": 32},
    sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=4),
    n_trials=12,
    user_attrs={"ground_truth": suite.ground_truth},
)
