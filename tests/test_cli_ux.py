"""The CLI's reading side: ``studies``, ``show``, ``dashboard``, help texts, the run summary."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from test_plots import make_study

from auxopt.cli import main


@pytest.fixture
def storage(tmp_path):
    url = f"sqlite:///{tmp_path / 'd.db'}"
    study, _ = make_study(url, n=6)
    return url, study


@pytest.mark.parametrize("command", ["dashboard", "studies", "show", "run", "quickstart", "export", "verify"])
def test_every_subcommand_help_has_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out and f"auxopt {command}" in out


def test_studies_lists_studies_and_their_state(storage, capsys):
    url, study = storage
    running = study.ask()  # a trial some worker is running now
    assert main(["studies", "--storage", url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["study", "complete", "pruned", "failed", "resumed", "running", "best", "state"]
    assert out[1].split() == ["demo", "6", "0", "0", "0", "1", f"{study.best_value:.4f}", "running"]
    study.tell(running, 0.1)
    assert main(["studies", "--storage", url]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[-1] == "idle"


def test_show_prints_the_best_configuration(storage, capsys):
    url, study = storage
    assert main(["show", "demo", "--storage", url]) == 0
    out = capsys.readouterr().out
    best = study.best_trial
    rows = table(out)
    assert rows["best trial"] == f"#{best.number}"
    assert rows["dev accuracy"] == f"{best.value:.4f}"
    assert rows["test accuracy"] == f"{best.user_attrs['test_metric']:.4f}"
    assert rows["aux_task"] == best.params["aux_task"]
    ratios = best.user_attrs["config"]["ratios"]
    assert rows["ratios"] == ", ".join(
        f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}" for k, v in ratios.items()
    )
    assert rows["tasks"].split(", ")[0] == "primary"
    assert f"auxopt dashboard --storage {url}" in out


def table(out: str) -> dict[str, str]:
    """The summary's two-column rows: indented ``key  value`` lines."""
    return dict(m.groups() for m in re.finditer(r"^  (\S.*?)\s{2,}(\S.*)$", out, flags=re.M))


def test_show_and_studies_say_what_is_wrong(tmp_path, storage, capsys):
    url, _ = storage
    assert main(["show", "nope", "--storage", url]) == 2
    assert "no study 'nope'" in capsys.readouterr().err
    assert main(["show", "demo"]) == 2
    assert "--storage URL" in capsys.readouterr().err
    missing = f"sqlite:///{tmp_path / 'missing.db'}"
    assert main(["studies", "--storage", missing]) == 2
    assert "no study database" in capsys.readouterr().err
    assert not (tmp_path / "missing.db").exists()  # reading never creates a database


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_dashboard_command_serves_on_loopback(storage, tmp_path):
    url, study = storage
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "auxopt.cli", "dashboard", "--storage", url, "--port", str(port), "--publish"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline, body = time.monotonic() + 60, None
        while time.monotonic() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as r:
                    body = r.read().decode()
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.3)
        assert body is not None, proc.stdout.read() if proc.poll() is not None else "no answer"
        assert '"demo"' in body
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{study._study_id}?after=0") as r:
            detail = r.read().decode()
        assert "user-defined" not in detail and '"auxopt-thompson"' in detail  # --publish did it
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/" in out and "published 5 plot(s) to 'demo'" in out


def test_dashboard_bad_storage_is_one_clear_line(tmp_path, capsys):
    assert main(["dashboard", "--storage", "redis://x/0"]) == 2
    err = capsys.readouterr().err
    assert "supports sqlite" in err and "Traceback" not in err


@pytest.mark.slow
def test_run_quiet_prints_the_summary_table_only(tmp_path, capsys):
    study_file = tmp_path / "s.py"
    study_file.write_text(
        "import optuna\n"
        "from auxopt import StudySpec, make_synthetic_suite\n"
        "suite = make_synthetic_suite(n_helpful=1, n_neutral=0, n_harmful=0, n_train=100,"
        " n_aux_train=100, n_dev=50, n_test=50)\n"
        "study = StudySpec(name='q', primary=suite.primary, auxiliaries=suite.auxiliaries,"
        " space=lambda t: {'ratios': {'primary': 1, 'helpful_0': t.suggest_int('ratio_helpful_0', 1, 2)}},"
        " base={'max_steps': 10, 'eval_every': 5, 'max_length': 16, 'batch_size': 8},"
        " sampler=optuna.samplers.RandomSampler(seed=0), n_trials=1)\n"
    )
    assert main(["run", str(study_file), "--quiet"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "study 'q': 1 complete" in out
    rows = table(out)
    assert rows["tasks"] == "primary, helpful_0"
    assert rows["ratios"] == f"primary: 1, helpful_0: {rows['ratio_helpful_0']}"
    assert float(rows["dev accuracy"]) >= 0 and float(rows["test accuracy"]) >= 0
    assert f"storage: sqlite:///{tmp_path / 'q.db'}" in out
    assert f"auxopt dashboard --storage sqlite:///{tmp_path / 'q.db'}" in out
    assert "steps" not in captured.err and "trials:" not in captured.err  # no bars with --quiet


def test_show_accepts_a_study_file(storage, tmp_path, capsys):
    url, study = storage
    study_file = tmp_path / "demo_study.py"
    study_file.write_text(
        "from auxopt import StudySpec, make_synthetic_suite\n"
        "suite = make_synthetic_suite(n_helpful=1, n_neutral=0, n_harmful=0, n_train=50,"
        " n_aux_train=50, n_dev=20, n_test=20)\n"
        f"study = StudySpec(name='demo', primary=suite.primary, storage={url!r})\n"
    )
    assert main(["show", str(study_file)]) == 0
    out = capsys.readouterr().out
    assert "study 'demo': 6 complete" in out
    assert table(out)["best trial"] == f"#{study.best_trial.number}"
