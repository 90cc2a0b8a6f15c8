"""What publishing auxopt's plots to optuna-dashboard costs: ``auxopt.dashboard.publish`` on SQLite
studies of growing size (every plot kind present), side by side with one quickstart training run in
the same process, so the overhead of publishing every 5 trials reads as a fraction of training.

    python benchmarks/speed/dashboard_publish.py --scale ci
    python benchmarks/speed/dashboard_publish.py --scale cpu --write
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common

import _common  # noqa: E402

TITLE = "Dashboard publishing cost (benchmarks/speed/dashboard_publish.py)"
SCALES = {"ci": ([20, 100], 3), "cpu": ([20, 100, 500], 5), "gpu": ([20, 100, 500, 2000], 5)}
ARMS = ["none", "helpful_0", "neutral_0", "harmful_0"]
EVERY = 5


def populated_study(url: str, n: int, seed: int = 0):
    """A study of ``n`` finished trials carrying every record auxopt plots."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from auxopt.samplers import ThompsonTaskSampler

    rng = np.random.default_rng(seed)
    dists = {"aux_task": CategoricalDistribution(ARMS), "aux_ratio": FloatDistribution(0.5, 3.0)}
    sampler = ThompsonTaskSampler(seed=seed)
    study = optuna.create_study(storage=url, direction="maximize", sampler=sampler)
    study.set_user_attr("metric", "accuracy")
    steps = list(range(50, 301, 50))
    trials = []
    pulls = dict.fromkeys(ARMS, 0)
    for _ in range(n):
        arm = ARMS[int(rng.integers(len(ARMS)))]
        ratio = float(rng.uniform(0.5, 3.0))
        value = 0.7 + 0.03 * (ARMS.index(arm) % 2) - 0.02 * (ratio - 1.5) ** 2 + rng.normal(0, 0.01)
        pulls[arm] += 1
        attrs = {
            "curve": [[s, value - 0.1 * math.exp(-s / 100)] for s in steps],
            "config": {"primary": "primary", "ratios": {"primary": 1, arm: ratio}, "lr": 1e-3},
            "test_metric": value - 0.01,
            "thompson_posterior_mean": {a: 0.5 for a in ARMS},
            "thompson_pulls": dict(pulls),
            "aang_weights": {
                "steps": steps,
                "objectives": [f"obj{j}" for j in range(20)],
                "weights": rng.dirichlet(np.ones(20), len(steps)).tolist(),
                "primary_weight": [1.0] * len(steps),
            },
            "grad_parts": {
                "steps": steps,
                **{k: rng.random(len(steps)).tolist() for k in ("pos", "neg", "perp", "prim")},
            },
        }
        trials.append(
            optuna.trial.create_trial(
                params={"aux_task": arm, "aux_ratio": ratio},
                distributions=dists,
                value=float(value),
                user_attrs=attrs,
            )
        )
    study.add_trials(trials)
    return study, sampler


def quickstart_trial_seconds() -> float:
    """Wall time of one quickstart training run (300 steps, tiny model), after a warm-up run."""
    from auxopt import TrainConfig, make_synthetic_suite
    from auxopt.train import train

    suite = make_synthetic_suite(n_helpful=1, n_neutral=1, n_harmful=1, seed=0)
    config = TrainConfig(
        suite.primary,
        suite.auxiliaries,
        ratios={"primary": 1, "helpful_0": 2},
        model="tiny",
        max_steps=300,
        eval_every=50,
        max_length=32,
        batch_size=32,
    )
    train(dataclasses.replace(config, max_steps=20))  # warm-up
    start = time.perf_counter()
    train(config)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="ci")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    sizes, repeats = SCALES[args.scale]

    import optuna

    from auxopt._optuna import dashboard_plotly_graph_objects, storage_of, study_id
    from auxopt.dashboard import publish

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    train_s = quickstart_trial_seconds()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for n in sizes:
            url = f"sqlite:///{folder}/b{n}.db"
            study, sampler = populated_study(url, n)
            times = []
            for _ in range(repeats + 1):
                start = time.perf_counter()
                ids = publish(study, sampler)
                times.append(time.perf_counter() - start)
            attrs = storage_of(study).get_study_system_attrs(study_id(study))
            stored = sum(len(v) for v in dashboard_plotly_graph_objects(attrs).values())
            median = float(np.median(times[1:]))
            rows.append((n, len(ids), times[0], median, stored, median / (EVERY * train_s)))
            print(
                f"{n:>5} trials: {len(ids)} plots, first {times[0]:.2f} s, median {median:.2f} s, "
                f"{stored / 1024:.0f} KiB stored, {100 * rows[-1][-1]:.1f}% of {EVERY} trials",
                flush=True,
            )
    print(f"one quickstart trial (300 steps, tiny model): {train_s:.2f} s")

    lines = _common.header(TITLE) + [
        "",
        f"`auxopt.dashboard.publish` on SQLite studies whose trials carry every record auxopt plots "
        f"(Thompson, ratio, AANG with 20 objectives, ATTITTUD, dev curve); {repeats} repeats after a "
        f"first call (which includes imports). One quickstart training run (300 steps, tiny model) "
        f"took **{train_s:.2f} s** in the same process; the last column is the median publish time "
        f"over {EVERY} such trials (auxopt publishes every {EVERY} trials).",
        "",
        "| trials | plots | first call (s) | median (s) | figures stored (KiB) | overhead vs 5 trials |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for n, k, first, median, stored, ratio in rows:
        lines.append(f"| {n} | {k} | {first:.2f} | {median:.2f} | {stored / 1024:.0f} | {100 * ratio:.1f}% |")
    _common.publish(TITLE, lines, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
