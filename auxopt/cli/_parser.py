"""The ``auxopt`` command's arguments: one subcommand a task, with its help and examples."""

from __future__ import annotations

import argparse

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


def build_parser() -> argparse.ArgumentParser:
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
        "scores with a 95 % interval and wins/ties/losses. The verdict is stored on the study, shown in "
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
