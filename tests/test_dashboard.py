"""auxopt.dashboard: plots published into optuna-dashboard's storage, served over HTTP."""

from __future__ import annotations

import io
import json
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager

import optuna
import pytest
from optuna_dashboard import get_note
from optuna_dashboard._custom_plot_data import get_plotly_graph_objects
from test_plots import make_study

from auxopt import dashboard, plots
from auxopt.errors import AuxoptError
from auxopt.storage import artifact_dir

ALL = ["auxopt-aang", "auxopt-attittud", "auxopt-dev-curves", "auxopt-mixing", "auxopt-thompson"]


def stored_figures(study) -> dict[str, dict]:
    attrs = study._storage.get_study_system_attrs(study._study_id)
    return {k: json.loads(v) for k, v in get_plotly_graph_objects(attrs).items()}


@contextmanager
def running_app(app):
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_publish_stores_every_plot_and_the_note(tmp_path):
    study, sampler = make_study(f"sqlite:///{tmp_path / 'd.db'}")
    assert sorted(dashboard.publish(study, sampler)) == ALL
    stored = stored_figures(study)
    assert sorted(stored) == ALL
    # what is stored is the figure auxopt.plots draws (the Thompson bars are the utilities)
    means = plots.thompson_data(study, sampler)["mean"]
    assert stored["auxopt-thompson"]["data"][0]["y"] == pytest.approx(means)
    assert get_note(study) == plots.best_summary(study)
    # publishing again replaces the figures instead of adding more
    dashboard.publish(study, sampler)
    assert sorted(stored_figures(study)) == ALL


def test_publish_only_what_the_study_has():
    study, _ = make_study(extras=False)
    assert sorted(dashboard.publish(study)) == ["auxopt-dev-curves", "auxopt-mixing", "auxopt-thompson"]


def test_callback_publishes_every_few_trials():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    callback = dashboard.PublishCallback(every=3)

    def objective(trial):
        trial.set_user_attr("curve", [[10, 0.5], [20, 0.6]])
        return trial.suggest_float("ratio_a", 0, 1)

    study.optimize(objective, n_trials=2, callbacks=[callback])
    assert stored_figures(study) == {}  # not every trial
    study.optimize(objective, n_trials=1, callbacks=[callback])
    assert sorted(stored_figures(study)) == ["auxopt-dev-curves", "auxopt-mixing"]
    assert "trials" in stored_figures(study)["auxopt-dev-curves"]["layout"]["title"]["text"]
    assert callback.flush(study) == []  # nothing new since
    study.optimize(objective, n_trials=1, callbacks=[callback])
    assert callback.flush(study) == ["auxopt-mixing", "auxopt-dev-curves"]
    with pytest.raises(AuxoptError, match="whole number"):
        dashboard.PublishCallback(every=0)


def test_publishing_failure_never_stops_the_search(caplog):
    study = optuna.create_study()
    trial = study.ask()
    trial.set_user_attr("grad_parts", {"steps": [1, 2], "pos": [1.0]})  # malformed
    study.tell(trial, 1.0)
    assert dashboard.PublishCallback(every=1).publish(study) == []
    assert "grad_parts is malformed" in caplog.text


@pytest.mark.slow
def test_study_spec_publishes_and_shows_progress(tmp_path, suite):
    from auxopt import StudySpec
    from auxopt.progress import Progress

    def space(trial):
        aux = trial.suggest_categorical("aux_task", ["none", "helpful_0"])
        ratio = trial.suggest_float("ratio_aux", 0.5, 2.0)
        return {"ratios": {"primary": 1} if aux == "none" else {"primary": 1, aux: ratio}}

    spec = StudySpec(
        name="published",
        primary=suite.primary,
        auxiliaries=suite.auxiliaries,
        space=space,
        base={"max_steps": 20, "eval_every": 10, "max_length": 24, "batch_size": 16},
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    stream = io.StringIO()
    with Progress(3, enabled=True, stream=stream) as progress:
        study = spec.optimize(n_trials=3, storage=f"sqlite:///{tmp_path / 'p.db'}", publish_every=2, progress=progress)
    assert progress.trials_done == 3 and progress.last_step == 20
    out = stream.getvalue()
    assert "trials" in out and "3/3" in out and "steps" in out and "20/20" in out
    stored = stored_figures(study)
    assert "auxopt-dev-curves" in stored  # published at trial 2, and at the end (flush)
    curves = [tr for tr in stored["auxopt-dev-curves"]["data"]]
    assert len(curves) == 3  # the final publication saw all three trials
    assert f"trial {study.best_trial.number}" in get_note(study)


def test_progress_prints_plain_lines_when_not_a_terminal():
    from auxopt.progress import Progress

    def train(config, reporter, callbacks=()):  # the loop's side of auxopt.train.train
        for step, dev in ((10, 0.3486238532110092), (20, 0.5)):
            for callback in callbacks:
                callback.on_step_end(step)
                callback.on_evaluate(step, dev)
            reporter.report(step, dev)
        return reporter.should_stop()

    class Config:
        max_steps = 20

    calls = []

    class Reporter:
        trial = optuna.trial.FixedTrial({}, number=3)

        def report(self, step, value):
            calls.append(step)

        def should_stop(self):
            return True

    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.5, params={}, distributions={}))

    stream = io.StringIO()  # not a tty: a log file, nohup
    progress = Progress(2, stream=stream)
    assert not progress.enabled and progress.plain  # no bars, plain lines
    assert progress.wrap_train(train)(Config(), Reporter()) is True  # the trial's reporter decides
    assert calls == [10, 20] and progress.last_step == 20
    progress.callback(study, study.trials[0])
    assert stream.getvalue().splitlines() == [
        "trial 3  step 10/20  dev 0.3486",
        "trial 3  step 20/20  dev 0.5000",
        "trial 0 complete  value 0.5000  best 0.5000  (1/2 trials this run)",
    ]

    quiet = io.StringIO()
    progress = Progress(2, enabled=False, stream=quiet)  # --quiet
    assert progress.wrap_train(train)(Config(), Reporter()) is True
    progress.callback(study, study.trials[0])
    assert quiet.getvalue() == ""

    def own_train(config, reporter):  # a user's function without callbacks: it runs as it is
        reporter.report(20, 0.5)
        return "ran"

    stream = io.StringIO()
    progress = Progress(2, stream=stream)
    assert progress.wrap_train(own_train)(Config(), Reporter()) == "ran"
    assert stream.getvalue() == ""  # no step lines, but no error either


def test_server_serves_the_plots_with_the_artifact_store(tmp_path):
    url = f"sqlite:///{tmp_path / 'd.db'}"
    study, sampler = make_study(url)
    dashboard.publish(study, sampler)
    assert artifact_dir(url) == (tmp_path / "d.db.artifacts").resolve()
    app, folder = dashboard.make_app(url, artifacts=tmp_path / "art")
    assert folder == tmp_path / "art" and folder.is_dir()
    with running_app(app) as base:
        with urllib.request.urlopen(f"{base}/api/studies/{study._study_id}?after=0") as response:
            detail = json.load(response)
    ids = sorted(g["id"] for g in detail["plotly_graph_objects"])
    assert ids == ALL


def test_serve_rejects_a_bad_port(tmp_path):
    with pytest.raises(AuxoptError, match="port"):
        dashboard.serve(f"sqlite:///{tmp_path / 'x.db'}", port=70000)


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_the_dashboard_lists_only_checkpoints_that_exist(tmp_path, kind):
    from optuna.artifacts import get_all_artifact_meta

    from auxopt.storage import TrialCheckpointStore, artifact_store, open_storage

    url = f"sqlite:///{tmp_path / 'a.db'}" if kind == "sqlite" else f"journal:///{tmp_path / 'a.journal'}"
    study = optuna.create_study(study_name="ck", storage=open_storage(url, heartbeat=False))
    store = artifact_store(artifact_dir(url))
    done, running = study.ask(), study.ask()
    ids = {}
    for trial in (done, running):
        checkpoints = TrialCheckpointStore(trial, store, keep=2)
        for step in (10, 20, 30):
            checkpoints.save(step, f"step {step}".encode())
            ids[trial.number, step] = next(
                m.artifact_id for m in get_all_artifact_meta(trial) if m.filename == f"auxopt-ckpt-step-{step}.pt"
            )
    TrialCheckpointStore(done, store).delete_all()  # what the objective does when a trial ends
    study.tell(done, 0.5)
    if kind == "sqlite":  # the records went with the files
        assert get_all_artifact_meta(study.trials[0], storage=study._storage) == []
        assert len(get_all_artifact_meta(running)) == 2
    else:  # a journal cannot delete them: the dashboard skips those whose file is gone
        assert len(get_all_artifact_meta(study.trials[0], storage=study._storage)) == 3

    app, _ = dashboard.make_app(url)
    with running_app(app) as base:
        with urllib.request.urlopen(f"{base}/api/studies/{study._study_id}?after=0") as response:
            listed = {t["number"]: sorted(a["filename"] for a in t["artifacts"]) for t in json.load(response)["trials"]}
        assert listed == {0: [], 1: ["auxopt-ckpt-step-20.pt", "auxopt-ckpt-step-30.pt"]}
        trial_url = f"{base}/artifacts/{study._study_id}/{running._trial_id}"
        with urllib.request.urlopen(f"{trial_url}/{ids[1, 30]}") as response:
            assert response.read() == b"step 30"
        for gone in (f"{trial_url}/{ids[1, 10]}", f"{base}/artifacts/{study._study_id}/{done._trial_id}/{ids[0, 30]}"):
            with pytest.raises(urllib.error.HTTPError) as error:
                urllib.request.urlopen(gone)
            assert error.value.code == 404  # not 500 (FileNotFoundError)
