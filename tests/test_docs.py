"""Every code example in the README and the documentation site runs here, and the site builds.

- ``python`` blocks run; the blocks of one page run in order in one namespace, as a reader pastes
  them into one session, in a scratch folder (what they write stays there). The environment has
  ``SMOKE_TEST=1``: a page that trains reads it to take a few steps (as BoTorch's tutorials do), and
  says so where the reader sees it.
- ``bash`` blocks: each ``auxopt ...`` command is parsed by the CLI's own parser (an option or
  subcommand that does not exist fails), and each script a ``python``/``bash`` command names exists.
  The commands themselves train for minutes to hours; the CLI tests run them.
- A block preceded by ``<!-- requires: data -->`` needs ``../shared/data`` (it skips with the reason
  where that is absent); ``gpu``, ``postgres`` likewise. ``<!-- not-run: REASON -->`` keeps a block
  out, and the reason is printed; few blocks may use it (checked below).
- ``mkdocs build --strict`` fails on a broken link, anchor or API reference.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"(?:<!-- *(requires|not-run): *(.*?) *-->\s*\n)?^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
MAX_NOT_RUN = 3


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    code: str
    marker: str | None
    value: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    return [
        Block(page, text.count("\n", 0, m.start(3) if m.group(1) is None else m.start()) + 1, *_parts(m))
        for m in FENCE.finditer(text)
    ]


def _parts(m: re.Match) -> tuple[str, str, str | None, str]:
    return m.group(3), m.group(4), m.group(1), (m.group(2) or "").strip('"')


def _missing(requirement: str) -> str | None:
    """Why a block that needs ``requirement`` cannot run here (None: it can)."""
    if requirement == "data":
        return None if SHARED_DATA.is_dir() else f"needs the real datasets: {SHARED_DATA} does not exist"
    if requirement == "gpu":
        import torch

        return None if torch.cuda.is_available() else "needs a CUDA GPU"
    if requirement == "postgres":
        return None if os.environ.get("AUXOPT_TEST_POSTGRES_URL") else "needs AUXOPT_TEST_POSTGRES_URL"
    raise AssertionError(f"unknown requirement {requirement!r}")


def python_pages() -> list[Path]:
    return [p for p in PAGES if any(b.lang == "python" for b in blocks(p))]


@pytest.mark.parametrize("page", python_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(page: Path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SMOKE_TEST", "1")
    if SHARED_DATA.is_dir():
        monkeypatch.setenv("AUXOPT_DATA", str(SHARED_DATA))
    monkeypatch.syspath_prepend(str(tmp_path))
    scope: dict = {"__name__": "__main__"}
    ran = 0
    for block in blocks(page):
        if block.lang != "python" or block.marker == "not-run":
            continue
        if block.marker == "requires" and (why := _missing(block.value)):
            pytest.skip(f"{block.where}: {why}")  # the page's later blocks build on this one
        try:
            exec(compile(block.code, block.where, "exec"), scope)
        except Exception as error:
            raise AssertionError(f"the example at {block.where} fails: {error!r}") from error
        ran += 1
    assert ran, f"{page}: no python block ran"


def test_commands_parse():
    from auxopt.cli._parser import build_parser

    parser = build_parser()
    checked = 0
    for page in PAGES:
        for block in blocks(page):
            if block.lang not in ("bash", "sh", "console"):
                continue
            for line in _commands(block.code):
                words = shlex.split(line, comments=True)
                while words and "=" in words[0] and not words[0].startswith("-"):
                    words = words[1:]  # VAR=value prefixes
                if not words:
                    continue
                if words[0] == "auxopt":
                    try:
                        parser.parse_args(words[1:])
                    except SystemExit as stop:
                        raise AssertionError(f"{block.where}: `{line}` does not parse") from stop
                    checked += 1
                elif words[0] in ("python", "python3", "bash") and len(words) > 1 and not words[1].startswith("-"):
                    assert (ROOT / words[1]).exists(), f"{block.where}: `{line}` names {words[1]}, which does not exist"
                    checked += 1
    assert checked > 10


def _commands(code: str) -> list[str]:
    """The command lines of a shell block, continuation lines joined."""
    return [line.strip() for line in code.replace("\\\n", " ").splitlines() if line.strip()]


def test_few_blocks_are_kept_out():
    kept_out = [b.where for p in PAGES for b in blocks(p) if b.marker == "not-run"]
    assert len(kept_out) <= MAX_NOT_RUN, kept_out
    for page in PAGES:
        for block in blocks(page):
            assert block.lang, f"{block.where}: a code block without a language"
            if block.marker == "requires":
                assert block.value in ("data", "gpu", "postgres"), f"{block.where}: requires {block.value!r}"


def test_readme_is_a_front_page():
    text = (ROOT / "README.md").read_text()
    assert text.count("\n") <= 200, f"README.md has {text.count(chr(10))} lines; the manual belongs in docs/"
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not target.startswith(("http://", "https://")):
            assert (ROOT / target).exists(), f"README.md links to {target}, which does not exist"


def test_cli_page_has_every_command():
    from auxopt.cli._parser import build_parser

    page = (ROOT / "docs" / "cli.md").read_text()
    sub = next(a for a in build_parser()._subparsers._group_actions if a.dest == "command")  # noqa: SLF001
    missing = [name for name in sub.choices if f"<!-- auxopt-help: {name} -->" not in page]
    assert not missing, f"docs/cli.md has no section for {missing}"


def test_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs tools are in the dev extras: pip install -e '.[dev]'")
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert out.returncode == 0, out.stderr[-4000:]
    assert (tmp_path / "site" / "api" / "train" / "index.html").exists()
