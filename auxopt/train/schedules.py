"""Task schedules: which task the next minibatch comes from.

A schedule is a small object with ``next_task() -> str`` and ``state_dict()``/``load_state_dict()``
(so a run can be checkpointed and resumed). Ratios map task name → weight; the primary task usually
has weight 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from auxopt.errors import AuxoptError


class TaskSchedule(Protocol):
    def next_task(self) -> str: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class RoundRobinSchedule:
    """AutoSeM's deterministic schedule for integer mixing ratios.

    One round visits the tasks in the given order and takes ``ratio[t]`` consecutive minibatches of
    each: ratios ``{"p": 1, "a": 2, "b": 1}`` give ``p a a b p a a b …``.
    """

    def __init__(self, ratios: Mapping[str, int]):
        self.ratios = {name: int(r) for name, r in _check(ratios).items()}
        for name, r in ratios.items():
            if float(r) != int(r):
                raise AuxoptError(f"round-robin needs integer ratios; {name!r} has {r}")
        self.cycle = [name for name, r in self.ratios.items() for _ in range(r)]
        self.position = 0

    def next_task(self) -> str:
        name = self.cycle[self.position % len(self.cycle)]
        self.position += 1
        return name

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.position = int(state["position"])


class ProportionalSchedule:
    """Sample each minibatch's task with probability ``ratio[t] / sum(ratios)`` (seeded)."""

    def __init__(self, ratios: Mapping[str, float], seed: int = 0):
        ratios = _check(ratios)
        self.names = list(ratios)
        weights = np.array([ratios[n] for n in self.names], dtype=np.float64)
        self.probs = weights / weights.sum()
        self.rng = np.random.default_rng(seed)

    def next_task(self) -> str:
        return self.names[int(self.rng.choice(len(self.names), p=self.probs))]

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


def make_schedule(ratios: Mapping[str, float], kind: str | OnlineThompson = "auto", seed: int = 0) -> TaskSchedule:
    """``kind``: ``"round_robin"``, ``"proportional"``, ``"auto"`` (round-robin when every ratio is a
    whole number, else proportional), or ``"thompson"``/:class:`OnlineThompson` (the tasks with a
    positive ratio become bandit arms; the ratios' values are not used)."""
    if kind == "thompson":
        kind = OnlineThompson()
    if isinstance(kind, OnlineThompson):
        return ThompsonSchedule(list(_check(ratios)), kind, seed=seed)
    if kind == "auto":
        kind = "round_robin" if all(float(r).is_integer() for r in ratios.values()) else "proportional"
    if kind == "round_robin":
        return RoundRobinSchedule(ratios)
    if kind == "proportional":
        return ProportionalSchedule(ratios, seed=seed)
    raise AuxoptError(
        f"unknown schedule {kind!r}; use 'auto', 'round_robin', 'proportional', 'thompson' or OnlineThompson(...)"
    )


def check_ratio(name: str, value: object, *, primary: bool = False) -> float:
    """The mixing ratio ``value`` of task ``name`` as a float: a finite number >= 0 (0: the task is
    not trained on), > 0 for the primary task, which every run trains and scores."""
    try:
        r = float(value)
        if isinstance(value, bool | str):
            raise TypeError
    except (TypeError, ValueError):
        raise AuxoptError(f"the mixing ratio of task {name!r} must be a number, not {value!r}") from None
    if not np.isfinite(r) or r < 0 or (primary and r == 0):
        if primary:
            raise AuxoptError(
                f"the mixing ratio of the primary task {name!r} must be a finite number > 0 (the run "
                f"trains and scores it), not {value!r}"
            )
        raise AuxoptError(
            f"the mixing ratio of auxiliary task {name!r} must be a finite number >= 0 (0: not trained "
            f"on), not {value!r}"
        )
    return r


def _check(ratios: Mapping[str, float]) -> dict[str, float]:
    out = {}
    for name, value in ratios.items():
        r = check_ratio(name, value)
        if r > 0:
            out[name] = r
    if not out:
        raise AuxoptError("every mixing ratio is 0: give at least one task a positive ratio")
    return out


@dataclass(frozen=True)
class OnlineThompson:
    """AutoSeM's stage 1 inside one training run (``TrainConfig(schedule=OnlineThompson())``).

    The primary task and every auxiliary with a positive ratio are arms of a
    :class:`~auxopt.samplers._bandit.BetaBernoulliBandit`. A pull trains ``steps_per_pull`` minibatches
    of the Thompson-chosen task, then the primary dev metric is computed on the first
    ``eval_batches`` dev batches; the reward is 1 when it rose versus the previous such evaluation
    (the first comparison is against the untrained model), 0 when it fell, and on a tie (frequent on
    a few dev batches) 1 when the dev loss fell. Counting ties as wins would reward every task that
    changes nothing.

    The decayed posterior only chooses the next pull; the undecayed tally of wins and pulls per arm
    (``extra["thompson"]["evidence"]``) is what AutoSeM selects on. Stage 1 runs at a constant
    learning rate after warm-up (``TrainConfig(lr_schedule="constant")``, as AutoSeM sets it): under
    a decay to 0 the late pulls, at a learning rate near 0, would all look alike.

    Args:
        steps_per_pull: minibatches per pull.
        gamma, alpha0, beta0: the bandit's decay and Beta prior (AutoSeM: 0.3 and Beta(1, 1)).
        eval_batches: dev batches per reward evaluation (None: the whole dev split).
    """

    steps_per_pull: int = 10
    gamma: float = 0.3
    alpha0: float = 1.0
    beta0: float = 1.0
    eval_batches: int | None = 4

    def __post_init__(self) -> None:
        from auxopt.samplers._bandit import check_bandit_parameters

        if not isinstance(self.steps_per_pull, int) or self.steps_per_pull < 1:
            raise AuxoptError(f"steps_per_pull must be a positive integer, not {self.steps_per_pull!r}")
        if self.eval_batches is not None and (not isinstance(self.eval_batches, int) or self.eval_batches < 1):
            raise AuxoptError(f"eval_batches must be a positive integer or None, not {self.eval_batches!r}")
        check_bandit_parameters(self.alpha0, self.beta0, self.gamma)


class ThompsonSchedule:
    """The online Thompson-sampling schedule of :class:`OnlineThompson`; the trainer calls
    :meth:`observe` with the primary dev metric whenever :meth:`pull_finished` is true."""

    wants_feedback = True

    def __init__(self, arms: list[str], spec: OnlineThompson, seed: int = 0):
        from auxopt.samplers._bandit import BetaBernoulliBandit

        if not arms:
            raise AuxoptError("the online Thompson schedule needs at least one task")
        self.spec = spec
        self.bandit = BetaBernoulliBandit(arms, spec.alpha0, spec.beta0, spec.gamma)
        self.rng = np.random.default_rng(seed)
        self.current: str | None = None
        self.remaining = 0
        self.last_value: float | None = None
        self.history: list[dict] = []

    def next_task(self) -> str:
        if self.remaining == 0:
            self.current = self.bandit.choose(self.rng)
            self.remaining = self.spec.steps_per_pull
        self.remaining -= 1
        return self.current

    def pull_finished(self) -> bool:
        return self.current is not None and self.remaining == 0

    def observe(self, step: int, value: float | tuple[float, float]) -> None:
        """Reward the finished pull: ``value`` is the primary dev metric, or ``(metric, dev loss)``;
        1 if the metric rose (or tied while the loss fell), else 0."""
        metric, loss = value if isinstance(value, tuple) else (value, None)
        if self.last_value is not None and self.current is not None:
            last_metric, last_loss = (self.last_value if isinstance(self.last_value, (tuple, list))
                                      else (self.last_value, None))
            if metric != last_metric:
                reward = int(metric > last_metric)
            else:
                reward = int(loss is not None and last_loss is not None and loss < last_loss)
            self.bandit.update(self.current, reward)
            self.history.append({"step": step, "task": self.current, "reward": reward, "dev": metric,
                                 **({"dev_loss": loss} if loss is not None else {}),
                                 "means": self.bandit.means()})
        self.last_value = (metric, loss) if loss is not None else metric

    def summary(self) -> dict:
        return {
            "posterior": {k: list(v) for k, v in self.bandit.posterior().items()},
            "means": self.bandit.means(),
            "pulls": self.bandit.pulls(),
            "evidence": {k: list(v) for k, v in self.bandit.evidence().items()},
            "utilities": self.bandit.utilities(),
            "history": self.history,
        }

    def state_dict(self) -> dict:
        return {
            "bandit": self.bandit.state_dict(),
            "rng": self.rng.bit_generator.state,
            "current": self.current,
            "remaining": self.remaining,
            "last_value": self.last_value,
            "history": list(self.history),
        }

    def load_state_dict(self, state: dict) -> None:
        self.bandit.load_state_dict(state["bandit"])
        self.rng.bit_generator.state = state["rng"]
        self.current, self.remaining = state["current"], int(state["remaining"])
        last = state["last_value"]
        self.last_value = tuple(last) if isinstance(last, list) else last
        self.history = list(state["history"])
