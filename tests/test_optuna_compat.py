"""Each name of :mod:`auxopt._optuna` (Optuna's private API, in one place) against the installed Optuna,
on an in-memory, an SQLite and a journal storage; and no other module of auxopt touches that API."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from auxopt import _optuna

KINDS = ("memory", "sqlite", "journal")
ROOT = Path(__file__).resolve().parents[1] / "auxopt"

#: Optuna's (and optuna-dashboard's) private names that only auxopt/_optuna.py may spell
PRIVATE = re.compile(
    r"\._storage\b|\._get_trials\b|\._study_id\b|\._trial_id\b|storages\._|\b_backend\b|artifacts\._"
    r"|artifact\._|_get_cached_trial|\._system_attrs\b|_custom_plot_data|optuna[a-z_]*\.[a-z_.]*\._[a-z]"
)


@pytest.fixture(autouse=True)
def _quiet():
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def make_storage(kind: str, tmp_path: Path, **rdb_kwargs):
    if kind == "memory":
        return optuna.storages.InMemoryStorage()
    if kind == "sqlite":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/s.db", **rdb_kwargs)
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(tmp_path / "s.journal")))


def study_with_trials(kind: str, tmp_path: Path, **rdb_kwargs) -> optuna.Study:
    study = optuna.create_study(study_name="compat", storage=make_storage(kind, tmp_path, **rdb_kwargs))
    study.add_trial(
        optuna.trial.create_trial(
            value=1.0,
            params={"x": 0.5},
            distributions={"x": optuna.distributions.FloatDistribution(0, 1)},
            system_attrs={"keep": 1, "drop": 2},
        )
    )
    study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING))
    return study


def test_check_version():
    assert _optuna.check_version(optuna.__version__) is True  # the installed one is supported
    assert _optuna.check_version("5.1.0") is True
    with pytest.warns(UserWarning, match="optuna 6.0.0 is installed"):
        assert _optuna.check_version("6.0.0") is False
    with pytest.warns(UserWarning):
        assert _optuna.check_version("4.9.0") is False


@pytest.mark.parametrize("kind", KINDS)
def test_study_storage_and_ids(kind, tmp_path):
    study = study_with_trials(kind, tmp_path)
    storage = _optuna.storage_of(study)
    assert isinstance(storage, optuna.storages.BaseStorage)
    assert _optuna.study_id(study) == storage.get_study_id_from_name("compat")
    trial = study.ask()  # takes the WAITING trial
    for t in [trial, *study.get_trials()]:
        assert _optuna.trial_id(t) == storage.get_trial_id_from_study_id_trial_number(_optuna.study_id(study), t.number)
    assert storage.get_trial(_optuna.trial_id(trial)).number == trial.number


@pytest.mark.parametrize("kind", KINDS)
def test_trials_of(kind, tmp_path):
    study = study_with_trials(kind, tmp_path)
    trials = _optuna.trials_of(study)
    assert [t.number for t in trials] == [0, 1]
    assert [t.number for t in _optuna.trials_of(study, (TrialState.COMPLETE,))] == [0]
    assert [t.number for t in _optuna.trials_of(study, (TrialState.WAITING,), use_cache=False)] == [1]
    assert trials[0].params == {"x": 0.5} and trials[0].value == 1.0


@pytest.mark.parametrize("kind", KINDS)
def test_proposed_params(kind, tmp_path):
    """Optuna's enqueue_trial keeps a queued trial's parameters where auxopt reads them, also while
    the trial has suggested only some of them."""
    study = optuna.create_study(storage=make_storage(kind, tmp_path))
    study.enqueue_trial({"a": 2, "b": "y"})
    trial = study.ask()
    trial.suggest_int("a", 0, 3)
    frozen = _optuna.trials_of(study, use_cache=False)[0]
    assert frozen.params == {"a": 2} and _optuna.proposed_params(frozen) == {"a": 2, "b": "y"}


@pytest.mark.parametrize("kind", KINDS)
def test_heartbeat(kind, tmp_path):
    study = study_with_trials(kind, tmp_path)
    assert _optuna.heartbeat_enabled(_optuna.storage_of(study)) is False
    trial = study.ask()
    with _optuna.heartbeat_thread(_optuna.trial_id(trial), _optuna.storage_of(study)):
        pass  # a no-op where heartbeats are off


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed")
def test_heartbeat_on_an_rdb_storage(tmp_path):
    study = study_with_trials("sqlite", tmp_path, heartbeat_interval=60, grace_period=120)
    storage = _optuna.storage_of(study)
    assert _optuna.heartbeat_enabled(storage) is True
    trial = study.ask()
    with _optuna.heartbeat_thread(_optuna.trial_id(trial), storage):
        pass
    backend = _optuna.rdb_backend(storage)
    models = _optuna.rdb_models()
    session = backend.scoped_session()
    try:
        beats = (
            session.query(models.TrialHeartbeatModel)
            .filter(models.TrialHeartbeatModel.trial_id == _optuna.trial_id(trial))
            .count()
        )
    finally:
        backend.scoped_session.remove()
    assert beats == 1  # the thread beat once on entering


@pytest.mark.parametrize("kind", KINDS)
def test_rdb_backend_and_models(kind, tmp_path):
    study = study_with_trials(kind, tmp_path)
    backend = _optuna.rdb_backend(_optuna.storage_of(study))
    if kind != "sqlite":
        assert backend is None
        return
    assert isinstance(backend, optuna.storages.RDBStorage)
    models = _optuna.rdb_models()
    attr = models.TrialSystemAttributeModel
    session = backend.scoped_session()
    try:
        keys = {row.key for row in session.query(attr).filter(attr.trial_id == _optuna.trial_id(study.trials[0]))}
        running = (
            session.query(models.TrialModel)
            .filter(
                models.TrialModel.study_id == _optuna.study_id(study), models.TrialModel.state == TrialState.COMPLETE
            )
            .count()
        )
        assert hasattr(models.TrialModel, "heartbeats")
    finally:
        backend.scoped_session.remove()
    assert {"keep", "drop"} <= keys and running == 1


@pytest.mark.parametrize("kind", KINDS)
def test_drop_cached_system_attrs(kind, tmp_path):
    study = study_with_trials(kind, tmp_path)
    storage = _optuna.storage_of(study)
    finished = _optuna.trials_of(study, (TrialState.COMPLETE,))[0]  # reading it caches it (RDB)
    tid = _optuna.trial_id(finished)
    assert storage.get_trial(tid).system_attrs == {"keep": 1, "drop": 2}
    _optuna.drop_cached_system_attrs(storage, tid, ["drop"])
    if kind == "sqlite":  # Optuna's cache serves the finished trial, now without the key
        assert storage.get_trial(tid).system_attrs == {"keep": 1}
    else:  # no cache: a no-op
        assert storage.get_trial(tid).system_attrs == {"keep": 1, "drop": 2}


@pytest.mark.parametrize("kind", KINDS)
def test_artifact_attr_prefixes(kind, tmp_path):
    from optuna.artifacts import FileSystemArtifactStore, upload_artifact

    study = study_with_trials(kind, tmp_path)
    trial = study.ask()
    (tmp_path / "store").mkdir()
    (tmp_path / "a.txt").write_text("hello")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        artifact_id = upload_artifact(
            artifact_store=FileSystemArtifactStore(str(tmp_path / "store")),
            file_path=str(tmp_path / "a.txt"),
            study_or_trial=trial,
        )
    prefix = _optuna.artifacts_attr_prefix()
    attrs = _optuna.storage_of(study).get_trial_system_attrs(_optuna.trial_id(trial))
    assert json.loads(attrs[prefix + artifact_id])["filename"] == "a.txt"
    assert _optuna.dashboard_artifacts_attr_prefix() == prefix


@pytest.mark.parametrize("kind", KINDS)
def test_dashboard_plotly_graph_objects(kind, tmp_path):
    import plotly.graph_objects as go
    from optuna_dashboard import save_plotly_graph_object

    study = study_with_trials(kind, tmp_path)
    save_plotly_graph_object(study, go.Figure(go.Scatter(x=[0, 1], y=[1, 0])), graph_object_id="g")
    attrs = _optuna.storage_of(study).get_study_system_attrs(_optuna.study_id(study))
    graphs = _optuna.dashboard_plotly_graph_objects(attrs)
    assert list(graphs) == ["g"] and json.loads(graphs["g"])["data"][0]["y"] == [1, 0]


def test_only_auxopt_optuna_touches_optunas_private_api():
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        if path == ROOT / "_optuna.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if PRIVATE.search(line):
                offenders.append(f"{path.relative_to(ROOT.parent)}:{number}: {line.strip()}")
    assert not offenders, "Optuna's private API outside auxopt/_optuna.py:\n" + "\n".join(offenders)


def test_the_pattern_catches_private_names():
    for line in (
        "study._storage",
        "s._study_id",
        "t._trial_id",
        "study._get_trials(",
        "from optuna.storages._rdb import models",
        'getattr(storage, "_backend", storage)',
        "from optuna.artifacts._upload import X",
        "from optuna_dashboard.artifact._backend import X",
        "storage._get_cached_trial",
        "frozen._system_attrs = {}",
    ):
        assert PRIVATE.search(line), line
    for line in ("_optuna.rdb_backend(storage)", "parsed.get_backend_name()", "self._lineage_ids()"):
        assert not PRIVATE.search(line), line
