"""The chaos test: SIGKILL ``auxopt worker`` at random points of a study (during a trial, during a
checkpoint write, between trials) 20 times (8 on the journal and PostgreSQL), rerun the same command
each time, and check that every requested trial ends COMPLETE exactly once, that no finished trial
is lost, that no trial is left RUNNING, and that each killed trial's retry resumed from its last
checkpoint — at once, with the default heartbeat settings: the rerun knows that the killed process
of this machine is gone, so it neither waits out the heartbeat grace nor needs ``--reset-running``
(the journal file has no heartbeat at all). On SQLite, a journal file and PostgreSQL
(``AUXOPT_TEST_POSTGRES_URL``; skips without a server, see tests/test_workers.py). ``-s`` prints the
figures RESULTS.md records."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from test_workers import postgres_url

from auxopt.storage import open_storage

STUDY = """
import optuna
from auxopt import StudySpec, make_synthetic_suite

suite = make_synthetic_suite(n_helpful=1, n_neutral=0, n_harmful=0, n_train=200, n_aux_train=200,
                             n_dev=100, n_test=100)
study = StudySpec(
    name="NAME", primary=suite.primary, auxiliaries=suite.auxiliaries,
    space=lambda trial: {"lr": trial.suggest_float("lr", 1e-3, 1e-2, log=True)},
    base={"max_steps": 240, "eval_every": 20, "max_length": 16, "batch_size": 8, "device": "cpu"},
    sampler=optuna.samplers.RandomSampler(seed=0), pruner=optuna.pruners.NopPruner(),
    n_trials=N_TRIALS, checkpoint_every=20,
)
"""
N_TRIALS = 8
KILLS = {"sqlite": 20, "journal": 6, "postgres": 6}  # the full 20 once (SQLite): the suite's time


def _trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=name, storage=open_storage(url, heartbeat=False)).get_trials()
    except Exception:  # not created yet, or busy
        return []


def _kill_point(proc: subprocess.Popen, db: tuple[str, str], artifacts: Path, mode: str, rng: random.Random) -> str:
    """Wait for the moment ``mode`` names, then SIGKILL the worker; says what it hit."""
    deadline = time.monotonic() + 60
    if mode == "checkpoint":  # the instant a new checkpoint file appears, while it is written
        seen = set(os.listdir(artifacts)) if artifacts.is_dir() else set()
        while proc.poll() is None and time.monotonic() < deadline:
            now = set(os.listdir(artifacts)) if artifacts.is_dir() else set()
            if now - seen:
                break
            seen = now
            time.sleep(0.0005)
    elif mode == "trial":  # somewhere inside a running trial
        while proc.poll() is None and time.monotonic() < deadline:
            if any(t.state == TrialState.RUNNING for t in _trials(*db)):
                time.sleep(rng.uniform(0.0, 2.0))
                break
            time.sleep(0.05)
    else:  # anywhere: start-up, between trials, in a trial
        time.sleep(rng.uniform(0.5, 6.0))
    if proc.poll() is not None:
        return "finished"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return mode


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "journal", "postgres"])
def test_sigkilled_workers_resume_and_finish_every_trial_once(tmp_path, backend):
    kills = KILLS[backend]
    name = f"faults-{uuid.uuid4().hex[:8]}"
    study_file = tmp_path / "faults.py"
    study_file.write_text(STUDY.replace("N_TRIALS", str(N_TRIALS)).replace("NAME", name))
    options = []
    if backend == "sqlite":  # the default artifact folder beside the file
        url = f"sqlite:///{tmp_path / 'faults.db'}"
        artifacts = tmp_path / "faults.db.artifacts"
    else:
        url = f"journal:///{tmp_path / 'faults.journal'}" if backend == "journal" else postgres_url()
        artifacts = tmp_path / "ckpt"
        options = ["--artifacts", str(artifacts)]
    db = (url, name)
    command = [sys.executable, "-m", "auxopt.cli", "worker", str(study_file), "--storage", url, "--quiet", *options]
    # the default heartbeat (30 s) and grace (120 s); a trial may be killed more often than the
    # default 3 retries allow (those guard against a trial that kills its worker every time)
    env = {k: v for k, v in os.environ.items() if k not in ("AUXOPT_HEARTBEAT_S", "AUXOPT_GRACE_S")}
    env.update(OMP_NUM_THREADS="1", AUXOPT_MAX_RETRY="100")
    start = time.monotonic()
    rng = random.Random(7)
    hits, finished_before = [], {}
    for i in range(kills):
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        hits.append(_kill_point(proc, db, artifacts, ["trial", "checkpoint", "anywhere"][i % 3], rng))
        for t in _trials(*db):  # what has finished must stay finished, with the same result
            if t.state == TrialState.COMPLETE:
                assert finished_before.setdefault(t.number, t.value) == t.value
        if hits[-1] == "finished":
            break
    assert hits.count("finished") == 0, f"the study finished before {kills} kills: {hits}"
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    wall = time.monotonic() - start

    trials = _trials(*db)
    for number, value in finished_before.items():
        assert trials[number].state == TrialState.COMPLETE and trials[number].value == value
    originals = [t for t in trials if "retry_history" not in t.system_attrs]
    assert len(originals) == N_TRIALS
    assert sum(t.state == TrialState.COMPLETE for t in trials) == N_TRIALS
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)  # none left RUNNING
    for original in originals:  # each requested trial: COMPLETE exactly once across its retries
        chain = [original] + [t for t in trials if t.system_attrs.get("retry_history", [None])[0] == original.number]
        assert sum(t.state == TrialState.COMPLETE for t in chain) == 1
        assert all(t.params == original.params for t in chain)
    killed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(killed) >= kills // 3, f"too few kills landed in a trial: {hits}"
    resumed, lost = 0, []
    for failed in killed:
        (retry,) = [t for t in trials if t.system_attrs.get("retry_history", [None])[-1] == failed.number]
        if retry.state != TrialState.COMPLETE:  # killed again before it could record anything
            continue
        step = failed.user_attrs.get("checkpoint_step")  # the newest checkpoint of its chain
        assert retry.user_attrs["resumed_from_step"] >= (step or 0)  # from the last checkpoint, or newer
        resumed += retry.user_attrs["resumed_from_step"] > 0
        lost.append(failed.user_attrs.get("checkpoint_step") is None)
    assert resumed >= 1
    assert not artifacts.exists() or list(artifacts.iterdir()) == []  # finished trials' checkpoints are gone
    print(
        f"\nchaos[{backend}]: {kills} SIGKILLs ({hits.count('trial')} in a trial, {hits.count('checkpoint')} "
        f"in a checkpoint write, {hits.count('anywhere')} anywhere): {len(killed)} trial runs killed; of the "
        f"{len(lost)} retries that finished, {resumed} resumed from a checkpoint and {sum(lost)} had none to "
        f"resume from (killed before their first); {N_TRIALS} trials COMPLETE once, none RUNNING; "
        f"{wall:.0f} s in all"
    )
