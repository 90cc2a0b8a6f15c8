"""MkDocs hook: generated parts of pages, so that they cannot drift from their sources.

- ``<!-- auxopt-help: COMMAND -->`` becomes that command's ``--help`` text (the parser's own words).
- ``<!-- auxopt-include: PATH -->`` becomes the Markdown file PATH (from the repository root), its
  headings one level down and its links to ``../docs/`` made relative to the site: how the results
  page shows ``benchmarks/RESULTS.md``, which the benchmarks write.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from auxopt.cli._parser import build_parser

ROOT = Path(__file__).resolve().parents[2]
HELP = re.compile(r"<!-- auxopt-help: *([\w-]*) *-->")
INCLUDE = re.compile(r"<!-- auxopt-include: *(\S+) *-->")


def help_text(command: str) -> str:
    os.environ["COLUMNS"] = "100"  # argparse wraps at the terminal's width: the same for every build
    parser = build_parser()
    if command:
        sub = next(a for a in parser._subparsers._group_actions if a.dest == "command")  # noqa: SLF001
        parser = sub.choices[command]
    return parser.format_help().replace("\t", "    ").rstrip()


def included(path: str) -> str:
    text = (ROOT / path).read_text()
    text = re.sub(r"^(#+) ", r"#\1 ", text, flags=re.M)
    return text.replace("](../docs/", "](")


def on_page_markdown(markdown: str, **_) -> str:
    markdown = INCLUDE.sub(lambda m: included(m.group(1)), markdown)
    return HELP.sub(lambda m: f"```text\n{help_text(m.group(1))}\n```", markdown)
