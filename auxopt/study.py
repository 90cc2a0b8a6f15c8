"""``StudySpec``: a search defined in Python — tasks, model, search space, sampler, storage.

A study file (``studies/quickstart.py``) builds one ``StudySpec`` and names it ``study``;
``auxopt run FILE`` loads it and runs ``study.optimize``. Running the same command again loads the
same Optuna study from storage and adds trials to it. (It is called ``StudySpec``, not ``Study``, so
that it is never confused with the ``optuna.Study`` that ``optimize`` returns.)
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from auxopt import records
from auxopt._optuna import storage_of
from auxopt.errors import AuxoptError
from auxopt.objective import Objective
from auxopt.propose import Distinct, quiet_optuna
from auxopt.pruners import WarmupPruner
from auxopt.storage import (
    artifact_dir,
    default_storage_url,
    mask_url,
    open_storage,
    reset_running,
    storage_lock,
    validate_storage_url,
)
from auxopt.tasks.overlap import OverlapReport, check_overlap, validate_on_overlap
from auxopt.tasks.task import Task
from auxopt.train import TrainConfig
from auxopt.train.checkpoint import DEFAULT_EVERY

logger = logging.getLogger("auxopt")
# ``on_overlap`` is a setting of the study (checked once over every candidate), not of its trials
_CONFIG_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)} - {"primary", "auxiliaries", "on_overlap"}


@dataclass
class StudySpec:
    """A search over multi-task training runs.

    Args:
        name: the Optuna study name.
        primary: the end task.
        auxiliaries: candidate auxiliary tasks.
        space: ``space(trial) -> dict`` of :class:`TrainConfig` fields this trial uses (e.g.
            ``{"ratios": {...}, "lr": ...}``), suggested through ``trial``; any Optuna sampler searches it.
        base: fixed :class:`TrainConfig` fields (``max_steps``, ``model``, …) under the suggested ones.
        sampler: an Optuna sampler (default: TPE with ``seed``).
        pruner: an Optuna pruner (default: :meth:`default_pruner`).
        n_trials: trials one run adds.
        storage: default storage URL (default: ``sqlite:///<name>.db`` beside the study file).
        user_attrs: stored on the study (e.g. the ground truth of a synthetic benchmark).
        checkpoint_every: checkpoint each run every this many steps into the artifact store beside
            the storage, so that a trial whose worker died resumes mid-run (None: no checkpoints).
        on_overlap: what happens when an auxiliary's (or the primary's own) train split shares
            examples with the primary's dev or test split (:func:`auxopt.tasks.check_overlap`):
            ``"warn"`` (a :class:`~auxopt.tasks.ContaminationWarning`), ``"error"`` (an
            :class:`~auxopt.errors.AuxoptError` before anything is written to storage) or
            ``"ignore"``. The report is stored on the study as the user_attr ``contamination``;
            trials do not check again (their runs record an overlap of the tasks they train on).
        distinct: a new trial never repeats the run settings of a trial the study holds, whichever
            process asks for it (:class:`auxopt.propose.Distinct`); the default sampler is then TPE
            seeded per trial from ``(seed, trial number)``, so one worker's study is reproducible
            and a rerun or another worker draws new trials. ``False``: the sampler's draws as they
            come (a repeat takes the finished twin's outcome without training).
        reuse_from: names of other studies in the same storage: a trial whose run settings equal a
            run one of them trained takes that outcome instead of training (user_attrs
            ``reused_from``, ``reused_study`` and ``reused_cost``, what the run cost there). For a
            search rerun under a new name after a change that leaves these runs as they were;
            training is deterministic given its settings, seed included.
    """

    name: str
    primary: Task
    auxiliaries: Sequence[Task] = ()
    space: Callable[[optuna.Trial], Mapping[str, Any]] | None = None
    base: Mapping[str, Any] = field(default_factory=dict)
    sampler: optuna.samplers.BaseSampler | None = None
    pruner: optuna.pruners.BasePruner | None = None
    n_trials: int = 20
    storage: str | None = None
    seed: int = 0
    user_attrs: Mapping[str, Any] = field(default_factory=dict)
    source_file: str | None = None
    checkpoint_every: int | None = DEFAULT_EVERY
    on_overlap: str = "warn"
    distinct: bool = True
    reuse_from: Sequence[str] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.primary, Task):
            raise AuxoptError(f"study {self.name!r}: primary must be a Task (use auxopt.load_task)")
        if isinstance(self.reuse_from, str) or not all(isinstance(n, str) for n in self.reuse_from):
            raise AuxoptError(f"study {self.name!r}: reuse_from must be a list of study names, not {self.reuse_from!r}")
        if self.name in self.reuse_from:
            raise AuxoptError(f"study {self.name!r}: reuse_from names the study itself (it reuses its own runs anyway)")
        validate_on_overlap(self.on_overlap, f"study {self.name!r}")
        if "on_overlap" in self.base:
            raise AuxoptError(
                f"study {self.name!r}: on_overlap is a setting of the study, not of base; "
                f"write StudySpec(..., on_overlap={self.base['on_overlap']!r})"
            )
        unknown = set(self.base) - _CONFIG_FIELDS
        if unknown:
            raise AuxoptError(
                f"study {self.name!r}: base has unknown setting(s) {sorted(unknown)}; "
                f"TrainConfig takes {sorted(_CONFIG_FIELDS)}"
            )
        self.config_for({})  # validate the fixed part now, before any storage is touched

    def config_for(self, suggested: Mapping[str, Any]) -> TrainConfig:
        if not isinstance(suggested, Mapping):
            raise AuxoptError(
                f"study {self.name!r}: the search space must return a dict of TrainConfig fields "
                f"(e.g. {{'ratios': {{...}}, 'lr': ...}}), but it returned {type(suggested).__name__} "
                f"{_short(suggested)}"
            )
        unknown = set(suggested) - _CONFIG_FIELDS
        if unknown:
            raise AuxoptError(f"study {self.name!r}: the search space returned unknown setting(s) {sorted(unknown)}")
        # the study checked every candidate in preflight; a trial's run records overlaps but is silent
        return TrainConfig(self.primary, tuple(self.auxiliaries), on_overlap="ignore", **{**self.base, **suggested})

    def build_config(self, trial: optuna.Trial) -> TrainConfig:
        return self.config_for(self.space(trial) if self.space is not None else {})

    def objective(self, artifacts: str | Path | None = None) -> Objective:
        """The objective adapter; with ``artifacts`` (a folder) runs checkpoint there."""
        if self.checkpoint_every is None:
            artifacts = None
        return Objective(
            self.build_config,
            artifacts=artifacts,
            checkpoint_every=self.checkpoint_every or DEFAULT_EVERY,
            reuse_from=self.reuse_from,
        )

    def proposer(self):
        """What draws each new trial's parameters (:class:`auxopt.propose.Distinct`; None when
        ``distinct=False``: the study's sampler)."""
        if not self.distinct:
            return None
        return Distinct(lambda trial: self.build_config(trial).describe(), self.seed, sampler=self.sampler)

    def dry_run(
        self, params: Mapping[str, Any] | None = None
    ) -> tuple[Any, dict[str, optuna.distributions.BaseDistribution]]:
        """Run the search space once on a trial of a throw-away in-memory study (nothing is trained
        or stored): ``(what it returned, the parameters it suggested)``. A parameter named in
        ``params`` takes that value where its distribution still holds it (a stored trial replayed);
        the others are drawn at random (seed 0). An exception of the space becomes an
        :class:`AuxoptError` naming the study and where in the user's code it was raised."""
        if self.space is None:
            return {}, {}
        with quiet_optuna():
            scratch = optuna.create_study(sampler=_ReplaySampler(params or {}))
            for key, value in self.user_attrs.items():  # what a space may read from trial.study
                scratch.set_user_attr(key, value)
            trial = scratch.ask()
            try:
                suggested = self.space(trial)
            except AuxoptError as e:
                raise AuxoptError(_prefixed(self.name, f"the search space failed: {e}")) from None
            except Exception as e:
                code = getattr(self.space, "__code__", None) or getattr(type(self.space).__call__, "__code__", None)
                files = (code.co_filename,) if code is not None else None
                raise AuxoptError(
                    f"study {self.name!r}: the search space raised {_describe_exception(e, files)}"
                ) from None
        return suggested, dict(trial.distributions)

    def dry_run_distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        """The parameters the search space suggests on one scratch trial (:meth:`dry_run`); ``{}``
        when the space cannot be run that way."""
        try:
            return self.dry_run()[1]
        except AuxoptError:
            return {}

    def dry_run_config(self) -> TrainConfig:
        """The :class:`TrainConfig` of one scratch trial (:meth:`dry_run`), validated in full
        (:meth:`TrainConfig.validate`) without loading a model: every mistake of the space or the
        config that a trial would otherwise only hit when it starts, as an :class:`AuxoptError`
        naming the study."""
        suggested, _ = self.dry_run()
        try:
            return self.config_for(suggested).validate()
        except AuxoptError as e:
            raise AuxoptError(_prefixed(self.name, str(e))) from None

    def check_compatible(self, study: optuna.Study) -> None:
        """A clear error when ``study`` (loaded from storage) was created with another direction or
        search space than this spec has."""
        if study.directions != [optuna.study.StudyDirection.MAXIMIZE]:
            found = ", ".join(d.name.lower() for d in study.directions)
            raise AuxoptError(
                f"study {self.name!r} in the storage was created to {found}, but auxopt studies maximize "
                "the primary dev metric; use another study name or storage"
            )
        trials = study.get_trials(deepcopy=False)
        stored: dict[str, optuna.distributions.BaseDistribution] = {}
        for t in trials:
            for key, dist in t.distributions.items():
                stored.setdefault(key, dist)
        if not stored:
            return
        # replay one trial per set of parameters whose space ran to the end (a finished trial, or
        # one that recorded its config) with its own values: a conditional space takes the same
        # branches, so a parameter it adds or no longer suggests shows exactly
        whole = {
            frozenset(t.distributions): t
            for t in trials
            if t.distributions
            and (
                t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
                or records.CONFIG in t.user_attrs
            )
        }
        replays = [(t.params, t.distributions) for t in whole.values()] or [(None, None)]
        changed, added, removed = {}, set(), set()
        for params, dists in replays:
            try:
                _, now = self.dry_run(params)
            except AuxoptError:  # the space fails by itself: preflight and the trials say how
                return
            for key, dist in now.items():
                before = dists[key] if dists is not None and key in dists else stored.get(key)
                if before is not None and before != dist:
                    changed.setdefault(key, f"{key}: stored {before!r}, now {dist!r}")
            if dists is not None:
                added |= set(now) - set(stored)
                removed |= set(dists) - set(now)
        problems = list(changed.values())
        if added:
            problems.append(f"it now suggests {sorted(added)}, which the {len(trials)} stored trial(s) never had")
        if removed:
            problems.append(f"it no longer suggests {sorted(removed)}, which the stored trials have")
        if problems:
            raise AuxoptError(
                f"study {self.name!r} in the storage was created with another search space ("
                + "; ".join(problems)
                + "); keep the space as it was, or give the changed study a new name"
            )

    def storage_url(self, storage: str | None = None) -> str:
        if storage:
            return storage
        return self.storage or file_storage_url(self.name, self.source_file)

    def contamination(self, on_overlap: str | None = None) -> OverlapReport:
        """The overlap of every candidate auxiliary's train split (and the primary's own) with the
        primary's dev and test splits (:func:`auxopt.tasks.check_overlap`); ``on_overlap`` defaults
        to the study's setting. Cached per task, so calling it again costs milliseconds."""
        return check_overlap(
            self.primary, self.auxiliaries, on_overlap=self.on_overlap if on_overlap is None else on_overlap
        )

    def preflight(self) -> None:
        """Check, before storage is touched: the tasks for contamination (warn or fail as
        ``on_overlap`` says), the search space and the config it gives on one scratch trial
        (:meth:`dry_run_config`: objectives, decomposer, device, schedule, ratios, …), and that the
        model loads."""
        from auxopt.models.tokenize import check_room
        from auxopt.train.loop import build_model

        self.contamination()
        config = self.dry_run_config()
        _, tokenizer = build_model(config, config.tasks)
        for task in config.active_tasks().values():  # this tokenizer's own special tokens
            check_room(tokenizer, task, config.max_length)

    def default_pruner(self) -> optuna.pruners.BasePruner:
        """Median pruning after 4 trials, never in the first half of a run (early dev scores are
        noisy): half of each trial's own ``max_steps``, so a space that searches the run length
        judges every run from its own middle (:class:`~auxopt.pruners.WarmupPruner`)."""
        return WarmupPruner(optuna.pruners.MedianPruner(n_startup_trials=4), 0.5)

    def load_study(self, storage: str | None = None) -> optuna.Study:
        """Create the Optuna study, or load it when it exists (resume); with ``on_overlap="error"``
        a contaminated study fails here too, before the storage is opened."""
        url = validate_storage_url(self.storage_url(storage))
        overlap = self.contamination("error" if self.on_overlap == "error" else "ignore")
        with storage_lock(url):  # workers started together must not race to create the schema
            study = optuna.create_study(
                study_name=self.name,
                storage=open_storage(url),
                sampler=self.sampler or optuna.samplers.TPESampler(seed=self.seed),
                pruner=self.pruner or self.default_pruner(),
                direction="maximize",
                load_if_exists=True,
            )
            self.check_compatible(study)
            attrs = {
                "primary": self.primary.name,
                "metric": self.primary.metric,
                "tasks": [t.describe() for t in (self.primary, *self.auxiliaries)],
                "contamination": overlap.to_dict(),
                **self.user_attrs,
            }
            for key, value in attrs.items():
                if study.user_attrs.get(key) != value:
                    study.set_user_attr(key, value)
        return study

    def optimize(
        self,
        n_trials: int | None = None,
        storage: str | None = None,
        *,
        callbacks: Sequence[Callable] = (),
        publish_every: int | None = 5,
        progress: Any = None,
        until: int | None = None,
        artifacts: str | Path | None = None,
        reset: bool = False,
    ) -> optuna.Study:
        """Run ``n_trials`` more trials (default ``self.n_trials``) and return the Optuna study.

        Every ``publish_every`` finished trials, and once at the end, auxopt's plots and a note on
        the best configuration are published to optuna-dashboard (:mod:`auxopt.dashboard`;
        ``None`` turns it off). ``progress`` (an :class:`auxopt.progress.Progress`) shows bars for
        trials and training steps.

        ``until=N`` runs trials until the study holds N (a trial and its retries count once), however
        many workers share it: what ``auxopt worker`` does. Trials whose worker died are retried
        first, from their last checkpoint in ``artifacts`` (default: the folder beside the storage,
        :func:`auxopt.storage.artifact_dir`). ``reset=True`` first fails and retries every RUNNING
        trial: only when no other worker is alive (journal storages, which have no heartbeat)."""
        n = self.n_trials if n_trials is None and until is None else n_trials
        if n is not None and n < 1:
            raise AuxoptError(f"n_trials must be at least 1, not {n}")
        if until is not None and until < 1:
            raise AuxoptError(f"the study's trial count must be at least 1, not {until}")
        url = self.storage_url(storage)
        validate_storage_url(url)  # a bad URL or a model that does not load fails before storage exists
        self.preflight()
        study = self.load_study(url)
        logger.info("study %r in %s: %d trials so far", self.name, mask_url(url), len(study.trials))
        missing = sorted(set(self.reuse_from) - set(optuna.get_all_study_names(storage_of(study))))
        if missing:
            logger.warning(
                "study %r: reuse_from names %s, not in %s: nothing is taken from them",
                self.name,
                missing,
                mask_url(url),
            )
        if reset:
            again = reset_running(study)
            if again:
                logger.warning("reset running trial(s) %s: they will run again", again)
        folder = artifacts if artifacts is not None else artifact_dir(url)
        if folder is None and self.checkpoint_every is not None:
            logger.info("no artifact folder for %s: trials are not checkpointed (give --artifacts DIR)", mask_url(url))
        objective = self.objective(folder)
        callbacks = list(callbacks)
        publisher = None
        if publish_every is not None:
            from auxopt.dashboard import PublishCallback

            publisher = PublishCallback(publish_every, sampler=self.sampler)
            callbacks.append(publisher)
        if progress is not None:
            objective.train_fn = progress.wrap_train(objective.train_fn)
            callbacks.append(progress.callback)
        try:
            from auxopt.worker import run_trials

            run_trials(study, objective, url=url, n_trials=n, until=until, callbacks=callbacks, propose=self.proposer())
        finally:
            if publisher is not None:
                publisher.flush(study)
        return study


def file_storage_url(name: str, source_file: str | None) -> str:
    """``sqlite:///<name>.db`` beside the study file that defines it (or in the working folder)."""
    return default_storage_url(name, Path(source_file).parent if source_file else Path.cwd())


def _prefixed(name: str, message: str) -> str:
    """``message`` about study ``name``, which it names once."""
    head = f"study {name!r}"
    return message if message.startswith(head) else f"{head}: {message}"


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: folders whose frames are not the user's code: auxopt's and Optuna's
_INTERNALS = tuple(str(Path(f).resolve().parent) + os.sep for f in (optuna.__file__, __file__))


def _describe_exception(error: BaseException, files: Sequence[str] | None = None) -> str:
    """``Type: message (file, line N: code)`` of ``error`` at the last frame of its traceback in
    ``files`` (else the last one outside auxopt and Optuna): where the user's code raised it."""
    import traceback

    frames = traceback.extract_tb(error.__traceback__)
    wanted = {str(Path(f).resolve()) for f in files or ()}
    mine = [f for f in frames if str(Path(f.filename).resolve()) in wanted] or [
        f for f in frames if not str(Path(f.filename).resolve()).startswith(_INTERNALS)
    ]
    text = f"{type(error).__name__}: {error}"
    if mine:
        frame = mine[-1]
        text += f" ({frame.filename}, line {frame.lineno}" + (f": {frame.line.strip()}" if frame.line else "") + ")"
    return text


class _ReplaySampler(optuna.samplers.RandomSampler):
    """Random draws (seed 0), except for the parameters in ``params``: their stored value, where
    the distribution asked for still holds it."""

    def __init__(self, params: Mapping[str, Any]):
        super().__init__(seed=0)
        self.params = dict(params)

    def sample_independent(self, study, trial, param_name, param_distribution):
        if param_name in self.params:
            value = self.params[param_name]
            try:
                if param_distribution._contains(param_distribution.to_internal_repr(value)):
                    return value
            except (TypeError, ValueError):
                pass
        return super().sample_independent(study, trial, param_name, param_distribution)
