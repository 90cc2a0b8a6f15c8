"""ATTITTUD's cost: time per training step with ``GradientDecomposer``'s defaults (the official run's
k = 10, basis refreshed every n = 10 steps from m = 64 primary examples, η = (1, 1, −1), the encoder
without its word embeddings) against plain multi-task training on the same batches, at max lengths
48 and 128, for the tiny encoder and MiniLM, on this machine's device (CPU here; CUDA when present).

Rows (each row's decomposer is ``GradientDecomposer(**overrides)``, so the defaults are measured
as they are, whatever they become):

* **plain (1 batch)** — auxopt's default step: one task's minibatch a step (round-robin);
* **plain (pair)** — the baseline ATTITTUD is compared with: a primary and an auxiliary minibatch
  each step, their gradients summed (the same examples ATTITTUD uses, no decomposition);
* **ATTITTUD defaults** — the same two minibatches through ``GradientDecomposer()`` (``method="auto"``:
  the exact per-example basis when its m × D gradients fit in ``memory_budget``);
* **ATTITTUD defaults, randomized** — the same with the randomised-SVD basis;
* **ATTITTUD defaults, params="encoder"** — the earlier selection, word embeddings included, by the
  same exact per-example method (``memory_budget`` 8 GiB, as its m × D gradients pass 4 GiB on
  MiniLM): what leaving the word embeddings out saves.

All configurations of one (model, length) live in one process, each with its own model copy and
AdamW (update included). Rounds interleave one block of ``every`` = 10 steps of every configuration,
so that load on a shared machine hits all alike and each ATTITTUD block holds exactly one basis
refresh. The ratios are time per step over the plain pair step (and over the 1-batch step).

    python benchmarks/speed/grad_overhead.py --scale cpu --write
    python benchmarks/speed/grad_overhead.py --scale cpu --models minilm --lengths 48 --only "ATTITTUD defaults"
    python benchmarks/speed/grad_overhead.py --scale ci          # smoke run: tiny, length 16, 1 round
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common

import _common  # noqa: E402

TITLE = "ATTITTUD overhead (benchmarks/speed/grad_overhead.py)"
SCALES = {
    "ci": dict(models=["tiny"], lengths=[16], batch_size=16, per_model={"tiny": dict(rounds=1)}),
    # MiniLM without the randomized row on CPU: its l = 15 batched jvps over 64 examples of length 128
    # hold more activations than a 24 GiB machine spares (it runs on the tiny model and on a GPU)
    "cpu": dict(
        models=["tiny", "minilm"],
        lengths=[48, 128],
        batch_size=16,
        per_model={"tiny": dict(rounds=5), "minilm": dict(rounds=3, skip=["randomized"])},
    ),
    "gpu": dict(
        models=["tiny", "minilm"],
        lengths=[48, 128],
        batch_size=32,
        per_model={"tiny": dict(rounds=5), "minilm": dict(rounds=5)},
    ),
}
#: (label, kind, GradientDecomposer overrides); the first two are the plain baselines
CONFIGS = [
    ("plain (1 batch)", "plain1", None),
    ("plain (pair)", "pair", None),
    ("ATTITTUD defaults", "attittud", {}),
    ("ATTITTUD defaults, randomized", "attittud", {"method": "randomized"}),
    (
        'ATTITTUD defaults, params="encoder"',
        "attittud",
        {"params": "encoder", "method": "per_example", "memory_budget": 8 * 2**30},
    ),
]


def build(model_name: str, max_length: int, batch_size: int, threads: int):
    """Tasks, config, the initial model and the tokenised data every configuration shares."""
    import torch

    from auxopt.models import encode_split
    from auxopt.tasks import make_synthetic_suite
    from auxopt.train import TrainConfig
    from auxopt.train.loop import build_model

    torch.set_num_threads(threads)
    suite = make_synthetic_suite(
        n_helpful=1, n_neutral=0, n_harmful=0, n_train=400, n_aux_train=400, n_dev=50, n_test=50
    )
    config = TrainConfig(
        suite.primary, suite.auxiliaries, model=model_name, batch_size=batch_size, max_length=max_length, device="auto"
    )
    tasks = {t.name: t for t in config.tasks}
    model, tokenizer = build_model(config, list(tasks.values()))
    data = {n: encode_split(tokenizer, t, "train", config.max_length) for n, t in tasks.items()}
    return suite, config, tasks, model, tokenizer, data


def make_runner(kind: str, overrides: dict | None, shared):
    """A fresh model copy, its step strategy and optimiser: (step function, strategy, spec, device)."""
    import copy

    import torch

    from auxopt.grad import GradientDecomposer
    from auxopt.models.precision import use_bf16
    from auxopt.tasks.batches import Batches
    from auxopt.train.runtime import resolve_device
    from auxopt.train.schedules import make_schedule
    from auxopt.train.step import ScheduleStep, TrainContext

    suite, config, tasks, base_model, tokenizer, data = shared
    device = resolve_device("auto")
    model = copy.deepcopy(base_model).to(device).train()
    ctx = TrainContext(
        config=config,
        model=model,
        tokenizer=tokenizer,
        tasks=tasks,
        train_data=data,
        train_labels={n: torch.as_tensor(t.train.labels) for n, t in tasks.items()},
        batches={n: Batches(len(d), config.batch_size, i) for i, (n, d) in enumerate(data.items())},
        dev_data=data[suite.primary.name],
        schedule=make_schedule(config.active_ratios(), "auto", seed=0),
        device=device,
        bf16=use_bf16("auto", device),
    )

    class PairStep(ScheduleStep):  # primary + auxiliary minibatch, gradients summed
        def backward(self, step):
            out = {}
            for name in (suite.primary.name, suite.auxiliaries[0].name):
                loss, n = ctx.loss(name, step)
                loss.backward()
                out[name] = n
            return out

    spec = None
    if kind == "attittud":
        spec = GradientDecomposer(**overrides)
        strategy = spec.make_step(ctx)
    else:
        strategy = {"plain1": ScheduleStep, "pair": PairStep}[kind](ctx)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    counter = [0]

    def step():
        counter[0] += 1
        strategy.backward(counter[0])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, strategy, spec, device


def measure(
    model_name: str,
    max_length: int,
    scale: dict,
    threads: int,
    rounds: int,
    only: list[str] | None = None,
    skip: list[str] | None = None,
) -> list[dict]:
    """Interleaved timing at one max length; the median per-step time over rounds for every
    configuration (those whose label contains one of ``only``, when given, and none of ``skip``)."""
    import gc
    import statistics
    import time

    import torch

    from auxopt.grad import GradientDecomposer

    block = GradientDecomposer().every  # one basis refresh a block
    shared = build(model_name, max_length, scale["batch_size"], threads)
    configs = [
        c
        for c in CONFIGS
        if (not only or any(part in c[0] for part in only)) and not any(part in c[0] for part in skip or ())
    ]
    runners = []
    for label, kind, overrides in configs:
        step, strategy, spec, device = make_runner(kind, overrides, shared)
        step()  # warm-up; an ATTITTUD step computes its first basis here
        if spec is not None:
            label = f"{label} ({strategy.method})"
        runners.append((label, step, strategy, spec, []))
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for r in range(rounds):
        for _, step, _, _, times in runners:
            sync()
            start = time.perf_counter()
            for _ in range(block):
                step()
            sync()
            times.append((time.perf_counter() - start) / block)
        print(
            f"{model_name} length {max_length} round {r + 1}/{rounds}: "
            + ", ".join(f"{x[0]} {x[4][-1] * 1e3:.0f}ms" for x in runners),
            flush=True,
        )
    out = []
    for label, _, strategy, spec, times in runners:
        dim = getattr(strategy, "dim", None)
        out.append(
            dict(
                label=label,
                length=max_length,
                block=block,
                seconds=statistics.median(times),
                dim=dim,
                settings=None if spec is None else spec.describe(),
                basis_bytes=0 if spec is None else 4 * spec.k * dim,
                device=str(device),
            )
        )
    del runners, shared
    gc.collect()
    return out


def settings_line() -> str:
    from auxopt.grad import GradientDecomposer

    d = GradientDecomposer().describe()
    return (
        f"k = {d['k']}, every = {d['every']}, m = {d['m']}, η = {tuple(d['eta'])}, η_prim = {d['eta_prim']}, "
        f"params = {d['params']}, method = {d['method']!r} (oversample {d['oversample']}, power_iters "
        f"{d['power_iters']} for randomized), memory_budget = {d['memory_budget'] / 2**30:g} GiB"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=SCALES, default="ci")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", help="comma-separated subset of the scale's models (tiny, minilm)")
    parser.add_argument("--lengths", help="comma-separated max lengths (default: the scale's; cpu/gpu: 48,128)")
    parser.add_argument("--rounds", type=int, help="rounds per (model, length) (default: the scale's)")
    parser.add_argument(
        "--only",
        help="';'-separated label parts: run only the rows whose label contains one "
        "(e.g. 'ATTITTUD defaults;plain (1'); the plain pair row always runs, as the ratios need it",
    )
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)

    scale = SCALES[args.scale]
    models = args.models.split(",") if args.models else scale["models"]
    unknown = [m for m in models if m not in scale["per_model"]]
    if unknown:
        parser.error(f"--models: {', '.join(unknown)} not in the {args.scale} scale ({', '.join(scale['per_model'])})")
    try:
        lengths = [int(x) for x in args.lengths.split(",")] if args.lengths else scale["lengths"]
    except ValueError:
        parser.error(f"--lengths must be comma-separated integers, not {args.lengths!r}")
    if any(n < 1 for n in lengths) or (args.rounds is not None and args.rounds < 1):
        parser.error("--lengths and --rounds must be >= 1")
    only = None if not args.only else ["plain (pair)", *(p for p in args.only.split(";") if p.strip())]

    rows = []
    for model in models:
        rounds = args.rounds or scale["per_model"][model]["rounds"]
        skip = scale["per_model"][model].get("skip")
        for length in lengths:
            results = measure(model, length, scale, args.threads, rounds, only, skip)
            pair = next(r for r in results if r["label"] == "plain (pair)")
            single = next((r for r in results if r["label"] == "plain (1 batch)"), None)
            rows += [
                (
                    model,
                    rounds,
                    r,
                    r["seconds"] / pair["seconds"],
                    None if single is None else r["seconds"] / single["seconds"],
                )
                for r in results
            ]

    lines = [
        *_common.header(TITLE),
        f"- Setting: device {rows[0][2]['device']}, {args.threads} thread(s); synthetic primary + 1 auxiliary "
        f"task, batch {scale['batch_size']} per task; GradientDecomposer defaults: {settings_line()}. All "
        "configurations of a (model, length) in one process, each with its own model copy and AdamW; rounds "
        f"interleave one block of {rows[0][2]['block']} steps of each (one basis refresh per ATTITTUD block); "
        "median over rounds.",
        "- Ratio = time per step / the plain pair step (the same primary + auxiliary minibatches, "
        "gradients summed), and / the plain 1-batch step. Basis memory = 4·k·D bytes held between refreshes "
        "(a refresh needs for a moment about m·D floats more, per_example, or 2·(k+5)·D, randomized).",
        "",
        "| model | length | step | D | rounds | ms / step | ratio vs plain pair | ratio vs plain 1 batch "
        "| basis memory (MiB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model, rounds, r, ratio, ratio1 in rows:
        dim = f"{r['dim']:,}" if r["dim"] else "–"
        lines.append(
            f"| {model} | {r['length']} | {r['label']} | {dim} | {rounds} | {r['seconds'] * 1e3:.1f} | {ratio:.2f} | "
            f"{'–' if ratio1 is None else f'{ratio1:.2f}'} | {r['basis_bytes'] / 2**20:.1f} |"
        )
    _common.publish(TITLE, lines, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
