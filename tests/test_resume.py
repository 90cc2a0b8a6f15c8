"""Mid-training resume: checkpoints restore a run exactly; bad checkpoints fall back with a warning;
a trial retried after its worker died resumes from its predecessor's last checkpoint."""

from __future__ import annotations

import fractions
import io
import logging

import optuna
import pytest
import torch
from optuna.trial import TrialState

from auxopt.objective import Objective
from auxopt.storage import open_storage
from auxopt.train import Checkpoint, FolderCheckpointStore, OnlineThompson, TrainConfig, train
from auxopt.train.checkpoint import loads
from auxopt.worker import run_trials

FAST = dict(max_steps=40, eval_every=10, max_length=32, batch_size=16, device="cpu", seed=3, lr=3e-3)


class Stop(Exception):
    pass


def _config(suite, **kw):
    return TrainConfig(suite.primary, suite.auxiliaries, schedule=OnlineThompson(steps_per_pull=5), **FAST, **kw)


def _same(a, b):
    assert a.curve == b.curve and a.test_at_best == b.test_at_best and a.examples == b.examples
    assert a.best_step == b.best_step and a.extra["thompson"] == b.extra["thompson"]


def _crash_at(step):
    def reporter(s, value):
        if s == step:
            raise Stop

    return reporter


@pytest.fixture(scope="module")
def reference(suite):
    return train(_config(suite))


def test_interrupted_run_resumes_exactly(suite, reference, tmp_path):
    config = _config(suite, checkpoint=Checkpoint(FolderCheckpointStore(tmp_path), every=15))
    with pytest.raises(Stop):
        train(config, _crash_at(40))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-15.pt", "step-30.pt"]
    resumed = train(config)
    assert resumed.extra["resumed_from_step"] == 30
    _same(resumed, reference)  # model, optimizer, RNG, schedule and bandit all came back


@pytest.mark.parametrize("damage", ["truncate", "garbage", "pickle"])
def test_bad_newest_checkpoint_falls_back_to_the_previous(suite, reference, tmp_path, caplog, damage):
    config = _config(suite, checkpoint=Checkpoint(FolderCheckpointStore(tmp_path), every=10))
    with pytest.raises(Stop):
        train(config, _crash_at(40))
    newest = tmp_path / "step-30.pt"
    if damage == "truncate":
        newest.write_bytes(newest.read_bytes()[:1000])
    elif damage == "garbage":
        newest.write_bytes(b"not a checkpoint")
    else:  # a pickle that would run code: weights_only refuses it
        buffer = io.BytesIO()
        torch.save({"version": 1, "step": 30, "evil": fractions.Fraction(1, 3)}, buffer)
        newest.write_bytes(buffer.getvalue())
    with caplog.at_level(logging.WARNING, logger="auxopt"):
        resumed = train(config)
    assert resumed.extra["resumed_from_step"] == 20
    assert "checkpoint at step 30 does not load" in caplog.text
    _same(resumed, reference)


def test_no_loadable_checkpoint_trains_from_scratch(suite, reference, tmp_path, caplog):
    config = _config(suite, checkpoint=Checkpoint(FolderCheckpointStore(tmp_path), every=10))
    with pytest.raises(Stop):
        train(config, _crash_at(40))
    for path in tmp_path.iterdir():
        path.write_bytes(path.read_bytes()[:500])
    with caplog.at_level(logging.WARNING, logger="auxopt"):
        result = train(config)
    assert "resumed_from_step" not in result.extra and "training from step 0" in caplog.text
    _same(result, reference)  # the failed attempts left nothing behind in the run


def test_checkpoints_load_with_weights_only(suite, tmp_path):
    config = _config(suite, checkpoint=Checkpoint(FolderCheckpointStore(tmp_path, keep=1), every=10))
    with pytest.raises(Stop):
        train(config, _crash_at(40))
    (path,) = tmp_path.iterdir()
    torch.load(path, weights_only=True)  # no unsafe globals in it
    state = loads(path.read_bytes())
    assert state["step"] == 30 and set(state) >= {"model", "optimizer", "scheduler", "rng", "schedule", "strategy"}


def _interrupting(step):
    """A train function whose run is interrupted (Ctrl-C) at ``step``, as a dying worker would be."""

    def train_fn(config, reporter):
        class Interrupting:
            def report(self, s, value):
                reporter.report(s, value)
                if s == step:
                    raise KeyboardInterrupt

            def should_stop(self):
                return reporter.should_stop()

        return train(config, Interrupting())

    return train_fn


@pytest.mark.parametrize("corrupt", [False, True])
def test_retried_trial_resumes_from_the_artifact_store(suite, reference, tmp_path, corrupt):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    artifacts = tmp_path / "artifacts"
    study = optuna.create_study(study_name="r", storage=open_storage(url), direction="maximize")
    objective = Objective(lambda trial: _config(suite), artifacts=artifacts, checkpoint_every=10)
    objective.train_fn = _interrupting(40)
    with pytest.raises(KeyboardInterrupt):
        run_trials(study, objective, url=url, until=1)
    failed, waiting = study.get_trials()
    assert (failed.state, waiting.state) == (TrialState.FAIL, TrialState.WAITING)
    assert failed.user_attrs["checkpoint_step"] == 30
    assert len(list(artifacts.iterdir())) == 2  # the newest two of 10, 20, 30
    if corrupt:
        newest = max(artifacts.iterdir(), key=lambda p: p.stat().st_mtime)
        newest.write_bytes(newest.read_bytes()[:2000])
    objective.train_fn = train
    assert run_trials(study, objective, url=url, until=1) == 1  # the retry, no new trial
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    retry = trials[1]
    assert retry.user_attrs["resumed_from_step"] == (20 if corrupt else 30)
    assert retry.user_attrs["retry_of"] == 0
    assert retry.value == reference.best_dev and retry.user_attrs["test_metric"] == reference.test_at_best
    assert retry.intermediate_values == dict(reference.curve)  # the whole curve, restored ones too
    assert list(artifacts.iterdir()) == []  # a finished trial's checkpoints are deleted ...
    for t in study.get_trials():  # ... and so are their records: the dashboard lists none
        assert optuna.artifacts.get_all_artifact_meta(t, storage=study._storage) == []


def test_a_retry_that_takes_a_finished_run_leaves_no_checkpoint(suite, reference, tmp_path):
    """A retried trial whose settings ran to the end elsewhere (``reuse_from``) takes that outcome
    instead of resuming; the checkpoints of the run it retries are deleted all the same."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    artifacts = tmp_path / "artifacts"
    storage = open_storage(url)
    done = optuna.create_study(study_name="done", storage=storage, direction="maximize")
    done.optimize(Objective(lambda trial: _config(suite)), n_trials=1)
    study = optuna.create_study(study_name="r", storage=storage, direction="maximize")
    objective = Objective(lambda trial: _config(suite), artifacts=artifacts, checkpoint_every=10)  # trains first
    objective.train_fn = _interrupting(40)
    with pytest.raises(KeyboardInterrupt):
        run_trials(study, objective, url=url, until=1)
    assert len(list(artifacts.iterdir())) == 2
    objective.reuse_from, objective.train_fn = ("done",), train
    assert run_trials(study, objective, url=url, until=1) == 1
    retry = study.get_trials()[1]
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["reused_study"] == "done"
    assert retry.value == done.best_value == reference.best_dev
    assert list(artifacts.iterdir()) == []
