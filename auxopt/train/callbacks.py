"""What a training run tells the outside: reporters (an Optuna trial's, a function) and callbacks.

:func:`auxopt.train.train` turns its reporter into a :class:`ReporterCallback` and calls every
:class:`TrainCallback` at the begin of training, after each optimiser step and at each evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import torch

from auxopt.errors import AuxoptError


@runtime_checkable
class Reporter(Protocol):
    """Receives the primary dev metric at every evaluation; ``should_stop()`` ends training early
    (an Optuna objective reports to its trial and stops when the pruner says so). Per-step hooks
    are :class:`TrainCallback` s."""

    def report(self, step: int, value: float) -> None: ...

    def should_stop(self) -> bool: ...


ReporterLike = Reporter | Callable[[int, float], bool | None] | None


class TrainCallback:
    """Hooks :func:`train` calls; subclass it and override what you need (each is a no-op here).

    ``on_train_begin(model, tokenizer)`` once the model is built, before the first step (e.g. to
    hook or measure it); ``on_step_end(step)`` after every optimiser step; ``on_evaluate(step, value)`` with the primary
    dev metric at every evaluation (and, on a resumed run, once for each point of the restored
    curve); ``should_stop()`` right after each evaluation's ``on_evaluate`` calls: any True ends
    training with ``stopped="reporter"``."""

    def on_train_begin(self, model: torch.nn.Module, tokenizer: Any) -> None:
        pass

    def on_step_end(self, step: int) -> None:
        pass

    def on_evaluate(self, step: int, value: float) -> None:
        pass

    def should_stop(self) -> bool:
        return False


class ReporterCallback(TrainCallback):
    """A reporter as a callback: a :class:`Reporter` (``report``/``should_stop``) or a function
    ``(step, value) -> stop?``."""

    def __init__(self, reporter: Reporter | Callable[[int, float], bool | None]):
        self.reporter = reporter
        self._stop = False

    def on_evaluate(self, step: int, value: float) -> None:
        if isinstance(self.reporter, Reporter):
            self.reporter.report(step, value)
        else:
            self._stop = bool(self.reporter(step, value))

    def should_stop(self) -> bool:
        if isinstance(self.reporter, Reporter):
            return bool(self.reporter.should_stop())
        return self._stop


def as_callbacks(reporter: ReporterLike, callbacks: Sequence[TrainCallback] = ()) -> list[TrainCallback]:
    """The callbacks a run calls: the reporter's adapter first (when given), then ``callbacks``."""
    out: list[TrainCallback] = [] if reporter is None else [ReporterCallback(reporter)]
    for callback in callbacks:
        if not all(
            callable(getattr(callback, m, None))
            for m in ("on_train_begin", "on_step_end", "on_evaluate", "should_stop")
        ):
            raise AuxoptError(f"callbacks must be auxopt.train.TrainCallback objects, not {type(callback).__name__}")
        out.append(callback)
    return out
