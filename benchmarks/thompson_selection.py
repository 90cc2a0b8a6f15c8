"""AutoSeM stage 1: how well does Thompson sampling pick the helpful auxiliary tasks?

On the synthetic suite (``make_synthetic_suite``: helpful, neutral and harmful auxiliaries with known
roles), for several seeds:

* **online** — one training run with the online Thompson schedule (the primary task and every
  auxiliary are arms; a pull is ``steps_per_pull`` minibatches; reward = primary dev did not drop);
* **sampler** — an Optuna study with ``ThompsonTaskSampler`` over ``aux_task`` (``none`` + every
  auxiliary); a trial trains primary + the chosen auxiliary (ratio 1:1); reward = the trial's dev
  accuracy is at least the mean of the primary-only trials;
* **random** — each auxiliary kept with probability 1/2 (expected precision = share of helpful
  tasks, recall = 1/2), the yardstick.

Selected = ``select_tasks(posterior, threshold)`` (posterior mean ≥ threshold, the primary arm never
counts). Precision and recall are against the helpful set.

    python benchmarks/thompson_selection.py --scale cpu --write
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

SCALES = {
    # seeds, online steps, sampler trials, steps per sampler trial
    "ci": dict(seeds=1, online_steps=300, trials=12, trial_steps=60),
    "cpu": dict(seeds=3, online_steps=1500, trials=40, trial_steps=150),
    "gpu": dict(seeds=5, online_steps=3000, trials=80, trial_steps=300),
}
TITLE = "Thompson task selection (benchmarks/thompson_selection.py)"
BASE = dict(max_length=32, batch_size=32, eval_batch_size=250, model="tiny")


def precision_recall(selected: list[str], helpful: set[str]) -> tuple[float, float]:
    hits = len(set(selected) & helpful)
    precision = hits / len(selected) if selected else 0.0
    return precision, hits / len(helpful)


def run_online(suite, steps: int, seed: int, threshold: float):
    from auxopt.samplers import select_tasks
    from auxopt.train import OnlineThompson, TrainConfig, train

    config = TrainConfig(
        suite.primary, suite.auxiliaries, schedule=OnlineThompson(steps_per_pull=10, eval_batches=2),
        max_steps=steps, eval_every=steps, seed=seed, **BASE,
    )
    start = time.perf_counter()
    result = train(config)
    posterior = {k: v for k, v in result.extra["thompson"]["posterior"].items() if k != suite.primary.name}
    return select_tasks(posterior, threshold), time.perf_counter() - start, posterior


def run_sampler(suite, trials: int, steps: int, seed: int, threshold: float):
    import optuna

    from auxopt.objective import Objective
    from auxopt.samplers import ThompsonTaskSampler, select_tasks
    from auxopt.train import TrainConfig

    names = [t.name for t in suite.auxiliaries]

    def build(trial):
        aux = trial.suggest_categorical("aux_task", ["none", *names])
        ratios = {suite.primary.name: 1} if aux == "none" else {suite.primary.name: 1, aux: 1}
        return TrainConfig(suite.primary, suite.auxiliaries, ratios=ratios, max_steps=steps,
                           eval_every=steps, seed=seed, **BASE)

    sampler = ThompsonTaskSampler(seed=seed)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial({"aux_task": "none"})  # a primary-only reference for the baseline reward
    start = time.perf_counter()
    study.optimize(Objective(build, prune=False), n_trials=trials)
    posterior = sampler.posterior(study)
    return select_tasks(posterior, threshold), time.perf_counter() - start, posterior


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--write", action="store_true", help=f"write the table into {_common.RESULTS}")
    args = parser.parse_args(argv)

    import optuna

    from auxopt.tasks import make_synthetic_suite

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    scale = SCALES[args.scale]
    rows = {"online": [], "sampler": [], "random": []}
    rng = np.random.default_rng(0)
    for seed in range(scale["seeds"]):
        suite = make_synthetic_suite(n_helpful=4, n_neutral=3, n_harmful=3, seed=seed)
        helpful = set(suite.names("helpful"))
        for method in ("online", "sampler"):
            if method == "online":
                selected, wall, posterior = run_online(suite, scale["online_steps"], seed, args.threshold)
            else:
                selected, wall, posterior = run_sampler(suite, scale["trials"], scale["trial_steps"], seed, args.threshold)
            p, r = precision_recall(selected, helpful)
            rows[method].append((p, r, len(selected), wall))
            means = {k: round(a / (a + b), 2) for k, (a, b) in posterior.items()}
            print(f"seed {seed} {method:8s} P={p:.2f} R={r:.2f} selected={sorted(selected)} {wall:.0f}s means={means}", flush=True)
        for _ in range(200):
            names = [t.name for t in suite.auxiliaries]
            selected = [n for n in names if rng.random() < 0.5]
            p, r = precision_recall(selected, helpful)
            rows["random"].append((p, r, len(selected), 0.0))

    lines = [
        *_common.header(TITLE),
        f"- Setting: synthetic suite with 10 candidates (4 helpful, 3 neutral, 3 harmful), tiny model, "
        f"{scale['seeds']} seed(s); online: one run of {scale['online_steps']} steps, 10 steps a pull, "
        f"reward on 2 dev batches; sampler: {scale['trials']} trials of {scale['trial_steps']} steps "
        f"(the first primary-only); selection threshold {args.threshold} on the posterior mean; "
        "random: each candidate kept with probability 1/2 (200 draws a seed).",
        "",
        "| method | precision (mean ± sd) | recall (mean ± sd) | tasks selected | wall time per seed |",
        "|---|---|---|---|---|",
    ]
    for method, values in rows.items():
        v = np.array(values)
        wall = "–" if method == "random" else f"{v[:, 3].mean():.0f} s"
        lines.append(
            f"| {method} | {v[:, 0].mean():.2f} ± {v[:, 0].std():.2f} | {v[:, 1].mean():.2f} ± {v[:, 1].std():.2f} "
            f"| {v[:, 2].mean():.1f} | {wall} |"
        )
    _common.publish(TITLE, lines, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
