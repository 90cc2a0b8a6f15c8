"""ATTITTUD's cost: time per training step with ``GradientDecomposer`` (k = 5, 10, 20; basis
refreshed every n = 1 or 10 steps) against plain multi-task training on the same batches, for the
tiny encoder and MiniLM, on this machine's device (CPU here; CUDA when present).

Rows:

* **plain (1 batch)** — auxopt's default step: one task's minibatch a step (round-robin);
* **plain (pair)** — the baseline ATTITTUD is compared with: a primary and an auxiliary minibatch
  each step, their gradients summed (the same examples ATTITTUD uses, no decomposition);
* **ATTITTUD k, n, method** — the same two minibatches, decomposition on the whole encoder, the
  primary subspace from m = 32 examples every n steps, by ``randomized`` SVD (oversample 5, 1 power
  iteration; q = 0 where noted) or ``per-example`` (the exact basis from the m × D per-example
  gradients, one vmap of grad, then the Gram matrix), side by side.

All configurations live in one process, each with its own model copy and AdamW (update included).
Rounds interleave one block of steps of every configuration, so that load on a shared machine hits
all alike; a block of an n = 10 configuration holds exactly one basis refresh.

    python benchmarks/grad_overhead.py --scale cpu --write
    python benchmarks/grad_overhead.py --scale cpu --models minilm --only "k=10, n=10,"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

TITLE = "ATTITTUD overhead (benchmarks/grad_overhead.py)"
SCALES = {
    "ci": dict(models=["tiny"], ks=[5, 10], ns=[1, 10], batch_size=16, block=10, block_n1=2,
               per_model={"tiny": dict(max_length=32, rounds=2)}),
    "cpu": dict(models=["tiny", "minilm"], ks=[5, 10, 20], ns=[1, 10], batch_size=16, block=10, block_n1=1,
                # MiniLM without k = 20: its 15 model copies with AdamW and k × D bases pass 24 GiB
                per_model={"tiny": dict(max_length=32, rounds=5), "minilm": dict(max_length=16, rounds=2, ks=[5, 10])}),
    "gpu": dict(models=["tiny", "minilm"], ks=[5, 10, 20], ns=[1, 10], batch_size=32, block=10, block_n1=5,
                per_model={"tiny": dict(max_length=64, rounds=5), "minilm": dict(max_length=128, rounds=5)}),
}


def build(model_name: str, scale: dict, threads: int):
    """Tasks, config, the initial model and the tokenised data every configuration shares."""
    import torch

    from auxopt.models import encode_split
    from auxopt.tasks import make_synthetic_suite
    from auxopt.train import TrainConfig
    from auxopt.train.loop import build_model

    torch.set_num_threads(threads)
    suite = make_synthetic_suite(n_helpful=1, n_neutral=0, n_harmful=0, n_train=400, n_aux_train=400, n_dev=50, n_test=50)
    config = TrainConfig(suite.primary, suite.auxiliaries, model=model_name, batch_size=scale["batch_size"],
                         max_length=scale["max_length"], device="auto")
    tasks = {t.name: t for t in config.tasks}
    model, tokenizer = build_model(config, list(tasks.values()))
    data = {n: encode_split(tokenizer, t, "train", config.max_length) for n, t in tasks.items()}
    return suite, config, tasks, model, tokenizer, data


def make_runner(kind: str, settings: dict, shared):
    """A fresh model copy, its step strategy and optimiser: (step function, strategy, device)."""
    import copy

    import torch

    from auxopt.grad import GradientDecomposer
    from auxopt.train.loop import resolve_device, use_bf16
    from auxopt.train.schedules import make_schedule
    from auxopt.train.step import Batches, ScheduleStep, TrainContext

    suite, config, tasks, base_model, tokenizer, data = shared
    device = resolve_device("auto")
    model = copy.deepcopy(base_model).to(device).train()
    ctx = TrainContext(
        config=config, model=model, tokenizer=tokenizer, tasks=tasks, train_data=data,
        train_labels={n: torch.as_tensor(t.train.labels) for n, t in tasks.items()},
        batches={n: Batches(len(d), config.batch_size, i) for i, (n, d) in enumerate(data.items())},
        dev_data=data[suite.primary.name], schedule=make_schedule(config.active_ratios(), "auto", seed=0),
        device=device, bf16=use_bf16("auto", device),
    )

    class PairStep(ScheduleStep):  # primary + auxiliary minibatch, gradients summed
        def backward(self, step):
            out = {}
            for name in (suite.primary.name, suite.auxiliaries[0].name):
                loss, n = ctx.loss(name, step)
                loss.backward()
                out[name] = n
            return out

    if kind == "attittud":
        spec = GradientDecomposer(k=settings["k"], m=32, every=settings["n"], power_iters=settings.get("q", 1),
                                  method=settings["method"])
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

    return step, strategy, device


METHODS = {"randomized": "randomized", "per-example": "per_example"}  # row label → GradientDecomposer.method


def measure(model_name: str, scale: dict, threads: int, rounds: int, only: list[str] | None = None) -> list[dict]:
    """Interleaved timing; the median per-step time over rounds for every configuration (those whose
    label contains one of ``only``, when given)."""
    import statistics
    import time

    import torch

    shared = build(model_name, scale, threads)
    configs = [("plain (1 batch)", "plain1", {}), ("plain (pair)", "pair", {})]
    for n in scale["ns"]:
        for k in scale["ks"]:
            for label, method in METHODS.items():
                configs.append((f"ATTITTUD k={k}, n={n}, {label}", "attittud", dict(k=k, n=n, method=method)))
    configs.append(("ATTITTUD k=10, n=10, randomized q=0", "attittud", dict(k=10, n=10, q=0, method="randomized")))
    if only:
        configs = [c for c in configs if any(part in c[0] for part in only)]
    runners = []
    for label, kind, settings in configs:
        step, strategy, device = make_runner(kind, settings, shared)
        step()  # warm-up; an ATTITTUD step computes its first basis here
        n = settings.get("n")
        block = scale["block_n1"] if n == 1 else (n or scale["block"])
        runners.append((label, step, strategy, block, []))
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for r in range(rounds):
        for _, step, _, block, times in runners:
            sync()
            start = time.perf_counter()
            for _ in range(block):
                step()
            sync()
            times.append((time.perf_counter() - start) / block)
        print(f"{model_name} round {r + 1}/{rounds}: " + ", ".join(f"{x[0]} {x[4][-1] * 1e3:.0f}ms" for x in runners), flush=True)
    out = []
    for label, _, strategy, block, times in runners:
        dim = getattr(strategy, "dim", None)
        k = int(label.split("k=")[1].split(",")[0]) if "k=" in label else 0
        out.append(dict(label=label, block=block, seconds=statistics.median(times), dim=dim,
                        basis_bytes=4 * k * (dim or 0), device=str(device)))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=SCALES, default="ci")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", help="comma-separated subset of the scale's models (tiny, minilm)")
    parser.add_argument("--only", help="';'-separated label parts: run only the rows whose label contains one "
                        "(e.g. 'k=10, n=10,;plain (1'); the plain pair row always runs, as the ratios need it")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)

    scale = SCALES[args.scale]
    rows = []
    for model in args.models.split(",") if args.models else scale["models"]:
        pm = scale["per_model"][model]
        only = None if not args.only else ["plain (pair)", *(p for p in args.only.split(";") if p.strip())]
        results = measure(model, {**scale, **pm}, args.threads, pm["rounds"], only)
        pair = next(r for r in results if r["label"] == "plain (pair)")
        rows += [(model, r, r["seconds"] / pair["seconds"]) for r in results]

    lines = [
        *_common.header(TITLE),
        f"- Setting: device {rows[0][1]['device']}, {args.threads} thread(s); synthetic primary + 1 auxiliary "
        f"task, batch {scale['batch_size']} per task; decomposition on all encoder parameters (D); basis "
        "from m = 32 primary examples, by randomised SVD (oversample p = 5, q = 1 power iteration unless "
        "noted) or per-example (exact: the m × D per-example gradients from one vmap of grad, then the "
        "m × m Gram matrix). All "
        "configurations in one process, each with its own model copy and AdamW; rounds interleave one "
        "block of steps of each (a block of an n = 10 row holds one basis refresh); median over rounds.",
        "- Ratio = time per step / the plain pair step (the same primary + auxiliary minibatches, "
        "gradients summed). Basis memory = 4·k·D bytes held between refreshes (a refresh needs for a "
        "moment about 2·(k+5)·D floats more, randomized, or m·D = 32·D, per-example); per-configuration "
        "peak RSS cannot be separated in one process and is not reported.",
        "",
        "| model | length | step | steps per block | rounds | ms / step | ratio vs plain pair | basis memory (MiB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model, r, ratio in rows:
        pm = scale["per_model"][model]
        dim = f" (D = {r['dim']:,})" if r["dim"] else ""
        lines.append(
            f"| {model}{dim} | {pm['max_length']} | {r['label']} | {r['block']} | {pm['rounds']} | "
            f"{r['seconds'] * 1e3:.1f} | {ratio:.2f} | {r['basis_bytes'] / 2**20:.1f} |"
        )
    _common.publish(TITLE, lines, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
