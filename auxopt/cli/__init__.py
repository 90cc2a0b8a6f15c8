"""The ``auxopt`` command: ``main`` dispatches each subcommand to its module (``_run``: run, worker,
quickstart; ``_show``: studies, show, dashboard; ``_outcome``: export, verify; ``_parser``: the
arguments). Importing it loads neither torch nor Optuna: every command imports what it needs."""

from __future__ import annotations

import sys
from pathlib import Path

from auxopt.cli._outcome import export, verify
from auxopt.cli._parser import build_parser
from auxopt.cli._run import cpu_count, quickstart_file, run
from auxopt.cli._show import dashboard, show, studies, summary

__all__ = ["cpu_count", "main", "quickstart_file", "summary"]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from auxopt.errors import AuxoptError

    try:
        if args.command == "worker":
            return run(args, Path(args.study_file), None)
        if args.command in ("dashboard", "studies", "show", "export", "verify"):
            commands = {"dashboard": dashboard, "studies": studies, "show": show}
            return {**commands, "export": export, "verify": verify}[args.command](args)
        if args.command == "quickstart":
            default = f"sqlite:///{Path.cwd() / 'quickstart.db'}"
            return run(args, quickstart_file(), default)
        return run(args, Path(args.study_file), None)
    except AuxoptError as e:
        print(f"auxopt: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("auxopt: interrupted; run the same command again to continue the study", file=sys.stderr)
        return 130
