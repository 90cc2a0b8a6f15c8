"""The payoff benchmark: on real data-starved primaries, does auxiliary learning beat the primary alone?

Each **suite** is a primary task (its training set optionally capped), candidate auxiliary tasks and,
where the primary has one, its ``domain.txt`` for AANG:

* ``sentiment`` — cr with 200 training examples ← mr, sst2, subj, trec, cola, qnli;
* ``dsp`` — citation_intent (full train, its ``domain.txt``) ← chemprot, hyperpartisan, sst2, trec;
* your own: ``--primary PATH --max-train N --candidates a,b,c``.

**Rows.** Every final model trains on the same primary data for the same number of steps:

* ``primary-only``; ``all-equal`` (round-robin over the primary and every candidate, 1:1:…);
* ``best single (dev)`` — one 1:1 run per candidate (``single:<task>``), the best dev kept: the search a
  practitioner does by hand, and the baseline AutoSeM must beat per unit of compute;
* ``AutoSeM (online, no pruning)`` — :class:`auxopt.pipelines.AutoSeM` with stage 1 run as one online
  Thompson run, then stage 2 over the kept tasks' ratios, every run to its last step (``pruner=None``);
* ``AutoSeM (online, pruned)`` / ``AutoSeM (sampler)`` — the pipeline at its defaults, multi-fidelity
  (runs that trail stop early; the best kept task alone, the primary alone and equal mixing always
  finish), with stage 1 run
  online or as ThompsonTaskSampler trials;
* ``TAPT`` — the primary plus masked-LM on its own text (``AANG(objectives=["tapt"], learn=False)``);
* ``AANG`` — AANG's online weighting over the primary's generated objective space;
* ``ATTITTUD`` — :class:`auxopt.grad.GradientDecomposer` (library defaults) over all candidates;
* ``UPGrad`` / ``PCGrad`` — torchjd's aggregators over the primary and all candidates.

**Statistics.** The same seeds for every row (paired); test is scored at the best dev step; each row's
paired difference from primary-only gets a 95 % t-interval and wins/ties/losses over seeds. The compute
columns count every training step a row spent (search included) and its wall time. Below each
suite's table, the gain against compute of the searches had they stopped after ``k`` runs (the hand
search over ``k`` candidates, AutoSeM after ``k`` stage-2 runs), read from the runs made.

**Resumable.** Every run is a trial of an Optuna study (one per suite, ``payoff-<suite>``) in an SQLite
file (default ``benchmarks/payoff-<scale>.db``): parameters ``row`` and ``seed``, scores and compute as
user_attrs, the dev score as the value. Killed, it continues where it stopped when run again: each run
checkpoints every ``checkpoint_every`` steps into the artifact folder beside the file and a run that
was killed resumes from its newest checkpoint (``resumed_from_step``); AutoSeM's stage studies live in
the same file and resume mid-search. ``auxopt dashboard --storage
sqlite:///benchmarks/end_task/payoff-cpu.db`` shows it. Several processes may share the file
(``--workers N``, on the GPUs ``--gpus`` lists: every visible one by default); the study is created
under the storage's lock, so workers started together on a new file do not race.
``--report`` only reads the file and writes the tables and ``docs/payoff.png``.

    AUXOPT_DATA=../shared/data python benchmarks/end_task/payoff.py --scale ci      # tiny model, about a minute
    AUXOPT_DATA=../shared/data python benchmarks/end_task/payoff.py --scale cpu --write   # hours: resumable
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))  # benchmarks/: _common

import _common  # noqa: E402

TITLE = "Payoff benchmark (benchmarks/end_task/payoff.py)"
FIGURE = REPO / "docs" / "payoff.png"


@dataclass(frozen=True)
class Suite:
    primary: str
    candidates: tuple[str, ...]
    max_train: int | None = None  # cap on the primary's training set


SUITES = {
    "sentiment": Suite("cr", ("mr", "sst2", "subj", "trec", "cola", "qnli"), max_train=200),
    "dsp": Suite("citation_intent", ("chemprot", "hyperpartisan", "sst2", "trec")),
}

#: per scale: the run settings every final model shares, the seeds, the methods' search budgets
SCALES = {
    "ci": dict(
        model="tiny",
        seeds=2,
        steps=30,
        eval_every=10,
        max_length=32,
        batch_size=8,
        lr=None,
        primary_max_train=200,
        aux_max_train=300,
        max_eval=150,
        max_candidates=2,
        stage1_trials=3,
        stage2_trials=3,
        stage2_startup=None,
        k=2,
        m=8,
        every=10,
        threads=1,
        checkpoint_every=10,
    ),
    "cpu": dict(
        model="minilm",
        seeds=3,
        steps=300,
        eval_every=50,
        max_length=48,
        batch_size=16,
        lr=1e-4,
        primary_max_train=None,
        aux_max_train=None,
        max_eval=None,
        max_candidates=None,
        stage1_trials=6,
        stage2_trials=4,
        stage2_startup=None,
        k=None,
        m=None,
        every=None,
        threads=1,
        checkpoint_every=100,
    ),
    "gpu": dict(
        model="minilm",
        seeds=5,
        steps=2000,
        eval_every=100,
        max_length=128,
        batch_size=32,
        lr=5e-5,
        primary_max_train=None,
        aux_max_train=None,
        max_eval=None,
        max_candidates=None,
        stage1_trials=12,
        stage2_trials=12,
        stage2_startup=None,
        k=None,
        m=None,
        every=None,
        threads=None,
        checkpoint_every=500,
    ),
}

#: (row key, table label); ``single:<task>`` rows are expanded per candidate
ROWS = {
    "primary-only": "primary-only",
    "all-equal": "all-equal",
    "single": "best single (dev)",
    "autosem-online": "AutoSeM (online, no pruning)",
    "autosem-sampler": "AutoSeM (sampler)",
    "autosem-pruned": "AutoSeM (online, pruned)",
    "tapt": "TAPT (MLM)",
    "aang": "AANG (online)",
    "attittud": "ATTITTUD",
    "upgrad": "UPGrad (torchjd)",
    "pcgrad": "PCGrad (torchjd)",
}
#: A method row's revision: raised when the method's code or defaults change, so that its earlier
#: runs are superseded (kept in the file, left out of the table) while every other row stays.
#: autosem-sampler 5: its stage 1's half-length primary-only runs no longer stand in for stage 2's
#: primary-alone point (revision 4 took one as the answer on dsp, below the primary alone).
#: autosem-pruned 3, autosem-sampler 6: the default pruner judges runs from half their length on.
#: autosem-* 4, 7, 4: stage 2 runs the best kept task alone first, then the primary alone, then equal mixing.
REVISION = {"autosem-online": 4, "autosem-sampler": 7, "autosem-pruned": 4, "attittud": 2, "aang": 2}
#: per row key, the scale settings only that row depends on (the shared ones must match the study's)
METHOD_KEYS = {
    "autosem-online": ("stage1_trials", "stage2_trials", "stage2_startup"),
    "autosem-sampler": ("stage1_trials", "stage2_trials", "stage2_startup"),
    "autosem-pruned": ("stage1_trials", "stage2_trials", "stage2_startup"),
    "attittud": ("k", "m", "every"),
}


_METHOD_ONLY = tuple(sorted({k for keys in METHOD_KEYS.values() for k in keys}))


def row_version(row: str, scale: dict) -> dict:
    """What a run of ``row`` was made with beyond the shared settings: its revision and budgets."""
    key = row.split(":")[0]
    return {"revision": REVISION.get(key, 1), **{k: scale[k] for k in METHOD_KEYS.get(key, ())}}


def row_of(trial) -> str | None:
    """The row a payoff trial ran: its ``row`` parameter, or (rows added after the study was made,
    which its categorical parameter cannot take) its ``row`` user_attr."""
    return trial.params.get("row", trial.user_attrs.get("row"))


def row_choices(study) -> tuple | None:
    """The choices of the study's ``row`` parameter as first recorded (None before any trial has one)."""
    for t in study.get_trials(deepcopy=False):
        if "row" in t.distributions:
            return tuple(t.distributions["row"].choices)
    return None


def is_current(study, trial, scale: dict) -> bool:
    """The run was made by the row's present revision and budgets (runs from before versions were
    recorded are revision 1 with the budgets the study was made with)."""
    row = row_of(trial) or ""
    stored = trial.user_attrs.get("version")
    if stored is None:
        before = study.user_attrs.get("method_budgets_before", {})
        stored = {"revision": 1, **{k: before.get(k, scale[k]) for k in METHOD_KEYS.get(row.split(":")[0], ())}}
    return stored == json.loads(json.dumps(row_version(row, scale)))


def stage_prefix(study_name: str, row: str, seed: int, scale: dict) -> str:
    """The name prefix of an AutoSeM row's two stage studies (its revision in it from 2 on)."""
    revision = row_version(row, scale)["revision"]
    return f"{study_name}.{row}.seed{seed}" + (f".r{revision}" if revision > 1 else "")


#: the rows the premise needs, and the other baselines a practitioner tries by hand, come first, so
#: that a partial run answers the premise (and the method rows, which change, come later)
FIRST = ("primary-only", "single", "all-equal", "tapt")


# -- tasks and settings ---------------------------------------------------------------------------
def suite_from_args(args) -> dict[str, Suite]:
    if args.primary:
        if not args.candidates:
            raise SystemExit("--primary needs --candidates a,b,c")
        suite = Suite(args.primary, tuple(c for c in args.candidates.split(",") if c), args.max_train)
        return {Path(args.primary).name: suite}
    names = [s for s in args.suites.split(",") if s]
    for name in names:
        if name not in SUITES:
            raise SystemExit(f"unknown suite {name!r}; choose from {', '.join(SUITES)}")
    return {n: SUITES[n] for n in names}


def candidates_of(suite: Suite, scale: dict) -> tuple[str, ...]:
    cap = scale["max_candidates"]
    return suite.candidates[:cap] if cap else suite.candidates


def load_suite(suite: Suite, scale: dict):
    """The primary (train capped by the suite, or the scale at ci) and the candidates."""
    import dataclasses

    import numpy as np

    from auxopt import load_task

    def capped(task, cap):
        if cap is None:
            return task

        def sub(split):
            if split is None or len(split) <= cap:
                return split
            return split.subset(np.sort(np.random.default_rng(0).choice(len(split), cap, replace=False)))

        return dataclasses.replace(task, dev=sub(task.dev), test=sub(task.test))

    cap = suite.max_train or scale["primary_max_train"]
    primary = capped(load_task(suite.primary, max_train=cap), scale["max_eval"])
    auxiliaries = [
        capped(load_task(name, max_train=scale["aux_max_train"]), scale["max_eval"])
        for name in candidates_of(suite, scale)
    ]
    return primary, auxiliaries


def check_suite(study, primary, auxiliaries) -> None:
    """The library's contamination check, once per suite: an auxiliary that shares examples with the
    primary's dev or test split makes the suite measure leakage, so it stops the benchmark; the
    primary's own duplicates (train texts repeated in dev/test) are recorded and reported."""
    from auxopt import check_overlap

    found = check_overlap(primary, auxiliaries, on_overlap="ignore")
    study.set_user_attr("contamination", found.to_dict())
    leaks = [o for o in found.overlaps if not o.own]
    if leaks:
        raise SystemExit("the suite measures leakage: " + "; ".join(o.describe() for o in leaks))


def base_config(scale: dict) -> dict:
    base = {k: scale[k] for k in ("model", "max_length", "batch_size", "eval_every")}
    base.update(
        max_steps=scale["steps"],
        eval_batch_size=128,
        device="cpu" if scale["model"] == "tiny" else "auto",
        on_overlap="ignore",
    )  # checked once per suite instead (check_suite)
    if scale["lr"] is not None:
        base["lr"] = scale["lr"]
    return base


def settings(suite: Suite, scale: dict) -> dict:
    """What a study was made with; a study file is only continued with the same settings."""
    return {
        "suite": {
            "primary": suite.primary,
            "candidates": list(candidates_of(suite, scale)),
            "max_train": suite.max_train,
        },
        **{k: v for k, v in scale.items() if k not in ("seeds", "threads", "checkpoint_every", *_METHOD_ONLY)},
    }


def job_rows(suite: Suite, scale: dict) -> list[str]:
    rows = []
    for key in ROWS:
        rows += [f"single:{c}" for c in candidates_of(suite, scale)] if key == "single" else [key]
    return rows


def jobs(suite: Suite, scale: dict, seeds: int, only: list[str] | None) -> list[tuple[str, int]]:
    """(row, seed) in the order they run: the premise's rows for the first 3 seeds, then the methods,
    then more seeds."""
    rows = [r for r in job_rows(suite, scale) if only is None or r.split(":")[0] in only]
    first = [r for r in rows if r.split(":")[0] in FIRST]
    rest = [r for r in rows if r not in first]
    early = range(min(3, seeds))
    order = [(r, s) for s in early for r in first] + [(r, s) for s in early for r in rest]
    order += [(r, s) for s in range(3, seeds) for r in rows]
    return order


# -- one run ----------------------------------------------------------------------------------------
def run_job(row: str, seed: int, primary, auxiliaries, scale: dict, url: str, study_name: str, trial=None) -> dict:
    """Train what ``row`` names with ``seed``; return its scores and the compute it spent. With
    ``trial`` (the payoff study's), the run checkpoints into the artifact store beside the storage
    every ``checkpoint_every`` steps and resumes from the newest checkpoint of the trials it redoes
    (AutoSeM's stage studies checkpoint their own trials)."""
    from auxopt.train import TrainConfig, train

    base = base_config(scale)
    start = time.perf_counter()
    if row.startswith("autosem-"):
        return run_autosem(row, seed, primary, auxiliaries, scale, url, study_name)
    tasks, kwargs = list(auxiliaries), {}
    if row == "primary-only":
        tasks = []
    elif row.startswith("single:"):
        name = row.split(":", 1)[1]
        tasks = [t for t in auxiliaries if t.name == name]
    elif row in ("tapt", "aang"):
        from auxopt.objectives import AANG, ObjectiveSpace

        tasks = []
        # TAPT is the multitask MLM baseline: no final fine-tune phase (AANG's default has one)
        kwargs["objectives"] = (
            AANG(objectives=["tapt"], learn=False, finetune=0)
            if row == "tapt"
            else AANG(space=ObjectiveSpace.for_task(primary))
        )
    elif row == "attittud":
        from auxopt.grad import GradientDecomposer

        given = {k: scale[k] for k in ("k", "m", "every") if scale[k] is not None}
        kwargs["decomposer"] = GradientDecomposer(**given)
    elif row in ("upgrad", "pcgrad"):
        from auxopt.train.jd import JacobianDescent

        kwargs["decomposer"] = JacobianDescent(row)
    elif row != "all-equal":
        raise ValueError(f"unknown row {row!r}")
    checkpoints = _checkpoints(trial, url) if trial is not None else None
    if checkpoints is not None:
        from auxopt.train.checkpoint import Checkpoint

        kwargs["checkpoint"] = Checkpoint(checkpoints, every=scale["checkpoint_every"])
    result = train(TrainConfig(primary, tasks, seed=seed, **kwargs, **base))
    if checkpoints is not None:
        checkpoints.delete_all()
    plugin = kwargs.get("objectives") or kwargs.get("decomposer")
    detail = {"plugin": plugin.describe()} if plugin is not None and hasattr(plugin, "describe") else {}
    if row == "aang":
        weights = result.extra.get("aang_weights") or {}
        if weights.get("weights"):
            final = weights["weights"][-1]
            top = sorted(zip(weights["objectives"], final, strict=True), key=lambda x: -x[1])[:5]
            detail["aang_top"] = [[name, round(w, 4)] for name, w in top]
            detail["aang_uniform"] = round(1 / len(final), 4)
            detail["aang_primary_share"] = [weights["primary_weight"][0], weights["primary_weight"][-1]]
        cosines = result.extra.get("aang_cosines") or []
        if cosines:  # [step, cos(g_prim, g_dev), [objective, cos(g_t, g_dev)], ...] per record
            detail["aang_mean_cos"] = {
                "primary": round(sum(c[1] for c in cosines) / len(cosines), 4),
                "auxiliary": round(sum(x[1] for c in cosines for x in c[2:]) / sum(len(c) - 2 for c in cosines), 4),
            }
    parts = result.extra.get("grad_parts") or {}
    if parts.get("steps"):  # ATTITTUD: where the auxiliary gradient's energy lies, on average
        energy = {k: sum(v * v for v in parts[k]) for k in ("pos", "neg", "perp")}
        total = sum(energy.values()) or 1.0
        detail["grad_energy"] = {k: round(v / total, 4) for k, v in energy.items()}
        aux = [
            math.sqrt(a * a + b * b + c * c) for a, b, c in zip(parts["pos"], parts["neg"], parts["perp"], strict=True)
        ]
        detail["aux_over_prim_norm"] = round(
            sum(a / max(p, 1e-12) for a, p in zip(aux, parts["prim"], strict=True)) / len(aux), 3
        )
    return dict(
        dev=result.best_dev,
        test=result.test_at_best,
        steps=result.steps,
        wall=time.perf_counter() - start,
        best_step=result.best_step,
        curve=[[int(s), float(v)] for s, v in result.curve],
        detail=detail,
        resumed_from=result.extra.get("resumed_from_step", 0),
    )


def _checkpoints(trial, url: str):
    """The trial's checkpoint store in the artifact folder beside the storage (None without one)."""
    from auxopt.storage import TrialCheckpointStore, artifact_dir, artifact_store

    folder = artifact_dir(url)
    return None if folder is None else TrialCheckpointStore(trial, artifact_store(folder))


def autosem_pipeline(row: str, seed: int, primary, auxiliaries, scale: dict, url: str, study_name: str):
    """The :class:`auxopt.pipelines.AutoSeM` of an AutoSeM row and seed, its stage studies in ``url``
    (``studies/payoff_autosem.py`` builds the same one, for ``auxopt export`` and ``auxopt verify``)."""
    from auxopt.pipelines import AutoSeM

    base = {k: v for k, v in base_config(scale).items() if k != "on_overlap"}  # a setting of AutoSeM's studies
    return AutoSeM(
        name=stage_prefix(study_name, row, seed, scale),
        primary=primary,
        auxiliaries=auxiliaries,
        base=base,
        on_overlap="ignore",
        stage1="sampler" if row == "autosem-sampler" else "online",
        **({"pruner": None} if row == "autosem-online" else {}),  # that row: every run finishes
        # the sampler: every arm (the primary alone and each candidate) at least twice, in runs of
        # half the length (each arm's first run trains; a repeat of it reuses its outcome)
        **({"stage1_steps": scale["steps"] // 2} if row == "autosem-sampler" else {}),
        stage1_trials=max(scale["stage1_trials"], 2 * (len(auxiliaries) + 1))
        if row == "autosem-sampler"
        else scale["stage1_trials"],
        stage2_trials=scale["stage2_trials"],
        n_startup_trials=scale["stage2_startup"],
        seed=seed,
        storage=url,
        reuse_from=other_searches(url, study_name, row, seed, scale),
    )


def other_searches(url: str, study_name: str, row: str, seed: int, scale: dict) -> list[str]:
    """The file's other AutoSeM searches of ``seed`` (every row and revision): a run one of them
    trained with the same settings is taken, not trained again (auxopt's ``reuse_from``; training
    is deterministic given its settings), and counted at what it cost there."""
    import optuna

    names, mine = set(optuna.get_all_study_names(url)), stage_prefix(study_name, row, seed, scale)
    prefixes = [
        f"{study_name}.{key}.seed{seed}" + (f".r{r}" if r > 1 else "")
        for key in ("autosem-pruned", "autosem-online", "autosem-sampler")
        for r in range(max(REVISION.values()), 0, -1)
    ]
    return [p for p in prefixes if p != mine and {f"{p}.stage1", f"{p}.stage2"} & names]


def run_autosem(row, seed, primary, auxiliaries, scale, url, study_name) -> dict:
    """The AutoSeM pipeline, its two stage studies in the benchmark's own file (so it resumes
    mid-search); compute is summed over every trial of both stages, across restarts, a run taken
    from another search counted at its cost there (:func:`auxopt.objective.run_cost`)."""
    import optuna

    from auxopt.objective import run_cost

    pipeline = autosem_pipeline(row, seed, primary, auxiliaries, scale, url, study_name)
    pipeline.optimize(publish_every=None)
    steps = wall = 0.0
    for name in (pipeline.stage1_name, pipeline.stage2_name):
        try:
            stage = optuna.load_study(study_name=name, storage=url)
        except KeyError:
            continue
        for t in stage.get_trials(deepcopy=False):
            cost = run_cost(t)
            steps, wall = steps + cost[0], wall + cost[1]
    r = pipeline.result
    return dict(
        dev=r.best_dev,
        test=r.test_at_best,
        steps=int(steps),
        wall=wall,
        detail={
            "selected": r.selected,
            "ratios": {k: round(v, 3) for k, v in r.ratios.items()},
            "utility": {k: round(a / (a + b), 3) for k, (a, b) in r.evidence.items()},
            "evidence": {k: [int(a - 1), int(a + b - 2)] for k, (a, b) in r.evidence.items()},
            "stage2": _stage2_runs(pipeline, url),
        },
    )


def _stage2_runs(pipeline, url: str) -> list:
    """[ratios, dev] of each finished stage-2 run, in order."""
    import optuna

    try:
        stage = optuna.load_study(study_name=pipeline.stage2_name, storage=url)
    except KeyError:
        return []
    return [
        [{k: round(v, 3) for k, v in t.user_attrs.get("ratios", {}).items()}, round(t.value, 4)]
        for t in stage.get_trials(deepcopy=False)
        if t.state == optuna.trial.TrialState.COMPLETE
    ]


# -- the study: jobs as trials, resumable, shared by workers ---------------------------------------
def open_study(url: str, name: str, made_with: dict):
    """The suite's study, created or loaded under the storage's lock: workers started together on a
    new file must not race to create its schema (:func:`auxopt.storage.storage_lock`)."""
    from auxopt.storage import storage_lock

    with storage_lock(url):
        return _open_study(url, name, made_with)


def _open_study(url: str, name: str, made_with: dict):
    import optuna

    from auxopt.storage import open_storage

    study = optuna.create_study(
        study_name=name, storage=open_storage(url, heartbeat=False), direction="maximize", load_if_exists=True
    )
    stored = study.user_attrs.get("settings")
    if stored is not None and any(k in stored for k in _METHOD_ONLY):  # method budgets moved to each run
        study.set_user_attr("method_budgets_before", {k: stored[k] for k in _METHOD_ONLY if k in stored})
        stored = {k: v for k, v in stored.items() if k not in _METHOD_ONLY}
        study.set_user_attr("settings", stored)
    if stored is None:
        study.set_user_attr("settings", made_with)
    elif stored != json.loads(json.dumps(made_with)):
        changed = sorted(k for k in set(stored) | set(made_with) if stored.get(k) != made_with.get(k))
        raise SystemExit(
            f"study {name!r} in {url} was made with other settings ({', '.join(changed)}); "
            "pass another --storage or remove the study to start again"
        )
    return study


def _reap(study, url: str, scale: dict, everyone: bool = False) -> None:
    """Fail the trials (and their AutoSeM stage trials) whose local worker process is gone, or every
    RUNNING trial with ``everyone`` (``--reset-running``: no other worker is alive anywhere)."""
    import optuna
    from optuna.trial import TrialState

    from auxopt._optuna import storage_of, trial_id
    from auxopt.storage import local_worker_gone, reset_running

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if everyone or local_worker_gone(t.user_attrs.get("worker")):
            storage_of(study).set_trial_state_values(trial_id(t), TrialState.FAIL)
            row, seed = row_of(t) or "", t.params.get("seed")  # a claim that failed may have neither
            if row.startswith("autosem-") and seed is not None:
                for stage in ("stage1", "stage2"):
                    try:
                        inner = optuna.load_study(
                            study_name=f"{stage_prefix(study.study_name, row, seed, scale)}.{stage}", storage=url
                        )
                    except KeyError:
                        continue
                    reset_running(inner)
            print(f"  {row} seed {seed}: its worker is gone; it runs again", flush=True)


def claim(study, url: str, order: list[tuple[str, int]], rows: list[str], scale: dict, reset: bool = False):
    """The next job nobody has done or is doing, as a new RUNNING trial (under the study's lock)."""
    from optuna.trial import TrialState

    from auxopt._optuna import storage_of, trial_id
    from auxopt.records import RETRY_HISTORY
    from auxopt.storage import ask_lock, worker_identity

    with ask_lock(storage_of(study), url):
        _reap(study, url, scale, everyone=reset)
        taken = {
            (row_of(t), t.params.get("seed"))
            for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.RUNNING) and is_current(study, t, scale)
        }
        todo = [job for job in order if job not in taken]
        if not todo:
            return None
        row, seed = todo[0]
        # the worker is named before the trial runs: one killed at any instant is found by the next
        study.enqueue_trial({"row": row, "seed": seed}, user_attrs={"worker": worker_identity()})
        trial = study.ask()
        choices = row_choices(study) or rows
        if row in choices:
            trial.suggest_categorical("row", choices)
        else:  # a row added after the study was made: Optuna's categorical cannot grow
            trial.set_user_attr("row", row)
        trial.suggest_int("seed", 0, 99)
        trial.set_user_attr("version", row_version(row, scale))
        redone = [  # the failed runs of this job: the new trial resumes from their newest checkpoint
            t.number
            for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
            if (row_of(t), t.params.get("seed")) == (row, seed) and is_current(study, t, scale)
        ]
        if redone:
            storage_of(study).set_trial_system_attr(trial_id(trial), RETRY_HISTORY, redone)
        return trial


def work(study, url: str, order, rows: list[str], primary, auxiliaries, scale: dict, reset: bool = False) -> int:
    from optuna.trial import TrialState

    done = 0
    while (trial := claim(study, url, order, rows, scale, reset and done == 0)) is not None:
        row, seed = row_of(trial), trial.params["seed"]
        print(f"{study.study_name}: {row} seed {seed} …", flush=True)
        try:
            out = run_job(row, seed, primary, auxiliaries, scale, url, study.study_name, trial)
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        for key in ("test", "steps", "best_step", "curve", "detail"):
            if key in out:
                trial.set_user_attr(key, out[key])
        if out.get("resumed_from"):
            trial.set_user_attr("resumed_from_step", out["resumed_from"])
        trial.set_user_attr("dev", out["dev"])
        trial.set_user_attr("wall_s", round(out["wall"], 2))
        study.tell(trial, out["dev"])
        done += 1
        test = "–" if out["test"] is None else f"{out['test']:.4f}"
        print(
            f"{study.study_name}: {row} seed {seed}: dev {out['dev']:.4f} test {test} "
            f"steps {out['steps']} wall {out['wall']:.0f} s",
            flush=True,
        )
    return done


# -- the report ------------------------------------------------------------------------------------
def collect(study, suite: Suite, scale: dict) -> dict[str, dict[int, dict]]:
    """Row label → seed → {dev, test, steps, wall, detail}; ``best single (dev)`` derived per seed
    from the ``single:*`` runs (only seeds where every candidate ran)."""
    from optuna.trial import TrialState

    runs: dict[str, dict[int, dict]] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if not is_current(study, t, scale):
            continue  # superseded by a later revision of its method
        runs.setdefault(row_of(t), {})[t.params["seed"]] = {
            "dev": t.user_attrs["dev"],
            "test": t.user_attrs.get("test"),
            "steps": t.user_attrs.get("steps", 0),
            "wall": t.user_attrs.get("wall_s", 0.0),
            "detail": t.user_attrs.get("detail", {}),
        }
    out: dict[str, dict[int, dict]] = {}
    singles = [f"single:{c}" for c in candidates_of(suite, scale)]
    for key, label in ROWS.items():
        if key != "single":
            if key in runs:
                out[label] = runs[key]
            continue
        seeds = set.intersection(*(set(runs.get(s, {})) for s in singles)) if singles else set()
        best = {}
        for seed in sorted(seeds):
            chosen = max(singles, key=lambda s: runs[s][seed]["dev"])  # first candidate wins a tie
            best[seed] = {
                **runs[chosen][seed],
                "steps": sum(runs[s][seed]["steps"] for s in singles),
                "wall": sum(runs[s][seed]["wall"] for s in singles),
                "detail": {"chosen": chosen.split(":", 1)[1]},
            }
        if best:
            out[label] = best
    out["_singles"] = {s.split(":", 1)[1]: runs[s] for s in singles if s in runs}
    return out


def paired(row: dict[int, dict], base: dict[int, dict]) -> dict | None:
    """Paired test differences from the baseline over common seeds: mean, 95 % t-interval, W/T/L
    (:func:`auxopt.stats.paired_difference`)."""
    from auxopt.stats import paired_difference

    diff = paired_difference({s: v["test"] for s, v in row.items()}, {s: v["test"] for s, v in base.items()})
    if diff is None:
        return None
    return {**diff.to_dict(), "low": diff.low, "high": diff.high}


def suite_lines(name: str, suite: Suite, data: dict, metric: str, scale: dict) -> list[str]:
    base = data.get("primary-only", {})
    lines = [
        f"### {name}: {suite.primary} ({suite.max_train or 'all'} training examples) ← "
        + ", ".join(candidates_of(suite, scale)),
        "",
        f"| row | test {metric} | dev {metric} | Δ test vs primary-only [95 % CI] | W/T/L | seeds "
        "| training steps / seed | wall / seed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label in ROWS.values():
        row = data.get(label)
        if not row:
            lines.append(f"| {label} | not run yet | | | | 0 | | |")
            continue
        diff = paired(row, base) if label != "primary-only" else None
        if diff is None:
            delta, wtl = "–", "–"
        else:
            ci = "" if math.isnan(diff["low"]) else f" [{diff['low']:+.3f}, {diff['high']:+.3f}]"
            delta, wtl = f"{diff['mean']:+.3f}{ci}", f"{diff['wins']}/{diff['ties']}/{diff['losses']}"
        steps = statistics.mean(v["steps"] for v in row.values())
        wall = statistics.mean(v["wall"] for v in row.values())
        lines.append(
            f"| {label} | {_common.mean_sd(v['test'] for v in row.values())} | "
            f"{_common.mean_sd(v['dev'] for v in row.values())} | {delta} | {wtl} | {len(row)} | "
            f"{steps:.0f} | {wall:.0f} s |"
        )
    singles = data.get("_singles", {})
    if singles:
        lines += [
            "",
            "Each single auxiliary (1:1 with the primary), the runs the `best single` row chooses "
            "from on dev: "
            + "; ".join(
                f"{c} test {_common.mean_sd(v['test'] for v in runs.values())}, dev "
                f"{_common.mean_sd(v['dev'] for v in runs.values())} ({len(runs)} seeds)"
                for c, runs in singles.items()
            )
            + ".",
        ]
    notes = []
    for label in (
        "best single (dev)",
        "AutoSeM (online, no pruning)",
        "AutoSeM (sampler)",
        "AutoSeM (online, pruned)",
        "AANG (online)",
    ):
        for seed, v in sorted(data.get(label, {}).items()):
            d = v.get("detail") or {}
            if "chosen" in d:
                notes.append(f"{label} seed {seed}: {d['chosen']}")
            elif "selected" in d:
                util = ", ".join(
                    f"{k} {u:.2f}" for k, u in sorted((d.get("utility") or {}).items(), key=lambda kv: -kv[1])
                )
                notes.append(
                    f"{label} seed {seed}: kept {d['selected'] or 'none'} (stage-1 utilities "
                    f"{util}), ratios {d['ratios']}"
                )
            elif "aang_top" in d:
                top = ", ".join(f"{n} {w:.3f}" for n, w in d["aang_top"][:3])
                notes.append(f"{label} seed {seed}: top weights {top} (uniform {d['aang_uniform']:.3f})")
    if notes:
        lines += ["", "Choices: " + "; ".join(notes) + "."]
    held = kept_holds_pick(data)
    if held:
        lines += [
            "",
            "AutoSeM's kept set holds the task best single (dev) chose, on the seeds both ran: "
            + "; ".join(f"{label} {n} of {m}" for label, (n, m) in held.items())
            + ".",
        ]
    return lines + [""]


def short_run_lines(evidence: dict | None, scale: dict) -> list[str]:
    if not evidence:
        return []
    e = evidence
    return [
        f"The sampler stage 1 read against the full runs ({len(e['ranks'])} seeds): a candidate's one "
        f"{scale['steps'] // 2}-step run (a repeat takes the same run; a pruned one stops earlier) is at or "
        f"below the primary alone's in {e['below_short']} of {e['n']}, its {scale['steps']}-step 1:1 run in "
        f"{e['below_full']} of {e['n']}; Spearman correlation of the two dev scores, mean over seeds, "
        f"{e['rho']:+.2f}; the task best single (dev) chose ranks "
        + ", ".join(map(str, e["ranks"]))
        + f" of {e['of']} among the short runs.",
        "",
    ]


def kept_holds_pick(data: dict) -> dict[str, tuple[int, int]]:
    """For each AutoSeM row: on how many of the seeds it shares with best single (dev) its kept set
    holds the task best single chose on dev (of how many)."""
    picks = {s: (v.get("detail") or {}).get("chosen") for s, v in data.get("best single (dev)", {}).items()}
    held = {}
    for label in ("AutoSeM (online, no pruning)", "AutoSeM (online, pruned)", "AutoSeM (sampler)"):
        runs = {s: (v.get("detail") or {}).get("selected") for s, v in data.get(label, {}).items()}
        seeds = [s for s in runs if runs[s] is not None and picks.get(s)]
        if seeds:
            held[label] = (sum(picks[s] in runs[s] for s in seeds), len(seeds))
    return held


def short_runs(url: str, study_name: str, data: dict, scale: dict) -> dict[int, dict[str, float]]:
    """Seed → arm → the dev score of the sampler stage 1's run of that arm (``none``: the primary
    alone), its first finished or pruned one (a repeat takes the same run), for the seeds the
    AutoSeM (sampler) row finished."""
    import optuna
    from optuna.trial import TrialState

    out = {}
    for seed in data.get("AutoSeM (sampler)", {}):
        name = f"{stage_prefix(study_name, 'autosem-sampler', seed, scale)}.stage1"
        try:
            study = optuna.load_study(study_name=name, storage=url)
        except KeyError:
            continue
        runs: dict[str, float] = {}
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
            if t.value is not None:
                runs.setdefault(t.params["aux_task"], t.value)
        out[seed] = runs
    return out


def short_run_evidence(short: dict[int, dict[str, float]], data: dict) -> dict | None:
    """How the sampler stage 1's short runs read the candidates against their full 1:1 runs (the
    ``single`` rows): candidates at or below the primary alone in each, the mean Spearman correlation
    of the two dev scores per seed, and the short-run rank of the task best single (dev) chose."""
    import pandas as pd

    singles, base = data.get("_singles", {}), data.get("primary-only", {})
    below_short = below_full = n = 0
    rhos, ranks, of = [], [], 0
    for seed, runs in sorted(short.items()):
        tasks = [t for t in runs if t != "none"]
        if "none" not in runs or seed not in base or not all(seed in singles.get(t, {}) for t in tasks):
            continue
        full = {t: singles[t][seed]["dev"] for t in tasks}
        below_short += sum(runs[t] <= runs["none"] for t in tasks)
        below_full += sum(full[t] <= base[seed]["dev"] for t in tasks)
        n, of = n + len(tasks), len(tasks)
        rhos.append(pd.Series([runs[t] for t in tasks]).rank().corr(pd.Series([full[t] for t in tasks]).rank()))
        pick = max(tasks, key=full.get)
        ranks.append(sorted(tasks, key=lambda t: -runs[t]).index(pick) + 1)
    if not n:
        return None
    rho = float(pd.Series(rhos).mean())
    return dict(below_short=below_short, below_full=below_full, n=n, rho=rho, ranks=ranks, of=of)


def figure(results: dict[str, tuple[Suite, dict, str]], path: Path) -> None:
    """Each row's paired test difference from primary-only with its 95 % interval, one panel per suite."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [label for label in ROWS.values() if label != "primary-only"]
    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 4.2), squeeze=False, sharey=True)
    for ax, (name, (suite, data, metric)) in zip(axes[0], results.items(), strict=True):
        base = data.get("primary-only", {})
        reach = 0.01
        for i, label in enumerate(labels):
            diff = paired(data[label], base) if data.get(label) else None
            if diff is None:
                ax.text(0, i, "not run yet", ha="center", va="center", fontsize=8, color="0.5")
                continue
            reach = max(reach, *(abs(v) for v in (diff["mean"], diff["low"], diff["high"]) if not math.isnan(v)))
            err = None if math.isnan(diff["low"]) else [[diff["mean"] - diff["low"]], [diff["high"] - diff["mean"]]]
            color = "tab:green" if diff["low"] > 0 else "tab:red" if diff["high"] < 0 else "tab:gray"
            ax.errorbar(diff["mean"], i, xerr=err, fmt="o", color=color, capsize=3)
            ax.text(diff["mean"], i + 0.28, f"{diff['mean']:+.3f} (n={diff['n']})", ha="center", fontsize=7)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlim(-1.15 * reach, 1.15 * reach)
        ax.set_ylim(len(labels) - 0.5, -0.7)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_title(f"{name}: {suite.primary} ({suite.max_train or 'all'} train)", fontsize=10)
        ax.set_xlabel(f"test {metric} − primary-only (paired, 95 % CI)")
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def search_curves(url: str, study, suite: Suite, data: dict, scale: dict) -> dict[str, list[tuple[int, float, int]]]:
    """Test gain over primary-only against training steps, had each search stopped after ``k`` runs
    (read from the runs already made, nothing trained): ``label -> [(steps, mean Δ test, seeds)]``.

    * the hand search (best single (dev)) over ``k`` of the candidates: the best dev among the ``k``
      1:1 runs, averaged over every subset of ``k`` candidates;
    * each AutoSeM row after its first ``k`` stage-2 runs: stage 1's steps plus those runs' (pruned
      ones with the steps they ran), the answer the best dev among the finished ones."""
    import itertools

    import optuna
    from optuna.trial import TrialState

    from auxopt.objective import run_cost
    from auxopt.storage import retried_trials

    base = {s: v["test"] for s, v in data.get("primary-only", {}).items()}
    singles = data.get("_singles", {})
    curves: dict[str, list[tuple[int, float, int]]] = {}
    seeds = sorted(set(base).intersection(*(set(runs) for runs in singles.values()))) if singles else []
    for k in range(1, len(singles) + 1) if seeds else ():
        gains, steps = [], []
        for seed in seeds:
            for subset in itertools.combinations(singles, k):
                best = max(subset, key=lambda c: singles[c][seed]["dev"])
                gains.append(singles[best][seed]["test"] - base[seed])
                steps.append(sum(singles[c][seed]["steps"] for c in subset))
        curves.setdefault(ROWS["single"], []).append(
            (round(statistics.mean(steps)), statistics.mean(gains), len(seeds))
        )
    for key in ("autosem-online", "autosem-pruned"):
        by_k: dict[int, list[tuple[int, float]]] = {}
        for seed in sorted(set(data.get(ROWS[key], {})) & set(base)):
            prefix = stage_prefix(study.study_name, key, seed, scale)
            try:
                stage1 = optuna.load_study(study_name=f"{prefix}.stage1", storage=url)
                stage2 = optuna.load_study(study_name=f"{prefix}.stage2", storage=url)
            except KeyError:
                continue
            spent = sum(run_cost(t)[0] for t in stage1.get_trials(deepcopy=False))
            best = None
            # a retry stands where the run it retries was started (its worker died; the search went on)
            trials = sorted(stage2.get_trials(deepcopy=False), key=lambda t: (retried_trials(t)[:1] or [t.number])[0])
            k = 0
            for t in trials:
                spent += run_cost(t)[0]
                if t.state not in (TrialState.COMPLETE, TrialState.PRUNED):
                    continue  # a failed attempt: its steps count, its retry is the run
                k += 1
                if t.state == TrialState.COMPLETE and (best is None or t.value > best.value):
                    best = t
                if best is not None:
                    by_k.setdefault(k, []).append((spent, best.user_attrs["test_metric"] - base[seed]))
        for _k, points in sorted(by_k.items()):
            curves.setdefault(ROWS[key], []).append(
                (round(statistics.mean(p for p, _ in points)), statistics.mean(g for _, g in points), len(points))
            )
    return curves


def curve_lines(curves: dict[str, list[tuple[int, float, int]]]) -> list[str]:
    if not curves:
        return []
    lines = [
        "Gain against compute, had each search stopped after k runs (from the runs above, nothing "
        "retrained; `payoff.search_curves`): mean test gain over primary-only, at the mean training "
        "steps spent (AutoSeM's include stage 1).",
        "",
        "| search | k = 1 | 2 | 3 | 4 | 5 | 6 | seeds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, points in curves.items():
        cells = [f"{g:+.3f} @ {steps}" for steps, g, _ in points][:6]
        cells += [""] * (6 - len(cells))
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {max(n for _, _, n in points)} |")
    return [*lines, ""]


def repeats(url: str) -> str:
    """The check of what that reuse rests on: settings trained more than once in the file's AutoSeM
    studies, and how many of them gave the same dev and test scores every time."""
    import optuna

    from auxopt.propose import settings_key

    scores: dict[str, list] = {}
    for name in optuna.get_all_study_names(url):
        if ".autosem-" not in name:
            continue
        for t in optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False):
            if t.state.name == "COMPLETE" and "config" in t.user_attrs and "reused_from" not in t.user_attrs:
                run = (t.value, t.user_attrs.get("test_metric"))
                scores.setdefault(settings_key(t.user_attrs["config"]), []).append(run)
    twice = [set(v) for v in scores.values() if len(v) > 1]
    same = sum(len(v) == 1 for v in twice)
    return f"Determinism, checked: of {len(twice)} settings trained more than once, {same} gave the same scores."


def report(url: str, suites: dict[str, Suite], scale_name: str, write: bool, args) -> None:
    import optuna

    scale = SCALES[scale_name]
    title = (
        TITLE if scale_name == "cpu" else TITLE.replace("Payoff benchmark", f"Payoff benchmark at {scale_name} scale")
    )
    results, lines = {}, [*_common.header(title)]
    shown = url.removeprefix("sqlite:///")
    with contextlib.suppress(ValueError):
        shown = str(Path(shown).resolve().relative_to(REPO))
    s = scale
    lines += [
        f"- Setting ({scale_name} scale): model {s['model']}, max length {s['max_length']}, batch {s['batch_size']}, "
        f"{s['steps']} steps a run, lr {s['lr'] or 'default'} (AdamW, 10 % warm-up, linear decay), dev every "
        f"{s['eval_every']} steps, test scored at the best dev step; seeds 0, 1, … (the seeds column says "
        "how many), the same for every row. AutoSeM: stage 1 online (one run at constant lr) or sampler "
        "trials (at least "
        f"{s['stage1_trials']}, two per arm, of {s['steps'] // 2} steps), "
        f"kept: the tasks whose undecayed win rate beats the median task's (at most 3); stage 2 "
        f"{s['stage2_trials']} runs over ratios 1/8 … 4 of the primary's (log scale, or off), the first being "
        "the best kept task alone (1:1), the primary alone, equal mixing and the stage-1 utilities, "
        "then the GP; every run finishes in the "
        "'no pruning' row, the others stop runs that trail with the median rule from half a run on "
        "(auxopt.pruners.search_pruner; "
        f"the first three points always finish). AANG, ATTITTUD: library defaults "
        f"(ATTITTUD over all candidates, its auxiliary minibatch cycling through them).",
        f"- Study file: `{shown}` (resumable; `auxopt dashboard --storage sqlite:///{shown}`).",
        "- Δ: paired difference of test scores from primary-only over the seeds both rows have, mean and "
        "95 % t-interval; W/T/L: seeds where the row beat / tied / lost to primary-only. Compute: every "
        "training step the row spent, search included, and its wall time.",
        f"- AutoSeM's searches take a run another search of the file trained with the same settings "
        f"instead of training it again, and count it at its cost (auxopt's `reuse_from`). {repeats(url)}",
        "",
    ]
    for name, suite in suites.items():
        try:
            study = optuna.load_study(study_name=f"payoff-{name}", storage=url)
        except KeyError:
            continue
        from auxopt import load_task

        metric = load_task(suite.primary).metric
        data = collect(study, suite, scale)
        results[name] = (suite, data, metric)
        lines += suite_lines(name, suite, data, metric, scale)
        lines += short_run_lines(short_run_evidence(short_runs(url, f"payoff-{name}", data, scale), data), scale)
        lines += curve_lines(search_curves(url, study, suite, data, scale))
        found = study.user_attrs.get("contamination", {})
        pairs = [p for p in found.get("pairs", found.get("overlaps", [])) if p.get("count")]
        lines += [
            "Contamination check (auxopt.check_overlap, normalised exact match against the primary's "
            "dev and test): "
            + (
                "; ".join(
                    f"{p['split']} ← {p['source']} {p['source_split']}: {p['count']} of {p['size']}" for p in pairs
                )
                if pairs
                else "no overlap"
            )
            + ".",
            "",
        ]
    if not results:
        print("nothing to report yet")
        return
    if args.figure:
        figure(results, Path(args.figure))
    if write:  # docs/payoff.png is the cpu scale's (the README shows it); other scales get their own
        path = FIGURE if scale_name == "cpu" else FIGURE.with_name(f"payoff-{scale_name}.png")
        figure(results, path)
        lines.append(f"![paired differences](../docs/{path.name})")
    _common.publish(title, lines, write)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    parser.add_argument("--suites", default=",".join(SUITES), help="comma-separated suites")
    parser.add_argument("--primary", help="your own primary task (a folder or a name under AUXOPT_DATA)")
    parser.add_argument("--max-train", type=int, help="cap on --primary's training set")
    parser.add_argument("--candidates", help="comma-separated candidate auxiliaries for --primary")
    parser.add_argument("--rows", help=f"comma-separated rows to run (default all: {', '.join(ROWS)})")
    parser.add_argument("--seeds", type=int, help="seeds per row (default: the scale's)")
    parser.add_argument("--storage", help="study storage URL (default sqlite:///benchmarks/payoff-<scale>.db)")
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the study file")
    parser.add_argument(
        "--gpus", help="GPUs the workers use, such as 0,2 (default: every visible GPU; dealt out in turn)"
    )
    parser.add_argument(
        "--reset-running",
        action="store_true",
        help="fail and redo every RUNNING run (when no other worker is alive, e.g. on another machine)",
    )
    parser.add_argument("--report", action="store_true", help="only read the study file and report")
    parser.add_argument("--figure", metavar="PATH", help=f"draw the figure to PATH (--write draws {FIGURE})")
    _common.add_threads_option(parser)
    parser.add_argument("--write", action="store_true", help=f"write the tables into {_common.RESULTS}")
    args = parser.parse_args(argv)
    scale = SCALES[args.scale]
    if args.threads is None:
        args.threads = scale["threads"]
    _common.apply_threads(args)
    suites = suite_from_args(args)
    only = None if not args.rows else [r for r in args.rows.split(",") if r]
    for bad in [r for r in only or [] if r not in ROWS]:
        parser.error(f"unknown row {bad!r}; rows: {', '.join(ROWS)}")
    url = args.storage or f"sqlite:///{HERE / f'payoff-{args.scale}.db'}"
    seeds = args.seeds or scale["seeds"]

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    signal.signal(signal.SIGTERM, _interrupt)  # a run stopped by `kill` is failed, not left RUNNING
    if args.report:  # runs whose local worker died are failed, so that the file holds no stale RUNNING run
        for name in suites:
            with contextlib.suppress(KeyError):
                _reap(optuna.load_study(study_name=f"payoff-{name}", storage=url), url, scale)
    if args.workers > 1 and not args.report:
        argv = list(sys.argv[1:] if argv is None else argv)
        if "--workers" in argv:
            del argv[argv.index("--workers") : argv.index("--workers") + 2]
        argv = [a for a in argv if not a.startswith("--workers=") and a not in ("--write", "--reset-running")]
        if args.reset_running:  # here, once, before any worker claims a run
            for name, suite in suites.items():
                _reap(open_study(url, f"payoff-{name}", settings(suite, scale)), url, scale, everyone=True)
        from auxopt.train.runtime import DEVICE_ENV
        from auxopt.worker import parse_gpus, placement, worker_devices

        if "--gpus" in argv:
            del argv[argv.index("--gpus") : argv.index("--gpus") + 2]
        devices = worker_devices(args.workers, parse_gpus(args.gpus))
        print(f"payoff: {args.workers} workers {placement(devices)}", flush=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads or 1)}
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, *argv, "--workers", "1"], env={**env, DEVICE_ENV: d} if d else env
            )
            for d in devices
        ]
        codes = [p.wait() for p in procs]
        if any(codes):
            return max(codes)
    elif not args.report:
        for name, suite in suites.items():
            primary, auxiliaries = load_suite(suite, scale)
            study = open_study(url, f"payoff-{name}", settings(suite, scale))
            check_suite(study, primary, auxiliaries)
            work(
                study,
                url,
                jobs(suite, scale, seeds, only),
                job_rows(suite, scale),
                primary,
                auxiliaries,
                scale,
                reset=args.reset_running,
            )
    report(url, suites, args.scale, args.write, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
