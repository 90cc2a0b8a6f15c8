"""Progress bars for long runs: one for trials, one for the training steps of the current trial.

:class:`Progress` is handed to :meth:`auxopt.StudySpec.optimize` (``auxopt run`` does it). It
wraps the objective's training function so that the trial's reporter also moves a step bar, and
adds an Optuna callback that moves the trial bar. Both are silent when the output is not a
terminal or when ``enabled=False`` (``--quiet``). The training loop calls its reporter at every
dev evaluation, so the step bar moves every ``eval_every`` steps.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TextIO


class _StepReporter:
    """Forwards everything to the trial's reporter and moves the step bar."""

    def __init__(self, inner: Any, progress: Progress):
        self.inner, self.progress = inner, progress

    def report(self, step: int, value: float) -> None:
        self.progress.step(step, value)
        if self.inner is None:
            return
        if hasattr(self.inner, "report"):
            self.inner.report(step, value)
        else:
            self._stop = bool(self.inner(step, value))

    def on_step(self, step: int) -> None:  # the trainer calls it after every optimizer step
        self.progress.advance(step)
        inner = getattr(self.inner, "on_step", None)
        if inner is not None:
            inner(step)

    def should_stop(self) -> bool:
        if self.inner is None:
            return False
        if hasattr(self.inner, "should_stop"):
            return bool(self.inner.should_stop())
        return getattr(self, "_stop", False)

    def __getattr__(self, name: str) -> Any:  # e.g. a checkpointing reporter's extra hooks
        return getattr(self.inner, name)


class Progress:
    """A trial bar and a training-step bar (tqdm), or nothing when disabled.

    Args:
        total_trials: the trials this run adds (the trial bar's length).
        enabled: ``None`` = only when ``stream`` is a terminal; ``False`` = never (``--quiet``).
        stream: where the bars go (default ``sys.stderr``).
    """

    def __init__(self, total_trials: int | None = None, *, enabled: bool | None = None,
                 stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        if enabled is None:
            enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = enabled
        self.total_trials = total_trials
        self._trials = None
        self._steps = None
        self.trials_done = 0
        self.last_step = 0

    # -- the objective side -----------------------------------------------------------------------
    def wrap_train(self, train_fn: Callable[..., Any]) -> Callable[..., Any]:
        """``train_fn`` whose reporter also drives the step bar (length ``config.max_steps``)."""

        def train_with_progress(config: Any, reporter: Any = None, *args: Any, **kwargs: Any) -> Any:
            self.start_trial(int(getattr(config, "max_steps", 0)) or None)
            try:
                return train_fn(config, _StepReporter(reporter, self), *args, **kwargs)
            finally:
                self.end_trial()

        return train_with_progress

    def start_trial(self, max_steps: int | None) -> None:
        self.last_step = 0
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        self._close_steps()
        self._ensure_trials()
        self._steps = tqdm(total=max_steps, desc="  steps", unit="step", leave=False,
                           position=1, file=self.stream, dynamic_ncols=True)

    def advance(self, step: int) -> None:
        """Move the step bar to ``step`` (tqdm redraws at most every 0.1 s)."""
        if self._steps is not None and step > self.last_step:
            self._steps.update(step - self.last_step)
        self.last_step = max(self.last_step, step)

    def step(self, step: int, value: float) -> None:
        """An evaluation at ``step``: move the bar there and show the dev metric."""
        self.advance(step)
        if self._steps is not None:
            self._steps.set_postfix(dev=f"{value:.4f}", refresh=True)

    def end_trial(self) -> None:
        self._close_steps()

    def _close_steps(self) -> None:
        if self._steps is not None:
            self._steps.close()
            self._steps = None

    # -- the study side ---------------------------------------------------------------------------
    def callback(self, study: Any, trial: Any) -> None:
        """An Optuna callback: one more finished trial; show the best value so far."""
        self.trials_done += 1
        if not self.enabled:
            return
        self._ensure_trials()
        self._trials.update(1)
        try:
            self._trials.set_postfix(best=f"{study.best_value:.4f}", refresh=True)
        except ValueError:  # no completed trial yet
            pass

    def _ensure_trials(self) -> None:
        if self._trials is None:
            from tqdm.auto import tqdm

            self._trials = tqdm(total=self.total_trials, desc="trials", unit="trial",
                                position=0, file=self.stream, dynamic_ncols=True)

    def close(self) -> None:
        self._close_steps()
        if self._trials is not None:
            self._trials.close()
            self._trials = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
