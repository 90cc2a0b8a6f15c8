"""``ThompsonTaskSampler``: AutoSeM stage 1 (task selection) as an Optuna sampler.

Each trial trains the primary task with one auxiliary task (or none); the auxiliary task is a
categorical parameter (``aux_task`` by default) that this sampler chooses by Thompson sampling from
the decayed Beta-Bernoulli bandit of :mod:`auxopt.bandit`, one pull per finished trial.
Every other parameter is sampled by an independent sampler (random by default).

Nothing lives only in the sampler: the bandit is replayed from the study's trials in trial-number
order, so any worker, or a study resumed after a crash, sees the same posterior.
"""

from __future__ import annotations

import copy
import threading
import weakref
import zlib
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from auxopt import records
from auxopt._optuna import storage_of, study_id, trial_id, trials_of
from auxopt.bandit import (
    BetaBernoulliBandit,
    check_bandit_parameters,
    check_reward,
    select_tasks,
)
from auxopt.errors import AuxoptError

if TYPE_CHECKING:
    from optuna.study import Study

__all__ = ["ThompsonTaskSampler", "select_tasks"]

RewardFn = Callable[["Study", FrozenTrial, list[FrozenTrial]], Any]

_MAX_CACHED_STUDIES = 16


@dataclass
class _Replay:
    """The bandit state after replaying trials ``0 .. n - 1`` (in trial-number order)."""

    bandits: dict[str, BetaBernoulliBandit]
    n: int = 0
    last_trial_id: int | None = None
    last_value: float | None = None  # the latest COMPLETE trial's value ("previous" reference)
    none_sum: dict[str, float] = field(default_factory=dict)  # per param: Σ values of `none` trials
    none_count: dict[str, int] = field(default_factory=dict)
    finished: list[FrozenTrial] = field(default_factory=list)  # for callable rewards only
    storage: Callable[[], Any] | None = None  # weak reference to the storage it was built from

    def copy(self) -> _Replay:
        return _Replay(
            bandits={p: b.copy() for p, b in self.bandits.items()},
            n=self.n,
            last_trial_id=self.last_trial_id,
            last_value=self.last_value,
            none_sum=dict(self.none_sum),
            none_count=dict(self.none_count),
            finished=list(self.finished),
            storage=self.storage,
        )


class ThompsonTaskSampler(BaseSampler):
    """Choose auxiliary tasks by AutoSeM's Thompson sampling; sample everything else independently.

    The bandit's arms are the choices of a categorical parameter (``trial.suggest_categorical(
    "aux_task", ["none", "chemprot", "sst2", ...])``); ``"none"`` is the primary-only arm. Each
    finished trial is one pull of the arm it used, with a 0/1 reward:

    * ``reward="baseline"`` (default): 1 when the trial's value is at least the **mean** value of the
      COMPLETE primary-only (``none_arm``) trials numbered before it — at most, for a minimized
      study. The mean (not the best) is used so that a neutral task wins about half of the time
      however many baseline runs there are, and a task that helps wins more often: posterior means
      then read against :func:`select_tasks`' threshold of 0.5. With no earlier primary-only trial
      the ``"previous"`` rule applies. (For a trial on the ``none`` arm itself this compares it
      with the earlier primary-only trials.)
    * ``reward="previous"``: 1 when the value is at least that of the latest COMPLETE trial numbered
      before it (AutoSeM's rule).
    * a callable ``reward(study, trial, previous_trials) -> 0/1/bool``, where ``previous_trials``
      are the finished trials numbered before ``trial``; anything but 0/1/bool raises
      :class:`AuxoptError` the first time it is returned.

    A trial with nothing to compare with (the first COMPLETE trial) records no pull. PRUNED trials
    are pulls with reward 0 (pruning means the run looked worse than its peers; the callable is not
    asked). FAIL trials are skipped: no pull, no decay.

    Several workers: the posterior is replayed from the storage's finished trials in trial-number
    order — cached per study as the state after the longest run of finished trials and extended
    incrementally; the cache never holds anything the storage could not rebuild. RUNNING trials of
    other workers that already hold the parameter count as *pending pulls*: for the draw only, each
    adds a fantasised failure (``β += 1``, no decay) to its arm, so parallel workers spread over the
    arms instead of all pulling the current favourite. (A trial left RUNNING by a crashed worker
    stays pending until it is failed, e.g. by Optuna's heartbeat and ``fail_stale_trials``.)

    The draw for trial ``k`` uses an RNG seeded from ``(seed, k, parameter name)``, so it does not
    depend on which process makes it: two samplers with the same seed on the same storage suggest
    the same task for the same trial.

    Each trial that used a bandit parameter gets user attrs (shown by optuna-dashboard) with the
    posterior after it: ``thompson_posterior_mean`` (``{task: α/(α+β)}``) and ``thompson_pulls``
    (``{task: n}``), named by :data:`auxopt.records.THOMPSON_POSTERIOR_MEAN` and
    :data:`auxopt.records.THOMPSON_PULLS`; with several bandit parameters the keys are suffixed
    ``:<param name>``.

    Args:
        param_names: the categorical parameter(s) chosen by the bandit (one bandit each).
        reward: ``"baseline"``, ``"previous"`` or a callable, see above.
        none_arm: the primary-only choice (never selected by :func:`select_tasks`).
        alpha0: the Beta prior's α (> 0).
        beta0: the Beta prior's β (> 0).
        gamma: the decay toward the prior per pull, in [0, 1).
        seed: seeds the Thompson draws and the default independent sampler.
        independent_sampler: samples all other parameters (default ``RandomSampler(seed=seed)``).
    """

    def __init__(
        self,
        param_names: str | Sequence[str] = "aux_task",
        *,
        reward: str | RewardFn = "baseline",
        none_arm: Hashable = "none",
        alpha0: float = 1.0,
        beta0: float = 1.0,
        gamma: float = 0.3,
        seed: int | None = None,
        independent_sampler: BaseSampler | None = None,
    ):
        names = [param_names] if isinstance(param_names, str) else list(param_names)
        if not names or not all(isinstance(n, str) and n for n in names):
            raise AuxoptError(f"param_names must be a parameter name or a list of them, not {param_names!r}")
        if len(set(names)) != len(names):
            raise AuxoptError(f"param_names {names!r} lists a parameter twice")
        if not (callable(reward) or reward in ("baseline", "previous")):
            raise AuxoptError(
                f"reward must be 'baseline', 'previous' or a callable "
                f"(study, trial, previous_trials) -> 0/1, not {reward!r}"
            )
        if independent_sampler is not None and not isinstance(independent_sampler, BaseSampler):
            raise AuxoptError(f"independent_sampler must be an Optuna sampler, not {type(independent_sampler)}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise AuxoptError(f"seed must be a whole number >= 0 or None, not {seed!r}")
        self._param_names = tuple(names)
        self._reward = reward
        self._none_arm = none_arm
        self._alpha0, self._beta0, self._gamma = check_bandit_parameters(alpha0, beta0, gamma)
        self._seed_given = seed is not None
        self._seed = int(seed) if seed is not None else _fresh_seed()
        self._independent_sampler = independent_sampler or optuna.samplers.RandomSampler(seed=seed)
        self._cache: OrderedDict[tuple[int, int], _Replay] = OrderedDict()
        self._lock = threading.RLock()

    @property
    def param_names(self) -> tuple[str, ...]:
        return self._param_names

    # -- BaseSampler ------------------------------------------------------------------------------
    def reseed_rng(self) -> None:
        """Reseed the independent sampler; the Thompson draws stay keyed by ``(seed, trial number)``
        when a seed was given (they already differ from trial to trial), else get a fresh seed."""
        self._independent_sampler.reseed_rng()
        if not self._seed_given:
            self._seed = _fresh_seed()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        if param_name not in self._param_names:
            return self._independent_sampler.sample_independent(study, trial, param_name, param_distribution)
        choices = self._check_distribution(param_name, param_distribution)
        trials = trials_of(study)
        replay = self._replay(study, trials)
        pending: dict[Hashable, int] = {}
        for t in trials:
            if t.state == TrialState.RUNNING and t.number != trial.number and param_name in t.params:
                arm = t.params[param_name]
                pending[arm] = pending.get(arm, 0) + 1
        bandit = replay.bandits[param_name]
        return bandit.choose(self._trial_rng(trial.number, param_name), arms=choices, pending=pending)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._independent_sampler.before_trial(study, trial)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        try:
            used = [p for p in self._param_names if p in trial.params]
            if used:
                self._write_user_attrs(study, trial, state, values, used)
        finally:
            self._independent_sampler.after_trial(study, trial, state, values)

    # -- public reading ---------------------------------------------------------------------------
    def posterior(self, study: Study, param_name: str | None = None) -> dict[Hashable, tuple[float, float]]:
        """``{task: (α, β)}`` after the study's finished trials (pending pulls not included).

        ``param_name`` defaults to the first bandit parameter. Tasks that were offered but never
        pulled are at the prior.
        """
        return self._bandit_for(study, param_name).posterior()

    def pulls(self, study: Study, param_name: str | None = None) -> dict[Hashable, int]:
        """``{task: number of pulls}`` after the study's finished trials."""
        return self._bandit_for(study, param_name).pulls()

    def evidence(self, study: Study, param_name: str | None = None) -> dict[Hashable, tuple[float, float]]:
        """``{task: (α0 + wins, β0 + losses)}``: the undecayed evidence that task selection reads
        (the decay drives only which task the next trial tries)."""
        return self._bandit_for(study, param_name).evidence()

    def _bandit_for(self, study: Study, param_name: str | None) -> BetaBernoulliBandit:
        name = self._param_names[0] if param_name is None else param_name
        if name not in self._param_names:
            raise AuxoptError(f"{name!r} is not a bandit parameter of this sampler; it has {list(self._param_names)}")
        return self._replay(study, trials_of(study, use_cache=False)).bandits[name]

    # -- internals --------------------------------------------------------------------------------
    def _check_distribution(self, param_name: str, distribution: BaseDistribution) -> list[Hashable]:
        if not isinstance(distribution, CategoricalDistribution):
            raise AuxoptError(
                f"ThompsonTaskSampler chooses {param_name!r} among tasks, so it must be suggested "
                f"with trial.suggest_categorical({param_name!r}, [task names]); got "
                f"{type(distribution).__name__}. Rename the parameter or leave it out of "
                "param_names to sample it independently."
            )
        choices = list(distribution.choices)
        if not [c for c in choices if c != self._none_arm]:
            raise AuxoptError(
                f"no auxiliary choices for {param_name!r} (choices {choices!r}); give "
                "suggest_categorical at least one auxiliary task name"
            )
        return choices

    def _trial_rng(self, number: int, param_name: str) -> np.random.Generator:
        key = zlib.crc32(param_name.encode("utf-8"))
        return np.random.default_rng(np.random.SeedSequence([self._seed, int(number), key]))

    def _new_replay(self) -> _Replay:
        return _Replay(
            bandits={p: BetaBernoulliBandit((), self._alpha0, self._beta0, self._gamma) for p in self._param_names}
        )

    def _replay(
        self,
        study: Study,
        trials: Sequence[FrozenTrial],
        override: FrozenTrial | None = None,
    ) -> _Replay:
        """The bandit after every finished trial, in trial-number order.

        The cached part covers the longest run of finished trials ``0 .. n - 1`` (their rewards
        cannot change any more); the finished trials after the first unfinished one are replayed
        on a copy each time. ``override`` stands in for the stored trial of the same number (the
        trial being finished in ``after_trial``) and is never cached.
        """
        directions = study.directions
        if len(directions) != 1 and not callable(self._reward):
            raise AuxoptError(
                f"reward={self._reward!r} compares single objective values; for a multi-objective "
                "study pass a callable reward(study, trial, previous_trials) -> 0/1"
            )
        minimize = directions[0] == StudyDirection.MINIMIZE
        storage = storage_of(study)
        key = (id(storage), study_id(study))
        with self._lock:
            cached = self._cache.pop(key, None)
            if cached is None or not _still_valid(cached, storage, trials):
                cached = self._new_replay()
                cached.storage = _weak(storage)
            while cached.n < len(trials) and trials[cached.n].state.is_finished():
                self._step(cached, trials[cached.n], study, minimize)
            self._cache[key] = cached
            while len(self._cache) > _MAX_CACHED_STUDIES:
                self._cache.popitem(last=False)
            replay = cached.copy()
        for t in trials[replay.n :]:
            if override is not None and t.number == override.number:
                t = override
            if t.state.is_finished():
                self._step(replay, t, study, minimize, advance=False)
        return replay

    def _step(
        self,
        replay: _Replay,
        trial: FrozenTrial,
        study: Study,
        minimize: bool,
        advance: bool = True,
    ) -> None:
        """Replay one finished trial: its pull(s), then its value as a later trial's reference."""
        if advance:
            replay.n += 1
            replay.last_trial_id = trial_id(trial)
        if trial.state == TrialState.FAIL:
            replay.finished.append(trial)
            return
        for p in self._param_names:
            if p not in trial.params:
                continue
            bandit = replay.bandits[p]
            dist = trial.distributions.get(p)
            if isinstance(dist, CategoricalDistribution):
                for choice in dist.choices:
                    bandit.add_arm(choice)
            arm = trial.params[p]
            bandit.add_arm(arm)
            r = self._trial_reward(replay, p, trial, study, minimize)
            if r is not None:
                bandit.update(arm, r)
        if trial.state == TrialState.COMPLETE and trial.values is not None:
            value = trial.values[0]
            replay.last_value = value
            for p in self._param_names:
                if p in trial.params and trial.params[p] == self._none_arm:
                    replay.none_sum[p] = replay.none_sum.get(p, 0.0) + value
                    replay.none_count[p] = replay.none_count.get(p, 0) + 1
        replay.finished.append(trial)

    def _trial_reward(
        self, replay: _Replay, param: str, trial: FrozenTrial, study: Study, minimize: bool
    ) -> int | None:
        if trial.state == TrialState.PRUNED:
            return 0
        if trial.state != TrialState.COMPLETE or trial.values is None:
            return None
        if callable(self._reward):
            result = self._reward(study, trial, list(replay.finished))
            return check_reward(result, f"the reward callable's result for trial {trial.number}")
        value = trial.values[0]
        reference = replay.last_value
        if self._reward == "baseline" and replay.none_count.get(param):
            reference = replay.none_sum[param] / replay.none_count[param]
        if reference is None:
            return None  # nothing to compare with yet: not a pull
        return int(value <= reference if minimize else value >= reference)

    def _write_user_attrs(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
        used: list[str],
    ) -> None:
        finished = copy.copy(trial)
        finished.state = state
        finished.values = None if values is None else list(values)
        # fresh from storage (not the per-trial cache, which would then outlive this tell)
        trials = trials_of(study, use_cache=False)
        replay = self._replay(study, trials, override=finished)
        single = len(self._param_names) == 1
        storage, tid = storage_of(study), trial_id(trial)
        for p in used:
            bandit = replay.bandits[p]
            suffix = "" if single else f":{p}"
            means = {str(a): m for a, m in bandit.means().items()}
            pulls = {str(a): n for a, n in bandit.pulls().items()}
            storage.set_trial_user_attr(tid, records.THOMPSON_POSTERIOR_MEAN + suffix, means)
            storage.set_trial_user_attr(tid, records.THOMPSON_PULLS + suffix, pulls)


def _still_valid(cached: _Replay, storage: Any, trials: Sequence[FrozenTrial]) -> bool:
    """The cache is for this storage and trial list: its last replayed trial is still there."""
    if cached.storage is None or cached.storage() is not storage or cached.n > len(trials):
        return False
    if cached.n == 0:
        return True
    last = trials[cached.n - 1]
    return trial_id(last) == cached.last_trial_id and last.state.is_finished()


def _weak(obj: Any) -> Callable[[], Any]:
    try:
        return weakref.ref(obj)
    except TypeError:  # not weak-referenceable: hold it (the cache keeps a few studies at most)
        return lambda: obj


def _fresh_seed() -> int:
    return int(np.random.SeedSequence().entropy % (2**63))
