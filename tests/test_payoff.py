"""The payoff benchmark (benchmarks/end_task/payoff.py): its statistics by hand, and its ci scale end to end on
the real data, killed in the middle and run again."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "end_task"))

import payoff  # noqa: E402


def _runs(tests: dict[int, float]) -> dict[int, dict]:
    return {s: {"test": v, "dev": v, "steps": 1, "wall": 1.0} for s, v in tests.items()}


def test_paired_difference_interval_and_wins_by_hand():
    base = _runs({0: 0.80, 1: 0.82, 2: 0.81})
    row = _runs({0: 0.85, 1: 0.82, 2: 0.84, 3: 0.99})  # seed 3 has no primary-only run: not paired
    out = payoff.paired(row, base)
    d = [0.05, 0.0, 0.03]
    mean = sum(d) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 2)
    half = 4.302652729911275 * sd / math.sqrt(3)  # t(0.975, 2 df)
    assert out["n"] == 3
    assert out["mean"] == pytest.approx(mean)
    assert out["low"] == pytest.approx(mean - half) and out["high"] == pytest.approx(mean + half)
    assert (out["wins"], out["ties"], out["losses"]) == (2, 1, 0)
    assert math.isnan(payoff.paired(_runs({0: 0.9}), base)["low"])  # one seed: no interval
    assert payoff.paired(_runs({5: 0.9}), base) is None


def test_kept_set_against_best_singles_pick_counts_the_seeds_both_ran():
    data = {
        "best single (dev)": {s: {"detail": {"chosen": c}} for s, c in enumerate(["mr", "sst2", "mr", "subj"])},
        "AutoSeM (online, pruned)": {
            0: {"detail": {"selected": ["mr", "qnli"]}},
            1: {"detail": {"selected": ["cola"]}},  # misses sst2
            3: {"detail": {"selected": ["subj"]}},
            4: {"detail": {"selected": ["mr"]}},  # best single has no seed 4: not counted
        },
        "AutoSeM (sampler)": {2: {"detail": {"selected": []}}},  # kept nothing
    }
    assert payoff.kept_holds_pick(data) == {"AutoSeM (online, pruned)": (2, 3), "AutoSeM (sampler)": (0, 1)}
    assert payoff.kept_holds_pick({"AutoSeM (sampler)": data["AutoSeM (sampler)"]}) == {}


def test_short_run_evidence_reads_the_sampler_stage_1_against_the_full_runs():
    full = {"mr": [0.88, 0.86], "sst2": [0.87, 0.89], "cola": [0.84, 0.85]}
    data = {
        "_singles": {t: {s: {"dev": d} for s, d in enumerate(devs)} for t, devs in full.items()},
        "primary-only": {0: {"dev": 0.85}, 1: {"dev": 0.85}},
    }
    short = {
        0: {"none": 0.86, "mr": 0.87, "sst2": 0.85, "cola": 0.84},  # the same order as the full runs
        1: {"none": 0.86, "mr": 0.87, "sst2": 0.84, "cola": 0.86},  # sst2, the pick, ranks last
        2: {"none": 0.86, "mr": 0.9},  # no full runs for seed 2: left out
    }
    e = payoff.short_run_evidence(short, data)
    assert (e["below_short"], e["below_full"], e["n"]) == (4, 2, 6)  # a tie with the primary counts as below
    assert e["ranks"] == [1, 3] and e["of"] == 3
    assert e["rho"] == pytest.approx((1.0 + (-0.5)) / 2)
    assert payoff.short_run_evidence({}, data) is None
    assert "2 seeds" in payoff.short_run_lines(e, {"steps": 300})[0]


def test_job_order_puts_the_premise_first_and_pairs_seeds():
    suite = payoff.SUITES["sentiment"]
    order = payoff.jobs(suite, payoff.SCALES["cpu"], seeds=5, only=None)
    rows = payoff.job_rows(suite, payoff.SCALES["cpu"])
    assert len(order) == len(set(order)) == 5 * len(rows)
    # the baselines first for seeds 0-2: primary-only, all-equal, every single auxiliary and TAPT
    premise = 3 * (3 + len(suite.candidates))
    assert {r.split(":")[0] for r, _ in order[:premise]} == {"primary-only", "all-equal", "single", "tapt"}
    assert {s for _, s in order[: 3 * len(rows)]} == {0, 1, 2}
    assert "sst2" not in payoff.SUITES["sentiment"].primary  # never sst2 with mr or subj
    for suite in payoff.SUITES.values():
        assert not (suite.primary == "sst2" and {"mr", "subj"} & set(suite.candidates))


def test_a_row_added_after_the_study_was_made_is_claimed_and_read_back(tmp_path):
    """Optuna's categorical parameter cannot grow: a row the study's ``row`` choices lack is claimed
    with the row as a user_attr, and every reader (row_of, the claim's bookkeeping) finds it."""
    url = f"sqlite:///{tmp_path / 'p.db'}"
    scale = payoff.SCALES["ci"]
    study = payoff._open_study(url, "payoff-x", {"made": 1})
    first = payoff.claim(study, url, [("primary-only", 0)], ["primary-only", "all-equal"], scale)
    study.tell(first, 0.5)
    new = payoff.claim(study, url, [("primary-only", 0), ("autosem-pruned", 0)], list(payoff.ROWS), scale)
    assert "row" not in new.params and payoff.row_of(new) == "autosem-pruned"
    study.tell(new, 0.6)
    assert payoff.claim(study, url, [("primary-only", 0), ("autosem-pruned", 0)], list(payoff.ROWS), scale) is None
    assert payoff.row_choices(study) == ("primary-only", "all-equal")


def _trials(url: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name="payoff-sentiment", storage=url).get_trials()
    except Exception:  # not created yet, or busy
        return []


@pytest.mark.slow
@pytest.mark.data
def test_ci_scale_runs_end_to_end_and_resumes_after_a_kill(tmp_path, data_dir):
    url = f"sqlite:///{tmp_path / 'payoff.db'}"
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "end_task" / "payoff.py"),
        "--scale",
        "ci",
        "--suites",
        "sentiment",
        "--storage",
        url,
        "--figure",
        str(tmp_path / "payoff.png"),
    ]
    env = {**os.environ, "AUXOPT_DATA": str(data_dir), "OMP_NUM_THREADS": "1", "AUXOPT_RESULTS": str(tmp_path / "R.md")}
    proc = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    killed = None
    while time.monotonic() < deadline and proc.poll() is None:  # kill a run after its first checkpoint
        trials = _trials(url)
        checkpointed = [t for t in trials if t.state == TrialState.RUNNING and t.user_attrs.get("checkpoint_step")]
        if any(t.state == TrialState.COMPLETE for t in trials) and checkpointed:
            killed = checkpointed[0]
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert killed is not None
    before = {(t.params["row"], t.params["seed"]): t.value for t in _trials(url) if t.state == TrialState.COMPLETE}
    assert before and any(t.state == TrialState.RUNNING for t in _trials(url))

    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "its worker is gone; it runs again" in done.stdout

    trials = _trials(url)
    suite, scale = payoff.SUITES["sentiment"], payoff.SCALES["ci"]
    expected = set(payoff.jobs(suite, scale, scale["seeds"], None))
    complete = [(t.params["row"], t.params["seed"]) for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(complete) == sorted(expected)  # every (row, seed) exactly once
    assert sum(t.state == TrialState.FAIL for t in trials) == 1  # the killed one
    assert not any(t.state == TrialState.RUNNING for t in trials)
    after = {(t.params["row"], t.params["seed"]): t.value for t in trials if t.state == TrialState.COMPLETE}
    assert all(after[k] == v for k, v in before.items())  # finished runs are not redone
    job = (killed.params["row"], killed.params["seed"])
    redone = next(t for t in trials if t.state == TrialState.COMPLETE and (t.params["row"], t.params["seed"]) == job)
    assert redone.user_attrs["resumed_from_step"] >= killed.user_attrs["checkpoint_step"]  # from its checkpoint
    assert not list((tmp_path / "payoff.db.artifacts").glob("*"))  # finished runs leave no checkpoint
    for t in trials:
        if t.state == TrialState.COMPLETE:
            assert t.user_attrs["steps"] >= scale["steps"] and t.user_attrs["wall_s"] > 0
            assert t.user_attrs["test"] is not None and 0 <= t.user_attrs["test"] <= 1
    # the AutoSeM rows take each other's runs of the same settings (stage 1 online is the same run
    # with and without pruning) and count them at what they cost there
    stages = [n for n in optuna.get_all_study_names(url) if ".autosem-" in n]
    taken = [
        t for n in stages for t in optuna.load_study(study_name=n, storage=url).trials if "reused_study" in t.user_attrs
    ]
    assert taken and all(t.user_attrs["reused_cost"]["steps"] > 0 and t.user_attrs["steps"] == 0 for t in taken)
    # the report: every row with its seeds, intervals and the figure
    table = done.stdout
    for label in payoff.ROWS.values():
        assert f"| {label} | " in table and f"| {label} | not run yet" not in table
    assert "The sampler stage 1 read against the full runs (2 seeds)" in table
    assert (tmp_path / "payoff.png").stat().st_size > 10_000
    # the same command again finds nothing to do and changes nothing
    again = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and len(_trials(url)) == len(trials)
