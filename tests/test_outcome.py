"""What a search comes to: ``auxopt export`` (the chosen trial as a model) and ``auxopt verify`` (the
paired verdict), from a study file, from a storage alone, and from an AutoSeM pipeline."""

from __future__ import annotations

import math
import textwrap

import optuna
import pytest

from auxopt import StudySpec, records
from auxopt.cli import main
from auxopt.errors import AuxoptError
from auxopt.outcome import chosen, export, verify
from auxopt.stats import PairedDifference, paired_difference, verdict_lines

BASE = {"model": "tiny", "max_steps": 20, "eval_every": 10, "max_length": 32, "batch_size": 16, "device": "cpu"}


def _spec(suite, storage, name="s", **kwargs):
    aux = suite.auxiliaries[0].name

    def space(trial):
        on = trial.suggest_categorical("aux", ["none", aux])
        return {"ratios": {"primary": 1, **({aux: 2} if on == aux else {})}}

    return StudySpec(
        name=name,
        primary=suite.primary,
        auxiliaries=suite.auxiliaries,
        space=space,
        base=BASE,
        storage=storage,
        n_trials=2,
        checkpoint_every=None,
        **kwargs,
    )


# -- statistics ------------------------------------------------------------------------------------
def test_paired_difference_and_a_verdict_that_says_when_the_interval_crosses_zero():
    diff = paired_difference({1: 0.8, 2: 0.82, 3: 0.81}, {1: 0.7, 2: 0.75, 3: 0.74, 9: 0.5})
    assert diff.n == 3 and diff.wins == 3 and diff.mean == pytest.approx(0.08)
    assert diff.low > 0 and diff.resolved and diff.verdict() == "helps"
    noisy = paired_difference({1: 0.8, 2: 0.7, 3: 0.81}, {1: 0.7, 2: 0.75, 3: 0.74})
    assert noisy.low < 0 < noisy.high and not noisy.resolved
    assert "crosses 0" in noisy.sentence("dev accuracy")
    one = paired_difference({1: 0.8}, {1: 0.7})
    assert math.isnan(one.low) and not one.resolved and one.to_dict()["low"] is None
    assert math.isnan(PairedDifference.from_dict(one.to_dict()).high)
    assert paired_difference({1: 0.8}, {2: 0.7}) is None
    lines = verdict_lines({"metric": "accuracy", "dev": noisy.to_dict(), "summary": "Not shown."})
    assert lines[0].startswith("- dev accuracy: ") and lines[-1] == "Not shown."


# -- export ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_export_of_a_study_retrains_its_best_trial_and_the_model_scores_as_stored(suite, tmp_path, capsys):
    from transformers import pipeline

    import auxopt.models.modeling_auxopt  # noqa: F401  registered: no remote code needed here

    storage = f"sqlite:///{tmp_path / 's.db'}"
    spec = _spec(suite, storage)
    study = spec.optimize(publish_every=None)
    best = study.best_trial
    done = export(spec, tmp_path / "model")
    assert done.exact and done.result.best_dev == best.value
    assert done.result.test_at_best == best.user_attrs[records.TEST_METRIC]
    classify = pipeline("text-classification", model=str(done.folder), truncation=True, device="cpu")
    test = suite.primary.test
    labels = [suite.primary.labels.index(o["label"]) for o in classify(list(test.texts), batch_size=64)]
    assert suite.primary.score(test.labels, labels) == pytest.approx(best.user_attrs[records.TEST_METRIC], abs=1e-6)
    card = (done.folder / "README.md").read_text()
    assert f"trial: `{best.number}`" in card and "study: `s`" in card

    # the other trial, by number, from the command line; a folder in the way needs --force
    other = next(t for t in study.trials if t.number != best.number)
    out = tmp_path / "other"
    argv = ["export", spec_file(tmp_path, storage), "--trial", str(other.number), "--out", str(out), "--quiet"]
    assert main(argv) == 0
    assert "reproduced exactly" in capsys.readouterr().out
    assert main(argv) == 2
    assert "exists and is not empty" in capsys.readouterr().err


def spec_file(tmp_path, storage: str) -> str:
    """A study file defining :func:`_spec`'s study on the synthetic suite of conftest."""
    path = tmp_path / "study.py"
    path.write_text(
        textwrap.dedent(
            f"""
            from auxopt import StudySpec, make_synthetic_suite
            suite = make_synthetic_suite(n_helpful=1, n_neutral=1, n_harmful=1, n_train=300, n_aux_train=600,
                                         n_dev=200, n_test=200)
            aux = suite.auxiliaries[0].name

            def space(trial):
                on = trial.suggest_categorical("aux", ["none", aux])
                return {{"ratios": {{"primary": 1, **({{aux: 2}} if on == aux else {{}})}}}}

            study = StudySpec(name="s", primary=suite.primary, auxiliaries=suite.auxiliaries, space=space,
                              base={BASE!r}, storage={storage!r}, n_trials=2, checkpoint_every=None)
            """
        )
    )
    return str(path)


def test_export_refuses_what_has_no_model(suite, tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    spec = _spec(suite, storage)
    study = spec.load_study()
    with pytest.raises(AuxoptError, match="no finished trial yet"):
        chosen(spec)
    failed = study.ask({"aux": optuna.distributions.CategoricalDistribution(["none", "helpful_0"])})
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    pruned = study.ask({"aux": optuna.distributions.CategoricalDistribution(["none", "helpful_0"])})
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    study.add_trial(
        optuna.trial.create_trial(
            params={"aux": "none"},
            distributions={"aux": optuna.distributions.CategoricalDistribution(["none", "helpful_0"])},
            value=0.5,
            user_attrs={records.CONFIG: spec.config_for({"ratios": {"primary": 1}}).describe()},
        )
    )
    with pytest.raises(AuxoptError, match="trial #0 of 's' is fail, not finished.*the best is #2"):
        chosen(spec, trial=0)
    with pytest.raises(AuxoptError, match="trial #1 of 's' is pruned"):
        chosen(spec, trial=1)
    with pytest.raises(AuxoptError, match="has no trial #7"):
        chosen(spec, trial=7)
    # a stored configuration that the study file no longer gives
    study.add_trial(
        optuna.trial.create_trial(
            params={"aux": "none"},
            distributions={"aux": optuna.distributions.CategoricalDistribution(["none", "helpful_0"])},
            value=0.9,
            user_attrs={records.CONFIG: {**spec.config_for({}).describe(), "max_steps": 999}},
        )
    )
    with pytest.raises(AuxoptError, match=r"other settings than the study file gives now.*max_steps"):
        chosen(spec)
    # the command line: one clear line each, nothing written
    assert main(["export", "--storage", storage, "--out", str(tmp_path / "m")]) == 2
    assert "--study NAME" in capsys.readouterr().err
    assert main(["export", "--storage", storage, "--study", "nope", "--out", str(tmp_path / "m")]) == 2
    assert "no study 'nope'" in capsys.readouterr().err
    missing = f"sqlite:///{tmp_path / 'missing.db'}"
    assert main(["export", "--storage", missing, "--study", "s", "--out", str(tmp_path / "m")]) == 2
    assert "no study database" in capsys.readouterr().err
    assert not (tmp_path / "missing.db").exists() and not (tmp_path / "m").exists()
    # a task built in memory cannot be loaded again from the storage alone
    import dataclasses

    memory = StudySpec(
        name="mem", primary=dataclasses.replace(suite.primary, loaded_with=None), base=BASE, storage=storage
    )
    memory.load_study().add_trial(
        optuna.trial.create_trial(value=0.5, user_attrs={records.CONFIG: memory.config_for({}).describe()})
    )
    assert main(["export", "--storage", storage, "--study", "mem", "--out", str(tmp_path / "m")]) == 2
    assert "was not loaded from a folder or the hub" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_export_from_the_storage_alone_loads_the_tasks_again_and_says_when_the_data_is_gone(
    shared_data, tmp_path, capsys
):
    import shutil

    from auxopt import load_task

    folder = tmp_path / "data" / "trec"  # a task folder of the user's, which moves later
    shutil.copytree(shared_data / "trec", folder)
    storage = f"sqlite:///{tmp_path / 'r.db'}"
    spec = StudySpec(
        name="trec",
        primary=load_task(str(folder), max_train=200),
        space=lambda trial: {"lr": trial.suggest_float("lr", 1e-3, 2e-3)},
        base=BASE,
        storage=storage,
        n_trials=1,
        checkpoint_every=None,
    )
    best = spec.optimize(publish_every=None).best_trial
    assert main(["export", "--storage", storage, "--study", "trec", "--out", str(tmp_path / "m"), "--quiet"]) == 0
    assert f"dev accuracy {best.value:.4f} (stored {best.value:.4f})" in capsys.readouterr().out
    folder.rename(tmp_path / "data" / "moved")
    assert main(["export", "--storage", storage, "--study", "trec", "--out", str(tmp_path / "m2")]) == 2
    assert "cannot load task 'trec' again" in capsys.readouterr().err
    (tmp_path / "data" / "moved").rename(folder)
    with open(folder / "train.jsonl", "a") as f:  # the data changed since the study ran
        f.write('{"text": "what is new here ?", "label": "DESC"}\n')
    assert main(["export", "--storage", storage, "--study", "trec", "--out", str(tmp_path / "m2")]) == 2
    assert "is not the data the study ran on" in capsys.readouterr().err
    assert not (tmp_path / "m2").exists()
    assert not (tmp_path / "m2").exists()


# -- verify ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_verify_runs_paired_seeds_once_stores_the_verdict_and_the_card_shows_it(suite, tmp_path):
    from auxopt.plots import best_summary

    storage = f"sqlite:///{tmp_path / 'v.db'}"
    alone = _spec(suite, storage, name="alone")
    alone.load_study().enqueue_trial({"aux": "none"})
    alone.optimize(n_trials=1, publish_every=None)
    verdict = verify(alone, seeds=2)  # nothing to compare: nothing is trained
    assert verdict["alone"] and verdict["seeds"] == 0 and "primary task alone" in verdict["summary"]

    spec = _spec(suite, storage)
    spec.load_study().enqueue_trial({"aux": "helpful_0"})
    spec.optimize(n_trials=1, publish_every=None)
    picked = chosen(spec)
    verdict = verify(spec, seeds=2)
    companion = optuna.load_study(study_name="s.verify", storage=storage)
    complete = companion.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert sorted((t.params["arm"], t.params["seed"]) for t in complete) == [
        ("chosen", 1),
        ("chosen", 2),
        ("primary-only", 1),
        ("primary-only", 2),
    ]
    alone = [t for t in complete if t.params["arm"] == "primary-only"]
    assert all(t.user_attrs[records.CONFIG]["ratios"] == {"primary": 1.0} for t in alone)
    runs = verdict["runs"]
    d = [runs["chosen"][s]["dev"] - runs["primary-only"][s]["dev"] for s in ("1", "2")]
    assert verdict["dev"]["mean"] == pytest.approx(sum(d) / 2) and verdict["seed_list"] == [1, 2]
    assert verdict["test"]["n"] == 2 and verdict["summary"]
    stored = optuna.load_study(study_name="s", storage=storage).user_attrs[records.VERDICT]
    assert stored["dev"] == verdict["dev"] and stored["of"] == {"study": "s", "trial": picked.trial.number}
    assert "Verified (auxopt verify" in best_summary(optuna.load_study(study_name="s", storage=storage))
    # again: nothing is trained, the verdict is the same
    assert verify(spec, seeds=2)["dev"] == verdict["dev"]
    assert len(optuna.load_study(study_name="s.verify", storage=storage).trials) == 4
    card = (export(spec, tmp_path / "m").folder / "README.md").read_text()
    assert "## Did the auxiliary data help?" in card and "2 fresh seeds (1, 2" in card
    assert verdict["summary"] in card


def test_a_pair_whose_trial_has_suggested_only_its_arm_is_not_proposed_again(suite, tmp_path):
    """Two verify workers: the pair another worker has taken stays taken while its trial is between
    suggesting the arm and the seed (it was once run twice, and another pair never)."""
    from auxopt.outcome.verify import VerifyStudy

    storage = f"sqlite:///{tmp_path / 'p.db'}"
    spec = _spec(suite, storage)
    spec.load_study().enqueue_trial({"aux": "helpful_0"})
    spec.optimize(n_trials=1, publish_every=None)
    pairs = VerifyStudy(chosen(spec), [1, 2])
    study = pairs.load_study(storage)
    propose = pairs.proposer()
    first = propose(study)
    study.add_trial(
        optuna.trial.create_trial(state=optuna.trial.TrialState.WAITING, system_attrs={"fixed_params": first})
    )
    trial = study.ask()
    trial.suggest_categorical("arm", ["chosen", "primary-only"])  # the seed not yet suggested
    assert (first["arm"], first["seed"]) not in pairs.missing(study)
    assert propose(study) != first and len(pairs.missing(study)) == 3


@pytest.mark.slow
def test_verify_with_workers_and_from_the_command_line(suite, tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'w.db'}"
    spec = _spec(suite, storage)
    study = spec.load_study()
    study.enqueue_trial({"aux": "helpful_0"})
    spec.optimize(n_trials=1, publish_every=None)
    argv = ["verify", spec_file(tmp_path, storage), "--seeds", "2", "--workers", "2", "--threads", "1", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "2 workers on 's.verify'" in out and "over 2 paired seeds" in out
    companion = optuna.load_study(study_name="s.verify", storage=storage)
    assert len(companion.trials) == 4 and all(t.state == optuna.trial.TrialState.COMPLETE for t in companion.trials)
    assert main(["verify", spec_file(tmp_path, storage), "--seeds", "1"]) == 2
    assert "--seeds must be at least 2" in capsys.readouterr().err


@pytest.mark.slow
def test_autosem_result_exports_and_an_unfinished_pipeline_says_so(suite, tmp_path):
    from auxopt.pipelines import AutoSeM
    from auxopt.train import OnlineThompson

    storage = f"sqlite:///{tmp_path / 'a.db'}"
    kwargs = dict(
        base={k: v for k, v in BASE.items() if k != "model"},
        stage1_steps=20,
        online=OnlineThompson(steps_per_pull=5, eval_batches=1),
        stage2_trials=2,
        storage=storage,
    )
    with pytest.raises(AuxoptError, match="has not finished"):
        chosen(AutoSeM("a", suite.primary, suite.auxiliaries, **kwargs))
    pipeline = AutoSeM("a", suite.primary, suite.auxiliaries, **kwargs)
    pipeline.optimize(publish_every=None)
    picked = chosen(AutoSeM("a", suite.primary, suite.auxiliaries, **kwargs))
    assert picked.dev == pipeline.result.best_dev and picked.name == "a"
    assert picked.config.active_ratios() == {k: v for k, v in pipeline.result.ratios.items() if v > 0}
    done = export(picked, tmp_path / "m")
    assert done.result.best_dev == pipeline.result.best_dev
