"""The methods' step cost: time per training step of ATTITTUD and AANG (their defaults) against the
plain mixing step on the same batches, on this machine's device (CUDA when present, else the CPU).

Rows, each over the same model, batch size and length (each row's plugin is built with its
defaults, so the defaults are measured as they are, whatever they become):

* **plain (1 batch)** — auxopt's default step: one task's minibatch a step (round-robin);
* **mixing (pair)** — a primary and an auxiliary minibatch each step, their gradients summed:
  the batches ATTITTUD uses, without the decomposition (ATTITTUD's baseline);
* **ATTITTUD defaults** — the same two minibatches through ``GradientDecomposer()``;
* **mixing (AANG's batches)** — AANG's step without its weight update: the primary and the ``k``
  sampled objectives' minibatches, one backward pass of their weighted sum (``AANG(update_every=
  10**9)``, so it updates only at step 1, in the warm-up): AANG's baseline;
* **AANG defaults** — ``AANG()``: the same terms each back-propagated on its own, the dev head fitted
  and the dev gradient taken, the cosines and the weight update, every step.

Timing. All rows of one (model, length) live in one process, each with its own model copy and
AdamW (update included), and are warmed up first (``warmup`` steps each). A round times one block
of ``block`` = 10 steps of every row in turn (one ATTITTUD basis refresh per block), the device
synchronised before and after the block (``torch.cuda.synchronize``; the CPU needs none), so load
on a shared machine hits all rows alike. Per row: the median time per step over rounds and its
range; the ratio to the row's baseline is taken **within each round** (the rounds are paired) and
reported as the median and range over rounds.

    python benchmarks/speed/step_cost.py --scale cpu --write     # MiniLM, length 128, 5 rounds
    python benchmarks/speed/step_cost.py --scale gpu --write     # on CUDA: tiny and MiniLM, 9 rounds
    python benchmarks/speed/step_cost.py --scale ci              # smoke run: tiny, length 16, 2 rounds
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common

import _common  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TITLE = "Step cost of the methods (benchmarks/speed/step_cost.py)"
BLOCK = 10  # steps per timed block: one ATTITTUD basis refresh (its default every = 10)
SCALES = {
    "ci": dict(models=["tiny"], lengths=[16], batch_size=8, rounds=2, warmup=2),
    "cpu": dict(models=["minilm"], lengths=[128], batch_size=16, rounds=5, warmup=2),
    "gpu": dict(models=["tiny", "minilm"], lengths=[128], batch_size=32, rounds=9, warmup=10),
}
#: (label, kind, the baseline's label); the baselines are their own rows
ROWS = [
    ("plain (1 batch)", "plain1", None),
    ("mixing (pair)", "pair", None),
    ("ATTITTUD defaults", "attittud", "mixing (pair)"),
    ("mixing (AANG's batches)", "aang_mix", None),
    ("AANG defaults", "aang", "mixing (AANG's batches)"),
]


# ---------------------------------------------------------------------------- arithmetic


@dataclass(frozen=True)
class Spread:
    """A median and the range (lowest, highest) of a few measurements."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values) -> Spread:
        values = list(values)
        if not values:
            raise ValueError("no measurements")
        return cls(statistics.median(values), min(values), max(values))

    def text(self, scale: float = 1.0, digits: int = 2) -> str:
        return f"{self.median * scale:.{digits}f} [{self.low * scale:.{digits}f}, {self.high * scale:.{digits}f}]"


def per_step(seconds: list[float], block: int) -> list[float]:
    """Seconds per step of each timed block of ``block`` steps."""
    if block < 1:
        raise ValueError("block must be >= 1")
    return [s / block for s in seconds]


def paired_ratios(times: list[float], baseline: list[float]) -> Spread:
    """The ratio ``times[r] / baseline[r]`` within each round ``r`` (rounds interleave the rows, so
    a slow moment of the machine hits both sides of a ratio), as its median and range."""
    if len(times) != len(baseline):
        raise ValueError(f"{len(times)} rounds against {len(baseline)} of the baseline: the rounds must be paired")
    return Spread.of(t / b for t, b in zip(times, baseline, strict=True))


# ---------------------------------------------------------------------------- the rows


def build(model_name: str, max_length: int, batch_size: int):
    """The task pair (real data when ``AUXOPT_DATA`` has it, else synthetic), the config, the initial
    model and the tokenised data every row shares."""
    import torch

    from auxopt.models import encode_split
    from auxopt.train import TrainConfig
    from auxopt.train.loop import build_model

    try:  # citation_intent has a domain.txt: AANG's default space is then the whole generated space
        from auxopt.tasks import load_task

        primary, aux = load_task("citation_intent"), load_task("chemprot", max_train=2000)
    except Exception:
        from auxopt.tasks import make_synthetic_suite

        suite = make_synthetic_suite(n_helpful=1, n_neutral=0, n_harmful=0, n_train=400, n_aux_train=400, n_dev=50)
        primary, aux = suite.primary, suite.auxiliaries[0]
    config = TrainConfig(primary, [aux], model=model_name, batch_size=batch_size, max_length=max_length)
    tasks = {t.name: t for t in config.tasks}
    torch.manual_seed(0)
    model, tokenizer = build_model(config, list(tasks.values()))
    data = {n: encode_split(tokenizer, t, "train", max_length) for n, t in tasks.items()}
    dev = encode_split(tokenizer, primary, "dev", max_length)
    return config, tasks, model, tokenizer, data, dev


def make_runner(kind: str, shared):
    """A fresh model copy, its step strategy and AdamW: (step function, strategy, device)."""
    import copy

    import torch

    from auxopt.grad import GradientDecomposer
    from auxopt.models.precision import use_bf16
    from auxopt.objectives import AANG
    from auxopt.tasks.batches import Batches
    from auxopt.train.runtime import resolve_device
    from auxopt.train.schedules import make_schedule
    from auxopt.train.step import ScheduleStep, TrainContext

    config, tasks, base_model, tokenizer, data, dev = shared
    primary, aux = config.primary.name, config.auxiliaries[0].name
    device = resolve_device("auto")
    model = copy.deepcopy(base_model).to(device).train()
    ctx = TrainContext(
        config=config,
        model=model,
        tokenizer=tokenizer,
        tasks=tasks,
        train_data=data,
        train_labels={
            n: torch.as_tensor(t.train.labels, dtype=torch.long if t.kind == "classification" else torch.float32)
            for n, t in tasks.items()
        },
        batches={n: Batches(len(d), config.batch_size, i) for i, (n, d) in enumerate(data.items())},
        dev_data=dev,
        schedule=make_schedule(config.active_ratios(), "auto", seed=0),
        device=device,
        bf16=use_bf16("auto", device),
    )

    class PairStep(ScheduleStep):  # primary + auxiliary minibatch, gradients summed
        def backward(self, step):
            out = {}
            for name in (primary, aux):
                loss, n = ctx.loss(name, step)
                loss.backward()
                out[name] = n
            return out

    makers = {
        "plain1": lambda: ScheduleStep(ctx),
        "pair": lambda: PairStep(ctx),
        "attittud": lambda: GradientDecomposer().make_step(ctx),
        "aang_mix": lambda: AANG(update_every=10**9, finetune=0).make_step(ctx),
        "aang": lambda: AANG(finetune=0).make_step(ctx),
    }
    strategy = makers[kind]()  # before the optimiser: AANG attaches its objective heads to the model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    counter = [0]

    def step():
        counter[0] += 1
        strategy.backward(counter[0])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, strategy, ctx


def measure(model_name: str, max_length: int, scale: dict, rounds: int, only: list[str] | None) -> list[dict]:
    """Interleaved rounds at one (model, length): every row's per-step times, one per round."""
    import gc
    import time

    import torch

    shared = build(model_name, max_length, scale["batch_size"])
    wanted = None if not only else set(only) | {base for label, _, base in ROWS if label in only and base}
    rows = [r for r in ROWS if wanted is None or r[0] in wanted]
    runners = []
    for label, kind, baseline in rows:
        step, strategy, ctx = make_runner(kind, shared)
        for _ in range(scale["warmup"]):
            step()
        ctx.flush_checks()
        method = getattr(strategy, "method", None)
        runners.append(dict(label=label, baseline=baseline, step=step, ctx=ctx, times=[], method=method))
    sync = torch.cuda.synchronize if runners[0]["ctx"].device.type == "cuda" else (lambda: None)
    for r in range(rounds):
        for row in runners:
            sync()
            start = time.perf_counter()
            for _ in range(BLOCK):
                row["step"]()
            sync()
            row["times"].append(time.perf_counter() - start)
            row["ctx"].flush_checks()
        print(
            f"{model_name} length {max_length} round {r + 1}/{rounds}: "
            + ", ".join(f"{x['label']} {x['times'][-1] / BLOCK * 1e3:.1f}ms" for x in runners),
            flush=True,
        )
    device = str(runners[0]["ctx"].device)
    out = []
    by_label = {row["label"]: per_step(row["times"], BLOCK) for row in runners}
    for row in runners:
        times = by_label[row["label"]]
        base = by_label.get(row["baseline"])
        plain = by_label.get("plain (1 batch)")
        out.append(
            dict(
                model=model_name,
                length=max_length,
                label=row["label"] + (f" ({row['method']})" if row["method"] else ""),
                seconds=Spread.of(times),
                ratio=None if base is None else paired_ratios(times, base),
                ratio_plain=None if plain is None else paired_ratios(times, plain),
                baseline=row["baseline"],
                rounds=rounds,
                device=device,
            )
        )
    del runners, shared
    gc.collect()
    return out


# ---------------------------------------------------------------------------- main


def settings_line() -> str:
    from auxopt.grad import GradientDecomposer
    from auxopt.objectives import AANG

    d, a = GradientDecomposer().describe(), AANG().describe()
    return (
        f"ATTITTUD: k = {d['k']}, every = {d['every']}, m = {d['m']}, η = {tuple(d['eta'])}, params = "
        f"{d['params']}, method = {d['method']!r}; AANG: k = {a['k']} objectives a step of the default space "
        f"(the primary's text and its domain.txt), update_every = {a['update_every']}, dev head "
        f"{a['dev_head_steps']} L-BFGS iterations, fine-tuning phase off (it is a plain step)"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=SCALES, default="ci")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--models", help="comma-separated: tiny, minilm (default: the scale's)")
    parser.add_argument("--lengths", help="comma-separated max lengths (default: the scale's)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default: the scale's)")
    parser.add_argument("--only", help="';'-separated row labels to run (their baselines run too)")
    parser.add_argument("--write", action="store_true", help=f"write the section into {_common.RESULTS}")
    args = parser.parse_args(argv)
    scale = SCALES[args.scale]
    models = args.models.split(",") if args.models else scale["models"]
    try:
        lengths = [int(x) for x in args.lengths.split(",")] if args.lengths else scale["lengths"]
    except ValueError:
        parser.error(f"--lengths must be comma-separated integers, not {args.lengths!r}")
    rounds = args.rounds or scale["rounds"]
    if any(n < 1 for n in lengths) or rounds < 1:
        parser.error("--lengths and --rounds must be >= 1")
    only = [p.strip() for p in args.only.split(";") if p.strip()] if args.only else None
    unknown = [p for p in only or () if p not in [r[0] for r in ROWS]]
    if unknown:
        parser.error(f"--only: unknown row(s) {unknown}; the rows are {[r[0] for r in ROWS]}")
    _common.use_shared_data()
    import torch

    torch.set_num_threads(args.threads)

    results = []
    for model in models:
        for length in lengths:
            results += measure(model, length, scale, rounds, only)
    device = results[0]["device"]
    lines = [
        *_common.header(f"{TITLE}, {'CUDA' if device.startswith('cuda') else 'CPU'}"),
        f"- Setting: device {device}, {args.threads} CPU thread(s), bf16 autocast on CUDA; primary "
        "`citation_intent` with auxiliary `chemprot` (synthetic tasks where the data is absent); batch "
        f"{scale['batch_size']} per minibatch; {settings_line()}.",
        f"- Timing: every row warmed up ({scale['warmup']} steps), then {rounds} rounds, each one block of "
        f"{BLOCK} steps of every row in turn, device synchronised around each block; AdamW update included. "
        "ms / step: median [range] over rounds. Ratios are taken within each round and given as median "
        "[range]: to the row's baseline (the plain mixing step on the same batches) and to the plain "
        "1-batch step.",
        "",
        "| model | length | step | ms / step | ratio to its mixing baseline | ratio to plain (1 batch) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        ratio = "–" if r["ratio"] is None else f"{r['ratio'].text()} (vs {r['baseline']})"
        plain = "–" if r["ratio_plain"] is None else r["ratio_plain"].text()
        lines.append(
            f"| {r['model']} | {r['length']} | {r['label']} | {r['seconds'].text(1e3, 1)} | {ratio} | {plain} |"
        )
    _common.publish(lines[0][3:], lines, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
