"""The objective adapter: the one place where Optuna meets training.

A trial becomes a :class:`~auxopt.train.TrainConfig` (by the study's search space), the config is
trained with a reporter that forwards dev metrics to ``trial.report`` and stops when the pruner says
so, and the outcome is written to the trial's user_attrs, where optuna-dashboard shows it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna

from auxopt.train import TrainConfig, TrainResult, train


class TrialReporter:
    """Forwards (step, dev metric) to ``trial.report``; asks the pruner whether to stop."""

    def __init__(self, trial: optuna.Trial, prune: bool = True):
        self.trial, self.prune = trial, prune

    def report(self, step: int, value: float) -> None:
        self.trial.report(value, step)

    def should_stop(self) -> bool:
        return self.prune and self.trial.should_prune()


def record_result(trial: optuna.Trial, result: TrainResult) -> None:
    """Store a training outcome on the trial (user_attrs: what users and the dashboard see)."""
    attrs: dict[str, Any] = {
        "metric": result.metric,
        "dev_metric": result.best_dev,
        "test_metric": result.test_at_best,
        "best_step": result.best_step,
        "steps": result.steps,
        "curve": [[int(s), float(v)] for s, v in result.curve],
        "examples": result.examples,
        "wall_time_s": round(result.wall_time, 3),
        "stopped": result.stopped,
        "device": result.device,
    }
    thompson = result.extra.get("thompson")
    if thompson is not None:  # AutoSeM stage 1 run online: its posterior and how it evolved
        attrs["thompson_posterior"] = thompson["posterior"]
        attrs["thompson_means"] = thompson["means"]
        attrs["thompson_pulls"] = thompson["pulls"]
        attrs["thompson_history"] = [
            [h["step"], h["task"], h["reward"], round(h["dev"], 6)] for h in thompson["history"]
        ]
    for key, value in result.extra.items():  # plugins' records (AANG weights, gradient-part norms)
        if key != "thompson":
            attrs[key] = value
    for key, value in attrs.items():
        trial.set_user_attr(key, value)


class Objective:
    """``Objective(build_config)(trial)`` → the best primary dev metric of one training run.

    Args:
        build_config: turns a trial into a :class:`TrainConfig` (suggesting whatever it searches).
        prune: stop a run early when the study's pruner says so (the trial ends PRUNED).
        train_fn: the training function (``auxopt.train.train``); it receives the config and a reporter.
    """

    def __init__(
        self,
        build_config: Callable[[optuna.Trial], TrainConfig],
        *,
        prune: bool = True,
        train_fn: Callable[..., TrainResult] = train,
    ):
        self.build_config, self.prune, self.train_fn = build_config, prune, train_fn

    def __call__(self, trial: optuna.Trial) -> float:
        config = self.build_config(trial)
        trial.set_user_attr("config", config.describe())
        result = self.train_fn(config, TrialReporter(trial, self.prune))
        record_result(trial, result)
        if result.stopped == "reporter":
            raise optuna.TrialPruned(f"pruned at step {result.steps} (dev {result.curve[-1][1]:.4f})")
        return result.best_dev
