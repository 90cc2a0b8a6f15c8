import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

import auxopt
from auxopt.cli import main
from auxopt.errors import AuxoptError
from auxopt.storage import mask_url, validate_storage_url
from auxopt.study import StudySpec
from auxopt.study_file import load_study_file

STUDY = """
import optuna
from auxopt import StudySpec, make_synthetic_suite

suite = make_synthetic_suite(n_helpful=1, n_neutral=1, n_harmful=0, n_train=200, n_aux_train=300, n_dev=100, n_test=100)

def space(trial):
    aux = trial.suggest_categorical("aux_task", ["none", "helpful_0", "neutral_0"])
    return {{"ratios": {{"primary": 1}} if aux == "none" else {{"primary": 1, aux: 1}}}}

study = StudySpec(
    name="tiny_study",
    primary=suite.primary,
    auxiliaries=suite.auxiliaries,
    space=space,
    base={{"max_steps": 20, "eval_every": 10, "max_length": 24, "batch_size": 16, "model": {model!r}}},
    sampler=optuna.samplers.RandomSampler(seed=0),
    n_trials=2,
)
"""


def write_study(tmp_path, model="tiny"):
    path = tmp_path / "study.py"
    path.write_text(STUDY.format(model=model))
    return path


def test_exports_resolve():
    for name in auxopt.__all__:
        assert getattr(auxopt, name) is not None


def test_import_and_help_do_not_load_torch():
    code = (
        "import sys, auxopt, auxopt.cli; "
        "print(sorted(m for m in ('torch', 'optuna', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    help_out = subprocess.run(
        [sys.executable, "-m", "auxopt.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "quickstart" in help_out and "examples:" in help_out


@pytest.mark.parametrize("command", ["run", "quickstart"])
def test_subcommand_help_has_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "example" in capsys.readouterr().out


def test_study_records_results_and_rerun_adds_trials(tmp_path):
    spec = load_study_file(write_study(tmp_path))
    url = spec.storage_url()
    assert url == f"sqlite:///{tmp_path / 'tiny_study.db'}"
    study = spec.optimize()
    assert len(study.trials) == 2
    for trial in study.trials:
        assert trial.state == optuna.trial.TrialState.COMPLETE
        attrs = trial.user_attrs
        assert attrs["dev_metric"] == trial.value
        assert 0 <= attrs["test_metric"] <= 1
        assert [s for s, _ in attrs["curve"]] == [10, 20]
        assert trial.intermediate_values == {s: v for s, v in attrs["curve"]}
        assert attrs["config"]["primary"] == "primary"
    assert [t["name"] for t in study.user_attrs["tasks"]] == ["primary", "helpful_0", "neutral_0"]
    again = load_study_file(tmp_path / "study.py").optimize(n_trials=1)
    assert len(again.trials) == 3 and again.study_name == "tiny_study"


def test_pruned_trials_keep_their_record(tmp_path):
    class AlwaysPrune(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return True

    spec = load_study_file(write_study(tmp_path))
    spec.pruner = AlwaysPrune()
    study = spec.optimize(n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.user_attrs["stopped"] == "reporter" and trial.user_attrs["steps"] == 10


def test_cli_run_prints_summary(tmp_path, capsys):
    path = write_study(tmp_path)
    assert main(["run", str(path), "--n-trials", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "study 'tiny_study': 1 complete" in out
    assert f"optuna-dashboard sqlite:///{tmp_path / 'tiny_study.db'}" in out


@pytest.mark.parametrize(
    "storage, message",
    [
        ("not a url", "does not parse"),
        ("redis://localhost/0", "supports sqlite"),
        ("sqlite:///{tmp}/missing/dir/x.db", "does not exist"),
    ],
)
def test_cli_bad_storage_writes_nothing(tmp_path, capsys, storage, message):
    path = write_study(tmp_path)
    code = main(["run", str(path), "--storage", storage.format(tmp=tmp_path), "--n-trials", "1"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not list(tmp_path.rglob("*.db"))


@pytest.mark.parametrize("folder, message", [("no_such_model", "does not exist"), ("empty_model", "cannot load model")])
def test_cli_model_that_does_not_load_writes_nothing(tmp_path, capsys, folder, message):
    (tmp_path / "empty_model").mkdir()
    path = write_study(tmp_path, model=str(tmp_path / folder))
    assert main(["run", str(path), "--n-trials", "1"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "tiny_study.db").exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist"),
        ("x = 1\n", "must define one auxopt.StudySpec"),
        ("from auxopt import load_task\nt = load_task('no_such_task_anywhere_xyz')\n", "unknown task"),
    ],
)
def test_cli_bad_study_file(tmp_path, capsys, monkeypatch, content, message):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = tmp_path / "s.py"
    if content is not None:
        path.write_text(content)
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    "content, expected",
    [
        ("import optuna\nx = (1,\n", ["line 2", "SyntaxError", "x = (1,", "was never closed"]),
        ("import optuna\ndef f(:\n    pass\n", ["line 2", "SyntaxError: invalid syntax", "def f(:"]),
        (
            "import optuna\n\nsuite = {}\nprimary = suite['primary']\n",
            ["raised KeyError: 'primary'", "line 4: primary = suite['primary']"],
        ),
        (
            "from auxopt import StudySpec\nstudy = StudySpec(name='x')\n",
            [
                "raised TypeError",
                "missing 1 required positional argument: 'primary'",
                "line 2: study = StudySpec(name='x')",
            ],
        ),
    ],
)
def test_cli_study_file_that_fails_shows_the_users_line_only(tmp_path, capsys, content, expected):
    path = tmp_path / "s.py"
    path.write_text(content)
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "Traceback" not in err
    assert "runpy" not in err and "auxopt/study.py" not in err
    for text in expected:
        assert text in err
    assert not list(tmp_path.glob("*.db"))


def test_cli_sqlite_file_that_is_not_a_database_says_so(tmp_path, capsys):
    path = write_study(tmp_path)
    db = tmp_path / "notes.db"
    db.write_bytes(b"these are my notes, not a database\n" * 200)
    assert main(["run", str(path), "--storage", f"sqlite:///{db}", "--n-trials", "1"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(db) in err
    assert "not an SQLite database" in err and "server runs" not in err
    assert db.read_bytes() == b"these are my notes, not a database\n" * 200  # untouched


def test_spec_rejects_unknown_settings(suite):
    with pytest.raises(AuxoptError, match="unknown setting"):
        StudySpec(name="x", primary=suite.primary, base={"max_stepz": 3})
    spec = StudySpec(name="x", primary=suite.primary, space=lambda trial: {"learning_rate": 1.0})
    with pytest.raises(AuxoptError, match="search space returned unknown"):
        spec.build_config(optuna.trial.FixedTrial({}))
    spec = StudySpec(name="x", primary=suite.primary, space=lambda trial: [1, 2])
    with pytest.raises(AuxoptError, match=r"must return a dict of TrainConfig fields .* returned list \[1, 2\]"):
        spec.build_config(optuna.trial.FixedTrial({}))


def test_storage_url_helpers(tmp_path):
    assert (
        mask_url("postgresql+psycopg://alice:s3cret@db.example/auxopt")
        == "postgresql+psycopg://alice:***@db.example/auxopt"
    )
    assert validate_storage_url(f"sqlite:///{tmp_path}/a.db").endswith("a.db")
    with pytest.raises(AuxoptError, match="needs a file"):
        validate_storage_url("sqlite://")


@pytest.mark.slow
def test_quickstart_command_twice_then_the_readme_export_and_verify(tmp_path, monkeypatch, capsys):
    """The quickstart's job: `auxopt quickstart` writes quickstart.db; running it again adds trials;
    the export and verify commands, as docs/getting-started.md writes them, run on it (verify with 2
    seeds instead of 5, for time)."""
    import shlex

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def auxopt(*args: str) -> str:
        command = [sys.executable, "-m", "auxopt.cli", *args]
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    for _ in range(2):
        auxopt("quickstart", "--n-trials", "1", "--quiet")
    study = optuna.load_study(study_name="quickstart", storage=f"sqlite:///{tmp_path / 'quickstart.db'}")
    assert len(study.trials) == 2
    assert study.user_attrs["ground_truth"] == {"helpful_0": "helpful", "neutral_0": "neutral", "harmful_0": "harmful"}
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete and all("dev_metric" in t.user_attrs and "test_metric" in t.user_attrs for t in complete)

    page = (Path(__file__).resolve().parents[1] / "docs" / "getting-started.md").read_text()
    block = page.split("Then take the result out", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [shlex.split(line) for line in block.strip().splitlines()]
    assert [c[:2] for c in commands] == [["auxopt", "export"], ["auxopt", "verify"]]
    monkeypatch.chdir(tmp_path)  # the page's relative paths; in this process, to save start-ups
    assert main(commands[0][1:]) == 0
    out = capsys.readouterr().out
    assert "reproduced exactly" in out and (tmp_path / "quickstart-model" / "model.safetensors").is_file()
    assert main([*commands[1][1:], "--seeds", "2"]) == 0
    out = capsys.readouterr().out
    verdict = optuna.load_study(study_name="quickstart", storage=f"sqlite:///{tmp_path / 'quickstart.db'}").user_attrs[
        "verdict"
    ]
    if verdict.get("alone"):  # the search chose the primary alone: nothing to compare, nothing trained
        assert "primary task alone" in out
    else:
        assert "over 2 paired seeds" in out and verdict["seeds"] == 2 and verdict["summary"] in out


def test_a_run_with_the_settings_of_a_finished_trial_is_not_trained_again(tmp_path):
    """Two points that mean the same run (here: two 'off' values of a ratio) train once; the second
    trial takes the first's outcome and names it; another seed is another run."""
    spec = load_study_file(write_study(tmp_path))
    spec.space = lambda trial: {"ratios": {"primary": 1, "helpful_0": max(0.0, trial.suggest_float("r", -1, 1))}}
    spec.sampler = optuna.samplers.RandomSampler(seed=0)
    study = spec.load_study(spec.storage_url())
    study.enqueue_trial({"r": -0.5})
    study.enqueue_trial({"r": -0.25})
    study.enqueue_trial({"r": 0.5})
    trained = []
    objective = spec.objective()
    real = objective.train_fn
    objective.train_fn = lambda config, reporter: trained.append(config.active_ratios()) or real(config, reporter)
    study.optimize(objective, n_trials=3)
    first, twin, other = study.trials
    assert len(trained) == 2 and "reused_from" not in first.user_attrs
    assert twin.user_attrs["reused_from"] == 0 and twin.user_attrs["steps"] == 0
    assert twin.value == first.value and twin.user_attrs["test_metric"] == first.user_attrs["test_metric"]
    assert twin.intermediate_values == first.intermediate_values
    assert "reused_from" not in other.user_attrs and other.user_attrs["steps"] == 20
    spec.base = {**spec.base, "seed": 1}
    objective = spec.objective()
    objective.train_fn = lambda config, reporter: trained.append(config.active_ratios()) or real(config, reporter)
    study.enqueue_trial({"r": -0.5})
    study.optimize(objective, n_trials=1)
    assert len(trained) == 3 and "reused_from" not in study.trials[-1].user_attrs
