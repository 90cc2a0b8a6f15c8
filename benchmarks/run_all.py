"""Run every auxopt benchmark at one scale and regenerate the results file.

    AUXOPT_DATA=../shared/data python benchmarks/run_all.py --scale ci    # a few minutes: smoke run
    AUXOPT_DATA=../shared/data python benchmarks/run_all.py --scale cpu   # the short ones (--full: hours)
    AUXOPT_DATA=../shared/data python benchmarks/run_all.py --scale gpu   # one H100/H200

Each benchmark is its own script (``python benchmarks/NAME.py --help``) and writes its own ``##``
section (machine, date, its exact command, its tables); this script runs them one after another in
fresh processes with the arguments of the chosen scale, then writes a "Suite run" section with what
ran and how long each took. ``--scale ci`` writes to ``benchmarks/RESULTS-ci.md`` (not kept in git)
unless ``--results`` says otherwise, so a smoke run never replaces measured figures.

At ``cpu`` scale eight benchmarks take hours together on 2 cores (``LONG_ON_CPU``: the payoff
benchmark, the methods' step cost with MiniLM, Thompson selection, mixing-ratio search, storage throughput
and the three per-method end-task scripts); they run only with ``--full``, and their sections keep the
figures of the run their own "Command" line names. The payoff benchmark is resumable: it continues
its study file (``benchmarks/end_task/payoff-cpu.db``) where the last run stopped.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _common  # noqa: E402

TITLE = "Suite run (benchmarks/run_all.py)"

#: benchmark -> scale -> its arguments (without --write). The cpu arguments are the ones the
#: sections of RESULTS.md were measured with.
SUITE: dict[str, dict[str, list[str]]] = {
    "train_throughput": {
        "ci": ["--models", "tiny", "--steps", "20", "--warmup", "3", "--max-length", "32"],
        "cpu": ["--hf-trainer", "on"],
        "gpu": ["--hf-trainer", "on"],
    },
    "trainer_overhead": {
        "ci": ["--steps", "3", "--models", "tiny"],
        "cpu": ["--steps", "30", "--models", "tiny", "minilm", "--threads", "1"],
        "gpu": ["--steps", "100", "--models", "tiny", "minilm"],
    },
    "gpu_packing": {
        "ci": ["--models", "tiny", "--workers", "1,2", "--steps", "5", "--warmup", "2", "--max-length", "32"],
        "cpu": ["--models", "tiny", "--workers", "1,2", "--steps", "100"],
        "gpu": ["--workers", "1,2,4,8"],
    },
    "thompson_overhead": {"ci": ["--sizes", "1000", "--repeats", "5"], "cpu": [], "gpu": []},
    "mixing_latency": {"ci": ["--sizes", "50", "--repeats", "2"], "cpu": [], "gpu": []},
    "pruner_replay": {"ci": ["--orders", "2"], "cpu": [], "gpu": []},  # reads payoff-cpu.db: no training
    "compile_parity": {
        "ci": ["--scale", "ci", "--modes", "off,default"],
        "cpu": ["--scale", "ci", "--modes", "off,default"],
        "gpu": ["--scale", "gpu"],
    },
    "grad_correctness": {"ci": ["--scale", "ci"], "cpu": ["--scale", "cpu"], "gpu": ["--scale", "gpu"]},
    "step_cost": {
        "ci": ["--scale", "ci"],
        "cpu": ["--scale", "cpu"],
        "gpu": ["--scale", "gpu"],
    },
    "dashboard_publish": {"ci": ["--scale", "ci"], "cpu": ["--scale", "cpu"], "gpu": ["--scale", "gpu"]},
    # the long ones: at cpu scale only with --full (hours together on 2 cores)
    "payoff": {"ci": ["--scale", "ci"], "cpu": ["--scale", "cpu"], "gpu": ["--scale", "gpu"]},
    "thompson_selection": {"ci": ["--scale", "ci"], "cpu": ["--scale", "cpu"], "gpu": ["--scale", "gpu"]},
    "mixing_search": {
        "ci": ["--scale", "ci"],
        "cpu": ["--scale", "cpu", "--seeds", "8"],
        "gpu": ["--scale", "cpu", "--seeds", "8"],
    },
    "storage_throughput": {"ci": ["--scale", "ci"], "cpu": ["--scale", "cpu"], "gpu": ["--scale", "gpu"]},
    "verify_report": {"ci": [], "cpu": [], "gpu": []},  # reads the verdicts auxopt verify stored
}
LONG_ON_CPU = (
    "payoff",
    "step_cost",
    "thompson_selection",
    "mixing_search",
    "storage_throughput",
)


def plan(scale: str, full: bool, only: list[str] | None) -> list[tuple[str, list[str]]]:
    if only:
        unknown = sorted(set(only) - set(SUITE))
        if unknown:
            raise SystemExit(f"unknown benchmark(s) {unknown}; known: {sorted(SUITE)}")
        names = only
    else:
        names = [n for n in SUITE if full or scale != "cpu" or n not in LONG_ON_CPU]
    return [(name, SUITE[name][scale]) for name in names]


def script(name: str) -> Path:
    """Where benchmark ``name`` lives: ``benchmarks/<speed|search|correctness|end_task>/<name>.py``."""
    found = sorted(HERE.glob(f"*/{name}.py"))
    if len(found) != 1:
        raise SystemExit(f"run_all: no single benchmark script named {name}.py under {HERE}")
    return found[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=("ci", "cpu", "gpu"), default="ci")
    parser.add_argument("--results", type=Path, help="the file to regenerate (default: by scale)")
    parser.add_argument("--only", help="comma-separated benchmarks to run (default: the whole suite)")
    parser.add_argument("--full", action="store_true", help=f"at cpu scale also run {', '.join(LONG_ON_CPU)} (hours)")
    parser.add_argument("--keep-going", action="store_true", help="run the rest when one fails")
    args = parser.parse_args(argv)

    results = args.results or (HERE / ("RESULTS-ci.md" if args.scale == "ci" else "RESULTS.md"))
    results = results.resolve()
    env = {**os.environ, "AUXOPT_RESULTS": str(results)}
    runs = []
    failed = []
    for name, extra in plan(args.scale, args.full, args.only.split(",") if args.only else None):
        command = [sys.executable, str(script(name)), *extra, "--write"]
        print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
        start = time.perf_counter()
        rc = subprocess.call(command, env=env)
        wall = time.perf_counter() - start
        runs.append((name, extra, rc, wall))
        if rc != 0:
            failed.append(name)
            print(f"=== {name} FAILED (exit {rc})", file=sys.stderr, flush=True)
            if not args.keep_going:
                break

    total = sum(r[3] for r in runs)
    lines = [
        *_common.header(TITLE),
        f"- Scale {args.scale}; results file {results.name}; total {total / 60:.1f} min."
        + (
            ""
            if args.full or args.only or args.scale != "cpu"
            else f" Not run (cpu scale without --full; their sections are from their own commands): "
            f"{', '.join(LONG_ON_CPU)}."
        ),
        "",
        "| benchmark | arguments | exit | wall time |",
        "|---|---|---|---|",
        *(f"| {name} | `{' '.join(extra)}` | {rc} | {wall:.0f} s |" for name, extra, rc, wall in runs),
    ]
    _common.RESULTS = results
    _common.publish(TITLE, lines, write=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
