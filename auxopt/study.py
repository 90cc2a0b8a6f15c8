"""``StudySpec``: a search defined in Python — tasks, model, search space, sampler, storage.

A study file (``studies/quickstart.py``) builds one ``StudySpec`` and names it ``study``;
``auxopt run FILE`` loads it and runs ``study.optimize``. Running the same command again loads the
same Optuna study from storage and adds trials to it. (It is called ``StudySpec``, not ``Study``, so
that it is never confused with the ``optuna.Study`` that ``optimize`` returns.)
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from auxopt.errors import AuxoptError
from auxopt.objective import Objective
from auxopt.storage import (
    artifact_dir,
    default_storage_url,
    mask_url,
    open_storage,
    reset_running,
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
        sampler, pruner: Optuna's (default: TPE with ``seed``; :meth:`default_pruner`).
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

    def __post_init__(self) -> None:
        if not isinstance(self.primary, Task):
            raise AuxoptError(f"study {self.name!r}: primary must be a Task (use auxopt.load_task)")
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
        return Objective(self.build_config, artifacts=artifacts, checkpoint_every=self.checkpoint_every or DEFAULT_EVERY)

    def dry_run_distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        """The parameters the search space suggests, from one trial of a throw-away in-memory study
        (nothing is trained or stored); ``{}`` when the space cannot be run that way."""
        if self.space is None:
            return {}
        scratch = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        trial = scratch.ask()
        try:
            self.space(trial)
        except Exception:
            return {}
        return dict(scratch._storage.get_trial(trial._trial_id).distributions)

    def check_compatible(self, study: optuna.Study) -> None:
        """A clear error when ``study`` (loaded from storage) was created with another direction or
        search space than this spec has."""
        if study.directions != [optuna.study.StudyDirection.MAXIMIZE]:
            found = ", ".join(d.name.lower() for d in study.directions)
            raise AuxoptError(
                f"study {self.name!r} in the storage was created to {found}, but auxopt studies maximize "
                "the primary dev metric; use another study name or storage"
            )
        stored: dict[str, optuna.distributions.BaseDistribution] = {}
        for t in study.get_trials(deepcopy=False):
            for key, dist in t.distributions.items():
                stored.setdefault(key, dist)
        if not stored:
            return
        changed = [
            f"{key}: stored {stored[key]!r}, now {dist!r}"
            for key, dist in self.dry_run_distributions().items()
            if key in stored and stored[key] != dist
        ]
        if changed:
            raise AuxoptError(
                f"study {self.name!r} in the storage was created with another search space ("
                + "; ".join(changed)
                + "); keep the space as it was, or give the changed study a new name"
            )

    def storage_url(self, storage: str | None = None) -> str:
        if storage:
            return storage
        if self.storage:
            return self.storage
        folder = Path(self.source_file).parent if self.source_file else Path.cwd()
        return default_storage_url(self.name, folder)

    def contamination(self, on_overlap: str | None = None) -> OverlapReport:
        """The overlap of every candidate auxiliary's train split (and the primary's own) with the
        primary's dev and test splits (:func:`auxopt.tasks.check_overlap`); ``on_overlap`` defaults
        to the study's setting. Cached per task, so calling it again costs milliseconds."""
        return check_overlap(
            self.primary, self.auxiliaries, on_overlap=self.on_overlap if on_overlap is None else on_overlap
        )

    def preflight(self) -> None:
        """Check the tasks for contamination (warn or fail as ``on_overlap`` says) and load the model
        once, so that either problem shows before storage is touched."""
        from auxopt.train.loop import build_model

        self.contamination()
        config = self.config_for({})
        build_model(config, config.tasks)

    def default_pruner(self) -> optuna.pruners.BasePruner:
        """Median pruning after 4 trials, never in the first half of a run (early dev scores are noisy)."""
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=self.config_for({}).max_steps // 2)

    def load_study(self, storage: str | None = None) -> optuna.Study:
        """Create the Optuna study, or load it when it exists (resume); with ``on_overlap="error"``
        a contaminated study fails here too, before the storage is opened."""
        url = self.storage_url(storage)
        overlap = self.contamination("error" if self.on_overlap == "error" else "ignore")
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

            run_trials(study, objective, url=url, n_trials=n, until=until, callbacks=callbacks)
        finally:
            if publisher is not None:
                publisher.flush(study)
        return study


def load_study_file(path: str | Path) -> StudySpec:
    """Run a study file and return the study it defines: a ``StudySpec`` or a pipeline such as
    :class:`~auxopt.pipelines.AutoSeM`, named ``study`` (or the only one in the file)."""
    import runpy

    from auxopt.pipelines import AutoSeM

    kinds = (StudySpec, AutoSeM)

    path = Path(path)
    if not path.is_file():
        raise AuxoptError(f"study file {str(path)!r} does not exist")
    if path.suffix != ".py":
        raise AuxoptError(f"study file {str(path)!r} is not a Python file")
    namespace = runpy.run_path(str(path), run_name="__auxopt_study__")
    specs = [v for v in namespace.values() if isinstance(v, kinds)]
    spec = namespace.get("study") if isinstance(namespace.get("study"), kinds) else None
    if spec is None:
        if len(specs) != 1:
            raise AuxoptError(
                f"study file {str(path)!r} must define one auxopt.StudySpec (or AutoSeM pipeline) named 'study' "
                f"(found {len(specs)})"
            )
        spec = specs[0]
    if spec.source_file is None:
        spec.source_file = str(path.resolve())
    return spec
