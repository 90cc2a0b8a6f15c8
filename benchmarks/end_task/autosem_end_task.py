"""AutoSeM on a real end task: does choosing and mixing auxiliary tasks beat the obvious baselines?

Primary task: citation_intent (don't-stop-pretraining, 6 classes, macro-F1; 1,688 training examples).
Candidates: chemprot, sst2, trec and subj (4 auxiliaries). Rows, each over several seeds:

* **primary-only** — one run of ``steps`` steps on the primary task;
* **all-equal** — one run of ``steps`` steps, round-robin over the primary and every candidate (1:1:…);
* **AutoSeM** — stage 1 (one online Thompson run of ``steps`` steps), then stage 2 (``trials`` runs of
  ``steps`` steps each over the mixing ratios of the kept tasks, MixingRatioSampler); the reported
  model is stage 2's best-dev run.

Every reported model trained for the same ``steps`` (same final budget); AutoSeM additionally spent
its search (stage 1 + the other stage-2 runs), reported in the compute columns. Dev is the best
primary dev score of the run (evaluated every ``eval_every`` steps); test is scored at that step.

    AUXOPT_DATA=../shared/data python benchmarks/end_task/autosem_end_task.py --scale cpu --write
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common

import _common  # noqa: E402

TITLE = "AutoSeM end task (benchmarks/end_task/autosem_end_task.py)"
SCALES = {
    "ci": dict(
        model="tiny",
        seeds=1,
        steps=60,
        trials=2,
        startup=1,
        max_train=600,
        max_length=48,
        batch_size=16,
        eval_every=30,
        lr=None,
    ),
    "cpu": dict(
        model="minilm",
        seeds=3,
        steps=150,
        trials=3,
        startup=2,
        max_train=2000,
        max_length=48,
        batch_size=16,
        eval_every=50,
        lr=1e-4,
    ),
    "gpu": dict(
        model="minilm",
        seeds=3,
        steps=1500,
        trials=12,
        startup=4,
        max_train=None,
        max_length=128,
        batch_size=32,
        eval_every=100,
        lr=5e-5,
    ),
}
PRIMARY = "citation_intent"
CANDIDATES = {"chemprot": {}, "sst2": {}, "trec": {}, "subj": {}}


def load_tasks(max_train):
    from auxopt import load_task

    primary = load_task(PRIMARY)
    auxiliaries = [load_task(name, max_train=max_train, **kw) for name, kw in CANDIDATES.items()]
    return primary, auxiliaries


def base_config(scale: dict) -> dict:
    base = {k: scale[k] for k in ("model", "max_length", "batch_size", "eval_every")}
    base.update(max_steps=scale["steps"], eval_batch_size=128)
    if scale["lr"] is not None:
        base["lr"] = scale["lr"]
    return base


def run_fixed(primary, auxiliaries, ratios, base: dict, seed: int) -> dict:
    from auxopt.train import TrainConfig, train

    result = train(TrainConfig(primary, auxiliaries, ratios=ratios, seed=seed, **base))
    return dict(dev=result.best_dev, test=result.test_at_best, steps=result.steps, wall=result.wall_time)


def run_autosem(primary, auxiliaries, base: dict, scale: dict, seed: int) -> dict:
    from auxopt.pipelines import AutoSeM

    with tempfile.TemporaryDirectory() as folder:
        pipeline = AutoSeM(
            name=f"autosem_end_task_{seed}",
            primary=primary,
            auxiliaries=auxiliaries,
            base=base,
            stage1="online",
            stage2_trials=scale["trials"],
            n_startup_trials=scale["startup"],
            seed=seed,
            storage=f"sqlite:///{folder}/bench.db",
        )
        start = time.perf_counter()
        study = pipeline.optimize()
        wall = time.perf_counter() - start
        steps = sum(t.user_attrs.get("steps", 0) for t in study.trials)
        if pipeline.result.stage2 is not None:  # add stage 1's run
            import optuna

            stage1 = optuna.load_study(study_name=pipeline.stage1_name, storage=pipeline.storage_url())
            steps += sum(t.user_attrs.get("steps", 0) for t in stage1.trials)
    r = pipeline.result
    return dict(
        dev=r.best_dev,
        test=r.test_at_best,
        steps=steps,
        wall=wall,
        selected=r.selected,
        ratios={k: round(v, 2) for k, v in r.ratios.items()},
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    parser.add_argument("--write", action="store_true", help=f"write the table into {_common.RESULTS}")
    args = parser.parse_args(argv)

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    scale = SCALES[args.scale]
    primary, auxiliaries = load_tasks(scale["max_train"])
    base = base_config(scale)
    rows: dict[str, list[dict]] = {"primary-only": [], "all-equal": [], "AutoSeM": []}
    for seed in range(scale["seeds"]):
        out = run_fixed(primary, auxiliaries, {primary.name: 1}, base, seed)
        rows["primary-only"].append(out)
        print(f"seed {seed} primary-only {out}", flush=True)
        out = run_fixed(primary, auxiliaries, None, base, seed)
        rows["all-equal"].append(out)
        print(f"seed {seed} all-equal {out}", flush=True)
        out = run_autosem(primary, auxiliaries, base, scale, seed)
        rows["AutoSeM"].append(out)
        print(f"seed {seed} AutoSeM {out}", flush=True)

    lines = [
        *_common.header(TITLE),
        f"- Setting: primary {PRIMARY} (metric {primary.metric}), candidates {', '.join(CANDIDATES)} "
        f"(each at most {scale['max_train']} training examples); model {scale['model']}, max length "
        f"{scale['max_length']}, batch {scale['batch_size']}, {scale['steps']} steps a run, lr "
        f"{scale['lr'] or 'default'}, dev evaluated every {scale['eval_every']} steps; {scale['seeds']} "
        f"seed(s). AutoSeM: online stage 1 of {scale['steps']} steps, stage 2 of {scale['trials']} runs "
        f"({scale['startup']} Sobol/warm start, then GP).",
        "- Every reported model trained for the same number of steps; the compute columns add AutoSeM's "
        "search (stage 1 + all stage-2 runs).",
        "",
        f"| row | dev {primary.metric} (mean ± sd) | test {primary.metric} (mean ± sd) | training steps "
        "spent per seed | wall time per seed |",
        "|---|---|---|---|---|",
    ]
    for name, values in rows.items():
        dev = np.array([v["dev"] for v in values])
        test = np.array([v["test"] for v in values], dtype=float)
        steps = np.mean([v["steps"] for v in values])
        wall = np.mean([v["wall"] for v in values])
        lines.append(
            f"| {name} | {dev.mean():.3f} ± {dev.std():.3f} | {test.mean():.3f} ± {test.std():.3f} "
            f"| {steps:.0f} | {wall:.0f} s |"
        )
    chosen = "; ".join(f"seed {i}: {v['selected'] or 'none'} {v['ratios']}" for i, v in enumerate(rows["AutoSeM"]))
    lines += ["", f"- AutoSeM's choices: {chosen}"]
    _common.publish(TITLE, lines, args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
