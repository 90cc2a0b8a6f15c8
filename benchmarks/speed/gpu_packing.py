"""Trials packed on one GPU: the aggregate training steps/s of 1, 2, 4 and 8 worker processes sharing
a device, each running :func:`auxopt.train.train` as a trial does.

Each worker is a fresh process, placed the way ``auxopt run --workers N`` places its workers
(:func:`auxopt.worker.worker_devices`, the ``AUXOPT_DEVICE`` environment variable), and runs the
throughput benchmark's auxopt run (``train_throughput.run_auxopt``: MiniLM, texts of exactly
``--max-length`` tokens, W warm-up + N timed steps). The workers start together; each reports its
timed window. The aggregate is the workers' timed steps over the span from the first window's start
to the last one's end (so a worker that finished early does not count as running), the per-worker
rate the median of the workers' own steps/s.

    python benchmarks/speed/gpu_packing.py --workers 1,2,4,8 --write          # on a GPU machine
    python benchmarks/speed/gpu_packing.py --models tiny --workers 1,2 --steps 5 --max-length 32   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # benchmarks/: _common
sys.path.insert(0, str(HERE))  # train_throughput

import _common  # noqa: E402

REPO = HERE.parents[1]
TITLE = "Trials packed on one GPU (benchmarks/speed/gpu_packing.py)"


def worker(args) -> int:
    """One worker: time the throughput benchmark's auxopt run, write the window as JSON."""
    import torch
    import train_throughput as tt

    from auxopt.train.runtime import resolve_device

    torch.set_num_threads(args.threads)
    device = resolve_device("auto")  # AUXOPT_DEVICE, as in a worker of auxopt run
    _, task = tt.long_text_task(args.task, args.max_length, args.batch_size)
    offset = time.time() - time.perf_counter()  # perf_counter stamps → wall-clock, comparable across processes
    timing = tt.run_auxopt(args.model, task, args, device, args.warmup, args.steps, compile=args.compile or False)
    out = {
        "device": str(device),
        "steps": timing.steps,
        "seconds": timing.seconds,
        "start": timing.extra["start"] + offset,
        "end": timing.extra["end"] + offset,
    }
    Path(args.worker_json).write_text(json.dumps(out))
    return 0


def run_packed(n: int, args) -> dict:
    from auxopt.worker import worker_devices

    devices = worker_devices(n, None)
    with tempfile.TemporaryDirectory(prefix="auxopt-packing-") as tmp:
        procs = []
        for i, device in enumerate(devices):
            env = dict(os.environ)
            if device is not None:
                env["AUXOPT_DEVICE"] = device
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--worker-json",
                f"{tmp}/{i}.json",
                "--models",
                args.model,
                "--steps",
                str(args.steps),
                "--warmup",
                str(args.warmup),
                "--batch-size",
                str(args.batch_size),
                "--max-length",
                str(args.max_length),
                "--task",
                args.task,
                "--threads",
                str(args.threads),
            ]
            if args.compile:
                cmd += ["--compile", args.compile]
            procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        errors = [p.communicate()[1] for p in procs]
        failed = [(i, e) for i, (p, e) in enumerate(zip(procs, errors, strict=True)) if p.returncode != 0]
        if failed:
            raise SystemExit(f"{len(failed)} of {n} workers failed; the first said:\n{failed[0][1][-3000:]}")
        windows = [json.loads(Path(f"{tmp}/{i}.json").read_text()) for i in range(n)]
    span = max(w["end"] for w in windows) - min(w["start"] for w in windows)
    steps = sum(w["steps"] for w in windows)
    return dict(
        workers=n,
        devices=[w["device"] for w in windows],
        aggregate=steps / span,
        per_worker=statistics.median(w["steps"] / w["seconds"] for w in windows),
        span=span,
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2,4,8", help="comma-separated worker counts")
    parser.add_argument("--models", dest="model", default="minilm", help="one model: minilm, tiny, ...")
    parser.add_argument("--steps", type=int, default=200, help="timed steps per worker")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per worker")
    parser.add_argument("--compile", default="", help="TrainConfig(compile=...) for every worker (default: off)")
    parser.add_argument("--write", action="store_true", help=f"write the section into {_common.RESULTS}")
    parser.add_argument("--worker-json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    _common.use_shared_data()
    if args.worker_json:
        return worker(args)
    try:
        counts = [int(x) for x in args.workers.split(",")]
    except ValueError:
        parser.error(f"--workers must be comma-separated integers, not {args.workers!r}")
    if any(n < 1 for n in counts) or args.steps < 1 or args.warmup < 1:
        parser.error("--workers, --steps and --warmup must be >= 1")
    import torch

    where = torch.cuda.get_device_name() if torch.cuda.is_available() else "the CPU (no GPU)"
    results = []
    for n in counts:
        r = run_packed(n, args)
        results.append(r)
        print(
            f"[gpu_packing] {n} worker(s) on {', '.join(sorted(set(map(str, r['devices']))))}: aggregate "
            f"{r['aggregate']:.1f} steps/s, per worker {r['per_worker']:.1f} steps/s",
            flush=True,
        )
    one = results[0]["aggregate"] if results[0]["workers"] == 1 else None
    lines = [
        *_common.header(TITLE),
        f"- Setting: {where}; every worker a fresh process placed as `auxopt run --workers N` places them, "
        f"running `auxopt.train.train` on {args.model}, batch {args.batch_size} × {args.max_length} tokens, "
        f"{args.warmup} warm-up + {args.steps} timed steps, {args.threads} CPU thread(s) each"
        + (f", compile {args.compile}" if args.compile else "")
        + ". Aggregate = all workers' timed steps / (last window's end − first window's start).",
        "",
        "| workers | devices | aggregate steps/s | per worker steps/s (median) | aggregate / 1 worker |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        from auxopt.worker import placement

        ratio = "–" if one is None else f"{r['aggregate'] / one:.2f}"
        lines.append(
            f"| {r['workers']} | {placement(r['devices'])} | {r['aggregate']:.1f} | {r['per_worker']:.1f} | {ratio} |"
        )
    _common.publish(TITLE, lines, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
