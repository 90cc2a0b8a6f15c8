"""AANG on real end tasks: primary-only vs TAPT-style MLM vs an Optuna search over the objective
space vs AANG's online weighting.

Primary tasks: citation_intent (and chemprot with ``--tasks``), macro-F1, with their ``domain.txt``
as in-domain text. Rows, each over several seeds, all the same number of steps:

* **primary-only** — the task alone;
* **TAPT-style MLM** — ``AANG(objectives=["tapt"], learn=False)``: (task, bert_op, bidirectional,
  denoise) with weight 1 beside the primary loss;
* **Optuna search** — TPE over ``ObjectiveSpace.for_task(task).suggest(trial, k=2)`` (two objective
  slots and their weights, fixed during a run) for ``trials`` trials; per seed the trial with the
  best dev score is reported (its test score at its best dev step);
* **AANG online** — ``AANG(k, update_every)`` over the whole space (51 objectives with domain text).

Dev is the best dev macro-F1 over evaluations, test is scored at that step. Cost per step is the
run's wall time divided by its steps (model loading and evaluations included, the same for every
row; tokenisation is cached by an untimed warm-up run), and its ratio to primary-only of the same
seed.

    AUXOPT_DATA=../shared/data python benchmarks/end_task/aang_end_task.py --scale cpu --write
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common

import _common  # noqa: E402

TITLE = "AANG end task (benchmarks/end_task/aang_end_task.py)"
SCALES = {
    "ci": dict(
        model="tiny",
        seeds=1,
        steps=20,
        max_length=32,
        batch_size=8,
        eval_every=10,
        trials=2,
        k=2,
        update_every=2,
        max_train=300,
        lr=None,
    ),
    "cpu": dict(
        model="minilm",
        seeds=3,
        steps=72,
        max_length=32,
        batch_size=8,
        eval_every=24,
        trials=2,
        k=2,
        update_every=2,
        max_train=None,
        lr=2e-4,
    ),
    "gpu": dict(
        model="minilm",
        seeds=3,
        steps=600,
        max_length=64,
        batch_size=32,
        eval_every=100,
        trials=8,
        k=3,
        update_every=1,
        max_train=None,
        lr=1e-4,
    ),
}


def run(task, scale, seed, objectives=None, reporter=None) -> dict:
    from auxopt.train import TrainConfig, train

    config = TrainConfig(
        task,
        model=scale["model"],
        max_length=scale["max_length"],
        batch_size=scale["batch_size"],
        eval_every=scale["eval_every"],
        max_steps=scale["steps"],
        seed=seed,
        objectives=objectives,
        lr=scale["lr"],
        eval_batch_size=128,
    )
    result = train(config, reporter)
    return dict(
        dev=result.best_dev, test=result.test_at_best, step_s=result.wall_time / result.steps, extra=result.extra
    )


def search(task, scale, seed) -> dict:
    import optuna

    from auxopt.objective import TrialReporter, record_result
    from auxopt.objectives import AANG, ObjectiveSpace
    from auxopt.train import TrainConfig, train

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = ObjectiveSpace.for_task(task)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=4))
    runs = []

    def objective(trial):
        config = TrainConfig(
            task,
            model=scale["model"],
            max_length=scale["max_length"],
            batch_size=scale["batch_size"],
            eval_every=scale["eval_every"],
            max_steps=scale["steps"],
            seed=seed,
            lr=scale["lr"],
            eval_batch_size=128,
            objectives=AANG.suggest_fixed(trial, space, k=2),
        )
        result = train(config, TrialReporter(trial, prune=False))
        record_result(trial, result)
        runs.append(
            dict(
                dev=result.best_dev,
                test=result.test_at_best,
                step_s=result.wall_time / result.steps,
                objectives=[c["objective"] for c in trial.user_attrs["aang_objectives"]],
            )
        )
        return result.best_dev

    study.optimize(objective, n_trials=scale["trials"])
    best = max(runs, key=lambda r: r["dev"])
    return dict(
        dev=best["dev"],
        test=best["test"],
        step_s=statistics.mean(r["step_s"] for r in runs),
        objectives=best["objectives"],
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=SCALES, default="ci")
    parser.add_argument("--tasks", default="citation_intent", help="comma-separated task names")
    _common.add_threads_option(parser)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    _common.apply_threads(args)
    scale = SCALES[args.scale]

    from auxopt import load_task
    from auxopt.objectives import AANG

    lines = _common.header(TITLE)
    lines += [
        "",
        f"Scale `{args.scale}`: {scale}. Dev/test: macro-F1, mean ± sd over seeds; "
        "s/step includes evaluations; ×prim = cost relative to primary-only.",
        "",
    ]
    for name in args.tasks.split(","):
        task = load_task(name, max_train=scale["max_train"])
        results: dict[str, list[dict]] = {}
        notes = []
        # untimed warm-up: tokenisation (task and domain text) is cached for every later run
        run(task, {**scale, "steps": 1, "eval_every": 1}, 0, AANG(k=scale["k"]))

        def add(row, r, results=results, name=name):
            results.setdefault(row, []).append(r)
            print(name, row, {k: v for k, v in r.items() if k != "extra"}, flush=True)

        for seed in range(scale["seeds"]):
            add("primary-only", run(task, scale, seed))
            add("TAPT-style MLM", run(task, scale, seed, AANG(objectives=["tapt"], learn=False)))
            r = search(task, scale, seed)
            notes.append(f"seed {seed}: search picked {r['objectives']}")
            add(f"Optuna TPE search ({scale['trials']} trials, k=2)", r)
            r = run(task, scale, seed, AANG(k=scale["k"], update_every=scale["update_every"]))
            notes.append(
                f"seed {seed}: AANG top objectives at the end {r['extra']['aang_top'][:3]}, "
                f"primary share {r['extra']['aang_weights']['primary_weight'][-1]}"
            )
            add(f"AANG online (k={scale['k']}, update every {scale['update_every']})", r)
        base = [r["step_s"] for r in results["primary-only"]]
        lines += [
            f"### {name} ({len(task.train)} train, {len(task.dev)} dev, "
            f"{len(task.test) if task.test else 0} test; {len(task.domain_text or ())} domain passages)",
            "",
            "| method | dev macro-F1 | test macro-F1 | s/step | ×prim |",
            "|---|---|---|---|---|",
        ]
        for row, rs in results.items():
            ratio = statistics.mean(r["step_s"] / b for r, b in zip(rs, base, strict=True))
            lines.append(
                f"| {row} | {_common.mean_sd(r['dev'] for r in rs)} | {_common.mean_sd(r['test'] for r in rs)} | "
                f"{statistics.mean(r['step_s'] for r in rs):.2f} | {ratio:.2f} |"
            )
        lines += ["", *[f"- {n}" for n in notes], ""]
    _common.publish(TITLE, lines, args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
