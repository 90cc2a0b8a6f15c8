"""Time per suggestion of ``MixingRatioSampler`` (AutoSeM stage 2) — the GP fit plus the acquisition
search in ``sample_relative`` — on studies with 50 and 100 finished trials over 6 float mixing ratios
in [0, 5], side by side with Optuna's ``GPSampler`` in the same run.

    python benchmarks/speed/mixing_latency.py --write
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common

import _common  # noqa: E402

TITLE = "Mixing-ratio sampler latency (benchmarks/speed/mixing_latency.py)"
N_PARAMS = 6
LOW, HIGH = 0.0, 5.0


def _names() -> list[str]:
    return [f"ratio_{i}" for i in range(N_PARAMS)]


def _value(x: np.ndarray, rng: np.random.Generator) -> float:
    """A smooth function of the ratios with an interior optimum, plus noise (dev accuracy-like)."""
    optimum = np.linspace(0.8, 3.7, N_PARAMS)
    return float(0.9 - 0.01 * np.sum((x - optimum) ** 2) + 0.005 * rng.normal())


def populated_study(sampler, n: int, seed: int = 0, running: int = 0):
    """An InMemoryStorage study pre-filled (``add_trials``) with ``n`` COMPLETE trials, and
    ``running`` RUNNING ones (asked by the sampler itself, never told)."""
    import optuna
    from optuna.distributions import FloatDistribution

    rng = np.random.default_rng(seed)
    dists = {name: FloatDistribution(LOW, HIGH) for name in _names()}
    study = optuna.create_study(direction="maximize", sampler=sampler)
    trials = []
    for _ in range(n):
        x = rng.uniform(LOW, HIGH, size=N_PARAMS)
        params = dict(zip(_names(), map(float, x), strict=True))
        trials.append(optuna.trial.create_trial(params=params, distributions=dists, value=_value(x, rng)))
    study.add_trials(trials)
    for _ in range(running):  # other workers' trials, left RUNNING: the sampler's pending points
        trial = study.ask()
        for name in _names():
            trial.suggest_float(name, LOW, HIGH)
    return study


def time_suggestions(study, repeats: int) -> tuple[float, list[float]]:
    """(first suggestion in s, the next ``repeats`` in s). A suggestion is ``ask`` plus the six
    ``suggest_float`` calls (the first one runs ``sample_relative``: GP fit + acquisition search);
    each trial is then told FAIL, which both samplers ignore, so every suggestion sees the same
    ``n`` finished trials and no pending ones."""
    from optuna.trial import TrialState

    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        trial = study.ask()
        for name in _names():
            trial.suggest_float(name, LOW, HIGH)
        times.append(time.perf_counter() - start)
        study.tell(trial, state=TrialState.FAIL)
    return times[0], times[1:]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="50,100")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--running", default="0,1", help="RUNNING trials present while timing (comma-separated)")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)

    import optuna
    import torch

    from auxopt.samplers import MixingRatioSampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    load_start = _common.load_average()
    threads = torch.get_num_threads()
    samplers = {  # name: (factory, torch threads for the whole suggestion)
        "Mixing": (lambda: MixingRatioSampler(seed=0), threads),
        "GPSampler": (lambda: optuna.samplers.GPSampler(seed=0), threads),
        "GPSampler 1 thread": (lambda: optuna.samplers.GPSampler(seed=0), 1),
    }
    rows = []
    cases = [(int(n), int(r)) for r in args.running.split(",") for n in args.sizes.split(",")]
    for n, running in cases:
        result = {}
        for name, (factory, n_threads) in samplers.items():
            study = populated_study(factory(), n, running=running)
            torch.set_num_threads(n_threads)
            try:
                first, times = time_suggestions(study, args.repeats)
            finally:
                torch.set_num_threads(threads)
            result[name] = (first, float(np.median(times)), float(np.max(times)))
            print(n, running, name, f"first {first:.3f} s, median {result[name][1]:.3f} s", flush=True)
        rows.append((f"{n}" + (f" (+{running} running)" if running else ""), result))

    lines = [
        f"## {TITLE}",
        "",
        f"- Date: {_common.today()}",
        f"- Machine: {_common.machine()} ({threads} torch threads)",
        f"- Load average (1, 5, 15 min) at the start / end of the run: {load_start} / {_common.load_average()}",
        f"- Command: `{_common.command_line()}`",
        f"- Setting: InMemoryStorage pre-filled (`study.add_trials`) with N COMPLETE trials over "
        f"{N_PARAMS} float ratios in [{LOW:g}, {HIGH:g}] (a smooth noisy function); then "
        f"{args.repeats} suggestions in a row, each `ask` + {N_PARAMS} `suggest_float` "
        "(`sample_relative`: GP fit + acquisition search) and told FAIL so that N stays fixed; "
        "median and max reported, 'first' separately (it also pays one-off lazy imports). With "
        "'+1 running', one more trial stays RUNNING throughout (another worker's): MixingRatioSampler "
        "then believes it at its posterior mean (the kriging believer) and maximises log EI, "
        "GPSampler maximises quasi-MC qLogEI with it pending. "
        "Both samplers at their defaults: `MixingRatioSampler(seed=0)` (closed-form MAP fit; "
        "analytic log EI; 4 restarts from 128 raw samples, at most 10 L-BFGS-B "
        "iterations each; its GP step always runs on one CPU thread) and "
        f"`GPSampler(seed=0)` with the process's {threads} torch threads, and again with "
        "`torch.set_num_threads(1)` for the whole suggestion.",
        "",
        "| finished trials | sampler | first (s) | median (s) | max (s) | median / Mixing |",
        "|---|---|---|---|---|---|",
    ]
    for n, r in rows:
        base = r["Mixing"][1]
        for name, (first, med, worst) in r.items():
            label = "MixingRatioSampler" if name == "Mixing" else name
            lines.append(f"| {n} | {label} | {first:.3f} | {med:.3f} | {worst:.3f} | {med / base:.2f} |")
    section = "\n".join(lines) + "\n"
    print(section)
    if args.write:
        _common.write_section(_common.RESULTS, TITLE, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
