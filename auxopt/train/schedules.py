"""Task schedules: which task the next minibatch comes from.

A schedule is a small object with ``next_task() -> str`` and ``state_dict()``/``load_state_dict()``
(so a run can be checkpointed and resumed). Ratios map task name → weight; the primary task usually
has weight 1.

The same objects run auxopt's trainer and any PyTorch loop of your own: every schedule here is an
endless iterator over task names (``next(schedule)`` is ``schedule.next_task()``, ``for task in
schedule:`` never stops by itself), and :meth:`Schedule.batches` turns one into an endless iterator
of ``(task, batch)`` pairs over your own dataloaders::

    from auxopt.train.schedules import OnlineThompson, RoundRobinSchedule, ThompsonSchedule

    fixed = RoundRobinSchedule({"primary": 1, "parity": 2})        # p a a p a a …
    bandit = ThompsonSchedule(["primary", "parity", "noise"], OnlineThompson(steps_per_pull=10))
    bandit.observe(dev_accuracy())                                   # the reference: no pull yet
    for step, (task, (x, y)) in zip(range(steps), bandit.batches(loaders)):
        ...                                                          # train one minibatch of `task`
        if bandit.pull_finished():                                   # every steps_per_pull steps
            bandit.observe(dev_accuracy())                           # reward 1 if it rose, else 0
            # or decide the reward yourself: bandit.reward(won)

Nothing here imports torch (``auxopt.train`` itself does: import this module from there only if
torch is around anyway).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from auxopt.bandit import BetaBernoulliBandit, check_bandit_parameters, check_reward, select_tasks
from auxopt.errors import AuxoptError
from auxopt.train.rounds import JUDGED, RoundPlan


class TaskSchedule(Protocol):
    def next_task(self) -> str: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class Schedule:
    """What every schedule here shares: it is an endless iterator over its task names.

    ``next(schedule)`` is ``schedule.next_task()`` and ``iter(schedule)`` is the schedule itself
    (so iterating it advances it, and a loop over it stops only where you stop it, e.g. with
    ``zip(range(steps), schedule)`` or ``itertools.islice``)."""

    def next_task(self) -> str:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def __iter__(self) -> Schedule:
        return self

    def __next__(self) -> str:
        return self.next_task()

    def batches(self, loaders: Mapping[Hashable, Iterable[Any]]) -> Iterator[tuple[Hashable, Any]]:
        """An endless iterator of ``(task, batch)``: each step ``task = next(self)``, then the next
        batch of ``loaders[task]`` (any iterable: a ``DataLoader``, a list of batches); an exhausted
        loader starts again (a new epoch: ``iter(loader)`` again, so a shuffling ``DataLoader``
        reshuffles). Every task the schedule can name needs a loader."""
        iterators: dict[Hashable, Iterator[Any]] = {}
        for task in self:
            if task not in loaders:
                raise AuxoptError(
                    f"the schedule chose task {task!r}, which has no loader; the loaders are {list(loaders)!r}"
                )
            for _ in range(2):
                if task not in iterators:
                    iterators[task] = iter(loaders[task])
                try:
                    batch = next(iterators[task])
                    break
                except StopIteration:
                    del iterators[task]
            else:
                raise AuxoptError(f"the loader of task {task!r} is empty")
            yield task, batch


class RoundRobinSchedule(Schedule):
    """AutoSeM's deterministic schedule for integer mixing ratios.

    One round visits the tasks in the given order and takes ``ratio[t]`` consecutive minibatches of
    each: ratios ``{"p": 1, "a": 2, "b": 1}`` give ``p a a b p a a b …`` (``next(schedule)``, or
    ``for task in schedule:``, endless). A ratio of 0 leaves the task out.
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


class ProportionalSchedule(Schedule):
    """Sample each minibatch's task with probability ``ratio[t] / sum(ratios)`` (seeded; any
    non-negative real ratios; ``next(schedule)``, or ``for task in schedule:``, endless)."""

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
    :class:`~auxopt.bandit.BetaBernoulliBandit`. A pull trains ``steps_per_pull`` minibatches
    of the Thompson-chosen task, then the primary dev metric is computed on the first
    ``eval_batches`` dev batches; the reward is 1 when it rose versus the previous such evaluation
    (the first comparison is against the untrained model), 0 when it fell, and on a tie (frequent on
    a few dev batches) 1 when the dev loss fell. Counting ties as wins would reward every task that
    changes nothing.

    The decayed posterior only chooses the next pull; the undecayed tally of wins and pulls per arm
    (``extra["thompson"]["evidence"]``) is what AutoSeM selects on. Stage 1 runs at a constant
    learning rate after warm-up (``TrainConfig(lr_schedule="constant")``, as AutoSeM sets it): under
    a decay to 0 the late pulls, at a learning rate near 0, would all look alike.

    ``reward="trend"`` judges a pull on the dev loss against the run's own trend instead: 1 when the
    loss fell by more than the median change over the previous ``window`` pulls (of every arm), so
    that neither the general progress early in a run (every pull "helps") nor its plateau later
    (every pull "hurts") is credited to whichever task happened to be pulled. Until ``window``
    changes are known the loss must simply fall.

    ``reward="round"`` judges the auxiliaries' pulls against one another instead, each from the same
    saved state (:mod:`auxopt.train.rounds`): rounds in which every auxiliary trains one pull from
    where the run stands, the better half winning, after ``warmup_pulls`` unjudged pulls of every task
    (the tasks' order is then fixed, the primary first, and the bandit only keeps the evidence).

    Args:
        steps_per_pull: minibatches per pull.
        gamma: the bandit's decay toward the prior per pull (AutoSeM: 0.3).
        alpha0: the Beta prior's α (AutoSeM: 1).
        beta0: the Beta prior's β (AutoSeM: 1).
        eval_batches: dev batches per reward evaluation (None: the whole dev split).
        reward: ``"rose"`` (the dev metric rose; AutoSeM's), ``"trend"`` or ``"round"`` (see above).
        window: the pulls the ``"trend"`` reward's median is taken over.
        warmup_pulls: with ``"round"``, the pulls of every task, in turn, before the first round.
    """

    steps_per_pull: int = 10
    gamma: float = 0.3
    alpha0: float = 1.0
    beta0: float = 1.0
    eval_batches: int | None = 4
    reward: str = "rose"
    window: int = 20
    warmup_pulls: int = 2

    def __post_init__(self) -> None:
        if not isinstance(self.steps_per_pull, int) or self.steps_per_pull < 1:
            raise AuxoptError(f"steps_per_pull must be a positive integer, not {self.steps_per_pull!r}")
        if self.eval_batches is not None and (not isinstance(self.eval_batches, int) or self.eval_batches < 1):
            raise AuxoptError(f"eval_batches must be a positive integer or None, not {self.eval_batches!r}")
        check_bandit_parameters(self.alpha0, self.beta0, self.gamma)
        if self.reward not in ("rose", "trend", "round"):
            raise AuxoptError(f"reward must be 'rose', 'trend' or 'round', not {self.reward!r}")
        if not isinstance(self.window, int) or self.window < 1:
            raise AuxoptError(f"window must be a positive integer, not {self.window!r}")
        if isinstance(self.warmup_pulls, bool) or not isinstance(self.warmup_pulls, int) or self.warmup_pulls < 0:
            raise AuxoptError(f"warmup_pulls must be a whole number >= 0, not {self.warmup_pulls!r}")


class ThompsonSchedule(Schedule):
    """AutoSeM's online Thompson-sampling schedule (:class:`OnlineThompson`): an endless iterator
    over ``arms`` (task names) whose choice learns from a reward you give it after each pull.

    A *pull* is ``spec.steps_per_pull`` consecutive minibatches of one task, chosen by Thompson
    sampling from a :class:`~auxopt.bandit.BetaBernoulliBandit` (decay ``spec.gamma``, prior
    ``Beta(spec.alpha0, spec.beta0)``). When :meth:`pull_finished` is true, reward the pull with one of

    * :meth:`observe` ``(value)``: the primary dev metric (higher is better), or ``(metric, dev
      loss)``; the reward is 1 when the metric rose since the previous ``observe`` (on a tie: when
      the loss fell), else 0. Call it once before training as the reference (that call rewards
      nothing);
    * :meth:`reward` ``(won)``: a reward you decided (True/1 or False/0).

    Drawing past the end of a pull without a reward starts the next pull anyway (the unrewarded
    pull is simply not counted). auxopt's trainer runs this class (``TrainConfig(schedule=
    OnlineThompson(...))``) and calls ``observe(step, (metric, loss))`` on a bounded dev evaluation.

    Args:
        arms: the task names (the primary's own arm included: it is the "no auxiliary" baseline).
        spec: the settings (default ``OnlineThompson()``: 10 minibatches a pull, γ = 0.3, Beta(1, 1)).
        seed: seeds the Thompson draws.
    """

    wants_feedback = True

    def __init__(self, arms: Iterable[str], spec: OnlineThompson | None = None, seed: int = 0):
        arms = list(arms)
        if not arms:
            raise AuxoptError("the online Thompson schedule needs at least one task")
        if len(set(arms)) != len(arms):
            raise AuxoptError(f"the online Thompson schedule's tasks repeat: {arms!r}; name each once")
        spec = OnlineThompson() if spec is None else spec
        if not isinstance(spec, OnlineThompson):
            raise AuxoptError(f"spec must be an OnlineThompson(...), not {type(spec).__name__}")
        self.spec = spec
        self.bandit = BetaBernoulliBandit(arms, spec.alpha0, spec.beta0, spec.gamma)
        self.rng = np.random.default_rng(seed)
        self.current: str | None = None
        self.remaining = 0
        self.steps = 0  # minibatches drawn so far (the default step of observe/reward)
        self.last_value: float | None = None
        self.changes: list[float] = []  # the dev loss's change over each rewarded pull ("trend")
        self.history: list[dict] = []
        self.pulls_started = 0
        self.plan = RoundPlan(arms, spec.warmup_pulls, spec.steps_per_pull) if spec.reward == "round" else None

    def next_task(self) -> str:
        if self.remaining == 0:
            plan = self.plan  # in rounds the order is fixed
            self.current = self.bandit.choose(self.rng) if plan is None else plan.slot(self.pulls_started)[1]
            self.pulls_started += 1
            self.remaining = self.spec.steps_per_pull
        self.remaining -= 1
        self.steps += 1
        return self.current

    def pull_finished(self) -> bool:
        """True after the last minibatch of a pull, until the next one is drawn: reward it now."""
        return self.current is not None and self.remaining == 0

    def judged(self) -> bool:
        """True when the pull that just finished is to be judged (every pull, but in rounds only the
        auxiliaries' pulls of a round: see :mod:`auxopt.train.rounds`)."""
        return self.pull_finished() and (self.plan is None or self.plan.slot(self.pulls_started - 1)[0] == JUDGED)

    def round_starts(self) -> bool:
        """In rounds: True when the next pull opens a round (save the state it starts from now)."""
        return self.plan is not None and self.remaining == 0 and self.plan.starts(self.pulls_started)

    def observe(self, *args: Any) -> int | None:
        """``observe(value)`` or ``observe(step, value)``: reward the finished pull from the primary
        dev metric ``value`` (higher is better), or ``(metric, dev loss)``: 1 if the metric rose
        since the previous call (or tied while the loss fell), else 0. The first call only sets the
        reference. ``step`` (default: minibatches drawn so far) goes into :attr:`history`.
        Returns the reward, or None when there was nothing to reward. In rounds
        (``reward="round"``) it keeps a judged pull's score and rewards the whole round after its last
        one (:mod:`auxopt.train.rounds`), and returns None."""
        if len(args) == 1:
            step, value = self.steps, args[0]
        elif len(args) == 2:
            step, value = args
        else:
            raise AuxoptError(f"observe takes (value) or (step, value), not {len(args)} arguments")
        metric, loss = value if isinstance(value, tuple) else (value, None)
        if self.spec.reward in ("trend", "round") and loss is None:
            raise AuxoptError(f"reward={self.spec.reward!r} judges pulls on the dev loss: observe((metric, loss))")
        if self.plan is not None:  # the round's rewards once its last judged pull is scored
            for task, reward, scores in self.plan.score(self.current, metric, loss) if self.judged() else ():
                self._record(step, task, reward, scores)
            return None
        reward = None
        if self.last_value is not None and self.current is not None:
            last_metric, last_loss = (
                self.last_value if isinstance(self.last_value, (tuple, list)) else (self.last_value, None)
            )
            if self.spec.reward == "trend":
                change = loss - last_loss
                recent = self.changes[-self.spec.window :]
                bar = float(np.median(recent)) if len(recent) == self.spec.window else 0.0
                reward = int(change < bar)
                self.changes.append(change)
                del self.changes[: -self.spec.window]
            elif metric != last_metric:
                reward = int(metric > last_metric)
            else:
                reward = int(loss is not None and last_loss is not None and loss < last_loss)
            self._record(
                step, self.current, reward, {"dev": metric, **({"dev_loss": loss} if loss is not None else {})}
            )
        self.last_value = (metric, loss) if loss is not None else metric
        return reward

    def reward(self, won: Any, task: str | None = None, step: int | None = None) -> int:
        """Reward a pull with your own verdict ``won`` (True/1: it helped, False/0: it did not).
        ``task`` defaults to the current pull's task; rewarding the current pull also ends it (the
        next draw starts a new pull). Returns the reward as 0/1."""
        task = self.current if task is None else task
        if task is None:
            raise AuxoptError("there is no pull to reward yet: draw a task first (next(schedule))")
        if task not in self.bandit:
            raise AuxoptError(f"unknown task {task!r}; the schedule's tasks are {list(self.bandit.arms)!r}")
        r = check_reward(won, "the reward of a pull")
        self._record(self.steps if step is None else step, task, r, {})
        if task == self.current:
            self.remaining = 0
        return r

    def _record(self, step: int, task: str, reward: int, extra: dict) -> None:
        self.bandit.update(task, reward)
        self.history.append({"step": step, "task": task, "reward": reward, **extra, "means": self.bandit.means()})

    def utilities(self) -> dict[str, float]:
        """``{task: (α0 + wins) / (α0 + β0 + pulls)}``: the undecayed evidence AutoSeM selects on
        (the decayed posterior, :meth:`BetaBernoulliBandit.means`, only steers the next draw)."""
        return self.bandit.utilities()

    def select(
        self,
        threshold: float = 0.5,
        top_k: int | None = None,
        *,
        baseline: str | None = "median",
        none_arm: str | None = None,
    ) -> list[str]:
        """AutoSeM's task selection on this schedule's evidence
        (:func:`~auxopt.bandit.select_tasks`): the tasks whose utility beats ``baseline`` (``"median"``,
        an arm such as the primary's own, or None for ``threshold``), best first, at most ``top_k``;
        ``none_arm`` (e.g. the primary) is never selected."""
        return select_tasks(self.bandit.evidence(), threshold, top_k, none_arm=none_arm, baseline=baseline)

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
            "steps": self.steps,
            "last_value": self.last_value,
            "changes": list(self.changes),
            "history": list(self.history),
            "pulls_started": self.pulls_started,
        }

    def load_state_dict(self, state: dict) -> None:
        self.bandit.load_state_dict(state["bandit"])
        self.rng.bit_generator.state = state["rng"]
        self.current, self.remaining = state["current"], int(state["remaining"])
        self.steps = int(state.get("steps", 0))
        last = state["last_value"]
        self.last_value = tuple(last) if isinstance(last, list) else last
        self.changes = [float(c) for c in state.get("changes", [])]
        self.history = list(state["history"])
        self.pulls_started = int(state.get("pulls_started", 0))
        if self.plan is not None:  # in rounds: from the start of the round it was saved in
            if self.remaining:  # saved mid-pull: that pull is trained again
                self.pulls_started, self.remaining = self.pulls_started - 1, 0
            self.pulls_started = self.plan.resume_at(self.pulls_started)
