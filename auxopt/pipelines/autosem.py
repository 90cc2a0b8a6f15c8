"""AutoSeM (Guo, Pasunuru & Bansal, NAACL 2019) as a resumable two-stage pipeline of Optuna studies.

Stage 1 picks auxiliary tasks with Beta-Bernoulli Thompson sampling, either

* ``stage1="online"`` (AutoSeM's own): one training run whose task schedule is the bandit
  (:class:`~auxopt.train.OnlineThompson`, the primary task one of its arms), at a constant learning
  rate after warm-up, stored as the single trial of study ``<name>.stage1``; or
* ``stage1="sampler"``: study ``<name>.stage1`` whose trials each train the primary task with one
  auxiliary (or none) chosen by :class:`~auxopt.samplers.ThompsonTaskSampler`.

The bandit's decay (γ) drives only which task is tried next. Selection reads the undecayed evidence
(wins and pulls per arm) and judges each task against a bar the data provides: the median task
(``baseline="median"``, default), the primary-only arm (``"primary"``), or ``None`` for the fixed
``threshold``; the best ``top_k`` above it are kept.

Stage 2, study ``<name>.stage2``, searches the kept tasks' mixing ratios relative to the primary's 1
on a log scale with :class:`~auxopt.samplers.MixingRatioSampler`. Its first trials are fixed
candidate points: the **best kept task alone** (1:1), the **primary alone** (every kept task off;
reused from stage 1's primary-only trials when the sampler ran some as long as stage 2's runs),
**equal mixing** and the **stage-1 utilities** mapped onto ratios 1/2 … 2; the GP takes the remaining
trials. A proposal whose effective ratios already ran (two values in the off band mean the same run)
takes that trial's outcome without training again (user_attr ``reused_from``, 0 steps). Runs report
their dev curve, and a pruner (by default :func:`~auxopt.pruners.search_pruner`, the median rule
from half a run on) stops those that trail; the first three points are protected from it (so the
result is never worse on dev than any of them), and so are the sampler stage 1's
primary-only runs. Both studies live in one storage and name each other in their user_attrs.

Running :meth:`AutoSeM.optimize` again continues where the last run stopped: a finished stage 1 is
read back from storage, never redone, and each stage only runs the trials it still lacks.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import optuna

from auxopt import records
from auxopt.errors import AuxoptError
from auxopt.pruners import ProtectedPruner, search_pruner
from auxopt.samplers import select_tasks
from auxopt.study import StudySpec, file_storage_url
from auxopt.tasks.task import Task
from auxopt.train import OnlineThompson

logger = logging.getLogger("auxopt")
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def _primary_only(trial: optuna.trial.FrozenTrial) -> bool:
    """A sampler stage-1 trial of the primary task alone (the ``none`` arm): the reward's baseline."""
    return trial.params.get("aux_task") == "none"


@dataclass
class AutoSeMResult:
    """What the pipeline found: the kept tasks, the best ratios and their scores."""

    selected: list[str]
    evidence: dict[str, tuple[float, float]]  # undecayed (α0 + wins, β0 + losses) per arm
    ratios: dict[str, float]
    best_dev: float
    test_at_best: float | None
    stage1: str
    stage2: str | None
    trial: int | None = None  # the number of the trial that scored best_dev …
    trial_study: str | None = None  # … in this study (stage 2's, or stage 1's primary-only run)

    @property
    def posterior(self) -> dict[str, tuple[float, float]]:
        """Deprecated name of :attr:`evidence` (never the decayed posterior that steers the draws)."""
        warnings.warn("AutoSeMResult.posterior is now AutoSeMResult.evidence", FutureWarning, stacklevel=2)
        return self.evidence


@dataclass
class AutoSeM:
    """The two-stage AutoSeM search.

    Args:
        name: prefix of the two study names (``<name>.stage1``, ``<name>.stage2``).
        primary: the end task.
        auxiliaries: the candidate auxiliary tasks.
        base: fixed :class:`~auxopt.train.TrainConfig` fields for every run (model, max_steps, …).
        stage1: ``"online"`` or ``"sampler"``.
        online: the online schedule's settings (``stage1="online"``); ``OnlineThompson(reward="round")``
            judges every candidate against the others from the same saved state (:mod:`auxopt.train.rounds`:
            the precise online stage 1 on the selection benchmark, given room for several rounds).
        stage1_steps: training steps of the online stage-1 run, or of each run of the sampler stage 1
            (default ``base["max_steps"]``; the sampler's 1:1 runs may be shorter than stage 2's,
            which then runs the primary alone at its own length).
        stage1_trials: trials of the sampler stage 1.
        gamma: the bandit's decay toward the prior; it steers the sampling, never the selection.
        baseline: what a task's stage-1 utility must beat to be kept: ``"median"`` (the median
            task; default), ``"primary"`` (the primary-only arm: the primary task's own arm online,
            the ``none`` arm of the sampler), or ``None`` (the fixed ``threshold``). Online, the
            primary's own arm wins most often, so ``"primary"`` keeps next to nothing there.
        threshold: the bar when ``baseline`` is None.
        top_k: keep at most this many tasks (the best utilities); None: no cap.
        stage2_trials: trials of stage 2, the fixed candidate points included.
        ratio_range: ``(low, high)``: each kept auxiliary's ratio, relative to the primary's 1, is
            searched on a log scale from ``low`` to ``high``; below ``low``, down to ``low / 2``, is
            the "off" band (the task is left out). Default 1/8 … 4.
        integer_ratios: search whole-number ratios 0 … ``high`` (AutoSeM's round-robin; 0 is off)
            instead.
        n_startup_trials: quasi-random trials before the GP of stage 2, the fixed points counted
            (None: just the fixed points).
        pruner: the Optuna pruner that stops stage-2 runs (and the sampler stage 1's) from the dev
            curve they report (default :func:`~auxopt.pruners.search_pruner`: the median rule from
            half a run on; any Optuna pruner: successive halving, Hyperband, …), wrapped in
            :class:`~auxopt.pruners.ProtectedPruner` so that stage 2's fixed candidate points and
            the sampler's primary-only (``none``) runs always finish; a pruned run counts as a loss
            in the sampler's evidence and keeps the steps it ran. None: every run finishes.
        seed: seeds both samplers and the training runs.
        storage: default storage URL (default: ``sqlite:///<name>.db`` beside the study file).
        on_overlap: ``"warn"``, ``"error"`` or ``"ignore"`` when a task's train split shares
            examples with the primary's dev or test split (see :class:`~auxopt.study.StudySpec`).
        reuse_from: names of other AutoSeM pipelines in the same storage: a run with the settings
            of a run their stages trained takes its outcome (:attr:`StudySpec.reuse_from`), e.g. the
            same search rerun under a new name after a change to stage 2.
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
    baseline: str | None = "median"
    threshold: float = 0.5
    top_k: int | None = 3
    stage2_trials: int = 12
    ratio_range: tuple[float, float] = (0.125, 4.0)
    integer_ratios: bool = False
    n_startup_trials: int | None = None
    pruner: optuna.pruners.BasePruner | None = field(default_factory=search_pruner)
    seed: int = 0
    storage: str | None = None
    source_file: str | None = None
    on_overlap: str = "warn"
    reuse_from: Sequence[str] = ()
    result: AutoSeMResult | None = field(default=None, init=False)
    _read_only: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.auxiliaries:
            raise AuxoptError("AutoSeM needs at least one auxiliary task to choose from")
        if self.stage1 not in ("online", "sampler"):
            raise AuxoptError(f"stage1 must be 'online' or 'sampler', not {self.stage1!r}")
        low, high = self.ratio_range
        if not (0 < low < high and math.isfinite(high)) and not (self.integer_ratios and 0 <= low < high):
            raise AuxoptError(f"ratio_range must be (low, high) with 0 < low < high, not {self.ratio_range!r}")
        if self.baseline not in ("primary", "median", None):
            raise AuxoptError(f"baseline must be 'primary', 'median' or None, not {self.baseline!r}")
        for key in ("stage1_trials", "stage2_trials"):
            if getattr(self, key) < 1:
                raise AuxoptError(f"{key} must be at least 1")
        if self.pruner is not None and not isinstance(self.pruner, optuna.pruners.BasePruner):
            raise AuxoptError(f"pruner must be an Optuna pruner or None, not {type(self.pruner).__name__}")
        if isinstance(self.reuse_from, str):
            raise AuxoptError(f"reuse_from must be a list of AutoSeM names, not the string {self.reuse_from!r}")
        if self.online.gamma != self.gamma:
            self.online = replace(self.online, gamma=self.gamma)
        self._stage1_spec()  # validates base settings before any storage is touched

    # -- the two studies ----------------------------------------------------------------------
    @property
    def stage1_name(self) -> str:
        return f"{self.name}.stage1"

    @property
    def stage2_name(self) -> str:
        return f"{self.name}.stage2"

    def _spec(self, name: str, space, sampler, n_trials: int, stage: int, pruner=None, **attrs) -> StudySpec:
        return StudySpec(
            name=name,
            primary=self.primary,
            auxiliaries=tuple(self.auxiliaries),
            space=space,
            base=dict(self.base, seed=self.base.get("seed", self.seed)),
            sampler=sampler,
            pruner=pruner or optuna.pruners.NopPruner(),
            n_trials=n_trials,
            storage=self.storage,
            seed=self.seed,
            user_attrs={"pipeline": self.name, "stage": stage, "stages": [self.stage1_name, self.stage2_name], **attrs},
            source_file=self.source_file,
            on_overlap=self.on_overlap,
            reuse_from=[f"{other}.stage{i}" for other in self.reuse_from for i in (1, 2)],
        )

    def _stage1_spec(self) -> StudySpec:
        if self.stage1 == "online":
            steps = self.stage1_steps or self.base.get("max_steps")

            def space(trial: optuna.Trial) -> dict:
                out: dict[str, Any] = {"schedule": self.online, "ratios": None, "lr_schedule": "constant"}
                if steps:
                    out["max_steps"] = int(steps)
                return out

            return self._spec(self.stage1_name, space, optuna.samplers.RandomSampler(seed=self.seed), 1, 1)

        from auxopt.samplers import ThompsonTaskSampler

        names = [t.name for t in self.auxiliaries]
        primary = self.primary.name

        def space(trial: optuna.Trial) -> dict:
            aux = trial.suggest_categorical("aux_task", ["none", *names])
            out: dict[str, Any] = {"ratios": {primary: 1} if aux == "none" else {primary: 1, aux: 1}}
            if self.stage1_steps:
                out["max_steps"] = int(self.stage1_steps)
            return out

        sampler = ThompsonTaskSampler(seed=self.seed, gamma=self.gamma)
        pruner = None if self.pruner is None else ProtectedPruner(self.pruner, protect=_primary_only)
        return self._spec(self.stage1_name, space, sampler, self.stage1_trials, 1, pruner)

    # -- stage 2: ratios on a log scale, fixed candidate points first --------------------------
    def _ratio_param(self, trial: optuna.Trial, task: str) -> float:
        """Suggest ``ratio_<task>`` and return the ratio it means (0: off)."""
        low, high = self.ratio_range
        if self.integer_ratios:
            return float(trial.suggest_int(f"ratio_{task}", 0, int(high)))
        value = trial.suggest_float(f"ratio_{task}", low / 2, high, log=True)
        return 0.0 if value < low else value

    def _off(self) -> float:
        return 0 if self.integer_ratios else self.ratio_range[0] / 2

    def _snap(self, r: float) -> float:
        low, high = self.ratio_range
        return float(min(max(round(r), 1), int(high))) if self.integer_ratios else min(max(r, low), high)

    def protected_points(self, selected: list[str], with_primary_alone: bool = True) -> list[dict[str, float]]:
        """Stage 2's first trials, which the pruner never stops: the best kept task alone at 1:1 (when
        more than one is kept; ``selected`` is best first; why it leads: docs/concepts/bandit.md),
        the primary alone, and equal mixing."""
        one, off = self._snap(1.0), self._off()
        points = [{f"ratio_{t}": one if t == selected[0] else off for t in selected}] if len(selected) > 1 else []
        if with_primary_alone:
            points.append({f"ratio_{t}": off for t in selected})
        return [*points, {f"ratio_{t}": one for t in selected}]

    def candidate_points(
        self, selected: list[str], utilities: Mapping[str, float], with_primary_alone: bool = True
    ) -> list[dict[str, float]]:
        """Stage 2's fixed first trials: the :meth:`protected_points`, then the stage-1 utilities
        mapped linearly onto log₂ ratios −1 … 1 (1/2 … 2; left out when they are all equal)."""
        points = self.protected_points(selected, with_primary_alone)
        u = [utilities[t] for t in selected]
        if len(selected) > 1 and max(u) > min(u):
            log2 = {t: -1 + 2 * (utilities[t] - min(u)) / (max(u) - min(u)) for t in selected}
            points.append({f"ratio_{t}": self._snap(2.0 ** log2[t]) for t in selected})
        return points

    def _stage2_spec(self, selected: list[str], points: list[dict[str, float]]) -> StudySpec:
        from auxopt.samplers import MixingRatioSampler

        primary = self.primary.name

        def space(trial: optuna.Trial) -> dict:
            ratios: dict[str, float] = {primary: 1}
            for task in selected:
                ratios[task] = self._ratio_param(trial, task)
            trial.set_user_attr(records.RATIOS, ratios)
            return {"ratios": ratios}

        startup = len(points) if self.n_startup_trials is None else self.n_startup_trials
        sampler = MixingRatioSampler(seed=self.seed, n_startup_trials=startup)
        pruner = None if self.pruner is None else ProtectedPruner(self.pruner)
        return self._spec(self.stage2_name, space, sampler, self.stage2_trials, 2, pruner, selected_tasks=selected)

    def _enqueue(
        self, spec: StudySpec, storage: str, points: list[dict[str, float]], fixed: list[dict[str, float]]
    ) -> None:
        """Queue the candidate points that the stage-2 study has not run or queued yet (once: a
        resumed study finds them there); those in ``fixed`` (:meth:`protected_points`) are protected
        from the pruner."""
        study = spec.load_study(storage)
        seen = [t.params for t in study.get_trials(deepcopy=False) if t.state != optuna.trial.TrialState.FAIL]
        for point in points:
            if not any(all(math.isclose(p.get(k, math.nan), v) for k, v in point.items()) for p in seen):
                protected = point in fixed  # never pruned: the result is never worse on dev than these
                study.enqueue_trial(point, user_attrs={records.PROTECTED: True} if protected else None)

    def _primary_only_spec(self) -> StudySpec:
        """Stage 2 when stage 1 kept no task: one run of the primary task alone."""
        primary = self.primary.name
        return self._spec(
            self.stage2_name,
            lambda trial: {"ratios": {primary: 1}},
            optuna.samplers.RandomSampler(seed=self.seed),
            1,
            2,
            selected_tasks=[],
        )

    # -- running ------------------------------------------------------------------------------
    def storage_url(self, storage: str | None = None) -> str:
        """Both stages' storage: ``storage``, else ``self.storage``, else ``sqlite:///<name>.db`` beside
        the study file (or in the working folder)."""
        return storage or self.storage or file_storage_url(self.name, self.source_file)

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
        self._must_be_done(spec, remaining)
        return spec.optimize(n_trials=remaining, storage=storage, **run) if remaining else spec.load_study(storage)

    def _evidence(self, study: optuna.Study, spec: StudySpec) -> dict[str, tuple[float, float]]:
        """Stage 1's undecayed evidence per arm, the primary-only arm included (under the primary's
        name online, ``none`` for the sampler)."""
        if self.stage1 == "online":
            done = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
            evidence = done[-1].user_attrs[records.THOMPSON_EVIDENCE]
            return {k: (float(a), float(b)) for k, (a, b) in evidence.items()}
        return {str(k): v for k, v in spec.sampler.evidence(study).items()}

    def select(self, evidence: Mapping[str, tuple[float, float]]) -> list[str]:
        """The kept tasks: utility above the ``baseline``, best first, at most ``top_k``."""
        none = self.primary.name if self.stage1 == "online" else "none"
        baseline = (none if none in evidence else "median") if self.baseline == "primary" else self.baseline
        return [str(t) for t in select_tasks(evidence, self.threshold, self.top_k, none_arm=none, baseline=baseline)]

    def optimize(self, n_trials: int | None = None, storage: str | None = None, **run: Any) -> optuna.Study:
        """Run (or continue) both stages; return the final study. ``n_trials`` overrides
        ``stage2_trials``; ``run`` (``progress``, ``publish_every``, ``callbacks``) goes to each
        stage's :meth:`StudySpec.optimize`. The outcome is in :attr:`result`."""
        if n_trials is not None:
            self.stage2_trials = n_trials
        url = self.storage_url(storage)
        spec1 = self._stage1_spec()
        target1 = 1 if self.stage1 == "online" else self.stage1_trials
        remaining = self._remaining(spec1, url, target1)
        self._must_be_done(spec1, remaining)
        if remaining:
            logger.info("AutoSeM stage 1 (%s): %d run(s) to go", self.stage1, remaining)
            study1 = spec1.optimize(n_trials=remaining, storage=url, **run)
        else:
            logger.info("AutoSeM stage 1 is done; reading it from storage")
            study1 = spec1.load_study(url)
        evidence = self._evidence(study1, spec1)
        utilities = {k: a / (a + b) for k, (a, b) in evidence.items()}
        selected = self.select(evidence)
        if not self._read_only:  # load_result() writes nothing
            study1.set_user_attr(records.SELECTED_TASKS, selected)
            study1.set_user_attr(records.UTILITIES, utilities)
        shown = {k: round(v, 3) for k, v in utilities.items()}
        logger.info("AutoSeM stage 1 kept %s (utilities %s)", selected or "no task", shown)
        aux_evidence = {k: v for k, v in evidence.items() if k not in (self.primary.name, "none")}

        baseline = self._primary_only_trials(study1)  # the sampler's stage 1 trained it already
        alone = {self.primary.name: 1.0}
        if not selected and baseline:
            self.result = self._result([], aux_evidence, alone, max(baseline, key=lambda t: t.value), None, False)
            return study1
        if not selected:  # nothing beat the primary's own arm: the answer is the primary alone
            study2 = self._continue(self._primary_only_spec(), url, 1, run)
            self.result = self._result([], aux_evidence, alone, study2.best_trial, self.stage2_name, True)
            return study2
        points = self.candidate_points(selected, utilities, with_primary_alone=not baseline)
        spec2 = self._stage2_spec(selected, points)
        if self._remaining(spec2, url, self.stage2_trials):
            self._must_be_done(spec2, 1)
            fixed = self.protected_points(selected, with_primary_alone=not baseline)
            self._enqueue(spec2, url, points[: self.stage2_trials], fixed)
        study2 = self._continue(spec2, url, self.stage2_trials, run)
        finished = [t for t in study2.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
        best = max([*finished, *baseline], key=lambda t: t.value)
        in_stage2 = best not in baseline
        ratios = {**alone, **(best.user_attrs[records.RATIOS] if in_stage2 else dict.fromkeys(selected, 0.0))}
        self.result = self._result(selected, aux_evidence, ratios, best, self.stage2_name, in_stage2)
        return study2

    def _result(self, selected, evidence, ratios, best, stage2: str | None, in_stage2: bool) -> AutoSeMResult:
        """The answer: ``best`` (a trial of stage 2, or else of stage 1) and its ratios."""
        return AutoSeMResult(
            selected,
            evidence,
            {k: float(v) for k, v in ratios.items()},
            float(best.value),
            best.user_attrs.get(records.TEST_METRIC),
            self.stage1_name,
            stage2,
            best.number,
            self.stage2_name if in_stage2 else self.stage1_name,
        )

    def load_result(self, storage: str | None = None) -> AutoSeMResult:
        """The outcome of the finished pipeline, read from storage (nothing is trained or queued);
        an :class:`AuxoptError` naming the stage that has not finished."""
        self._read_only = True
        try:
            self.optimize(storage=storage, publish_every=None)
        finally:
            self._read_only = False
        assert self.result is not None
        return self.result

    def config_for(self, ratios: Mapping[str, float]):
        """The :class:`~auxopt.train.TrainConfig` of a stage-2 run with these ratios (the primary's
        1 included), e.g. of :attr:`result`'s ``ratios``: the pipeline's base settings and seed."""
        return self._spec(self.stage2_name, None, None, 1, 2).config_for({"ratios": dict(ratios)})

    def _must_be_done(self, spec: StudySpec, remaining: int) -> None:
        if remaining and self._read_only:
            raise AuxoptError(
                f"AutoSeM {self.name!r} has not finished: study {spec.name!r} lacks {remaining} trial(s); "
                "run the pipeline to the end first (auxopt run STUDY.py)"
            )

    def _stage1_runs_full_length(self) -> bool:
        """The sampler stage 1's runs train as many steps as stage 2's."""
        from auxopt.train import TrainConfig

        return not self.stage1_steps or int(self.stage1_steps) == int(self.base.get("max_steps", TrainConfig.max_steps))

    def _primary_only_trials(self, study1: optuna.Study) -> list[optuna.trial.FrozenTrial]:
        """Stage 1's finished runs of the primary task alone: the sampler's ``none`` arm (the online
        stage 1 has none: its one run mixes every task)."""
        if self.stage1 != "sampler" or not self._stage1_runs_full_length():
            return []  # runs shorter than stage 2's are no stand-in for its primary-alone point
        done = study1.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        return [t for t in done if _primary_only(t)]

    def summary(self) -> str:
        if self.result is None:
            return "AutoSeM has not run yet"
        r = self.result
        ratios = ", ".join(f"{k}: {v:.3g}" for k, v in r.ratios.items())
        return f"AutoSeM kept {r.selected or 'no auxiliary task'}; mixing ratios {{{ratios}}}"
