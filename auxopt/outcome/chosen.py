"""What a search chose, as a run that can be trained again: :func:`chosen`.

A finished trial stores its scores and its settings (user_attr ``config``), never its weights; its
:class:`~auxopt.train.TrainConfig` is rebuilt from where the search was defined:

* a :class:`~auxopt.StudySpec` (a study file): the search space is replayed with the trial's
  parameters (:meth:`StudySpec.dry_run`), and the settings it gives must equal the stored ones;
* an :class:`~auxopt.pipelines.AutoSeM` pipeline: its result's ratios with the pipeline's settings;
* a storage URL and a study name alone: the tasks the study stored are loaded again the way they
  were loaded (:func:`~auxopt.tasks.reload_task`, checked by fingerprint) and the stored settings
  become the config (runs with a step plugin, AANG or ATTITTUD, need the study file).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from auxopt import records
from auxopt.errors import AuxoptError
from auxopt.pipelines import AutoSeM
from auxopt.propose import quiet_optuna, settings_key
from auxopt.storage import mask_url
from auxopt.study import StudySpec
from auxopt.train import TrainConfig

#: TrainConfig.describe() keys that are not constructor fields, or that hold objects
_DERIVED = ("primary", "auxiliaries", "ratios", "lr", "schedule", "tiny", "on_overlap")
_PLUGINS = ("plugin", "objectives", "decomposer")


@dataclass
class Chosen:
    """A configuration a search chose (or any finished trial of it), ready to train again.

    ``name`` is the search's name (a study's, or an AutoSeM pipeline's: ``auxopt verify`` keeps its
    runs in study ``<name>.verify``); ``study`` the Optuna study that holds ``trial``; ``dev`` and
    ``test`` what that trial scored; ``seed`` the seed it ran with."""

    name: str
    url: str
    study: optuna.Study
    trial: FrozenTrial
    config: TrainConfig

    @property
    def dev(self) -> float:
        return float(self.trial.value)

    @property
    def test(self) -> float | None:
        value = self.trial.user_attrs.get(records.TEST_METRIC)
        return None if value is None else float(value)

    @property
    def seed(self) -> int:
        return int(self.config.seed)

    @property
    def alone(self) -> bool:
        """The configuration trains the primary task alone, with no step plugin."""
        return len(self.config.active_ratios()) == 1 and self.config.plugin is None

    def primary_only(self) -> TrainConfig:
        """The same run without the auxiliary data: the primary task alone (no auxiliary, no step
        plugin, the plain schedule), every other setting as chosen."""
        return dataclasses.replace(
            self.config,
            ratios={self.config.primary.name: 1},
            schedule="auto",
            plugin=None,
            objectives=None,
            decomposer=None,
        )

    def describe(self) -> str:
        """``trial #7 of 'quickstart' (primary: 1, helpful_0: 2)``."""
        ratios = ", ".join(f"{k}: {v:g}" for k, v in self.config.active_ratios().items())
        plugin = self.config.plugin
        extra = f", {type(plugin).__name__}" if plugin is not None else ""
        return f"trial #{self.trial.number} of {self.study.study_name!r} ({ratios}{extra})"


def chosen(search: Any = None, *, storage: str | None = None, study: str | None = None, trial: int | None = None):
    """The configuration a search chose (its best trial), or its trial number ``trial``.

    Args:
        search: a :class:`~auxopt.StudySpec`, an :class:`~auxopt.pipelines.AutoSeM` pipeline, or
            None with ``storage`` and ``study`` (the study name).
        storage: the storage URL (default: the search's own).
        trial: a trial number of the study (default: the best).
    """
    with quiet_optuna():  # no "Using an existing study" for each study it reads
        return _chosen(search, storage, study, trial)


def _chosen(search: Any, storage: str | None, study: str | None, trial: int | None) -> Chosen:
    if isinstance(search, AutoSeM):
        return _of_pipeline(search, storage, trial)
    if isinstance(search, StudySpec):
        url = search.storage_url(storage)
        found = _load(url, search.name)
        picked = _pick(found, trial)
        config = _replay(search, picked)
        return Chosen(search.name, url, found, picked, config)
    if search is not None:
        raise AuxoptError(f"cannot take the chosen configuration of a {type(search).__name__}; give a StudySpec")
    if not storage or not study:
        raise AuxoptError("give a study file, or a storage URL with a study name (--storage URL --study NAME)")
    found = _load(storage, study)
    picked = _pick(found, trial)
    return Chosen(study, storage, found, picked, _from_storage(found, picked))


def _load(url: str, name: str) -> optuna.Study:
    from auxopt.storage import open_existing

    storage = open_existing(url)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if name not in names:
        raise AuxoptError(f"no study {name!r} in {mask_url(url)}; it has {names}: run the study first")
    return optuna.load_study(study_name=name, storage=storage)


def _pick(study: optuna.Study, number: int | None) -> FrozenTrial:
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        raise AuxoptError(
            f"study {study.study_name!r} has no finished trial yet ({len(trials)} trial(s), none complete); "
            "run it until a trial completes"
        )
    best = max(complete, key=lambda t: t.value)
    if number is None:
        return best
    found = [t for t in trials if t.number == number]
    if not found:
        raise AuxoptError(
            f"study {study.study_name!r} has no trial #{number} (trials #0 to #{len(trials) - 1}); "
            f"the best is #{best.number}"
        )
    if found[0].state != TrialState.COMPLETE:
        raise AuxoptError(
            f"trial #{number} of {study.study_name!r} is {found[0].state.name.lower()}, not finished: it has no "
            f"final model to export; choose a complete trial (the best is #{best.number})"
        )
    return found[0]


def _replay(spec: StudySpec, trial: FrozenTrial) -> TrainConfig:
    """The trial's config from the study file: the space replayed with its parameters, checked
    against the settings it stored."""
    suggested, _ = spec.dry_run(trial.params)
    config = dataclasses.replace(spec.config_for(suggested), checkpoint=None)
    _check_settings(config, trial, spec.name)
    return config


def _check_settings(config: TrainConfig, trial: FrozenTrial, name: str) -> None:
    stored = trial.user_attrs.get(records.CONFIG)
    now = config.describe()
    if stored is not None and settings_key(now) != settings_key(stored):
        changed = sorted(k for k in set(now) | set(stored) if now.get(k) != stored.get(k))
        raise AuxoptError(
            f"trial #{trial.number} of {name!r} ran with other settings than the study file gives now "
            f"(they differ in {changed}): the file changed since; restore it, or run the study again"
        )


def _of_pipeline(pipeline: AutoSeM, storage: str | None, number: int | None) -> Chosen:
    if number is not None:
        raise AuxoptError("an AutoSeM pipeline's export is its result; give --trial with a study's name instead")
    url = pipeline.storage_url(storage)
    result = pipeline.load_result(url)
    found = _load(url, result.trial_study)
    picked = _pick(found, result.trial)
    config = dataclasses.replace(pipeline.config_for(result.ratios), checkpoint=None)
    _check_settings(config, picked, found.study_name)
    return Chosen(pipeline.name, url, found, picked, config)


def _from_storage(study: optuna.Study, trial: FrozenTrial) -> TrainConfig:
    """The trial's config from what the storage holds: its tasks loaded again, its settings."""
    from auxopt.models import TinyBertSpec
    from auxopt.tasks import reload_task
    from auxopt.train import OnlineThompson

    stored = dict(trial.user_attrs.get(records.CONFIG) or {})
    if not stored:
        raise AuxoptError(f"trial #{trial.number} of {study.study_name!r} stored no settings; give the study file")
    plugin = next((k for k in _PLUGINS if stored.get(k) is not None), None)
    if plugin is not None:
        kind = (stored[plugin] or {}).get("kind", plugin) if isinstance(stored[plugin], dict) else plugin
        raise AuxoptError(
            f"trial #{trial.number} of {study.study_name!r} trained with {kind}, whose objects the storage "
            "does not hold; give the study file (STUDY.py) instead of --study"
        )
    described = {t["name"]: t for t in study.user_attrs.get("tasks", [])}
    names = [stored["primary"], *stored.get("auxiliaries", [])]
    missing = [n for n in names if n not in described]
    if missing:
        raise AuxoptError(f"study {study.study_name!r} does not describe task(s) {missing}; give the study file")
    tasks = {n: reload_task(described[n]) for n in names}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    kwargs = {k: v for k, v in stored.items() if k in fields and k not in _DERIVED and k not in _PLUGINS}
    schedule = stored.get("schedule", "auto")
    if isinstance(schedule, dict):
        schedule = dict(schedule)
        if schedule.pop("kind", None) != "OnlineThompson":
            raise AuxoptError(f"trial #{trial.number}'s task schedule needs the study file; give STUDY.py")
        schedule = OnlineThompson(**schedule)
    if stored.get("tiny") is not None:
        kwargs["tiny"] = TinyBertSpec(**stored["tiny"])
    config = TrainConfig(
        tasks[stored["primary"]],
        tuple(tasks[n] for n in stored.get("auxiliaries", [])),
        ratios=stored.get("ratios"),
        schedule=schedule,
        lr=stored.get("lr"),
        on_overlap="ignore",
        **kwargs,
    )
    _check_settings(config, trial, study.study_name)
    return config
