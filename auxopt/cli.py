"""The ``auxopt`` command."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EPILOG = """examples:
  auxopt quickstart                                   # synthetic tasks, tiny model, ~2 min on a CPU
  auxopt run studies/quickstart.py --n-trials 20      # add 20 trials to the study in the file
  auxopt run my_study.py --storage sqlite:///runs/my.db
  auxopt run my_study.py --workers 4                  # 4 worker processes on one study
  auxopt worker my_study.py --storage postgresql+psycopg://user:pw@host/db --n-trials 200
  auxopt dashboard --storage sqlite:///quickstart.db  # watch it (auxopt's plots included)
  auxopt studies --storage sqlite:///quickstart.db    # the studies in a storage and their state
  auxopt show quickstart --storage sqlite:///quickstart.db   # the best configuration
  auxopt export studies/quickstart.py --out quickstart-model   # the best trial as a transformers model
  auxopt verify studies/quickstart.py --seeds 5       # did the auxiliary data help? paired seeds
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="auxopt",
        description="Automated auxiliary learning on Optuna: find which auxiliary tasks help an end task, "
        "in what mixture.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"auxopt {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--storage", metavar="URL", help="Optuna storage URL (default: sqlite:///<study>.db beside the study file)"
        )
        p.add_argument("--n-trials", type=int, metavar="N", help="trials to add (default: the study's own)")
        p.add_argument("--quiet", action="store_true", help="print only the summary")

    run = sub.add_parser(
        "run",
        help="run a study defined in a Python file",
        description="Run STUDY.py's auxopt.StudySpec (named 'study'). Running it again continues the same study.",
        epilog="example:\n  auxopt run studies/quickstart.py --storage sqlite:///quickstart.db --n-trials 10",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("study_file", metavar="STUDY.py")
    common(run)
    run.add_argument(
        "--workers",
        type=_workers_arg,
        default=1,
        metavar="N",
        help="run N worker processes on the study at once (default: 1, in this process); 'auto': "
        "8 on each GPU (measured best of 1, 2, 4, 8 on one H200 with MiniLM), 1 without a GPU",
    )
    _resume_options(run)

    quick = sub.add_parser(
        "quickstart",
        help="run the bundled quickstart study (synthetic tasks, tiny model)",
        description="Run the quickstart study: which synthetic auxiliary task helps, and at what ratio. "
        "Writes quickstart.db in the current folder; running it again adds trials to it.",
        epilog="example:\n  auxopt quickstart --n-trials 4",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(quick)
    _ux_parsers(sub)
    _worker_parser(sub)
    _outcome_parsers(sub)
    return parser


def _outcome_parsers(sub) -> None:
    """``export`` and ``verify``: what a search comes to."""
    raw = argparse.RawDescriptionHelpFormatter

    def which(p: argparse.ArgumentParser) -> None:
        p.add_argument("study_file", metavar="STUDY.py", nargs="?", help="the study (or AutoSeM pipeline) file")
        p.add_argument("--storage", metavar="URL", help="Optuna storage URL (default: the study file's)")
        p.add_argument(
            "--study",
            metavar="NAME",
            help="a study name in --storage, instead of STUDY.py (its tasks are loaded again as they were)",
        )
        p.add_argument("--quiet", action="store_true", help="print only the outcome")

    export = sub.add_parser(
        "export",
        help="write a study's best trial as a model transformers.pipeline loads, with a model card",
        description="Train the best trial of STUDY.py's study (or --trial N) again from its stored settings, "
        "check that it reproduces the dev score the study stored (exactly on a CPU), and write it to --out "
        "as a transformers model folder with a model card (README.md). The study keeps scores, not "
        "weights: the export costs one training run.",
        epilog="examples:\n  auxopt export studies/quickstart.py --out quickstart-model\n"
        "  auxopt export --storage sqlite:///runs.db --study cr_aux --trial 7 --out cr-model --force\n"
        "then, in Python:\n"
        '  pipeline("text-classification", model="quickstart-model", trust_remote_code=True, truncation=True)',
        formatter_class=raw,
    )
    which(export)
    export.add_argument("--out", metavar="DIR", required=True, help="the model folder to write")
    export.add_argument("--trial", type=int, metavar="N", help="export trial number N (default: the best)")
    export.add_argument("--force", action="store_true", help="replace --out when it exists and is not empty")

    verify = sub.add_parser(
        "verify",
        help="did the auxiliary data help? the chosen configuration against the primary alone, paired seeds",
        description="Train the study's chosen configuration and the primary task alone (the same run without "
        "its auxiliary tasks) with N fresh paired seeds, as trials of the companion study <name>.verify in "
        "the same storage (resumable; no run repeated), and report the paired difference of dev and test "
        "scores with a 95 %% interval and wins/ties/losses. The verdict is stored on the study, shown in "
        "the dashboard's note and written into the model card of a later auxopt export.",
        epilog="examples:\n  auxopt verify studies/quickstart.py\n"
        "  auxopt verify my_autosem.py --seeds 10 --workers 2 --threads 1",
        formatter_class=raw,
    )
    which(verify)
    verify.add_argument("--seeds", type=int, default=5, metavar="N", help="paired seeds (default: 5)")
    verify.add_argument(
        "--workers",
        type=_workers_arg,
        default=1,
        metavar="N",
        help="run N worker processes at once (default: 1; 'auto': 8 on each GPU)",
    )
    verify.add_argument("--threads", type=int, metavar="N", help="torch CPU threads of each worker process")
    verify.add_argument("--worker-until", type=int, help=argparse.SUPPRESS)


def _workers_arg(text: str) -> int | str:
    from auxopt.errors import AuxoptError
    from auxopt.worker import parse_workers

    try:
        return parse_workers(text)
    except AuxoptError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _resume_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch CPU threads of each worker process (default: with --workers N, this "
        "machine's cores shared out, cores // N each; else torch's own choice)",
    )
    p.add_argument(
        "--gpus",
        metavar="LIST",
        help="GPUs the worker processes use, such as 0,2 (default: every visible GPU); workers are dealt "
        "out over them in turn, several to a GPU when there are more workers",
    )
    p.add_argument(
        "--reset-running",
        action="store_true",
        help="first fail and retry every RUNNING trial: only when no other worker is alive "
        "(journal storages have no heartbeat to tell)",
    )
    p.add_argument(
        "--artifacts",
        metavar="DIR",
        help="checkpoint folder (default: <file>.artifacts beside an SQLite or journal "
        "file; with PostgreSQL give a folder every worker sees)",
    )


def _worker_parser(sub) -> None:
    worker = sub.add_parser(
        "worker",
        help="work on a shared study until it holds its trials (many workers, many machines)",
        description="Run trials of STUDY.py's study until the study holds --n-trials trials in all, "
        "however many workers share it. Start the same command on every machine against one "
        "PostgreSQL URL (or a few on one machine against SQLite or a journal file). A worker "
        "first retries trials whose worker died, from their last checkpoint; running the same "
        "command again after a crash continues the study.",
        epilog="examples:\n"
        "  auxopt worker studies/quickstart.py --storage postgresql+psycopg://me:pw@db/auxopt "
        "--artifacts /shared/ckpt\n"
        "  auxopt worker studies/quickstart.py --storage journal:///shared/qs.journal --reset-running",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    worker.add_argument("study_file", metavar="STUDY.py")
    worker.add_argument(
        "--storage", metavar="URL", help="Optuna storage URL (default: sqlite:///<study>.db beside the study file)"
    )
    worker.add_argument(
        "--n-trials", type=int, metavar="N", help="trials the study should hold in all (default: the study's n_trials)"
    )
    worker.add_argument("--quiet", action="store_true", help="print only the summary")
    _resume_options(worker)


def _ux_parsers(sub) -> None:
    """``dashboard``, ``studies`` and ``show``: watching and reading studies."""
    raw = argparse.RawDescriptionHelpFormatter
    dash = sub.add_parser(
        "dashboard",
        help="open optuna-dashboard on a storage, with auxopt's plots and the artifact store",
        description="Serve optuna-dashboard for every study in the storage. auxopt's plots (Thompson "
        "posteriors, mixing-ratio landscape, AANG weights, ATTITTUD gradient parts, dev curves) and "
        "a note on the best configuration are on each study's page; checkpoints are browsable as "
        "artifacts. Binds to 127.0.0.1 unless --host says otherwise.",
        epilog="examples:\n  auxopt dashboard --storage sqlite:///quickstart.db\n"
        "  auxopt dashboard --storage sqlite:///quickstart.db --port 8081 --publish\n"
        "  ssh -L 8080:127.0.0.1:8080 gpu-box   # then open http://127.0.0.1:8080 locally",
        formatter_class=raw,
    )
    dash.add_argument("--storage", metavar="URL", required=True, help="Optuna storage URL")
    dash.add_argument("--port", type=int, default=8080, help="port (default: 8080)")
    dash.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1; 0.0.0.0 exposes it to the network)"
    )
    dash.add_argument(
        "--artifacts", metavar="DIR", help="artifact folder (default: <sqlite file>.artifacts beside the storage)"
    )
    dash.add_argument("--publish", action="store_true", help="refresh auxopt's plots on every study before serving")

    studies = sub.add_parser(
        "studies",
        help="list the studies in a storage and their state",
        description="List every study in the storage: trials by state, best value, and whether trials are running now.",
        epilog="example:\n  auxopt studies --storage sqlite:///quickstart.db",
        formatter_class=raw,
    )
    studies.add_argument("--storage", metavar="URL", required=True, help="Optuna storage URL")

    show = sub.add_parser(
        "show",
        help="print a study's best configuration",
        description="Print the best trial of STUDY (a study name in --storage, or a study file, "
        "whose storage is the default): its tasks, ratios, dev and test metric and parameters.",
        epilog="examples:\n  auxopt show quickstart --storage sqlite:///quickstart.db\n"
        "  auxopt show studies/quickstart.py",
        formatter_class=raw,
    )
    show.add_argument("study", metavar="STUDY", help="study name, or a STUDY.py file")
    show.add_argument("--storage", metavar="URL", help="Optuna storage URL")


def _version() -> str:
    from auxopt import __version__

    return __version__


def quickstart_file() -> Path:
    """The quickstart study: packaged with the wheel, or ``studies/`` in a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_studies" / "quickstart.py", here.parent / "studies" / "quickstart.py"):
        if candidate.is_file():
            return candidate
    from auxopt.errors import AuxoptError

    raise AuxoptError("the quickstart study file is missing from this installation; reinstall auxopt")


def _run(args: argparse.Namespace, study_file: Path, default_storage: str | None) -> int:
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


def _spawn_workers(command: list[str], url: str, threads: int, devices: list[str | None]) -> list[int]:
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
    codes = _spawn_workers(command, url, threads, devices)
    study = spec.load_study(url)
    print(summary(study, mask_url(url)))
    return next((c for c in codes if c), 0)


def summary(study, url: str) -> str:
    """A short, readable report of a study's state and best trial: its tasks, ratios, dev and test
    metric, its parameters, where the storage is and how to open the dashboard."""
    import optuna

    from auxopt.storage import retried_trials

    trials = study.get_trials(deepcopy=False)
    states = {s: sum(t.state == s for t in trials) for s in optuna.trial.TrialState}
    retried = {n for t in trials for n in retried_trials(t)}  # interrupted, and queued again
    resumed = sum(t.state == optuna.trial.TrialState.FAIL and t.number in retried for t in trials)
    lines = [
        f"study {study.study_name!r}: {states[optuna.trial.TrialState.COMPLETE]} complete, "
        f"{states[optuna.trial.TrialState.PRUNED]} pruned, {states[optuna.trial.TrialState.FAIL] - resumed} failed"
        + (f", {resumed} interrupted and resumed" if resumed else ""),
    ]
    try:
        best = study.best_trial
    except ValueError:
        lines.append("no completed trial yet")
    else:
        lines.append(_best_table(best))
    lines.append(f"storage: {url}")
    lines.append(f"dashboard: auxopt dashboard --storage {url}   (or: optuna-dashboard {url})")
    return "\n".join(lines)


def _best_table(best) -> str:
    """The best trial as a two-column table."""
    from auxopt import records
    from auxopt.progress import fmt_value

    metric = best.user_attrs.get(records.METRIC, "value")
    test = best.user_attrs.get(records.TEST_METRIC)
    config = best.user_attrs.get(records.CONFIG, {})
    ratios = config.get("ratios") or {}
    rows = [("best trial", f"#{best.number}")]
    if config.get("primary"):
        aux = [k for k in ratios if k != config["primary"]]
        rows.append(("tasks", ", ".join([config["primary"], *aux]) + ("" if aux else " (alone)")))
    if ratios:
        rows.append(("ratios", ", ".join(f"{k}: {_fmt(v)}" for k, v in ratios.items())))
    rows.append((f"dev {metric}", fmt_value(best.value)))
    if test is not None:
        rows.append((f"test {metric}", fmt_value(float(test))))
    rows += [(key, _fmt(value)) for key, value in best.params.items()]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def _fmt(value) -> str:
    from auxopt.progress import fmt_param

    return fmt_param(value)


def _studies(args: argparse.Namespace) -> int:
    import optuna

    from auxopt.storage import mask_url, open_existing

    storage = open_existing(args.storage)
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=True)
    if not summaries:
        print(f"no studies in {mask_url(args.storage)}")
        return 0
    from auxopt.progress import fmt_value
    from auxopt.storage import retried_trials

    S = optuna.trial.TrialState
    header = ("study", "complete", "pruned", "failed", "resumed", "running", "best", "state")
    rows = []
    for s in summaries:
        trials = storage.get_all_trials(storage.get_study_id_from_name(s.study_name), deepcopy=False)
        count = {st: sum(t.state == st for t in trials) for st in S}
        retried = {n for t in trials for n in retried_trials(t)}  # failed when interrupted, run again
        resumed = sum(t.state == S.FAIL and t.number in retried for t in trials)
        best = fmt_value(s.best_trial.value) if s.best_trial is not None else "-"
        state = "running" if count[S.RUNNING] else ("empty" if not trials else "idle")
        rows.append(
            (
                s.study_name,
                count[S.COMPLETE],
                count[S.PRUNED],
                count[S.FAIL] - resumed,
                resumed,
                count[S.RUNNING],
                best,
                state,
            )
        )
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    for r in (header, *rows):
        print(
            "  ".join(
                str(v).ljust(w) if i in (0, 7) else str(v).rjust(w)
                for i, (v, w) in enumerate(zip(r, widths, strict=True))
            ).rstrip()
        )
    return 0


def _show(args: argparse.Namespace) -> int:
    import optuna

    from auxopt.errors import AuxoptError
    from auxopt.storage import mask_url, open_existing

    name, url = args.study, args.storage
    if name.endswith(".py") and Path(name).is_file():
        from auxopt.study_file import load_study_file

        spec = load_study_file(name)
        url = spec.storage_url(url)
        name = spec.name
        if hasattr(spec, "stage2_name"):  # a pipeline: its last stage that exists
            found = [s.study_name for s in optuna.get_all_study_summaries(open_existing(url))]
            name = spec.stage2_name if spec.stage2_name in found else spec.stage1_name
    if not url:
        raise AuxoptError(f"auxopt show {name}: say where the study is with --storage URL")
    storage = open_existing(url)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if name not in names:
        raise AuxoptError(
            f"no study {name!r} in {mask_url(url)}; it has {names} (auxopt studies --storage URL lists them)"
        )
    study = optuna.load_study(study_name=name, storage=storage)
    print(summary(study, mask_url(url)))
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    import optuna

    from auxopt.dashboard import publish, serve
    from auxopt.storage import open_existing

    storage = open_existing(args.storage)
    if args.publish:
        for s in optuna.get_all_study_summaries(storage):
            study = optuna.load_study(study_name=s.study_name, storage=storage)
            published = publish(study)
            print(f"published {len(published)} plot(s) to {s.study_name!r}")
    try:
        serve(args.storage, host=args.host, port=args.port, artifacts=args.artifacts)
    except KeyboardInterrupt:
        print("dashboard stopped")
    return 0


def _search(args: argparse.Namespace):
    """``(search, storage URL or None)`` from ``STUDY.py`` or ``--storage URL --study NAME``."""
    from auxopt.errors import AuxoptError

    storage = args.storage or os.environ.get("AUXOPT_STORAGE")
    if args.study_file and args.study:
        raise AuxoptError("give STUDY.py or --study NAME, not both")
    if args.study_file:
        from auxopt.study_file import load_study_file

        return load_study_file(args.study_file), storage
    if not args.study or not storage:
        raise AuxoptError(f"auxopt {args.command}: give STUDY.py, or --storage URL with --study NAME")
    return None, storage


def _outcome_progress(args: argparse.Namespace):
    import logging

    from auxopt.progress import Progress

    if not args.quiet:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    return Progress(None, enabled=False if args.quiet else None)


def _export(args: argparse.Namespace) -> int:
    from auxopt.outcome import chosen, export
    from auxopt.train.export import check_target

    search, storage = _search(args)
    check_target(args.out, args.force)  # before anything is trained
    picked = chosen(search, storage=storage, study=args.study, trial=args.trial)
    if not args.quiet:
        print(
            f"training {picked.describe()} again to export it ({picked.config.max_steps} steps; the study keeps "
            "scores, not weights)",
            flush=True,
        )
    with _outcome_progress(args) as progress:
        command = " ".join(["auxopt", *sys.argv[1:]])
        done = export(picked, args.out, force=args.force, progress=progress, command=command)
    r, metric = done.result, done.result.metric
    how = "exactly" if done.exact and done.gap == 0 else f"within {done.gap:.2g}"
    print(f"reproduced {how}: dev {metric} {r.best_dev:.4f} (stored {done.stored_dev:.4f})", end="")
    if r.test_at_best is not None:
        stored = f" (stored {done.stored_test:.4f})" if done.stored_test is not None else ""
        print(f", test {metric} {r.test_at_best:.4f}{stored}", end="")
    print(f"\nwrote {done.folder}")
    print(f'load it: pipeline("text-classification", model="{done.folder}", trust_remote_code=True, truncation=True)')
    return 0


def _verify(args: argparse.Namespace) -> int:
    from auxopt.outcome import chosen, report, verify

    if args.threads is not None:
        set_threads(args.threads)
    search, storage = _search(args)
    picked = chosen(search, storage=storage, study=args.study)
    if args.worker_until is not None:  # one of the processes of --workers N
        from auxopt.outcome.verify import VerifyStudy, fresh_seeds

        spec = VerifyStudy(picked, fresh_seeds(picked.seed, args.seeds))
        spec.optimize(until=args.worker_until, storage=picked.url, publish_every=None)
        return 0
    if args.workers == "auto":
        from auxopt.worker import resolve_workers

        args.workers = resolve_workers("auto")
    workers = None
    if args.workers != 1:
        workers = _verify_workers(args)
    with _outcome_progress(args) as progress:
        verdict = verify(picked, seeds=args.seeds, progress=progress, workers=workers)
    print(report(verdict, picked))
    return 0


def _verify_workers(args: argparse.Namespace):
    """``workers(spec, until)`` for :func:`auxopt.outcome.verify.verify`: ``--workers`` processes of
    ``auxopt verify`` on the companion study, placed on the GPUs as ``auxopt run --workers`` places its."""
    from auxopt.errors import AuxoptError
    from auxopt.storage import mask_url
    from auxopt.worker import placement, worker_devices

    if args.workers < 1:
        raise AuxoptError(f"--workers must be at least 1, not {args.workers}")
    threads = args.threads if args.threads is not None else max(1, cpu_count() // args.workers)
    devices = worker_devices(args.workers)

    def run(spec, until: int) -> None:
        command = [sys.executable, "-m", "auxopt.cli", "verify", "--seeds", str(args.seeds), "--threads", str(threads)]
        command += [args.study_file] if args.study_file else ["--study", args.study]
        command += ["--worker-until", str(until), "--quiet"]
        url = spec.storage_url()
        print(f"{args.workers} workers on {spec.name!r} in {mask_url(url)} ({placement(devices)})", flush=True)
        codes = _spawn_workers(command, url, threads, devices)
        if any(codes):
            code = next(c for c in codes if c)
            raise AuxoptError(f"a verify worker failed (exit {code}); run the same command again")

    return run


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from auxopt.errors import AuxoptError

    try:
        if args.command == "worker":
            return _run(args, Path(args.study_file), None)
        if args.command in ("dashboard", "studies", "show", "export", "verify"):
            commands = {"dashboard": _dashboard, "studies": _studies, "show": _show}
            return {**commands, "export": _export, "verify": _verify}[args.command](args)
        if args.command == "quickstart":
            default = f"sqlite:///{Path.cwd() / 'quickstart.db'}"
            return _run(args, quickstart_file(), default)
        return _run(args, Path(args.study_file), None)
    except AuxoptError as e:
        print(f"auxopt: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("auxopt: interrupted; run the same command again to continue the study", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
