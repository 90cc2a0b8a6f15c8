"""Storage URLs, heartbeat retry of dead workers' trials, journal reset, and study compatibility."""

from __future__ import annotations

import io
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from auxopt.errors import AuxoptError
from auxopt.storage import (
    RETRY_ATTR,
    TrialCheckpointStore,
    artifact_dir,
    mask_url,
    open_storage,
    reset_running,
    retried_trials,
    validate_storage_url,
)
from auxopt.study import StudySpec
from auxopt.train.checkpoint import dumps, load_latest
from auxopt.worker import requested, run_trials


def test_journal_urls_parse_and_open(tmp_path):
    url = f"journal:///{tmp_path}/s.journal"
    assert validate_storage_url(url) == url
    storage = open_storage(url)
    assert isinstance(storage, optuna.storages.JournalStorage)
    assert artifact_dir(url) == (tmp_path / "s.journal.artifacts").resolve()
    with pytest.raises(AuxoptError, match="folder of the journal file"):
        validate_storage_url(f"journal:///{tmp_path}/missing/s.journal")
    with pytest.raises(AuxoptError, match="needs a file"):
        validate_storage_url("journal://")


def test_postgres_urls_are_masked_and_a_dead_server_is_a_clear_error():
    url = "postgresql+psycopg://alice:s3cret@127.0.0.1:1/auxopt"
    assert "s3cret" not in mask_url(url) and "alice" in mask_url(url)
    assert artifact_dir(url) is None  # no folder "beside" a database server
    with pytest.raises(AuxoptError) as err:
        open_storage(url)
    assert "cannot open the storage" in str(err.value) and "s3cret" not in str(err.value)


def test_sqlite_storage_has_heartbeat_and_busy_timeout(tmp_path, monkeypatch):
    monkeypatch.setenv("AUXOPT_HEARTBEAT_S", "7")
    storage = open_storage(f"sqlite:///{tmp_path}/a.db")
    assert storage.get_heartbeat_interval() == 7
    assert storage.grace_period == 120
    assert storage.engine_kwargs["connect_args"]["timeout"] == 60
    assert open_storage(f"sqlite:///{tmp_path}/a.db", heartbeat=False).get_heartbeat_interval() is None
    monkeypatch.setenv("AUXOPT_GRACE_S", "3")
    with pytest.raises(AuxoptError, match="longer than the heartbeat"):
        open_storage(f"sqlite:///{tmp_path}/a.db")


def _objective(trial):
    return -((trial.suggest_float("x", -3, 3) - 1) ** 2)


@pytest.mark.parametrize("beat", [True, False])
def test_a_dead_workers_trial_is_retried_with_its_parameters(tmp_path, monkeypatch, beat):
    """A RUNNING trial whose heartbeat stopped (or that never beat: its worker died right after
    creating it) is failed by the next worker and run again (same params) in place of a new one:
    the study ends with exactly the trials asked for."""
    monkeypatch.setenv("AUXOPT_HEARTBEAT_S", "1")
    monkeypatch.setenv("AUXOPT_GRACE_S", "2")
    url = f"sqlite:///{tmp_path}/hb.db"
    study = optuna.create_study(study_name="s", storage=open_storage(url), direction="maximize")
    dead = study.ask()  # a worker that asked, (maybe) beat once, and died
    dead.suggest_float("x", -3, 3)
    if beat:
        study._storage.record_heartbeat(dead._trial_id)
    time.sleep(3.5)
    seen = []

    def objective(trial):
        seen.append(retried_trials(trial))  # works on a live optuna.Trial
        return _objective(trial)

    assert run_trials(study, objective, url=url, until=3) == 3
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL] + [TrialState.COMPLETE] * 3
    (retry,) = [t for t in trials if "retry_history" in t.system_attrs]
    assert retry.params == trials[0].params and retry.system_attrs["retry_history"] == [0]
    assert sorted(seen) == [[], [], [0]]
    assert requested(trials) == 3


def test_journal_reset_running_queues_retries(tmp_path):
    url = f"journal:///{tmp_path}/j.journal"
    study = optuna.create_study(study_name="j", storage=open_storage(url))
    alive = study.ask()
    alive.suggest_float("x", -3, 3)
    assert reset_running(study) == [0]
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].params == trials[0].params
    run_trials(study, _objective, url=url, until=2)  # the retry first, then one new trial
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[1].params == trials[0].params and requested(trials) == 2


def _spec(suite, space, name="cmp"):
    return StudySpec(
        name=name,
        primary=suite.primary,
        auxiliaries=suite.auxiliaries,
        space=space,
        base={"max_steps": 4, "eval_every": 2, "max_length": 16, "device": "cpu"},
    )


def test_other_direction_or_search_space_is_a_clear_error(tmp_path, suite):
    url = f"sqlite:///{tmp_path}/c.db"
    optuna.create_study(study_name="down", storage=url, direction="minimize")
    with pytest.raises(AuxoptError, match="created to minimize"):
        _spec(suite, None, name="down").load_study(url)

    def space(trial):
        return {"lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True)}

    def wider(trial):
        return {"lr": trial.suggest_float("lr", 1e-5, 1e-2, log=True)}

    study = _spec(suite, space).load_study(url)
    trial = study.ask()
    space(trial)
    study.tell(trial, 0.5)
    _spec(suite, space).load_study(url)  # the same space loads
    with pytest.raises(AuxoptError, match="another search space.*lr"):
        _spec(suite, wider).load_study(url)
    assert len(optuna.load_study(study_name="cmp", storage=url).trials) == 1  # nothing written


# ---------------------------------------------------------------------------- checkpoints in the artifact store


class Killed(BaseException):
    """What a SIGKILL in the middle of a checkpoint write looks like to the code around it."""


class WatchedStore(optuna.artifacts.FileSystemArtifactStore):
    """A real file-system artifact store that looks at the trial's records each time a file is about
    to be written and, with ``cut``, dies part-way through the next write: after ``cut`` bytes of the
    file (``cut=0``: before the file exists), as a worker killed at that instant would."""

    def __init__(self, folder, storage, trial_id):
        super().__init__(str(folder))
        self.folder, self.storage, self.trial_id = Path(folder), storage, trial_id
        self.recorded_first, self.cut = [], None

    def write(self, artifact_id, content_body):
        recorded = {
            m.artifact_id
            for m in optuna.artifacts.get_all_artifact_meta(self.storage.get_trial(self.trial_id), storage=self.storage)
        }
        self.recorded_first.append(artifact_id in recorded and not (self.folder / artifact_id).exists())
        if self.cut is None:
            return super().write(artifact_id, content_body)
        if self.cut > 0:
            super().write(artifact_id, io.BytesIO(content_body.read()[: self.cut]))
        raise Killed


def _checkpoint_trial(tmp_path, name="ck"):
    storage = open_storage(f"sqlite:///{tmp_path}/{name}.db", heartbeat=False)
    study = optuna.create_study(study_name=name, storage=storage)
    trial = study.ask()
    (tmp_path / "artifacts").mkdir()
    store = WatchedStore(tmp_path / "artifacts", storage, trial._trial_id)
    return study, trial, store


def _named_files(study, store) -> tuple[set[str], set[str]]:
    """(files in the artifact folder, artifact ids that some trial's records name)."""
    named = {
        m.artifact_id
        for t in study.get_trials(deepcopy=False)
        for m in optuna.artifacts.get_all_artifact_meta(t, storage=study._storage)
    }
    return {p.name for p in store.folder.iterdir()}, named


def test_a_checkpoint_is_recorded_on_the_trial_before_its_file_is_written(tmp_path):
    study, trial, store = _checkpoint_trial(tmp_path)
    checkpoints = TrialCheckpointStore(trial, store, keep=2)
    for step in (10, 20, 30):
        checkpoints.save(step, dumps({"step": step}))
    assert store.recorded_first == [True, True, True]  # the record exists, the file does not yet

    # Optuna's own artifact records, as upload_artifact writes them (the dashboard lists these); the
    # record of step 10 went with its file
    metas = optuna.artifacts.get_all_artifact_meta(trial)
    assert sorted(m.filename for m in metas) == [f"auxopt-ckpt-step-{s}.pt" for s in (20, 30)]
    assert {(m.mimetype, m.encoding) for m in metas} == {("application/octet-stream", None)}
    newest = next(m for m in metas if m.filename == "auxopt-ckpt-step-30.pt")
    optuna.artifacts.download_artifact(
        artifact_store=store, artifact_id=newest.artifact_id, file_path=str(tmp_path / "down.pt")
    )
    assert (tmp_path / "down.pt").read_bytes() == dumps({"step": 30})
    assert trial.user_attrs["checkpoint_step"] == 30

    files, named = _named_files(study, store)
    assert len(files) == 2 and files == named  # the newest two are kept, each named by a record
    assert load_latest(checkpoints, lambda state: None) == 30
    assert checkpoints.delete_all() == 2
    assert list(store.folder.iterdir()) == []
    assert optuna.artifacts.get_all_artifact_meta(trial) == []  # no record of a deleted file


@pytest.mark.parametrize("cut", [0, 100])
def test_a_kill_during_a_checkpoint_write_leaves_no_unrecorded_file(tmp_path, caplog, cut):
    study, trial, store = _checkpoint_trial(tmp_path)
    checkpoints = TrialCheckpointStore(trial, store, keep=2)
    checkpoints.save(10, dumps({"step": 10}))
    store.cut = cut
    with pytest.raises(Killed):
        checkpoints.save(20, dumps({"step": 20}))
    assert store.recorded_first == [True, True]

    files, named = _named_files(study, store)
    assert files <= named  # no file that no trial names: the final delete will find every one
    assert len(files) == (2 if cut else 1)
    assert trial.user_attrs["checkpoint_step"] == 10  # the newest complete one

    # the trial is retried after its worker died; the retry skips the broken checkpoint ...
    study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    retry = study.ask()
    study._storage.set_trial_system_attr(retry._trial_id, RETRY_ATTR, [trial.number])
    store.cut = None
    resumed = TrialCheckpointStore(retry, store, keep=2)
    assert [step for step, _ in resumed.candidates()] == [20, 10]
    with caplog.at_level("WARNING", logger="auxopt"):
        assert load_latest(resumed, lambda state: None) == 10
    assert "checkpoint at step 20 does not load" in caplog.text

    # ... and, once it has finished, removes every file of the chain, missing or cut short
    resumed.save(30, dumps({"step": 30}))
    assert resumed.delete_all() == len(files) + 1
    assert list(store.folder.iterdir()) == []
    assert _named_files(study, store) == (set(), set())  # the failed trial's records went too
    assert resumed.delete_all() == 0  # nothing left, nothing raised
