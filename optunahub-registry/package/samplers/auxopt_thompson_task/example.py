"""Thompson sampling over auxiliary tasks: which candidate helps the primary task?"""

import optuna
import optunahub

module = optunahub.load_module("samplers/auxopt_thompson_task")
HELPS = {"none": 0.80, "sst2": 0.84, "mr": 0.83, "trec": 0.79, "cola": 0.78}


def objective(trial: optuna.Trial) -> float:
    task = trial.suggest_categorical("aux_task", list(HELPS))
    return HELPS[task] + 0.01 * (trial.number % 5 - 2)  # stands in for a training run's dev score


if __name__ == "__main__":
    sampler = module.ThompsonTaskSampler(seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=40)
    print("pulls:", sampler.pulls(study))
    print("kept:", module.select_tasks(sampler.evidence(study), none_arm="none"))
