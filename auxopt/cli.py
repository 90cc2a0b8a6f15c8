"""The ``auxopt`` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """examples:
  auxopt quickstart                                   # synthetic tasks, tiny model, ~2 min on a CPU
  auxopt run studies/quickstart.py --n-trials 20      # add 20 trials to the study in the file
  auxopt run my_study.py --storage sqlite:///runs/my.db
  optuna-dashboard sqlite:///quickstart.db            # watch it
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
        p.add_argument("--storage", metavar="URL", help="Optuna storage URL (default: sqlite:///<study>.db beside the study file)")
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

    quick = sub.add_parser(
        "quickstart",
        help="run the bundled quickstart study (synthetic tasks, tiny model)",
        description="Run the quickstart study: which synthetic auxiliary task helps, and at what ratio. "
        "Writes quickstart.db in the current folder; running it again adds trials to it.",
        epilog="example:\n  auxopt quickstart --n-trials 4",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(quick)
    return parser


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
    from auxopt.study import load_study_file

    if args.quiet:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    else:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    spec = load_study_file(study_file)
    url = spec.storage_url(args.storage or default_storage)
    study = spec.optimize(n_trials=args.n_trials, storage=url)
    if hasattr(spec, "summary"):  # pipelines say what they chose
        print(spec.summary())
    print(summary(study, mask_url(url)))
    return 0


def summary(study, url: str) -> str:
    """A short, readable report of a study's state and best trial."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    states = {s: sum(t.state == s for t in trials) for s in optuna.trial.TrialState}
    lines = [
        f"study {study.study_name!r}: {states[optuna.trial.TrialState.COMPLETE]} complete, "
        f"{states[optuna.trial.TrialState.PRUNED]} pruned, {states[optuna.trial.TrialState.FAIL]} failed",
    ]
    try:
        best = study.best_trial
    except ValueError:
        lines.append("no completed trial yet")
    else:
        metric = best.user_attrs.get("metric", "value")
        test = best.user_attrs.get("test_metric")
        lines.append(f"best trial #{best.number}: dev {metric} {best.value:.4f}"
                     + (f", test {metric} {test:.4f}" if test is not None else ""))
        for key, value in best.params.items():
            lines.append(f"  {key} = {value:.4g}" if isinstance(value, float) else f"  {key} = {value}")
    lines.append(f"storage: {url}")
    lines.append(f"dashboard: optuna-dashboard {url}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from auxopt.errors import AuxoptError

    try:
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
