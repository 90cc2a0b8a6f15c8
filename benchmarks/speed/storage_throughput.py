"""Trials per minute with 1, 2 and 4 worker processes on SQLite, a journal file and PostgreSQL for a
fixed short objective; and the work lost per crash at the default checkpoint interval.

Throughput: each worker is ``auxopt.worker.run_trials`` (heartbeat, ask lock, retry check: the loop
``auxopt worker`` runs) on a study whose objective sleeps a fixed time (no CPU, so that two cores
are no limit) and suggests two floats with TPE (constant liar). The rate is the trials finished
over the wall time from the first trial's start to the last trial's end (workers start
together after their imports; start-up is not counted). PostgreSQL needs
``AUXOPT_TEST_POSTGRES_URL`` (or a server on loopback 5432).

Work lost: a tiny-model run checkpoints every 100 steps (the default) and crashes at a random step;
the rerun resumes from the last checkpoint. Steps redone = steps done before the crash − the step
resumed from. Checkpoint cost is the same run with and without checkpoints, side by side.

    python benchmarks/speed/storage_throughput.py --scale cpu --write
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common

import _common  # noqa: E402

TITLE = "Storage throughput and work lost per crash (benchmarks/speed/storage_throughput.py)"
SCALES = {
    "ci": {"trials": 24, "sleep": 0.05, "workers": (1, 2, 4), "steps": 300, "crashes": 3},
    "cpu": {"trials": 120, "sleep": 0.1, "workers": (1, 2, 4), "steps": 600, "crashes": 10},
    "gpu": {"trials": 400, "sleep": 0.1, "workers": (1, 2, 4), "steps": 1000, "crashes": 20},
}
WORKER = """
import sys, time, optuna
from auxopt.storage import open_storage
from auxopt.worker import run_trials
optuna.logging.set_verbosity(optuna.logging.WARNING)
url, name, until, seed, pause = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
study = optuna.load_study(study_name=name, storage=open_storage(url),
                          sampler=optuna.samplers.TPESampler(seed=seed, constant_liar=True))
time.sleep(max(0.0, float(sys.argv[6]) - time.time()))  # all workers start together
def objective(trial):
    time.sleep(pause)
    return trial.suggest_float("x", -5, 5) + trial.suggest_float("y", -5, 5)
print(run_trials(study, objective, url=url, until=until))
"""


def postgres_url() -> str | None:
    url = os.environ.get("AUXOPT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    try:
        from auxopt.storage import open_storage

        open_storage(url, heartbeat=False)
    except Exception as e:
        print(f"no PostgreSQL ({type(e).__name__}); skipping it", flush=True)
        return None
    return url


def throughput(url: str, workers: int, trials: int, pause: float) -> float:
    import optuna

    from auxopt.storage import open_storage

    name = f"bench-{uuid.uuid4().hex[:8]}"
    optuna.create_study(study_name=name, storage=open_storage(url), direction="maximize")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    go = str(time.time() + 4 + workers)  # after every worker has imported and opened the study
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url, name, str(trials), str(i), str(pause), go],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(workers)
    ]
    done = sum(int(p.communicate()[0].split()[-1]) for p in procs)
    assert all(p.returncode == 0 for p in procs) and done == trials, (done, trials)
    finished = optuna.load_study(study_name=name, storage=open_storage(url)).get_trials()
    start = min(t.datetime_start for t in finished)
    end = max(t.datetime_complete for t in finished)  # not the idle workers' last poll
    return 60 * done / (end - start).total_seconds()


def work_lost(steps: int, crashes: int, seed: int = 0) -> dict:
    """Crash a checkpointed run at random steps; measure the steps redone and checkpoint cost."""
    from auxopt import make_synthetic_suite
    from auxopt.train import Checkpoint, FolderCheckpointStore, TrainConfig, train
    from auxopt.train.checkpoint import DEFAULT_EVERY
    from auxopt.train.step import ScheduleStep

    suite = make_synthetic_suite(
        n_helpful=1, n_neutral=0, n_harmful=0, n_train=300, n_aux_train=300, n_dev=100, n_test=100
    )
    base = dict(max_steps=steps, eval_every=steps, max_length=32, batch_size=16, device="cpu")

    class Crash(Exception):
        pass

    class CrashAt:  # a step plugin that fails at a given step, as a killed worker would stop
        def __init__(self, at):
            self.at = at

        def make_step(self, ctx):
            at = self.at

            class Step(ScheduleStep):
                def backward(self, step):
                    if step == at:
                        raise Crash
                    return super().backward(step)

            return Step(ctx)

    rng = random.Random(seed)
    redone, times = [], {}
    train(TrainConfig(suite.primary, suite.auxiliaries, **base))  # warm-up: tokenizer, caches
    t = time.perf_counter()
    train(TrainConfig(suite.primary, suite.auxiliaries, **base))
    times["plain"] = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        train(
            TrainConfig(
                suite.primary,
                suite.auxiliaries,
                **base,
                checkpoint=Checkpoint(FolderCheckpointStore(Path(tmp) / "full")),
            )
        )
        times["checkpointed"] = time.perf_counter() - t
        for i in range(crashes):
            at = rng.randint(2, steps)
            store = FolderCheckpointStore(Path(tmp) / f"c{i}")
            try:
                train(
                    TrainConfig(
                        suite.primary, suite.auxiliaries, **base, objectives=CrashAt(at), checkpoint=Checkpoint(store)
                    )
                )
            except Crash:
                pass
            result = train(TrainConfig(suite.primary, suite.auxiliaries, **base, checkpoint=Checkpoint(store)))
            redone.append((at - 1) - result.extra.get("resumed_from_step", 0))
    return {"every": DEFAULT_EVERY, "redone": redone, **times}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="ci")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    scale = SCALES[args.scale]

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        urls = {"SQLite": f"sqlite:///{tmp}/bench.db", "journal file": f"journal:///{tmp}/bench.journal"}
        pg = postgres_url()
        if pg:
            urls["PostgreSQL"] = pg
        for kind, url in urls.items():
            rates = {w: throughput(url, w, scale["trials"], scale["sleep"]) for w in scale["workers"]}
            rows.append((kind, rates))
            print(kind, rates, flush=True)
    lost = work_lost(scale["steps"], scale["crashes"])
    print(lost, flush=True)

    ideal = 60 / scale["sleep"]
    lines = [
        *_common.header(TITLE),
        f"- Throughput: {scale['trials']} trials per study; the objective sleeps {scale['sleep']} s "
        f"(ideal: {ideal:.0f} trials/min per worker); TPE with constant liar; each worker process runs "
        "`auxopt.worker.run_trials` (heartbeat every 30 s, ask lock, dead-trial check before each trial). "
        "Trials/min over the wall time from the first trial's start to the last trial's end "
        "(workers start together after their imports).",
        "",
        "| storage | "
        + " | ".join(f"{w} worker{'s' if w > 1 else ''} (trials/min)" for w in scale["workers"])
        + " | speed-up 4 vs 1 |",
        "|---|" + "---|" * (len(scale["workers"]) + 1),
    ]
    for kind, rates in rows:
        lines.append(
            f"| {kind} | "
            + " | ".join(f"{rates[w]:.0f}" for w in scale["workers"])
            + f" | {rates[max(scale['workers'])] / rates[1]:.2f}× |"
        )
    r = lost["redone"]
    lines += [
        "",
        f"- Work lost per crash: tiny model, {scale['steps']} steps, checkpoint every {lost['every']} "
        f"steps (the default), {len(r)} crashes at uniformly random steps, each resumed from the last "
        "checkpoint.",
        "",
        "| steps redone per crash: mean | median | max | run time with checkpoints / without |",
        "|---|---|---|---|",
        f"| {sum(r) / len(r):.1f} | {sorted(r)[len(r) // 2]} | {max(r)} | "
        f"{lost['checkpointed'] / lost['plain']:.3f} ({lost['checkpointed']:.1f} s / {lost['plain']:.1f} s) |",
    ]
    _common.publish(TITLE, lines, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
