"""Every benchmark script starts: it finds ``_common`` and auxopt from its folder and parses
``--help`` (``benchmarks/run_all.py --scale ci`` runs them all for real, in minutes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*/*.py") if not p.name.startswith("_"))


def test_every_benchmark_is_in_a_folder_and_in_run_all():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import run_all
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert sorted(p.stem for p in SCRIPTS) == sorted(run_all.SUITE)
    assert not [p.name for p in BENCHMARKS.glob("*.py") if p.name not in ("_common.py", "run_all.py")]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_benchmark_starts(script, tmp_path):
    done = subprocess.run([sys.executable, str(script), "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--write" in done.stdout
