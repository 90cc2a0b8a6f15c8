"""The paper-style results table: every method of auxopt on real end tasks with MiniLM.

Rows (same primary task, same auxiliaries, same final budget of ``steps`` training steps a run):

* **primary-only** — the primary task alone;
* **all-equal** — round-robin over the primary and its auxiliaries (ratios 1:1:…);
* **AutoSeM** — stage 1 (an online Thompson run of ``steps`` steps over the auxiliaries), then
  stage 2 (``trials`` runs of ``steps`` steps over the mixing ratios of the kept tasks,
  MixingRatioSampler); the reported run is stage 2's best on dev;
* **AANG** — ``AANG(k, update_every)``: online weighting over the primary's generated objective
  space (its own text, plus ``domain.txt`` where the task has one);
* **ATTITTUD** — ``GradientDecomposer(k, m, every, eta=(1, 1, 0))`` over the auxiliaries (each step a
  primary and an auxiliary minibatch; the conflicting in-span part of the auxiliary gradient dropped);
* **UPGrad (torchjd)** — ``JacobianDescent("upgrad")``: the peer baseline from an existing library,
  the same primary + auxiliary minibatch each step, combined by torchjd's UPGrad aggregator.

Dev is the best primary dev score over evaluations; test is scored at that step (a task without a
test split — rte — has one carved from train by ``load_task``, seed 0). The compute columns are per
row and seed, summed over the primary tasks: training steps (AutoSeM's search included) and wall time.

    AUXOPT_DATA=../shared/data python benchmarks/results_table.py --scale cpu --write
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
from autosem_end_task import run_autosem  # noqa: E402

TITLE = "Results table (benchmarks/results_table.py)"
ROWS = ("primary-only", "all-equal", "AutoSeM", "AANG", "ATTITTUD", "UPGrad (torchjd)")
#: primary task -> its auxiliary tasks (a related one first, then a sentence task)
TASKS = {
    "citation_intent": ["chemprot", "sst2"],
    "chemprot": ["citation_intent", "sst2"],
    "rte": ["wnli", "sst2"],
    "sst2": ["mr", "trec"],
}
SCALES = {
    "ci": dict(model="tiny", seeds=1, steps=20, eval_every=10, max_length=32, batch_size=8, lr=None,
               max_train=300, max_eval=200, trials=2, startup=1, k=2, m=8, every=10, aang_k=2),
    "cpu": dict(model="minilm", seeds=3, steps=48, eval_every=24, max_length=40, batch_size=8, lr=2e-4,
                max_train=2000, max_eval=400, trials=2, startup=1, k=3, m=8, every=16, aang_k=2),
    "gpu": dict(model="minilm", seeds=3, steps=1000, eval_every=100, max_length=128, batch_size=32, lr=5e-5,
                max_train=None, max_eval=None, trials=10, startup=4, k=10, m=32, every=10, aang_k=3),
}


def load(name: str, scale: dict):
    """The task, with train capped at ``max_train`` and dev/test at ``max_eval`` (seeded subsets),
    so that evaluation does not dominate a short CPU run; None means the whole split."""
    import dataclasses

    import numpy as np

    from auxopt import load_task

    kw = {"labels": ["0", "1"]} if name in ("mr", "subj") else {}
    task = load_task(name, max_train=scale["max_train"], **kw)
    cap = scale["max_eval"]

    def subset(split):
        if split is None or cap is None or len(split) <= cap:
            return split
        return split.subset(np.sort(np.random.default_rng(0).choice(len(split), cap, replace=False)))

    return dataclasses.replace(task, dev=subset(task.dev), test=subset(task.test))


def base_config(scale: dict) -> dict:
    base = {k: scale[k] for k in ("model", "max_length", "batch_size", "eval_every")}
    base.update(max_steps=scale["steps"], eval_batch_size=128)
    if scale["lr"] is not None:
        base["lr"] = scale["lr"]
    return base


def run_one(row: str, primary, auxiliaries, scale: dict, seed: int) -> dict:
    from auxopt.grad import GradientDecomposer
    from auxopt.objectives import AANG
    from auxopt.train import TrainConfig, train
    from auxopt.train.jd import JacobianDescent

    base = base_config(scale)
    if row == "AutoSeM":
        return run_autosem(primary, auxiliaries, base, scale, seed)
    kwargs: dict = {}
    tasks = auxiliaries
    if row == "primary-only":
        tasks = []
    elif row == "AANG":
        tasks, kwargs = [], {"objectives": AANG(k=scale["aang_k"], update_every=2)}
    elif row == "ATTITTUD":
        kwargs = {"decomposer": GradientDecomposer(k=scale["k"], m=scale["m"], every=scale["every"],
                                                   eta=(1.0, 1.0, 0.0))}
    elif row == "UPGrad (torchjd)":
        kwargs = {"decomposer": JacobianDescent("upgrad")}
    start = time.perf_counter()
    result = train(TrainConfig(primary, tasks, seed=seed, **kwargs, **base))
    return dict(dev=result.best_dev, test=result.test_at_best, steps=result.steps,
                wall=time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated primary tasks")
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows")
    _common.add_threads_option(parser)
    parser.add_argument("--write", action="store_true", help=f"write the table into {_common.RESULTS}")
    args = parser.parse_args(argv)
    _common.apply_threads(args)

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    scale = SCALES[args.scale]
    names = [t for t in args.tasks.split(",") if t]
    rows = [r for r in args.rows.split(",") if r]
    for bad in [t for t in names if t not in TASKS] + [r for r in rows if r not in ROWS]:
        parser.error(f"unknown task or row {bad!r} (tasks: {', '.join(TASKS)}; rows: {', '.join(ROWS)})")

    results: dict[tuple[str, str], list[dict]] = {}
    metrics: dict[str, str] = {}
    notes: list[str] = []
    for name in names:
        primary = load(name, scale)
        auxiliaries = [load(a, scale) for a in TASKS[name]]
        metrics[name] = primary.metric
        for seed in range(scale["seeds"]):
            for row in rows:
                out = run_one(row, primary, auxiliaries, scale, seed)
                results.setdefault((row, name), []).append(out)
                print(f"{name} seed {seed} {row}: dev {out['dev']:.4f} test {out['test']} "
                      f"steps {out['steps']} wall {out['wall']:.0f} s", flush=True)
                if row == "AutoSeM":
                    notes.append(f"{name} seed {seed}: kept {out['selected'] or 'none'}, ratios {out['ratios']}")

    lines = [
        *_common.header(TITLE),
        f"- Setting: model {scale['model']}, max length {scale['max_length']}, batch {scale['batch_size']}, "
        f"{scale['steps']} steps a run (lr {scale['lr'] or 'default'}, dev evaluated every "
        f"{scale['eval_every']} steps), train capped at {scale['max_train'] or 'all'} examples a task and "
        f"dev/test at {scale['max_eval'] or 'all'} (seeded subsets); {scale['seeds']} seed(s). Auxiliaries: "
        + "; ".join(f"{p} ← {', '.join(a)}" for p, a in TASKS.items() if p in names) + ".",
        f"- AutoSeM: online stage 1 of {scale['steps']} steps, stage 2 of {scale['trials']} runs "
        f"({scale['startup']} Sobol/warm start, then GP). AANG: k = {scale['aang_k']}, weights updated "
        f"every 2 steps. ATTITTUD: k = {scale['k']}, m = {scale['m']}, basis every {scale['every']} "
        "steps, η = (1, 1, 0). UPGrad: torchjd's aggregator on the encoder's parameters.",
        "- Cells: test score (mean ± sd over seeds) at the best dev step, in the task's metric (in the "
        "header; chemprot's accuracy is the micro-F1 its papers report).",
        "",
        "| row | " + " | ".join(f"{n} ({metrics[n]})" for n in names)
        + " | training steps per seed | wall time per seed |",
        "|---|" + "---|" * (len(names) + 2),
    ]
    for row in rows:
        cells = [_common.mean_sd([v["test"] for v in results[(row, n)]]) for n in names]
        steps = sum(statistics.mean(v["steps"] for v in results[(row, n)]) for n in names)
        wall = sum(statistics.mean(v["wall"] for v in results[(row, n)]) for n in names)
        lines.append(f"| {row} | " + " | ".join(cells) + f" | {steps:.0f} | {wall:.0f} s |")
    lines += ["", "Dev scores (mean ± sd), the same runs:", "",
              "| row | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for row in rows:
        lines.append(f"| {row} | " + " | ".join(_common.mean_sd([v["dev"] for v in results[(row, n)]]) for n in names) + " |")
    if notes:
        lines += ["", "- AutoSeM's choices: " + "; ".join(notes)]
    _common.publish(TITLE, lines, args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
