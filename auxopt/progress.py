"""Progress for long runs: bars in a terminal, plain lines elsewhere (logs, ``nohup``).

:class:`Progress` is handed to :meth:`auxopt.StudySpec.optimize` (``auxopt run`` does it). It
wraps the objective's training function so that the run gets one more training callback, which
moves a step bar after every optimiser step and shows the dev metric at every evaluation, and
adds an Optuna callback that moves the trial bar.

- In a terminal: a trial bar and a step bar (tqdm). While they show (inside ``with Progress(...)``),
  log lines that would go to the terminal (auxopt's, Optuna's, the root logger's console handlers)
  are written through ``tqdm.write``, above the bars instead of through them.
- When the output is not a terminal: one plain line per dev evaluation
  (``trial 3  step 150/300  dev 0.8123``) and one per finished trial, as transformers' Trainer
  does outside a terminal.
- ``enabled=False`` (``--quiet``): nothing.

:func:`fmt_value` and :func:`fmt_params` round values for people (``0.3486``, not
``0.3486238532110092``); auxopt's messages about trials use them.
"""

from __future__ import annotations

import inspect
import logging
import math
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO


def fmt_value(value: Any) -> str:
    """A metric value for people: a float with 4 decimals (``0.3486``; 4 significant digits when it
    is tiny or huge: ``1.235e-05``); anything else as ``str``."""
    if isinstance(value, float):
        if math.isfinite(value) and value != 0 and not 1e-3 <= abs(value) < 1e5:
            return f"{value:.4g}"
        return f"{value:.4f}"
    return str(value)


def fmt_param(value: Any) -> str:
    """A parameter value for people: a float to 4 significant digits (``0.001327``, ``1.5``)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def fmt_params(params: Mapping[str, Any]) -> str:
    """Trial parameters for people: ``{aux_task: helpful_0, lr: 0.001327, lr_head: 1.5e-05}``."""
    return "{" + ", ".join(f"{k}: {fmt_param(v)}" for k, v in params.items()) + "}"


def _accepts(fn: Callable[..., Any], keyword: str) -> bool:
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == keyword or p.kind is p.VAR_KEYWORD for p in parameters)


class TqdmLoggingHandler(logging.Handler):
    """Writes log records with ``tqdm.write``, which lifts the bars, prints the line, and redraws
    them, so that log lines do not break the bars."""

    def __init__(self, stream: TextIO, level: int = logging.NOTSET):
        super().__init__(level)
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm.auto import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:
            self.handleError(record)


class _StepBar:
    """A :class:`auxopt.train.TrainCallback` that moves :class:`Progress`'s step bar (or prints
    its plain lines): after every optimiser step and at every dev evaluation."""

    def __init__(self, progress: Progress):
        self.progress = progress

    def on_train_begin(self, model: Any, tokenizer: Any) -> None:
        pass

    def on_step_end(self, step: int) -> None:
        self.progress.advance(step)

    def on_evaluate(self, step: int, value: float) -> None:
        self.progress.step(step, value)

    def should_stop(self) -> bool:
        return False


class Progress:
    """A trial bar and a training-step bar (tqdm), plain lines, or nothing.

    Args:
        total_trials: the trials this run adds (the trial bar's length).
        enabled: ``None`` = bars when ``stream`` is a terminal, plain lines otherwise;
            ``True`` = bars; ``False`` = nothing (``--quiet``).
        stream: where the bars and lines go (default ``sys.stderr``).

    ``enabled`` then says whether bars show; ``plain`` whether plain lines do.
    """

    def __init__(self, total_trials: int | None = None, *, enabled: bool | None = None, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        plain = False
        if enabled is None:
            enabled = bool(getattr(self.stream, "isatty", lambda: False)())
            plain = not enabled
        self.enabled = enabled
        self.plain = plain
        self.total_trials = total_trials
        self._trials = None
        self._steps = None
        self._redirected: list[tuple[logging.Logger, logging.Handler, logging.Handler]] = []
        self.trials_done = 0
        self.last_step = 0
        self.max_steps: int | None = None
        self.trial_number: int | None = None

    # -- the objective side -----------------------------------------------------------------------
    def wrap_train(self, train_fn: Callable[..., Any]) -> Callable[..., Any]:
        """``train_fn`` with one more training callback, which drives the step bar (length
        ``config.max_steps``). A ``train_fn`` without a ``callbacks`` keyword (a user's own
        ``(config, reporter)`` function) runs as it is: the trial bar still moves, the step bar
        does not."""
        takes_callbacks = _accepts(train_fn, "callbacks")

        def train_with_progress(config: Any, reporter: Any = None, *args: Any, **kwargs: Any) -> Any:
            number = getattr(getattr(reporter, "trial", None), "number", None)
            self.start_trial(int(getattr(config, "max_steps", 0)) or None, number=number)
            if takes_callbacks:
                kwargs["callbacks"] = [*kwargs.get("callbacks", ()), _StepBar(self)]
            try:
                return train_fn(config, reporter, *args, **kwargs)
            finally:
                self.end_trial()

        return train_with_progress

    def start_trial(self, max_steps: int | None, number: int | None = None) -> None:
        self.last_step = 0
        self.max_steps, self.trial_number = max_steps, number
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        self._close_steps()
        self._ensure_trials()
        self._steps = tqdm(
            total=max_steps, desc="  steps", unit="step", leave=False, position=1, file=self.stream, dynamic_ncols=True
        )

    def advance(self, step: int) -> None:
        """Move the step bar to ``step`` (tqdm redraws at most every 0.1 s)."""
        if self._steps is not None and step > self.last_step:
            self._steps.update(step - self.last_step)
        self.last_step = max(self.last_step, step)

    def step(self, step: int, value: float) -> None:
        """An evaluation at ``step``: move the bar there and show the dev metric (or print a line)."""
        self.advance(step)
        if self._steps is not None:
            self._steps.set_postfix(dev=fmt_value(float(value)), refresh=True)
        elif self.plain:
            trial = f"trial {self.trial_number}  " if self.trial_number is not None else ""
            steps = f"{step}/{self.max_steps}" if self.max_steps else f"{step}"
            self._line(f"{trial}step {steps}  dev {fmt_value(float(value))}")

    def end_trial(self) -> None:
        self._close_steps()

    def _close_steps(self) -> None:
        if self._steps is not None:
            self._steps.close()
            self._steps = None

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    # -- the study side ---------------------------------------------------------------------------
    def callback(self, study: Any, trial: Any) -> None:
        """An Optuna callback: one more finished trial; show the best value so far."""
        self.trials_done += 1
        try:
            best = fmt_value(study.best_value)
        except ValueError:  # no completed trial yet
            best = None
        if self.plain:
            state = getattr(getattr(trial, "state", None), "name", "finished").lower()
            value = f"  value {fmt_value(trial.value)}" if getattr(trial, "value", None) is not None else ""
            done = (
                f"{self.trials_done}/{self.total_trials} trials"
                if self.total_trials
                else f"{self.trials_done} trial{'' if self.trials_done == 1 else 's'}"
            )
            self._line(f"trial {trial.number} {state}{value}  best {best or '-'}  ({done} this run)")
        if not self.enabled:
            return
        self._ensure_trials()
        self._trials.update(1)
        if best is not None:
            self._trials.set_postfix(best=best, refresh=True)

    def _ensure_trials(self) -> None:
        if self._trials is None:
            from tqdm.auto import tqdm

            self._trials = tqdm(
                total=self.total_trials, desc="trials", unit="trial", position=0, file=self.stream, dynamic_ncols=True
            )

    # -- log lines while the bars show ------------------------------------------------------------
    def _redirect_logging(self) -> None:
        """Swap the console handlers of the root, ``optuna`` and ``auxopt`` loggers (those writing to
        stdout, stderr or the bars' stream) for :class:`TqdmLoggingHandler` s with the same
        formatter, level and filters; :meth:`close` puts them back."""
        consoles = [sys.stdout, sys.stderr, self.stream]
        for name in (None, "optuna", "auxopt"):
            logger = logging.getLogger(name)
            for handler in list(logger.handlers):
                stream = getattr(handler, "stream", None)
                if (
                    not isinstance(handler, logging.StreamHandler)
                    or isinstance(handler, logging.FileHandler)
                    or not any(stream is c for c in consoles)
                ):
                    continue
                lifted = TqdmLoggingHandler(stream, handler.level)
                lifted.setFormatter(handler.formatter)
                lifted.filters = list(handler.filters)
                logger.removeHandler(handler)
                logger.addHandler(lifted)
                self._redirected.append((logger, handler, lifted))

    def _restore_logging(self) -> None:
        while self._redirected:
            logger, handler, lifted = self._redirected.pop()
            logger.removeHandler(lifted)
            logger.addHandler(handler)

    def close(self) -> None:
        self._close_steps()
        if self._trials is not None:
            self._trials.close()
            self._trials = None
        self._restore_logging()

    def __enter__(self) -> Progress:
        if self.enabled:
            self._redirect_logging()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
