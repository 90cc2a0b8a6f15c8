"""Run every auxopt benchmark at one scale and regenerate the results file.

    AUXOPT_DATA=../shared/data python benchmarks/run_all.py --scale ci    # a few minutes: smoke run
    AUXOPT_DATA=../shared/data python benchmarks/run_all.py --scale cpu   # under an hour on 2 cores
    AUXOPT_DATA=../shared/data python benchmarks/run_all.py --scale gpu   # one H100/H200

Each benchmark is its own script (``python benchmarks/NAME.py --help``) and writes its own ``##``
section (machine, date, its exact command, its tables); this script runs them one after another in
fresh processes with the arguments of the chosen scale, then writes a "Suite run" section with what
ran and how long each took. ``--scale ci`` writes to ``benchmarks/RESULTS-ci.md`` (not kept in git)
unless ``--results`` says otherwise, so a smoke run never replaces measured figures.

At ``cpu`` scale the three per-method end-task scripts (``autosem_end_task``, ``aang_end_task``,
``attittud_end_task``) and the real-data half of ``mixing_search`` take hours together; the results
table covers their methods on four tasks within the hour, so they run only with ``--end-tasks``.
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

#: benchmark -> scale -> its arguments (without --write); None: not run at that scale
SUITE: dict[str, dict[str, list[str] | None]] = {
    "train_throughput": {
        "ci": ["--models", "tiny", "--steps", "20", "--warmup", "3", "--max-length", "32"],
        "cpu": ["--models", "tiny,minilm", "--max-length", "64"],
        "gpu": ["--models", "tiny,minilm"],
    },
    "thompson_overhead": {
        "ci": ["--sizes", "1000", "--repeats", "5"],
        "cpu": ["--sizes", "1000,10000", "--repeats", "20"],
        "gpu": ["--sizes", "1000,10000", "--repeats", "50"],
    },
    "mixing_latency": {
        "ci": ["--sizes", "50", "--repeats", "2"],
        "cpu": ["--sizes", "50,100", "--repeats", "5"],
        "gpu": ["--sizes", "50,100", "--repeats", "10"],
    },
    "thompson_selection": {"ci": ["--scale", "ci"], "cpu": ["--scale", "ci"], "gpu": ["--scale", "gpu"]},
    "mixing_search": {
        "ci": ["--scale", "ci"],
        "cpu": ["--scale", "ci", "--seeds", "4", "--no-real"],
        "gpu": ["--scale", "cpu", "--seeds", "8"],
    },
    "grad_correctness": {"ci": ["--scale", "ci"], "cpu": ["--scale", "cpu"], "gpu": ["--scale", "gpu"]},
    "grad_overhead": {"ci": ["--scale", "ci"], "cpu": ["--scale", "ci"], "gpu": ["--scale", "gpu"]},
    "storage_throughput": {"ci": ["--scale", "ci"], "cpu": ["--scale", "ci"], "gpu": ["--scale", "cpu"]},
    "dashboard_publish": {"ci": ["--scale", "ci"], "cpu": ["--scale", "cpu"], "gpu": ["--scale", "cpu"]},
    "results_table": {"ci": ["--scale", "ci"], "cpu": ["--scale", "cpu"], "gpu": ["--scale", "gpu"]},
}
END_TASKS: dict[str, dict[str, list[str]]] = {
    "autosem_end_task": {"ci": ["--scale", "ci"], "cpu": ["--scale", "cpu"], "gpu": ["--scale", "gpu"]},
    "aang_end_task": {"ci": ["--scale", "ci"], "cpu": ["--scale", "cpu"], "gpu": ["--scale", "gpu"]},
    "attittud_end_task": {"ci": ["--scale", "ci"], "cpu": ["--scale", "cpu"], "gpu": ["--scale", "gpu"]},
}


def plan(scale: str, end_tasks: bool, only: list[str] | None) -> list[tuple[str, list[str]]]:
    suite = {**SUITE, **END_TASKS} if end_tasks or scale == "gpu" else dict(SUITE)
    if only:
        unknown = sorted(set(only) - set(SUITE) - set(END_TASKS))
        if unknown:
            raise SystemExit(f"unknown benchmark(s) {unknown}; known: {sorted({**SUITE, **END_TASKS})}")
        suite = {name: {**SUITE, **END_TASKS}[name] for name in only}
    return [(name, args[scale]) for name, args in suite.items() if args.get(scale) is not None]


def write_args(name: str, results: Path) -> list[str]:
    # train_throughput takes the file to update; the others write benchmarks/RESULTS.md, or the file
    # named by AUXOPT_RESULTS (see _common.RESULTS)
    return ["--write", str(results)] if name == "train_throughput" else ["--write"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=("ci", "cpu", "gpu"), default="ci")
    parser.add_argument("--results", type=Path, help="the file to regenerate (default: by scale)")
    parser.add_argument("--only", help="comma-separated benchmarks to run (default: the whole suite)")
    parser.add_argument("--end-tasks", action="store_true",
                        help="also run the per-method end-task scripts (hours at cpu scale)")
    parser.add_argument("--keep-going", action="store_true", help="run the rest when one fails")
    args = parser.parse_args(argv)

    results = args.results or (HERE / ("RESULTS-ci.md" if args.scale == "ci" else "RESULTS.md"))
    results = results.resolve()
    env = {**os.environ, "AUXOPT_RESULTS": str(results)}
    runs = []
    failed = []
    for name, extra in plan(args.scale, args.end_tasks, args.only.split(",") if args.only else None):
        command = [sys.executable, str(HERE / f"{name}.py"), *extra, *write_args(name, results)]
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
        f"- Scale {args.scale}; results file {results.name}; total {total / 60:.1f} min.",
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
