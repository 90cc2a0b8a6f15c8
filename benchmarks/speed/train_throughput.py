"""Training throughput of auxopt's training loop: steps/s and examples/s per model.

For each model (``tiny`` and MiniLM-L6 by default) this runs :func:`auxopt.train.train` itself, on a
real task, at a fixed sequence length (128 by default), and times the training steps after a few
warm-up steps. On CUDA it also reports the peak GPU memory and, when asked (``--hf-trainer``; by
default only on CUDA), runs a plain ``transformers.Trainer`` on the same model, batch size and sequence
length and reports the ratio auxopt / Trainer.

    AUXOPT_DATA=../shared/data .venv/bin/python benchmarks/speed/train_throughput.py --write

The data. auxopt pads each batch to its longest example, and SST-2 sentences are ~20 words, so SST-2
as it is would be measured at ~40 tokens, not 128. The script therefore builds an in-memory task with
:func:`auxopt.tasks.build_task` whose texts are consecutive texts of the task (``--task``, SST-2 by
default) joined, split by split, until each has at least ``--max-length`` words (label: that of the
first joined text). Every word gives at least one WordPiece token, so every example is truncated to
exactly ``--max-length`` tokens, and so is every batch. The width of every timed batch is recorded and
printed (the "seq len" column), so the table shows the length that was really trained on.

The timing. ``train()`` runs ``W + N + 1`` steps (W warm-up, N timed) with ``eval_every`` larger than
that, so it evaluates only once, after the last step, and on one dev batch. A forward pre-hook on the
model that ``train()`` builds (installed by a ``TrainCallback``'s ``on_train_begin``; it only reads
the clock) records when each training forward starts. The time from the
start of step W+1 to the start of step W+N+1 covers exactly N whole loop iterations — batch selection,
host-to-device copy, forward, loss, backward, clipping, optimizer and scheduler step — and nothing of
the set-up (model load, tokenizer training, tokenisation) or the evaluations. On CUDA the hook
synchronises the device at those two instants only. The Trainer run is timed the same way (same hook,
on its model, same W + N + 1 steps), so the ratio compares like with like.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common

import _common  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TITLE = "Training throughput (benchmarks/speed/train_throughput.py)"
DEFAULT_STEPS = {"tiny": 100, "minilm": 30}
DEFAULT_WARMUP = {"tiny": 10, "minilm": 3}
SEED = 0


# ---------------------------------------------------------------------------- timing


class StepClock:
    """A forward pre-hook that stamps the start of every training-mode forward call.

    ``marks`` are the 0-based indices of the forwards at which the device is synchronised before the
    clock is read (on CUDA), and at which the peak GPU memory so far is read.
    """

    def __init__(self, device: torch.device, marks: tuple[int, ...]):
        self.device = device
        self.marks = set(marks)
        self.times: list[float] = []
        self.widths: list[int] = []
        self.rows: list[int] = []
        self.peak: dict[int, int] = {}

    def __call__(self, module, args, kwargs):
        if not module.training:
            return None
        ids = kwargs.get("input_ids")
        if ids is None:
            ids = next((a for a in args if isinstance(a, torch.Tensor)), None)
        self.stamp(
            int(ids.shape[0]) if ids is not None else 0, int(ids.shape[1]) if ids is not None and ids.dim() > 1 else 0
        )
        return None

    def stamp(self, rows: int, width: int) -> None:
        """Record one instant (synchronising the device first at the marks)."""
        index = len(self.times)
        if self.device.type == "cuda" and index in self.marks:
            torch.cuda.synchronize(self.device)
            self.peak[index] = torch.cuda.max_memory_allocated(self.device)
        self.times.append(time.perf_counter())
        self.rows.append(rows)
        self.widths.append(width)


@dataclass
class Timing:
    steps: int
    seconds: float
    examples: int
    widths: list[int]
    peak_bytes: int | None
    params: int
    total_seconds: float
    extra: dict = field(default_factory=dict)

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds

    @property
    def examples_per_s(self) -> float:
        return self.examples / self.seconds

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / self.steps


def read_clock(clock: StepClock, warmup: int, steps: int, params: int, total: float) -> Timing:
    if len(clock.times) < warmup + steps + 1:
        raise RuntimeError(
            f"expected at least {warmup + steps + 1} training forwards, saw {len(clock.times)}: "
            "did training stop early?"
        )
    start, end = warmup, warmup + steps
    return Timing(
        steps=steps,
        seconds=clock.times[end] - clock.times[start],
        examples=sum(clock.rows[start:end]),
        widths=clock.widths[start:end],
        peak_bytes=clock.peak.get(end),
        params=params,
        total_seconds=total,
    )


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


# ---------------------------------------------------------------------------- data


def long_text_task(source: str, max_length: int, batch_size: int):
    """An in-memory task of ``source``'s texts joined (split by split) to >= ``max_length`` words."""
    from auxopt.tasks import build_task, load_task

    base = load_task(source)

    def label_of(task, value):
        return task.labels[int(value)] if task.kind == "classification" else float(value)

    def joined(split, limit: int | None) -> list[dict]:
        records, texts, words, first = [], [], 0, None
        for text, label in zip(split.texts, split.labels, strict=True):
            if not texts:
                first = label
            texts.append(text)
            words += len(text.split())
            if words >= max_length:
                records.append({"text": " ".join(texts), "label": label_of(base, first)})
                texts, words = [], 0
                if limit is not None and len(records) >= limit:
                    break
        return records

    records = {"train": joined(base.train, None)}
    for split_name in ("dev", "test"):
        split = getattr(base, split_name)
        if split is not None:
            records[split_name] = joined(split, batch_size) or joined(base.train, batch_size)
    if len(records["train"]) < batch_size:
        raise SystemExit(
            f"task {source!r} gives only {len(records['train'])} train texts of >= {max_length} words "
            f"once joined; fewer than one batch of {batch_size}"
        )
    task = build_task(
        f"{base.name}_joined{max_length}",
        records,
        kind=base.kind,
        metric=base.metric,
        labels=list(base.labels) if base.kind == "classification" else None,
        pair=False,
        source=f"{base.source} (texts joined to >= {max_length} words)",
    )
    return base, task


# ---------------------------------------------------------------------------- auxopt


def clock_callback(clock: StepClock, captured: dict, *, rows: int = 0, width: int = 0, hook: bool = True):
    """A :class:`~auxopt.train.TrainCallback` that times the model ``train()`` builds: by ``clock`` as
    a forward pre-hook (``hook``), or, where the forward is compiled (a hook inside a compiled graph
    would be traced into it), by stamps at ``on_train_begin`` and each ``on_step_end`` (so that
    stamp ``i`` is the end of step ``i``, the start of step ``i + 1``: the same windows as the hook's)."""
    from auxopt.train import TrainCallback

    class Clocked(TrainCallback):
        def on_train_begin(self, model, tokenizer):
            if hook:
                model.register_forward_pre_hook(clock, with_kwargs=True)
            else:
                clock.stamp(rows, width)
            captured["params"] = sum(p.numel() for p in model.parameters())
            captured["tokenizer"] = tokenizer

        def on_step_end(self, step):
            if not hook:
                clock.stamp(rows, width)

    return Clocked()


def run_auxopt(
    model_name: str, task, args, device: torch.device, warmup: int, steps: int, compile: bool | str = False
) -> Timing:
    from auxopt.train import TrainConfig, train

    total_steps = warmup + steps + 1
    config = TrainConfig(
        primary=task,
        model=model_name,
        max_length=args.max_length,
        batch_size=args.batch_size,
        eval_batch_size=args.batch_size,
        eval_batches=1,
        max_steps=total_steps,
        eval_every=total_steps + 1,  # only the evaluation after the last step
        device=str(device),
        seed=SEED,
        compile=compile,
    )
    clock = StepClock(device, marks=(warmup, warmup + steps))
    captured: dict = {}
    reset_peak(device)
    clocked = clock_callback(clock, captured, rows=args.batch_size, width=args.max_length, hook=not compile)
    result = train(config, callbacks=[clocked])
    timing = read_clock(clock, warmup, steps, captured.get("params", 0), result.wall_time)
    timing.extra.update(
        lr=config.learning_rate,
        stopped=result.stopped,
        device=result.device,
        start=clock.times[warmup],  # the timed window, perf_counter seconds
        end=clock.times[warmup + steps],
    )
    return timing


# ---------------------------------------------------------------------------- transformers Trainer


def trainer_unavailable() -> str | None:
    """Why ``transformers.Trainer`` cannot run here (None when it can)."""
    try:
        import transformers
        from transformers.utils import is_accelerate_available
    except ImportError as e:
        return f"transformers cannot be imported ({e})"
    if not is_accelerate_available():
        return (
            "the 'accelerate' package is not installed in this environment, and transformers "
            f"{transformers.__version__}'s Trainer requires it (pip install 'accelerate>=1.1.0')"
        )
    return None


class _Encoded(torch.utils.data.Dataset):
    def __init__(self, encoded: dict, labels: torch.Tensor):
        self.encoded, self.labels = encoded, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        item = {k: v[i] for k, v in self.encoded.items()}
        item["labels"] = self.labels[i]
        return item


def run_hf_trainer(
    model_name: str, task, args, device: torch.device, bf16: bool, lr: float, warmup: int, steps: int
) -> Timing:
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        BertForSequenceClassification,
        Trainer,
        TrainingArguments,
        default_data_collator,
    )
    from transformers.utils import logging as hf_logging

    from auxopt.models import TinyBertSpec, resolve_model_name, train_wordpiece

    started = time.perf_counter()
    num_labels = task.num_labels
    if model_name == "tiny":
        spec = TinyBertSpec()
        tokenizer = train_wordpiece(task.train.texts, spec.vocab_size)  # as auxopt does
        config = spec.bert_config(len(tokenizer))
        config.num_labels = num_labels
        torch.manual_seed(SEED)
        model = BertForSequenceClassification(config)
    else:
        path = resolve_model_name(model_name)
        tokenizer = AutoTokenizer.from_pretrained(path)
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # "newly initialized: classifier" is expected
        try:
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels)
        finally:
            hf_logging.set_verbosity(verbosity)
    encoded = tokenizer(
        list(task.train.texts),
        truncation=True,
        max_length=args.max_length,
        padding="max_length",
        return_tensors="pt",
        return_token_type_ids=True,
    )
    dtype = torch.long if task.kind == "classification" else torch.float32
    dataset = _Encoded(dict(encoded), torch.as_tensor(task.train.labels, dtype=dtype))

    total_steps = warmup + steps + 1
    clock = StepClock(device, marks=(warmup, warmup + steps))
    model.register_forward_pre_hook(clock, with_kwargs=True)
    params = sum(p.numel() for p in model.parameters())
    with tempfile.TemporaryDirectory(prefix="auxopt-trainer-bench-") as out:
        training_args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=args.batch_size,
            max_steps=total_steps,
            learning_rate=lr,
            weight_decay=0.01,
            warmup_steps=int(0.1 * total_steps),  # auxopt: int(warmup_ratio * max_steps), then linear
            lr_scheduler_type="linear",
            max_grad_norm=1.0,
            bf16=bf16,
            use_cpu=device.type == "cpu",
            report_to=[],
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            dataloader_num_workers=0,
            dataloader_drop_last=True,
            dataloader_pin_memory=device.type == "cuda",
            seed=SEED,
        )
        trainer = Trainer(
            model=model,
            args=training_args,
            train_dataset=dataset,
            data_collator=default_data_collator,
        )
        trainer_device = training_args.device
        if trainer_device.type != device.type:
            raise RuntimeError(f"the Trainer would run on {trainer_device}, auxopt ran on {device}")
        reset_peak(device)
        trainer.train()
    timing = read_clock(clock, warmup, steps, params, time.perf_counter() - started)
    optim = training_args.optim
    timing.extra.update(optim=str(getattr(optim, "value", optim)), device=str(trainer_device))
    del trainer, model
    return timing


# ---------------------------------------------------------------------------- report


def machine_line(device: torch.device) -> str:
    import transformers

    try:
        from importlib.metadata import version

        accelerate = version("accelerate")
    except Exception:
        accelerate = "not installed"
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    return (
        f"{_common.cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__} "
        f"({torch.get_num_threads()} CPU threads), transformers {transformers.__version__}, "
        f"accelerate {accelerate}; device: {device} ({device_name})"
    )


def widths_text(widths: list[int]) -> str:
    lo, hi = min(widths), max(widths)
    return str(lo) if lo == hi else f"{lo}–{hi}"


def mib(n: int | None) -> str:
    return "–" if n is None else f"{n / 2**20:,.0f} MiB"


def table(rows: list[dict]) -> str:
    header = [
        "model",
        "compile",
        "params",
        "device",
        "batch",
        "seq len",
        "timed steps (+warm-up)",
        "s/step",
        "steps/s",
        "examples/s",
        "peak GPU mem",
        "Trainer steps/s",
        "Trainer peak GPU mem",
        "auxopt / Trainer",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for row in rows:
        a: Timing = row["auxopt"]
        h: Timing | None = row["trainer"]
        cells = [
            row["model"],
            row.get("compile", "off"),
            f"{a.params / 1e6:.2f} M",
            row["device"],
            str(row["batch"]),
            widths_text(a.widths),
            f"{a.steps} (+{row['warmup']})",
            f"{a.seconds_per_step:.4f}",
            f"{a.steps_per_s:.2f}",
            f"{a.examples_per_s:,.1f}",
            mib(a.peak_bytes),
        ]
        if h is not None:
            cells += [f"{h.steps_per_s:.2f}", mib(h.peak_bytes), f"{a.steps_per_s / h.steps_per_s:.2f}"]
        else:
            cells += [row["trainer_note"], "–", "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def title_for(device: torch.device) -> str:
    """The section's title: the CPU's and a GPU's figures are kept side by side."""
    return (
        TITLE
        if device.type == "cpu"
        else TITLE.replace("Training throughput", f"Training throughput on {device.type.upper()}")
    )


def section_text(rows, notes, machine: str, load_start: str, base, task, args, title: str = TITLE) -> str:
    parts = [
        *_common.header(title),
        f"- Software: {machine}",
        f"- Load average (1, 5, 15 min) at the start: {load_start}",
        f"- Data: `{task.name}`, an in-memory task built with `auxopt.tasks.build_task` from "
        f"`{base.name}` ({base.source}): consecutive texts joined, split by split, until each has "
        f">= {args.max_length} words, so every example is truncated to exactly {args.max_length} "
        f"tokens ({len(task.train)} train texts); 'seq len' is the width of the timed batches.",
        "- Timing: `auxopt.train.train` itself runs W + N + 1 steps (final evaluation only, one dev "
        "batch); a forward pre-hook stamps the start of each training step and the N steps after "
        "the W warm-up steps are timed (set-up, tokenisation and evaluation excluded). On CUDA the "
        "device is synchronised at the two stamps only, and peak GPU memory is "
        "`torch.cuda.max_memory_allocated` at the end of the timed steps. The Trainer column is a "
        "plain `transformers.Trainer` (`AutoModelForSequenceClassification`, default optimizer, "
        "padding to the max length, `report_to=[]`, no evaluation, logging or saving), timed the "
        "same way on the same model, batch size and length.",
        "",
        table(rows),
    ]
    if notes:
        parts += ["", *[f"- {n}" for n in notes]]
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------- main


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="tiny,minilm", help="comma-separated: tiny, minilm, ...")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help=f"timed steps per model (default: {DEFAULT_STEPS}, others {DEFAULT_STEPS['minilm']})",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help=f"untimed warm-up steps per model (default: {DEFAULT_WARMUP})",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--task", default="sst2", help="a task name under AUXOPT_DATA or a folder")
    parser.add_argument("--write", action="store_true", help=f"write the section into {_common.RESULTS}")
    parser.add_argument(
        "--compile",
        default="off",
        help="comma-separated TrainConfig(compile=...) variants of auxopt's row: off, default, reduce-overhead, "
        "max-autotune-no-cudagraphs (each its own row, against the same Trainer run)",
    )
    parser.add_argument(
        "--hf-trainer",
        choices=("auto", "on", "off"),
        default="auto",
        help="compare with transformers.Trainer (auto: only on CUDA)",
    )
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be >= 1")
    if args.warmup is not None and args.warmup < 0:
        parser.error("--warmup must be >= 0")
    args.compile = [c.strip() for c in args.compile.split(",") if c.strip()] or ["off"]
    known = ("off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
    if any(c not in known for c in args.compile):
        parser.error(f"--compile: each variant must be one of {', '.join(known)}, not {args.compile}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    _common.use_shared_data()
    from auxopt.models.precision import use_bf16
    from auxopt.train.runtime import resolve_device

    device = resolve_device(args.device)
    bf16 = use_bf16("auto", device)  # TrainConfig's default, used by both runs
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    compare = args.hf_trainer == "on" or (args.hf_trainer == "auto" and device.type == "cuda")
    notes: list[str] = []
    skip_reason = None
    if compare:
        skip_reason = trainer_unavailable()
        if skip_reason:
            print(f"[train_throughput] skipping the transformers.Trainer comparison: {skip_reason}")
            notes.append(f"Trainer comparison skipped: {skip_reason}.")
    elif args.hf_trainer == "auto":
        notes.append("Trainer comparison not run (`--hf-trainer auto` runs it on CUDA only).")
    if bf16:
        notes.append("bf16 autocast in both runs (auxopt's `bf16='auto'` on this GPU).")

    base, task = long_text_task(args.task, args.max_length, args.batch_size)
    machine, load_start = machine_line(device), _common.load_average()
    print(f"[train_throughput] {machine}; load average {load_start}")
    print(f"[train_throughput] task {task.name}: {len(task.train)} train texts from {base.source}")

    rows, failed = [], False
    for name in models:
        steps = args.steps if args.steps is not None else DEFAULT_STEPS.get(name, DEFAULT_STEPS["minilm"])
        warmup = args.warmup if args.warmup is not None else DEFAULT_WARMUP.get(name, DEFAULT_WARMUP["minilm"])
        model_rows = []
        for variant in args.compile:
            mode = False if variant == "off" else (True if variant == "default" else variant)
            print(
                f"[train_throughput] {name}: auxopt.train.train (compile {variant}), {warmup} warm-up + {steps} "
                "timed steps ...",
                flush=True,
            )
            a = run_auxopt(name, task, args, device, warmup, steps, compile=mode)
            print(
                f"[train_throughput] {name} (compile {variant}): {a.steps_per_s:.3f} steps/s, "
                f"{a.examples_per_s:.1f} examples/s, seq len {widths_text(a.widths)}, peak {mib(a.peak_bytes)} "
                f"(train() took {a.total_seconds:.1f} s in all, set-up and evaluation included)",
                flush=True,
            )
            model_rows.append(
                {
                    "model": name,
                    "compile": variant,
                    "device": device.type,
                    "batch": args.batch_size,
                    "warmup": warmup,
                    "auxopt": a,
                    "trainer": None,
                    "trainer_note": "not run",
                }
            )
        trainer, note = None, "not run"
        if compare and skip_reason:
            note = "skipped (no accelerate)"
        elif compare:
            print(f"[train_throughput] {name}: transformers.Trainer, same steps ...", flush=True)
            try:
                trainer = run_hf_trainer(
                    name, task, args, device, bf16, model_rows[0]["auxopt"].extra["lr"], warmup, steps
                )
            except Exception:
                traceback.print_exc()
                failed = True
                note = "failed (see log)"
                notes.append(f"Trainer run for {name} failed; see the script's output.")
            else:
                print(
                    f"[train_throughput] {name}: Trainer {trainer.steps_per_s:.3f} steps/s, seq len "
                    f"{widths_text(trainer.widths)}, peak {mib(trainer.peak_bytes)}, optimizer "
                    f"{trainer.extra['optim']}; auxopt / Trainer = "
                    + ", ".join(
                        f"{r['auxopt'].steps_per_s / trainer.steps_per_s:.2f} (compile {r['compile']})"
                        for r in model_rows
                    ),
                    flush=True,
                )
                if not any("default optimizer" in n for n in notes):
                    notes.append(
                        f"Trainer used its default optimizer `{trainer.extra['optim']}`; auxopt uses "
                        "`torch.optim.AdamW` (fused on CUDA)."
                    )
        for row in model_rows:
            row["trainer"], row["trainer_note"] = trainer, note
        rows += model_rows
    if any(c != "off" for c in args.compile):
        notes.append(
            "compile: `TrainConfig(compile=...)` (`torch.compile` of the training forward and backward, widths "
            "rounded up to a multiple of 16); its rows are timed by stamps at the end of each step (a forward "
            "hook would be traced into the compiled graph), over the same N steps after the same warm-up "
            "(where the compilation happens)."
        )

    print()
    title = title_for(device)
    text = section_text(rows, notes, machine, load_start, base, task, args, title)
    _common.publish(title, text.splitlines(), args.write)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:
        if type(e).__name__ != "AuxoptError":  # a bug: keep the traceback
            raise
        print(f"train_throughput: {e}", file=sys.stderr)
        sys.exit(2)
