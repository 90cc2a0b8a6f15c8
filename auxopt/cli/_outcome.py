"""``auxopt export`` and ``verify``: a search's result as a model, and the verdict on it."""

from __future__ import annotations

import argparse
import os
import sys

from auxopt.cli._run import cpu_count, set_threads, spawn_workers


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


def export(args: argparse.Namespace) -> int:
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


def verify(args: argparse.Namespace) -> int:
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
        codes = spawn_workers(command, url, threads, devices)
        if any(codes):
            code = next(c for c in codes if c)
            raise AuxoptError(f"a verify worker failed (exit {code}); run the same command again")

    return run
