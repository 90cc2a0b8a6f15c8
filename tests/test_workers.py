"""Four worker processes share one study on SQLite, a journal file and a real PostgreSQL server.

The objective is trivial (no training): these tests are about the storage and the worker loop.
PostgreSQL comes from ``AUXOPT_TEST_POSTGRES_URL`` (``.ci/run`` starts a server and sets it), else
a server on loopback port 5432 is probed; without one the PostgreSQL case skips, saying so.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from auxopt.storage import open_storage
from auxopt.worker import requested

WORKERS, TRIALS = 4, 50
SCRIPT = """
import sys, time, optuna
from auxopt.storage import open_storage
from auxopt.worker import run_trials
optuna.logging.set_verbosity(optuna.logging.WARNING)
url, name, until, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
study = optuna.load_study(study_name=name, storage=open_storage(url),
                          sampler=optuna.samplers.TPESampler(seed=seed, constant_liar=True))
def objective(trial):
    time.sleep(0.005)
    return -(trial.suggest_float("x", -5, 5) - 1) ** 2 - trial.suggest_float("y", -5, 5) ** 2
print("ran", run_trials(study, objective, url=url, until=until))
"""


def postgres_url() -> str:
    url = os.environ.get("AUXOPT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    try:
        import psycopg
        from sqlalchemy.engine import make_url

        u = make_url(url)
        psycopg.connect(
            host=u.host, port=u.port or 5432, user=u.username, password=u.password, dbname=u.database, connect_timeout=3
        ).close()
    except Exception as e:  # no server here: say why the test does not run
        pytest.skip(
            f"no PostgreSQL server reachable at {url.split('@')[-1]} ({type(e).__name__}); "
            "set AUXOPT_TEST_POSTGRES_URL or run .ci/run, which starts one"
        )
    return url


@pytest.fixture(params=["sqlite", "journal", "postgres"])
def storage_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'w.db'}"
    if request.param == "journal":
        return f"journal:///{tmp_path / 'w.journal'}"
    return postgres_url()


def test_four_workers_share_one_study_exactly(storage_url):
    name = f"workers-{uuid.uuid4().hex[:8]}"
    optuna.create_study(study_name=name, storage=open_storage(storage_url), direction="maximize")
    until = WORKERS * TRIALS
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT, storage_url, name, str(until), str(seed)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for seed in range(WORKERS)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-2000:]
        assert "Traceback" not in err and "locked" not in err, err[-2000:]
    ran = [int(out.split()[-1]) for out, _ in outputs]
    assert sum(ran) == until and all(n > 0 for n in ran)  # all four worked, none ran extra
    trials = optuna.load_study(study_name=name, storage=open_storage(storage_url)).get_trials()
    assert len(trials) == until and requested(trials) == until
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(t.number for t in trials) == list(range(until))
    params = {(t.params["x"], t.params["y"]) for t in trials}
    assert len(params) == until  # no trial's work was done twice


def test_the_ask_lock_holds_on_the_study_storage(storage_url):
    """The lock that keeps the trial count exact really excludes others while held, through the
    storage a study uses (Optuna wraps RDB storages in a cache)."""
    import fcntl

    from auxopt.storage import ask_lock, journal_path

    study = optuna.create_study(study_name=f"lock-{uuid.uuid4().hex[:8]}", storage=open_storage(storage_url))
    with ask_lock(study._storage, storage_url):
        if storage_url.startswith("postgresql"):
            from sqlalchemy import text

            with study._storage._backend.engine.connect() as other:
                got = other.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": 0x6175786F7074}).scalar()
            assert got is False
        else:
            path = (
                journal_path(storage_url)
                if storage_url.startswith("journal")
                else Path(storage_url[len("sqlite:///") :])
            )
            with open(path.with_name(path.name + ".auxopt-lock"), "a") as other:
                with pytest.raises(BlockingIOError):
                    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
