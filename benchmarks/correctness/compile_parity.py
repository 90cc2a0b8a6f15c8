"""Does the compiled step train the same models? ``TrainConfig(compile=...)`` against the eager step,
on paired seeds: the same task, model and settings, one run per (seed, mode), test scored at the best
dev step. Reported: each mode's dev and test, the paired difference compiled − eager with its 95 %
interval, and each run's wall time.

    python benchmarks/correctness/compile_parity.py --scale gpu --write     # MiniLM, citation_intent, 3 seeds
    python benchmarks/correctness/compile_parity.py --scale ci              # smoke run: tiny, synthetic

The runs are independent processes started together (``--parallel`` at a time), so the GPU is
shared; wall times are therefore not a speed figure (the throughput benchmark is).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # benchmarks/: _common

import _common  # noqa: E402

REPO = HERE.parents[1]
TITLE = "Compiled step parity (benchmarks/correctness/compile_parity.py)"
SCALES = {
    "ci": dict(task=None, model="tiny", max_steps=30, eval_every=15, seeds=2, batch_size=16, max_length=32),
    "gpu": dict(
        task="citation_intent", model="minilm", max_steps=800, eval_every=100, seeds=3, batch_size=32, max_length=128
    ),
}


def one_run(args) -> int:
    import time

    from auxopt.tasks import load_task, make_synthetic_suite
    from auxopt.train import TrainConfig, train

    scale = SCALES[args.scale]
    task = (
        load_task(scale["task"])
        if scale["task"]
        else make_synthetic_suite(n_helpful=0, n_neutral=0, n_harmful=0).primary
    )
    mode = {"off": False, "default": True}.get(args.mode, args.mode)
    started = time.perf_counter()
    result = train(
        TrainConfig(
            task,
            model=scale["model"],
            max_steps=scale["max_steps"],
            eval_every=scale["eval_every"],
            batch_size=scale["batch_size"],
            max_length=scale["max_length"],
            seed=args.seed,
            compile=mode,
            on_overlap="ignore",
        )
    )
    out = dict(dev=result.best_dev, test=result.test_at_best, wall=time.perf_counter() - started, device=result.device)
    Path(args.run_json).write_text(json.dumps(out))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=SCALES, default="ci")
    parser.add_argument("--modes", default="off,reduce-overhead", help="comma-separated: off and compile modes")
    parser.add_argument("--parallel", type=int, default=6, help="runs at a time")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--write", action="store_true", help=f"write the section into {_common.RESULTS}")
    parser.add_argument("--run-json", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    _common.use_shared_data()
    if args.run_json:
        import torch

        torch.set_num_threads(args.threads)
        return one_run(args)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if modes[0] != "off" or len(modes) < 2:
        parser.error("--modes must start with off (the baseline) and name at least one compile mode")
    scale = SCALES[args.scale]
    jobs = [(seed, mode) for seed in range(scale["seeds"]) for mode in modes]
    results: dict[str, dict[int, dict]] = {m: {} for m in modes}
    with tempfile.TemporaryDirectory(prefix="auxopt-parity-") as tmp:
        for start in range(0, len(jobs), args.parallel):
            batch = jobs[start : start + args.parallel]
            procs = []
            for seed, mode in batch:
                cmd = [sys.executable, __file__, "--scale", args.scale, "--threads", str(args.threads)]
                cmd += ["--run-json", f"{tmp}/{seed}-{mode}.json", "--seed", str(seed), "--mode", mode]
                procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
            for (seed, mode), p in zip(batch, procs, strict=True):
                err = p.communicate()[1]
                if p.returncode != 0:
                    raise SystemExit(f"run seed {seed} mode {mode} failed:\n{err[-3000:]}")
                results[mode][seed] = json.loads(Path(f"{tmp}/{seed}-{mode}.json").read_text())
                r = results[mode][seed]
                print(
                    f"[compile_parity] seed {seed} {mode}: dev {r['dev']:.4f} test {r['test']:.4f} ({r['wall']:.0f} s)"
                )
    from auxopt.stats import paired_difference

    base = results["off"]
    device = next(iter(base.values()))["device"]
    lines = [
        *_common.header(TITLE),
        f"- Setting: {scale['task'] or 'synthetic primary'}, {scale['model']}, {scale['max_steps']} steps, batch "
        f"{scale['batch_size']} × {scale['max_length']}, dev every {scale['eval_every']}, test at the best dev step; "
        f"device {device}; seeds 0–{scale['seeds'] - 1}, one run per (seed, mode), {args.parallel} at a time.",
        "- Δ: paired difference compiled − eager over the seeds, mean [95 % t-interval].",
        "",
        "| mode | dev per seed | test per seed | Δ dev | Δ test | wall per run (s) |",
        "|---|---|---|---|---|---|",
    ]

    def delta(mode, key):
        d = paired_difference({s: r[key] for s, r in results[mode].items()}, {s: r[key] for s, r in base.items()})
        return "–" if mode == "off" or d is None else f"{d.mean:+.4f} [{d.low:+.4f}, {d.high:+.4f}]"

    for mode in modes:
        runs = [results[mode][s] for s in sorted(results[mode])]
        dev = ", ".join(f"{r['dev']:.4f}" for r in runs)
        test = ", ".join(f"{r['test']:.4f}" for r in runs)
        wall = ", ".join(f"{r['wall']:.0f}" for r in runs)
        lines.append(f"| {mode} | {dev} | {test} | {delta(mode, 'dev')} | {delta(mode, 'test')} | {wall} |")
    _common.publish(TITLE, lines, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
