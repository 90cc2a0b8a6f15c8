"""AutoSeM (Guo, Pasunuru & Bansal, NAACL 2019) as a resumable two-stage pipeline of Optuna studies.

Stage 1 picks auxiliary tasks with Beta-Bernoulli Thompson sampling, either

* ``stage1="online"`` (AutoSeM's own): one training run whose task schedule is the bandit
  (:class:`~auxopt.train.OnlineThompson`), stored as the single trial of study ``<name>.stage1``; or
* ``stage1="sampler"``: study ``<name>.stage1`` whose trials each train the primary task with one
  auxiliary chosen by :class:`~auxopt.samplers.ThompsonTaskSampler`.

The tasks whose posterior mean reaches ``threshold`` (at most ``top_k``) are kept. Stage 2, study
``<name>.stage2``, searches their mixing ratios (the primary's fixed to 1) with
:class:`~auxopt.samplers.MixingRatioSampler`, warm-started at ratios proportional to the stage-1
posterior means. Both studies live in one storage and name each other in their user_attrs.

Running :meth:`AutoSeM.optimize` again continues where the last run stopped: a finished stage 1 is
read back from storage, never redone, and each stage only runs the trials it still lacks.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna

from auxopt.errors import AuxoptError
from auxopt.samplers import select_tasks
from auxopt.study import StudySpec
from auxopt.tasks.task import Task
from auxopt.train import OnlineThompson

logger = logging.getLogger("auxopt")
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


@dataclass
class AutoSeMResult:
    """What the pipeline found: the kept tasks, the best ratios and their scores."""

    selected: list[str]
    posterior: dict[str, tuple[float, float]]
    ratios: dict[str, float]
    best_dev: float
    test_at_best: float | None
    stage1: str
    stage2: str | None


@dataclass
class AutoSeM:
    """The two-stage AutoSeM search.

    Args:
        name: prefix of the two study names (``<name>.stage1``, ``<name>.stage2``).
        primary, auxiliaries: the end task and the candidate auxiliary tasks.
        base: fixed :class:`~auxopt.train.TrainConfig` fields for every run (model, max_steps, …).
        stage1: ``"online"`` or ``"sampler"``.
        online: the online schedule's settings (``stage1="online"``).
        stage1_steps: training steps of the online stage-1 run (default ``base["max_steps"]``).
        stage1_trials: trials of the sampler stage 1.
        gamma: the bandit's decay toward the prior (both stage-1 variants).
        threshold, top_k: task selection on the stage-1 posterior mean.
        stage2_trials: trials of stage 2.
        ratio_range: bounds of each auxiliary's mixing ratio in stage 2 (the primary's is 1).
        integer_ratios: search whole-number ratios (AutoSeM's round-robin) instead of real ones.
        n_startup_trials: quasi-random trials before the GP of stage 2 (None: the sampler's
            default, ``min(10, 2 d + 1)`` for ``d`` kept tasks).
        seed: seeds both samplers and the training runs.
        storage: default storage URL (default: ``sqlite:///<name>.db`` beside the study file).
        on_overlap: ``"warn"``, ``"error"`` or ``"ignore"`` when a task's train split shares
            examples with the primary's dev or test split (see :class:`~auxopt.study.StudySpec`).
    """

    name: str
    primary: Task
    auxiliaries: Sequence[Task]
    base: Mapping[str, Any] = field(default_factory=dict)
    stage1: str = "online"
    online: OnlineThompson = field(default_factory=OnlineThompson)
    stage1_steps: int | None = None
    stage1_trials: int = 20
    gamma: float = 0.3
    threshold: float = 0.5
    top_k: int | None = None
    stage2_trials: int = 20
    ratio_range: tuple[float, float] = (0.0, 5.0)
    integer_ratios: bool = False
    n_startup_trials: int | None = None
    seed: int = 0
    storage: str | None = None
    source_file: str | None = None
    on_overlap: str = "warn"
    result: AutoSeMResult | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if not self.auxiliaries:
            raise AuxoptError("AutoSeM needs at least one auxiliary task to choose from")
        if self.stage1 not in ("online", "sampler"):
            raise AuxoptError(f"stage1 must be 'online' or 'sampler', not {self.stage1!r}")
        low, high = self.ratio_range
        if not 0 <= low < high:
            raise AuxoptError(f"ratio_range must be (low, high) with 0 <= low < high, not {self.ratio_range!r}")
        for key in ("stage1_trials", "stage2_trials"):
            if getattr(self, key) < 1:
                raise AuxoptError(f"{key} must be at least 1")
        if self.online.gamma != self.gamma:
            self.online = OnlineThompson(**{**self.online.__dict__, "gamma": self.gamma})
        self._stage1_spec()  # validates base settings before any storage is touched

    # -- the two studies ----------------------------------------------------------------------
    @property
    def stage1_name(self) -> str:
        return f"{self.name}.stage1"

    @property
    def stage2_name(self) -> str:
        return f"{self.name}.stage2"

    def _spec(self, name: str, space, sampler, n_trials: int, stage: int, **attrs) -> StudySpec:
        return StudySpec(
            name=name,
            primary=self.primary,
            auxiliaries=tuple(self.auxiliaries),
            space=space,
            base=dict(self.base, seed=self.base.get("seed", self.seed)),
            sampler=sampler,
            pruner=optuna.pruners.NopPruner(),
            n_trials=n_trials,
            storage=self.storage,
            seed=self.seed,
            user_attrs={"pipeline": self.name, "stage": stage, "stages": [self.stage1_name, self.stage2_name], **attrs},
            source_file=self.source_file,
            on_overlap=self.on_overlap,
        )

    def _stage1_spec(self) -> StudySpec:
        if self.stage1 == "online":
            steps = self.stage1_steps or self.base.get("max_steps")

            def space(trial: optuna.Trial) -> dict:
                out: dict[str, Any] = {"schedule": self.online, "ratios": None}
                if steps:
                    out["max_steps"] = int(steps)
                return out

            return self._spec(self.stage1_name, space, optuna.samplers.RandomSampler(seed=self.seed), 1, 1)

        from auxopt.samplers import ThompsonTaskSampler

        names = [t.name for t in self.auxiliaries]
        primary = self.primary.name

        def space(trial: optuna.Trial) -> dict:
            aux = trial.suggest_categorical("aux_task", ["none", *names])
            return {"ratios": {primary: 1} if aux == "none" else {primary: 1, aux: 1}}

        sampler = ThompsonTaskSampler(seed=self.seed, gamma=self.gamma)
        return self._spec(self.stage1_name, space, sampler, self.stage1_trials, 1)

    def _stage2_spec(self, selected: list[str], means: Mapping[str, float]) -> StudySpec:
        from auxopt.samplers import MixingRatioSampler

        low, high = self.ratio_range
        primary = self.primary.name

        def space(trial: optuna.Trial) -> dict:
            ratios: dict[str, float] = {primary: 1}
            for task in selected:
                if self.integer_ratios:
                    ratios[task] = trial.suggest_int(f"ratio_{task}", int(low), int(high))
                else:
                    ratios[task] = trial.suggest_float(f"ratio_{task}", low, high)
            return {"ratios": ratios}

        sampler = MixingRatioSampler(
            seed=self.seed,
            n_startup_trials=self.n_startup_trials,
            warm_start={f"ratio_{t}": float(means[t]) for t in selected},
        )
        return self._spec(self.stage2_name, space, sampler, self.stage2_trials, 2, selected_tasks=selected)

    def _primary_only_spec(self) -> StudySpec:
        """Stage 2 when stage 1 kept no task: one run of the primary task alone."""
        primary = self.primary.name
        return self._spec(self.stage2_name, lambda trial: {"ratios": {primary: 1}},
                          optuna.samplers.RandomSampler(seed=self.seed), 1, 2, selected_tasks=[])

    # -- running ------------------------------------------------------------------------------
    def storage_url(self, storage: str | None = None) -> str:
        return self._stage1_spec().storage_url(storage)

    @staticmethod
    def _remaining(spec: StudySpec, storage: str, target: int) -> int:
        try:
            study = optuna.load_study(study_name=spec.name, storage=storage)
        except KeyError:
            return target
        return max(0, target - sum(t.state in FINISHED for t in study.get_trials(deepcopy=False)))

    def _continue(self, spec: StudySpec, storage: str, target: int, run: dict[str, Any]) -> optuna.Study:
        """The study of ``spec`` with ``target`` finished trials: runs the missing ones, if any."""
        remaining = self._remaining(spec, storage, target)
        return spec.optimize(n_trials=remaining, storage=storage, **run) if remaining else spec.load_study(storage)

    def _posterior(self, study: optuna.Study, spec: StudySpec) -> dict[str, tuple[float, float]]:
        if self.stage1 == "online":
            done = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
            posterior = done[-1].user_attrs["thompson_posterior"]
            return {k: tuple(v) for k, v in posterior.items() if k != self.primary.name}
        posterior = spec.sampler.posterior(study)
        return {k: v for k, v in posterior.items() if k != "none"}

    def optimize(
        self, n_trials: int | None = None, storage: str | None = None, **run: Any
    ) -> optuna.Study:
        """Run (or continue) both stages; return the final study. ``n_trials`` overrides
        ``stage2_trials``; ``run`` (``progress``, ``publish_every``, ``callbacks``) goes to each
        stage's :meth:`StudySpec.optimize`. The outcome is in :attr:`result`."""
        if n_trials is not None:
            self.stage2_trials = n_trials
        url = self.storage_url(storage)
        spec1 = self._stage1_spec()
        target1 = 1 if self.stage1 == "online" else self.stage1_trials
        remaining = self._remaining(spec1, url, target1)
        if remaining:
            logger.info("AutoSeM stage 1 (%s): %d run(s) to go", self.stage1, remaining)
            study1 = spec1.optimize(n_trials=remaining, storage=url, **run)
        else:
            logger.info("AutoSeM stage 1 is done; reading it from storage")
            study1 = spec1.load_study(url)
        posterior = self._posterior(study1, spec1)
        means = {k: a / (a + b) for k, (a, b) in posterior.items()}
        selected = [str(t) for t in select_tasks(posterior, self.threshold, self.top_k)]
        study1.set_user_attr("selected_tasks", selected)
        study1.set_user_attr("posterior_mean", means)
        logger.info("AutoSeM stage 1 kept %s (posterior means %s)", selected or "no task",
                    {k: round(v, 3) for k, v in means.items()})

        if not selected:  # nothing helps: the answer is the primary task alone
            baseline = self._primary_only_trials(study1)
            if baseline:  # the sampler's stage 1 trained it already ("none" arm)
                best = max(baseline, key=lambda t: t.value)
                self.result = AutoSeMResult([], posterior, {self.primary.name: 1.0}, float(best.value),
                                            best.user_attrs.get("test_metric"), self.stage1_name, None)
                return study1
            study2 = self._continue(self._primary_only_spec(), url, 1, run)  # the online run mixed tasks
            best = study2.best_trial
            self.result = AutoSeMResult([], posterior, {self.primary.name: 1.0}, float(best.value),
                                        best.user_attrs.get("test_metric"), self.stage1_name, self.stage2_name)
            return study2
        study2 = self._continue(self._stage2_spec(selected, means), url, self.stage2_trials, run)
        best = study2.best_trial
        ratios = {self.primary.name: 1.0, **{t: float(best.params[f"ratio_{t}"]) for t in selected}}
        self.result = AutoSeMResult(
            selected, posterior, ratios, float(best.value), best.user_attrs.get("test_metric"),
            self.stage1_name, self.stage2_name,
        )
        return study2

    def _primary_only_trials(self, study1: optuna.Study) -> list[optuna.trial.FrozenTrial]:
        """Stage 1's finished runs of the primary task alone: the sampler's ``none`` arm (the online
        stage 1 has none: its one run mixes every task)."""
        if self.stage1 != "sampler":
            return []
        return [t for t in study1.get_trials(deepcopy=False)
                if t.state == optuna.trial.TrialState.COMPLETE and t.params.get("aux_task") == "none"]

    def summary(self) -> str:
        if self.result is None:
            return "AutoSeM has not run yet"
        r = self.result
        ratios = ", ".join(f"{k}: {v:.3g}" for k, v in r.ratios.items())
        return f"AutoSeM kept {r.selected or 'no auxiliary task'}; mixing ratios {{{ratios}}}"

