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


def test_thompson_selection_expected_precision_follows_the_win_rates():
    """The selection benchmark's simulation: separated win rates give the default rule near-perfect
    precision, equal ones the share of helpful tasks (4 of 10), and more pulls help."""
    sys.path.insert(0, str(BENCHMARKS / "search"))
    try:
        import thompson_selection as ts
    finally:
        sys.path.remove(str(BENCHMARKS / "search"))
    apart = ts.expected_precision({"helpful": 0.9, "neutral": 0.5, "harmful": 0.1}, ts.COUNTS, 64, draws=300)
    equal = ts.expected_precision(dict.fromkeys(ts.ROLES, 0.5), ts.COUNTS, 64, draws=2000)
    close = {"helpful": 0.6, "neutral": 0.45, "harmful": 0.35}
    assert apart > 0.99 and abs(equal - 0.4) < 0.05
    assert ts.expected_precision(close, ts.COUNTS, 8, draws=2000) < ts.expected_precision(
        close, ts.COUNTS, 64, draws=2000
    )
