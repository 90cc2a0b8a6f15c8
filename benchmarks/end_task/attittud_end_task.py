"""ATTITTUD on a real end task: does decomposing the auxiliary gradient beat the obvious baselines?

Primary task: trec (6 classes, accuracy) with little data (``max_train`` training examples);
auxiliary task: mr (movie-review polarity). Rows, each over several seeds, all the same number of
steps:

* **primary-only** — trec alone;
* **multitask** — round-robin trec / mr (auxopt's plain step);
* **PCGrad-like** — ``GradientDecomposer(eta="pcgrad")``: each step a trec and an mr minibatch; the
  part of the mr gradient along the trec gradient is dropped when it conflicts;
* **ATTITTUD (η search)** — ``GradientDecomposer(k, m, every, eta)`` for each η in a small grid; per
  seed the η with the best trec dev score is reported (its test score at the best dev step), and
  every η's own mean is listed too.

Dev is the best trec dev accuracy over evaluations; test is scored at that step.

    AUXOPT_DATA=../shared/data python benchmarks/end_task/attittud_end_task.py --scale cpu --write
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common

import _common  # noqa: E402

TITLE = "ATTITTUD end task (benchmarks/end_task/attittud_end_task.py)"
SCALES = {
    "ci": dict(
        model="tiny",
        seeds=1,
        steps=60,
        max_train=200,
        aux_train=500,
        max_length=32,
        batch_size=16,
        eval_every=30,
        k=5,
        m=16,
        every=10,
        etas=[(1.0, 1.0, 0.0)],
    ),
    "cpu": dict(
        model="tiny",
        seeds=3,
        steps=300,
        max_train=300,
        aux_train=3000,
        max_length=32,
        batch_size=16,
        eval_every=50,
        k=5,
        m=32,
        every=10,
        etas=[(1.0, 1.0, 0.0), (0.0, 1.0, 0.0)],
    ),
    "gpu": dict(
        model="minilm",
        seeds=3,
        steps=1000,
        max_train=300,
        aux_train=None,
        max_length=64,
        batch_size=32,
        eval_every=100,
        k=10,
        m=32,
        every=10,
        etas=[(1.0, 1.0, 0.0), (0.0, 1.0, 0.0), (0.5, 1.0, 0.0), (1.0, 1.0, 1.0)],
    ),
}


def run(primary, aux, scale: dict, seed: int, decomposer=None, with_aux: bool = True) -> dict:
    from auxopt.train import TrainConfig, train

    base = {k: scale[k] for k in ("model", "max_length", "batch_size", "eval_every")}
    config = TrainConfig(
        primary,
        [aux] if with_aux else [],
        max_steps=scale["steps"],
        seed=seed,
        decomposer=decomposer,
        eval_batch_size=256,
        **base,
    )
    result = train(config)
    return dict(dev=result.best_dev, test=result.test_at_best, wall=result.wall_time)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=SCALES, default="ci")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    scale = SCALES[args.scale]

    from auxopt import load_task
    from auxopt.grad import GradientDecomposer

    primary = load_task("trec", max_train=scale["max_train"])
    aux = load_task("mr", max_train=scale["aux_train"])
    results: dict[str, list[dict]] = {}

    def add(name, r):
        results.setdefault(name, []).append(r)
        print(name, r, flush=True)

    for seed in range(scale["seeds"]):
        add("primary-only", run(primary, aux, scale, seed, with_aux=False))
        add("multitask", run(primary, aux, scale, seed))
        add("PCGrad-like", run(primary, aux, scale, seed, GradientDecomposer(eta="pcgrad")))
        per_eta = []
        for eta in scale["etas"]:
            spec = GradientDecomposer(k=scale["k"], m=scale["m"], every=scale["every"], eta=eta)
            r = run(primary, aux, scale, seed, spec)
            add(f"ATTITTUD η={eta}", r)
            per_eta.append(r)
        best = max(per_eta, key=lambda r: r["dev"])
        add("ATTITTUD (η chosen on dev)", {**best, "wall": sum(r["wall"] for r in per_eta)})

    def fmt(values):
        mean = statistics.mean(values)
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{mean:.4f} ± {sd:.4f}"

    lines = [
        *_common.header(TITLE),
        f"- Setting: primary trec ({scale['max_train']} training examples; full dev and test), auxiliary mr "
        f"({scale['aux_train'] or 'all'} training examples); model {scale['model']}, {scale['steps']} steps, "
        f"batch {scale['batch_size']} per task, length {scale['max_length']}, dev every {scale['eval_every']} "
        f"steps; ATTITTUD k = {scale['k']}, m = {scale['m']}, basis every {scale['every']} steps, "
        f"η_prim = 1, whole encoder; {scale['seeds']} seed(s), mean ± standard deviation.",
        "- Multitask takes one minibatch a step (trec and mr alternate); PCGrad-like and ATTITTUD take a "
        "trec and an mr minibatch every step. 'η chosen on dev' picks, per seed, the η with the best dev "
        "score; its wall time is the whole search.",
        "",
        "| method | trec dev accuracy | trec test accuracy | wall time per run (s) |",
        "|---|---|---|---|",
    ]
    for name, rs in results.items():
        lines.append(
            f"| {name} | {fmt([r['dev'] for r in rs])} | {fmt([r['test'] for r in rs])} | "
            f"{statistics.mean(r['wall'] for r in rs):.1f} |"
        )
    _common.publish(TITLE, lines, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
