"""``auxopt run``, ``worker`` and ``quickstart``: a study file run in this process or in worker
processes that share its storage."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from auxopt.cli._show import summary


def quickstart_file() -> Path:
    """The quickstart study: packaged with the wheel, or ``studies/`` in a source checkout."""
    here = Path(__file__).resolve().parents[1]  # the auxopt package
    for candidate in (here / "_studies" / "quickstart.py", here.parent / "studies" / "quickstart.py"):
        if candidate.is_file():
            return candidate
    from auxopt.errors import AuxoptError

    raise AuxoptError("the quickstart study file is missing from this installation; reinstall auxopt")


def run(args: argparse.Namespace, study_file: Path, default_storage: str | None) -> int:
    import logging

    import optuna

    from auxopt.storage import mask_url
    from auxopt.study_file import load_study_file

    if args.quiet:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    else:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    from auxopt.progress import Progress

    spec = load_study_file(study_file)
    url = spec.storage_url(args.storage or os.environ.get("AUXOPT_STORAGE") or default_storage)
    workers = getattr(args, "workers", 1)
    if workers == "auto":
        from auxopt.worker import parse_gpus, resolve_workers

        workers = resolve_workers("auto", parse_gpus(args.gpus))
    if getattr(args, "threads", None) is not None:
        set_threads(args.threads)
    if getattr(args, "gpus", None) and (workers == 1 or args.command == "worker"):
        from auxopt.train.runtime import DEVICE_ENV
        from auxopt.worker import parse_gpus, worker_devices

        device = worker_devices(1, parse_gpus(args.gpus))[0]  # this process: the first one listed
        if device is not None:
            os.environ[DEVICE_ENV] = device
    if workers != 1 or args.command == "worker":
        return _run_workers(args, spec, study_file, url, workers)
    total = args.n_trials if args.n_trials is not None else getattr(spec, "n_trials", None)
    with Progress(total, enabled=False if args.quiet else None) as progress:
        if progress.enabled:  # the bars show each trial's outcome; Optuna's per-trial lines would break them
            optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = spec.optimize(n_trials=args.n_trials, storage=url, progress=progress, **_resume_kwargs(args))
    if hasattr(spec, "summary"):  # pipelines say what they chose
        print(spec.summary())
    print(summary(study, mask_url(url)))
    return 0


def _resume_kwargs(args: argparse.Namespace) -> dict:
    return {"reset": getattr(args, "reset_running", False), "artifacts": getattr(args, "artifacts", None)}


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity mask, which containers and ``taskset`` set)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_threads(n: int) -> None:
    """Give this process ``n`` torch CPU threads (and its OpenMP / MKL children)."""
    from auxopt.errors import AuxoptError

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise AuxoptError(f"--threads must be at least 1, not {n}")
    import torch

    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(n)
    torch.set_num_threads(n)


def spawn_workers(command: list[str], url: str, threads: int, devices: list[str | None]) -> list[int]:
    """Run ``command`` once per entry of ``devices`` (each process on its device, with ``threads`` CPU
    threads and the storage URL in its environment, not on its command line where ps shows
    passwords); wait for them all and return their exit codes."""
    import subprocess

    from auxopt.train.runtime import DEVICE_ENV

    env = {**os.environ, "AUXOPT_STORAGE": url, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    procs = [
        subprocess.Popen(command, stdout=subprocess.DEVNULL, env={**env, DEVICE_ENV: device} if device else env)
        for device in devices
    ]
    return [p.wait() for p in procs]


def _run_workers(args: argparse.Namespace, spec, study_file: Path, url: str, workers: int) -> int:
    """``auxopt worker`` (this process is one worker) or ``auxopt run --workers N`` (N processes)."""
    from auxopt.errors import AuxoptError
    from auxopt.storage import mask_url
    from auxopt.study import StudySpec
    from auxopt.worker import requested

    if not isinstance(spec, StudySpec):
        raise AuxoptError(f"{type(spec).__name__} pipelines run in one process: use auxopt run without --workers")
    if workers < 1:
        raise AuxoptError(f"--workers must be at least 1, not {workers}")
    if args.n_trials is not None and args.n_trials < 1:
        raise AuxoptError(f"--n-trials must be at least 1, not {args.n_trials}")
    if args.command == "worker":
        from auxopt.progress import Progress

        until = args.n_trials if args.n_trials is not None else spec.n_trials
        # plain progress lines in a log (nohup), no bars: the workers of --workers share one terminal
        silent = args.quiet or bool(getattr(sys.stderr, "isatty", lambda: False)())
        with Progress(None, enabled=False if silent else None) as progress:
            study = spec.optimize(until=until, storage=url, progress=progress, **_resume_kwargs(args))
        held = requested(study.get_trials(deepcopy=False))
        if not progress.trials_done and held >= until:  # a bad --n-trials loads the study, creates nothing
            asked = f"--n-trials {until}" if args.n_trials is not None else f"the study file's n_trials, {until},"
            print(
                f"the study already holds {held} trial{'' if held == 1 else 's'} ({asked} is the total the "
                "study should hold); nothing to do — raise --n-trials to add trials"
            )
        print(summary(study, mask_url(url)))
        return 0
    from auxopt.worker import parse_gpus, placement, worker_devices

    devices = worker_devices(workers, parse_gpus(args.gpus))  # a bad --gpus fails before storage is touched
    spec.preflight()
    study = spec.load_study(url)  # created once here, before the workers race to it
    if args.reset_running:
        from auxopt.storage import reset_running

        reset_running(study)
    until = requested(study.get_trials(deepcopy=False)) + (args.n_trials or spec.n_trials)
    threads = args.threads if args.threads is not None else max(1, cpu_count() // workers)
    command = [
        sys.executable,
        "-m",
        "auxopt.cli",
        "worker",
        str(study_file),
        "--n-trials",
        str(until),
        "--threads",
        str(threads),
    ]
    if args.artifacts:
        command += ["--artifacts", args.artifacts]
    if args.quiet:
        command.append("--quiet")
    print(
        f"{workers} workers on {mask_url(url)} until the study holds {until} trials "
        f"({threads} CPU thread{'s' * (threads != 1)} each, {placement(devices)})",
        flush=True,
    )
    codes = spawn_workers(command, url, threads, devices)
    study = spec.load_study(url)
    print(summary(study, mask_url(url)))
    return next((c for c in codes if c), 0)
