"""The objective adapter: the one place where Optuna meets training.

A trial becomes a :class:`~auxopt.train.TrainConfig` (by the study's search space), the config is
trained with a reporter that forwards dev metrics to ``trial.report`` and stops when the pruner says
so, and the outcome is written to the trial's user_attrs, where optuna-dashboard shows it.

With an artifact folder, the adapter also gives the run a :class:`~auxopt.train.checkpoint.Checkpoint`
in Optuna's artifact store: a trial retried after its worker died resumes from the last checkpoint
of the trial it retries (user_attr ``resumed_from_step``; 0 when none loaded), and a finished
trial's checkpoints are deleted so that disk use stays bounded.

A trial whose run settings equal those of a finished trial (a sampler that proposed the same
configuration again, or two points of a search space that mean the same run, such as two ratios in
AutoSeM's "off" band) is not trained again: it takes that trial's outcome, with ``reused_from`` naming
it and 0 steps of its own. Training is deterministic given its settings, seed included, so the
outcome is the one a second run would give; a trial with another seed is another run. A repeat of
a PRUNED trial replays its curve to the pruner: stopped again, it ends PRUNED without training;
let through (its peers have changed), it trains.

``reuse_from`` names other studies of the same storage to look in as well (a search rerun under a new
name after a change that leaves these runs as they were): a run one of them trained is taken the
same way, and the trial also records ``reused_study`` and ``reused_cost``, the steps and wall time
the run cost there, which a comparison of searches' compute counts (:func:`run_cost`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna

from auxopt import records
from auxopt.propose import settings_key
from auxopt.train import TrainConfig, TrainResult, train
from auxopt.train.checkpoint import DEFAULT_EVERY, Checkpoint


class TrialReporter:
    """Forwards (step, dev metric) to ``trial.report``; asks the pruner whether to stop. Steps in
    ``replayed`` were reported already (from a pruned twin's curve, which a deterministic run repeats)."""

    def __init__(self, trial: optuna.Trial, prune: bool = True, replayed: frozenset[int] = frozenset()):
        self.trial, self.prune, self.replayed = trial, prune, replayed

    def report(self, step: int, value: float) -> None:
        if step not in self.replayed:
            self.trial.report(value, step)

    def should_stop(self) -> bool:
        return self.prune and self.trial.should_prune()


def record_result(trial: optuna.Trial, result: TrainResult) -> None:
    """Store a training outcome on the trial (user_attrs: what users and the dashboard see)."""
    attrs: dict[str, Any] = {
        records.METRIC: result.metric,
        records.DEV_METRIC: result.best_dev,
        records.TEST_METRIC: result.test_at_best,
        records.BEST_STEP: result.best_step,
        records.STEPS: result.steps,
        records.CURVE: [[int(s), float(v)] for s, v in result.curve],
        records.EXAMPLES: result.examples,
        records.WALL_TIME_S: round(result.wall_time, 3),
        records.STOPPED: result.stopped,
        records.DEVICE: result.device,
    }
    thompson = result.extra.get(records.THOMPSON)
    if thompson is not None:  # AutoSeM stage 1 run online: its posterior and how it evolved
        attrs[records.THOMPSON_POSTERIOR] = thompson["posterior"]
        attrs[records.THOMPSON_MEANS] = thompson["means"]
        attrs[records.THOMPSON_PULLS] = thompson["pulls"]
        if "evidence" in thompson:
            attrs[records.THOMPSON_EVIDENCE] = thompson["evidence"]
        attrs[records.THOMPSON_HISTORY] = [
            [h["step"], h["task"], h["reward"], round(h["dev"], 6)] for h in thompson["history"]
        ]
    for key, value in result.extra.items():  # plugins' records (AANG weights, gradient-part norms)
        if key != records.THOMPSON:
            attrs[key] = value
    for key, value in attrs.items():
        trial.set_user_attr(key, value)


_NOT_REUSED = (
    records.CONFIG,
    records.STEPS,
    records.EXAMPLES,
    records.WALL_TIME_S,
    records.RETRY_OF,
    records.RESUMED_FROM_STEP,
    records.REUSED_FROM,
    records.REUSED_COST,
)


def finished_twin(
    trial: optuna.Trial,
    config: dict[str, Any],
    state: optuna.trial.TrialState = optuna.trial.TrialState.COMPLETE,
    study: optuna.Study | None = None,
) -> optuna.trial.FrozenTrial | None:
    """The first trial in ``state`` that ran exactly these settings: of ``trial``'s own study, or of
    ``study`` (another one), where only a trial that trained them itself counts."""
    key, own = settings_key(config), study is None
    for other in (trial.study if own else study).get_trials(deepcopy=False, states=(state,)):
        if own and other.number == trial.number or not own and records.REUSED_FROM in other.user_attrs:
            continue
        if records.CONFIG in other.user_attrs and settings_key(other.user_attrs[records.CONFIG]) == key:
            return other
    return None


def run_cost(trial: optuna.trial.FrozenTrial) -> tuple[int, float]:
    """(steps, wall seconds) the trial's run cost: its own, or for an outcome taken from another
    study (``reuse_from``), what the run cost there; 0 for a repeat within its study."""
    taken = trial.user_attrs.get(records.REUSED_COST) or {}
    return (
        int(trial.user_attrs.get(records.STEPS, 0) + taken.get("steps", 0)),
        float(trial.user_attrs.get(records.WALL_TIME_S, 0.0) + taken.get("wall_time_s", 0.0)),
    )


def reuse_result(trial: optuna.Trial, twin: optuna.trial.FrozenTrial, study: str | None = None) -> float:
    """Give ``trial`` the outcome of ``twin`` (same settings; of study ``study`` when not its own):
    its metrics, curve and records, no steps."""
    _take_records(trial, twin, study)
    for step, value in twin.intermediate_values.items():
        trial.report(value, step)
    return float(twin.value)


def _take_records(trial: optuna.Trial, twin: optuna.trial.FrozenTrial, study: str | None) -> None:
    origin, own = twin.user_attrs.get(records.REUSED_FROM, twin.number), trial.user_attrs
    for key, value in twin.user_attrs.items():
        if key not in _NOT_REUSED and key not in own:  # what the trial's own space recorded stays
            trial.set_user_attr(key, value)
    for key in (records.STEPS, records.EXAMPLES, records.WALL_TIME_S):
        trial.set_user_attr(key, 0)
    trial.set_user_attr(records.REUSED_FROM, origin)
    if study is not None:
        steps, wall = run_cost(twin)
        trial.set_user_attr(records.REUSED_STUDY, study)
        trial.set_user_attr(records.REUSED_COST, {"steps": steps, "wall_time_s": round(wall, 3)})


def replay_pruned(trial: optuna.Trial, twin: optuna.trial.FrozenTrial, study: str | None = None) -> frozenset[int]:
    """Report a PRUNED twin's curve (the same settings, so the same curve) and ask the pruner at each
    step, as its run would. Where the pruner stops it again, ``trial`` takes the twin's outcome and is
    pruned without training (0 steps, ``reused_from``); else the steps reported, for the run to skip."""
    for step, value in sorted(twin.intermediate_values.items()):
        trial.report(value, step)
        if trial.should_prune():
            _take_records(trial, twin, study)
            where = f"trial {twin.number}" + (f" of {study!r}" if study is not None else "")
            raise optuna.TrialPruned(f"pruned at step {step} (dev {value:.4f}), as {where} was")
    return frozenset(twin.intermediate_values)


class Objective:
    """``Objective(build_config)(trial)`` → the best primary dev metric of one training run.

    Args:
        build_config: turns a trial into a :class:`TrainConfig` (suggesting whatever it searches).
        prune: stop a run early when the study's pruner says so (the trial ends PRUNED).
        train_fn: the training function (``auxopt.train.train``); it receives the config and a reporter.
        artifacts: folder of Optuna's artifact store for checkpoints (None: no checkpoints).
        checkpoint_every: checkpoint every this many optimisation steps.
        reuse: a trial whose settings equal a finished trial's takes its outcome instead of
            training again (user_attr ``reused_from``).
        reuse_from: names of other studies in the trial's storage whose trained runs are taken too
            (names not in the storage are skipped).
    """

    def __init__(
        self,
        build_config: Callable[[optuna.Trial], TrainConfig],
        *,
        prune: bool = True,
        train_fn: Callable[..., TrainResult] = train,
        artifacts: str | Path | None = None,
        checkpoint_every: int = DEFAULT_EVERY,
        reuse: bool = True,
        reuse_from: Sequence[str] = (),
    ):
        self.build_config, self.prune, self.train_fn = build_config, prune, train_fn
        self.artifacts, self.checkpoint_every, self.reuse = artifacts, checkpoint_every, reuse
        self.reuse_from = tuple(reuse_from)

    def twin(
        self, trial: optuna.Trial, settings: dict[str, Any], state: optuna.trial.TrialState
    ) -> tuple[optuna.trial.FrozenTrial | None, str | None]:
        """The finished run of these settings in ``state`` to take, and the study it is in (None:
        the trial's own); (None, None) when there is none or ``reuse`` is off."""
        if not self.reuse:
            return None, None
        twin = finished_twin(trial, settings, state)
        if twin is not None:
            return twin, None
        from auxopt._optuna import storage_of

        for name in self.reuse_from:
            try:
                other = optuna.load_study(study_name=name, storage=storage_of(trial.study))
            except KeyError:
                continue
            twin = finished_twin(trial, settings, state, other)
            if twin is not None:
                return twin, name
        return None, None

    def __call__(self, trial: optuna.Trial) -> float:
        from auxopt.storage import TrialCheckpointStore, artifact_store, retried_trials

        config = self.build_config(trial)
        settings = config.describe()
        trial.set_user_attr(records.CONFIG, settings)
        retried = retried_trials(trial)

        def untrained() -> None:  # a retry that ends without training still owns its predecessor's checkpoints
            if retried and self.artifacts is not None:
                TrialCheckpointStore(trial, artifact_store(self.artifacts)).delete_all()

        twin, where = self.twin(trial, settings, optuna.trial.TrialState.COMPLETE)
        if twin is not None:
            untrained()
            return reuse_result(trial, twin, where)
        pruned, where = self.twin(trial, settings, optuna.trial.TrialState.PRUNED) if self.prune else (None, None)
        try:
            replayed = replay_pruned(trial, pruned, where) if pruned is not None else frozenset()
        except optuna.TrialPruned:
            untrained()
            raise
        if retried:
            trial.set_user_attr(records.RETRY_OF, retried[0])
        checkpoints = None
        if self.artifacts is not None and config.checkpoint is None:
            checkpoints = TrialCheckpointStore(trial, artifact_store(self.artifacts))
            config = dataclasses.replace(config, checkpoint=Checkpoint(checkpoints, every=self.checkpoint_every))
        try:
            result = self.train_fn(config, TrialReporter(trial, self.prune, replayed))
        except Exception:
            if checkpoints is not None:  # a run that fails by itself would fail again: no resume
                checkpoints.delete_all()
            raise
        if retried and records.RESUMED_FROM_STEP not in result.extra:
            result.extra[records.RESUMED_FROM_STEP] = 0
        record_result(trial, result)
        if checkpoints is not None:
            checkpoints.delete_all()
        if result.stopped == "reporter":
            raise optuna.TrialPruned(f"pruned at step {result.steps} (dev {result.curve[-1][1]:.4f})")
        return result.best_dev
