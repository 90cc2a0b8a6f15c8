"""What every benchmark script shares: the machine line, the command line, and writing one ``##``
section of ``benchmarks/RESULTS.md`` while keeping the others."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import re
import shlex
import sys
from pathlib import Path

#: the project's root (the checkout)
REPO = Path(__file__).resolve().parents[1]

#: the file ``--write`` updates: ``benchmarks/RESULTS.md``, or ``$AUXOPT_RESULTS`` (run_all.py sets it)
RESULTS = Path(os.environ.get("AUXOPT_RESULTS") or Path(__file__).resolve().parent / "RESULTS.md")


def use_shared_data() -> None:
    """Make ``auxopt`` importable from this checkout and, unless ``AUXOPT_DATA`` is set, find the
    tasks in ``../shared/data`` beside it (where this project's machines keep them)."""
    shared = REPO.parent / "shared" / "data"
    if not os.environ.get("AUXOPT_DATA") and shared.is_dir():
        os.environ["AUXOPT_DATA"] = str(shared)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def machine() -> str:
    import torch

    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return (
        f"{cpu_model()}, {os.cpu_count()} cores{gpu}; Python {platform.python_version()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} CPU thread(s) at the end)"
    )


def today() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def command_line() -> str:
    """The command that ran this script, relative to the current folder where possible."""
    python = Path(sys.executable)
    with contextlib.suppress(ValueError):
        python = python.relative_to(Path.cwd())
    script = Path(sys.argv[0])
    with contextlib.suppress(ValueError):
        script = script.resolve().relative_to(Path.cwd())
    env = os.environ.get("AUXOPT_DATA")
    prefix = f"AUXOPT_DATA={shlex.quote(env)} " if env else ""
    return prefix + shlex.join([str(python), str(script), *sys.argv[1:]])


def write_section(path: Path, title: str, section: str) -> None:
    """Replace the ``## {title}`` section of ``path`` with ``section`` (or append it)."""
    heading = f"## {title}"
    text = path.read_text(encoding="utf-8") if path.exists() else "# auxopt benchmark results\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if re.match(r"^## ", lines[i])), len(lines))
        after = "".join(lines[end:])
        new = "".join(lines[:start]) + section + ("\n" + after if after else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new, encoding="utf-8")


def header(title: str) -> list[str]:
    """The first lines of a section: heading, date, machine and command."""
    return [
        f"## {title}",
        "",
        f"- Date: {today()}",
        f"- Machine: {machine()}",
        f"- Load average (1, 5, 15 min) at the end: {load_average()}",
        f"- Command: `{command_line()}`",
    ]


def mean_sd(values) -> str:
    """``mean ± sd`` (sample sd; 0 for one value) of the values that are not None, or ``–``."""
    import statistics

    values = [v for v in values if v is not None]
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def add_threads_option(parser) -> None:
    """``--threads N``: torch's CPU threads for the whole run (the section's machine line says it)."""
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")


def apply_threads(args) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)


def publish(title: str, lines: list[str], write: bool) -> None:
    """Print the section and, with ``write``, put it into RESULTS.md."""
    section = "\n".join(lines) + "\n"
    print(section)
    if write:
        write_section(RESULTS, title, section)
