"""Gaussian-process search of two mixing ratios, equal mixing tried first."""

import optuna
import optunahub

module = optunahub.load_module("samplers/auxopt_mixing_ratio")


def objective(trial: optuna.Trial) -> float:
    sst2 = trial.suggest_float("ratio_sst2", 0.0, 4.0)
    mr = trial.suggest_float("ratio_mr", 0.0, 4.0)
    return -((sst2 - 1.5) ** 2) - 0.5 * (mr - 0.5) ** 2  # stands in for a training run's dev score


if __name__ == "__main__":
    study = optuna.create_study(direction="maximize", sampler=module.MixingRatioSampler(seed=0))
    study.enqueue_trial({"ratio_sst2": 1.0, "ratio_mr": 1.0})  # equal mixing first
    study.optimize(objective, n_trials=20)
    print("best:", study.best_params, study.best_value)
