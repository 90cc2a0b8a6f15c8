"""Time per ask+tell of ``ThompsonTaskSampler`` on studies with many finished trials, side by side
with Optuna's ``RandomSampler`` in the same run (InMemoryStorage; 11 arms).

    python benchmarks/speed/thompson_overhead.py --write
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common

import _common  # noqa: E402

TITLE = "Thompson sampler overhead (benchmarks/speed/thompson_overhead.py)"
ARMS = ["none", *(f"task_{i}" for i in range(10))]


def populated_study(sampler, n: int, seed: int = 0):
    import optuna
    from optuna.distributions import CategoricalDistribution

    rng = np.random.default_rng(seed)
    dist = {"aux_task": CategoricalDistribution(ARMS)}
    study = optuna.create_study(direction="maximize", sampler=sampler)
    arms = rng.integers(0, len(ARMS), size=n)
    values = rng.normal(size=n) + 0.1 * arms
    study.add_trials(
        [
            optuna.trial.create_trial(params={"aux_task": ARMS[a]}, distributions=dist, value=float(v))
            for a, v in zip(arms, values, strict=True)
        ]
    )
    return study


def time_ask_tell(study, repeats: int) -> tuple[float, float]:
    """(first ask+tell in ms — rebuilds any cache from storage, median of the next ``repeats`` in ms)."""
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        trial = study.ask()
        trial.suggest_categorical("aux_task", ARMS)
        study.tell(trial, float(i % 3))
        times.append(time.perf_counter() - start)
    return times[0] * 1e3, float(np.median(times[1:])) * 1e3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)

    import optuna

    from auxopt.samplers import ThompsonTaskSampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        result = {}
        for name, factory in (
            ("ThompsonTaskSampler", lambda: ThompsonTaskSampler(seed=0)),
            ("RandomSampler", lambda: optuna.samplers.RandomSampler(seed=0)),
        ):
            study = populated_study(factory(), n)
            result[name] = time_ask_tell(study, args.repeats)
        rows.append((n, result))
        print(n, result, flush=True)

    lines = [
        *_common.header(TITLE),
        f"- Setting: InMemoryStorage pre-filled with N finished trials over 11 arms; then "
        f"{args.repeats} ask+suggest+tell in a row, median reported; 'first' is the first ask+tell "
        "on the pre-filled study, which replays all N trials into the posterior cache.",
        "",
        "| finished trials | Thompson first (ms) | Thompson ask+tell (ms) | Random ask+tell (ms) "
        "| ratio Thompson / Random |",
        "|---|---|---|---|---|",
    ]
    for n, r in rows:
        t_first, t = r["ThompsonTaskSampler"]
        _, rnd = r["RandomSampler"]
        lines.append(f"| {n:,} | {t_first:.1f} | {t:.2f} | {rnd:.2f} | {t / rnd:.2f} |")
    _common.publish(TITLE, lines, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
