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


def _thompson_selection():
    sys.path.insert(0, str(BENCHMARKS / "search"))
    try:
        import thompson_selection as ts
    finally:
        sys.path.remove(str(BENCHMARKS / "search"))
    return ts


def test_thompson_selection_expected_precision_follows_the_win_rates():
    """The selection benchmark's simulation: separated win rates give the default rule near-perfect
    precision, equal ones the share of helpful tasks (4 of 10), and more pulls help, however the
    pulls are spent."""
    ts = _thompson_selection()
    apart = {"helpful": 0.9, "neutral": 0.5, "harmful": 0.1}
    close = {"helpful": 0.6, "neutral": 0.45, "harmful": 0.35}
    for allocation in ts.ALLOCATIONS:
        assert ts.expected_precision(apart, ts.COUNTS, 32, draws=300, allocation=allocation) > 0.97, allocation
        equal = ts.expected_precision(dict.fromkeys(ts.ROLES, 0.5), ts.COUNTS, 16, draws=2000, allocation=allocation)
        assert abs(equal - 0.4) < 0.05, allocation
        few, many = (ts.expected_precision(close, ts.COUNTS, n, draws=2000, allocation=allocation) for n in (8, 32))
        assert few < many, allocation
    with pytest.raises(ValueError, match="allocation"):
        ts.expected_precision(close, ts.COUNTS, 8, allocation="greedy")


def test_thompson_selection_boundary_allocation_spends_pulls_near_the_cut():
    """The boundary allocation pulls the clearly harmful tasks least and the helpful ones most."""
    import numpy as np

    ts = _thompson_selection()
    p = np.broadcast_to([0.6] * 4 + [0.45] * 3 + [0.2] * 3, (500, 10))
    wins, pulls = ts._allocate(p, 200, "boundary", np.random.default_rng(0))
    assert pulls.sum(1).tolist() == [200] * 500 and (wins <= pulls).all()
    assert pulls[:, :4].mean() > pulls[:, 4:7].mean() > pulls[:, 7:].mean()


def test_thompson_selection_simulate_needs_three_rates(tmp_path):
    script = BENCHMARKS / "search" / "thompson_selection.py"
    done = subprocess.run(
        [sys.executable, str(script), "--simulate", "0.6,0.4"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 2 and "three win rates" in done.stderr


def test_thompson_selection_rank_reading_ignores_the_trend_and_keeps_the_task_that_lowers_the_loss():
    """The rank reading of the online pulls: with the dev loss falling fast early and slowly late, the
    task whose pulls lower it most is kept first, the one that raises it never."""
    import numpy as np

    ts = _thompson_selection()
    rng, loss, history = np.random.default_rng(0), 1.0, [{"task": "primary", "dev_loss": 1.0}]
    effect = {"good": 0.004, "mid": 0.0, "bad": -0.004, "primary": 0.002}
    for i in range(400):
        task = list(effect)[i % 4]
        loss -= 0.01 * np.exp(-i / 100) + effect[task] + rng.normal(0, 0.002)
        history.append({"task": task, "dev_loss": loss})
    kept = ts.rank_selection(history, "primary")
    assert kept[0] == "good" and "bad" not in kept and "primary" not in kept
