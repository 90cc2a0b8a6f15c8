"""The step-cost benchmark (benchmarks/speed/step_cost.py): its arithmetic by hand, and its ci scale end
to end (every row runs, ratios are taken within rounds)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "speed"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import step_cost  # noqa: E402


def test_per_step_times_and_their_spread():
    assert step_cost.per_step([2.0, 3.0, 2.5], 10) == [0.2, 0.3, 0.25]
    spread = step_cost.Spread.of([0.3, 0.1, 0.2, 0.5])
    assert (spread.median, spread.low, spread.high) == (0.25, 0.1, 0.5)
    assert spread.text(1e3, 0) == "250 [100, 500]"
    with pytest.raises(ValueError):
        step_cost.per_step([1.0], 0)
    with pytest.raises(ValueError):
        step_cost.Spread.of([])


def test_ratios_are_paired_within_rounds():
    # round 2 is slow for both rows (a busy machine): paired ratios stay 1.5, unpaired ones would not
    method, baseline = [0.15, 0.60, 0.15], [0.10, 0.40, 0.10]
    ratio = step_cost.paired_ratios(method, baseline)
    assert ratio.median == pytest.approx(1.5) and ratio.low == pytest.approx(1.5) == ratio.high
    assert step_cost.Spread.of(method).median / step_cost.Spread.of(baseline).median == pytest.approx(1.5)
    skewed = step_cost.paired_ratios([0.2, 0.3, 0.9], [0.1, 0.3, 0.3])
    assert (skewed.median, skewed.low, skewed.high) == pytest.approx((2.0, 1.0, 3.0))
    with pytest.raises(ValueError, match="paired"):
        step_cost.paired_ratios([0.1, 0.2], [0.1])


@pytest.mark.slow
def test_ci_scale_runs_every_row_with_its_baseline(capsys, monkeypatch):
    monkeypatch.delenv("AUXOPT_DATA", raising=False)  # the script may set it; restored afterwards
    assert step_cost.main(["--scale", "ci", "--rounds", "2"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| tiny |")]
    labels = [r.split(" | ")[2] for r in rows]
    assert labels[0] == "plain (1 batch)" and labels[1] == "mixing (pair)" and labels[3] == "mixing (AANG's batches)"
    assert labels[2].startswith("ATTITTUD defaults") and labels[4] == "AANG defaults"
    assert "(vs mixing (pair))" in rows[2] and "(vs mixing (AANG's batches))" in rows[4]
    ratio = float(rows[4].split(" | ")[4].split(" ")[0])
    assert ratio > 1  # AANG's step does more than its baseline: the rows are not the same step
