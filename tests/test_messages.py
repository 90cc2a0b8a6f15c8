"""What auxopt says while it runs and when it ends (issue 18): plain progress lines outside a
terminal, log lines above the bars, rounded values, retried trials counted apart, a worker with
nothing to do saying so."""

from __future__ import annotations

import io
import logging
import re

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from test_study_cli import write_study

from auxopt.cli import main, summary
from auxopt.progress import Progress, TqdmLoggingHandler, fmt_params, fmt_value
from auxopt.storage import RETRY_ATTR
from auxopt.worker import run_trials


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_values_are_rounded_for_people():
    assert fmt_value(0.3486238532110092) == "0.3486"
    assert fmt_value(0.8) == "0.8000" and fmt_value(1.23456e-05) == "1.235e-05"
    assert fmt_value(float("nan")) == "nan" and fmt_value(3) == "3" and fmt_value(None) == "None"
    assert fmt_params({"aux_task": "helpful_0", "lr": 0.0013271234, "aux_ratio": 2, "lr_head": 1.5e-05}) == (
        "{aux_task: helpful_0, lr: 0.001327, aux_ratio: 2, lr_head: 1.5e-05}"
    )  # a small lr is not 0.0000


def test_log_lines_are_written_above_the_bars():
    stream = Terminal()
    log = logging.getLogger("auxopt")
    console = logging.StreamHandler(stream)
    console.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    old = (log.level, log.propagate)
    log.addHandler(console)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        with Progress(2, stream=stream) as progress:
            assert progress.enabled
            assert [type(h) for h in log.handlers] == [TqdmLoggingHandler]  # same stream, formatter
            progress.start_trial(20, number=0)
            progress.step(10, 0.5)
            log.info("trial 0 finished")
        assert log.handlers == [console]  # put back
    finally:
        log.removeHandler(console)
        log.setLevel(old[0])
        log.propagate = old[1]
    out = stream.getvalue()
    # tqdm.write lifts the bars (\r, blanks, \r) before the line, instead of writing after a bar
    assert re.search(r"\r +\r(\x1b\[A)?INFO trial 0 finished\n", out), repr(out)


def _study_with_a_retry(url):
    study = optuna.create_study(study_name="x", storage=url, direction="maximize")
    lr = FloatDistribution(1e-4, 1e-2, log=True)
    study.add_trial(create_trial(state=TrialState.FAIL, params={"lr": 0.002}, distributions={"lr": lr}))
    study.add_trial(create_trial(state=TrialState.FAIL, params={"lr": 0.003}, distributions={"lr": lr}))
    study.add_trial(
        create_trial(
            value=0.3486238532110092,
            params={"lr": 0.0013271234},
            distributions={"lr": lr},
            system_attrs={RETRY_ATTR: [0]},
            user_attrs={"metric": "accuracy"},
        )
    )
    return study


def test_the_summary_counts_interrupted_and_resumed_trials_apart(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = _study_with_a_retry(url)
    out = summary(study, url)
    assert out.splitlines()[0] == "study 'x': 1 complete, 0 pruned, 1 failed, 1 interrupted and resumed"
    assert "dev accuracy  0.3486" in out and "lr            0.001327" in out
    assert "0.3486238532110092" not in out

    assert main(["studies", "--storage", url]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["study", "complete", "pruned", "failed", "resumed", "running", "best", "state"]
    assert row.split() == ["x", "1", "0", "1", "1", "0", "0.3486", "idle"]


def test_the_finished_trial_log_line_is_rounded(tmp_path, caplog):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    study = optuna.create_study(study_name="w", storage=url, direction="maximize")

    def objective(trial):
        trial.suggest_float("x", 0.1234567, 0.1234568)
        trial.suggest_float("lr", 1.23456e-05, 1.23457e-05)
        return 0.3486238532110092

    with caplog.at_level(logging.INFO, logger="auxopt"):
        run_trials(study, objective, url=url, n_trials=1)
    assert "trial 0 finished with value 0.3486 and parameters {x: 0.1235, lr: 1.235e-05}" in caplog.text, caplog.text


def test_a_worker_with_nothing_to_do_says_so(tmp_path, capsys):
    path = write_study(tmp_path)
    assert main(["worker", str(path), "--n-trials", "1"]) == 0
    first = capsys.readouterr()
    assert "study 'tiny_study': 1 complete" in first.out and "nothing to do" not in first.out
    assert re.search(r"^trial 0  step 10/20  dev \d\.\d{4}$", first.err, flags=re.M)  # not a terminal: lines
    assert re.search(
        r"^trial 0 complete  value \d\.\d{4}  best \d\.\d{4}  \(1 trial this run\)$", first.err, flags=re.M
    )
    assert main(["worker", str(path), "--n-trials", "1", "--quiet"]) == 0
    again = capsys.readouterr().out
    assert again.splitlines()[0] == (
        "the study already holds 1 trial (--n-trials 1 is the total the study "
        "should hold); nothing to do — raise --n-trials to add trials"
    )
    assert "study 'tiny_study': 1 complete" in again
