"""Mix auxiliary datasets into a primary one with a ``transformers.Trainer`` and search the ratio.

auxopt's synthetic suite (a primary task with 300 training examples, a helpful and a neutral
auxiliary of known role) on the tiny BERT: a baseline run at fixed ratios, the same run with ATTITTUD
(η = (1, 1, −1): conflicting in-span parts flipped), then ``hyperparameter_search`` over the helpful
auxiliary's mixing ratio with auxopt's GP sampler (``MixingRatioSampler``), each trial scored by the
primary's dev accuracy.

    OMP_NUM_THREADS=1 python examples/trainer_mixing.py            # CPU: about a minute
    OMP_NUM_THREADS=1 python examples/trainer_mixing.py --steps 40 --trials 2   # a smoke run
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from transformers import TrainingArguments

from auxopt import make_synthetic_suite
from auxopt.integrations.transformers import AttittudArgs, MultiTaskTrainer


def main(
    steps: int = 300,
    trials: int = 6,
    *,
    model: str = "tiny",
    batch_size: int = 32,
    seed: int = 0,
    output_dir: str | None = None,
    verbose: bool = True,
) -> dict:
    """Run the three parts; returns ``{"fixed", "attittud"}`` (dev accuracy, batches per task) and
    ``"search"`` (the best trial's ratio and accuracy, and every trial's)."""
    import optuna

    from auxopt.samplers import MixingRatioSampler

    suite = make_synthetic_suite(
        n_helpful=1, n_neutral=1, n_harmful=0, n_train=300, n_aux_train=2000, n_dev=300, n_test=300, seed=seed
    )
    out = Path(output_dir or tempfile.mkdtemp(prefix="trainer_mixing_"))
    args = TrainingArguments(
        str(out),
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        learning_rate=1e-3,
        warmup_steps=max(1, steps // 10),
        eval_strategy="steps",
        eval_steps=max(1, steps // 3),
        logging_steps=max(1, steps // 3),
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=seed,
        log_level="error",
    )
    ratios = {"primary": 1, "helpful_0": 2, "neutral_0": 1}
    results: dict = {}

    for name, attittud in (("fixed", None), ("attittud", AttittudArgs(k=8, every=10, m=32, eta=(1, 1, -1)))):
        trainer = MultiTaskTrainer.from_tasks(suite, args, model=model, ratios=ratios, attittud=attittud, max_length=64)
        trainer.train()
        accuracy = trainer.evaluate()["eval_accuracy"]
        results[name] = {"dev_accuracy": accuracy, "batches": dict(trainer.task_batches)}
        if verbose:
            print(f"{name:9s} ratios {ratios}: dev accuracy {accuracy:.3f}, batches {dict(trainer.task_batches)}")

    trainer = MultiTaskTrainer.from_tasks(suite, args, model=model, ratios=ratios, max_length=64)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study_name = f"trainer-mixing-{seed}"
    storage = f"sqlite:///{out / 'search.db'}"
    best = trainer.hyperparameter_search(
        hp_space=lambda trial: {"ratio_helpful_0": trial.suggest_float("ratio_helpful_0", 0.0, 4.0)},
        n_trials=trials,
        sampler=MixingRatioSampler(seed=seed),
        study_name=study_name,
        storage=storage,
        load_if_exists=True,
    )
    study = optuna.load_study(study_name=study_name, storage=storage)
    results["search"] = {
        "best_ratio": best.hyperparameters["ratio_helpful_0"],
        "best_accuracy": best.objective,
        "trials": [(t.params["ratio_helpful_0"], t.value) for t in study.trials if t.value is not None],
    }
    if verbose:
        for ratio, value in results["search"]["trials"]:
            print(f"search    ratio_helpful_0={ratio:.2f}: dev accuracy {value:.3f}")
        print(f"best      ratio_helpful_0={best.hyperparameters['ratio_helpful_0']:.2f} ({best.objective:.3f})")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args()
    main(a.steps, a.trials, model=a.model, seed=a.seed)
