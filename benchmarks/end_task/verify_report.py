"""``auxopt verify``'s verdicts, as stored on the studies, written into ``benchmarks/RESULTS.md``.

The verdicts come from these commands (run first; each resumes where it stopped):

    auxopt run studies/quickstart.py --storage sqlite:///benchmarks/end_task/quickstart.db
    auxopt verify studies/quickstart.py --storage sqlite:///benchmarks/end_task/quickstart.db --seeds 5
    AUXOPT_DATA=../shared/data auxopt verify benchmarks/end_task/studies/payoff_autosem.py --seeds 5 \
        --workers 2 --threads 1

then ``python benchmarks/end_task/verify_report.py --write`` reads every study with a verdict in the
two SQLite files and prints (and with ``--write`` stores) one table per verdict: the runs seed by
seed, the paired differences with their 95 % intervals, the summary, and each run's wall time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # benchmarks/: _common

import _common  # noqa: E402

TITLE = "Verdicts: auxopt verify (benchmarks/end_task/verify_report.py)"
STORAGES = {
    "quickstart (synthetic, tiny BERT)": (
        HERE / "quickstart.db",
        "auxopt verify studies/quickstart.py --storage sqlite:///benchmarks/end_task/quickstart.db --seeds 5",
    ),
    "payoff sentiment suite, AutoSeM (online) seed 0 (MiniLM, cr with 200 examples)": (
        HERE / "payoff-cpu.db",
        "AUXOPT_DATA=../shared/data auxopt verify benchmarks/end_task/studies/payoff_autosem.py --seeds 5 --workers 2 "
        "--threads 1",
    ),
}


def verdict_tables() -> list[str]:
    import optuna

    from auxopt import records
    from auxopt.stats import verdict_lines

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    lines = []
    for label, (path, command) in STORAGES.items():
        if not path.is_file():
            lines += [f"### {label}", "", f"Not run yet: `{command}`.", ""]
            continue
        url = f"sqlite:///{path}"
        for summary in optuna.get_all_study_summaries(url):
            verdict = summary.user_attrs.get(records.VERDICT)
            if not verdict or summary.study_name.endswith(".verify"):
                continue
            lines += [f"### {label}", "", f"Command: `{command}` (verdict of {verdict.get('date', '?')}).", ""]
            ratios = ", ".join(f"{k} {v:.3g}" for k, v in verdict["chosen"]["ratios"].items())
            lines.append(
                f"Chosen: trial {verdict['of']['trial']} of `{verdict['of']['study']}` (ratios {ratios}); the search "
                f"scored it dev {verdict['search_dev']:.4f}"
                + (f", test {verdict['search_test']:.4f}" if verdict.get("search_test") is not None else "")
                + "."
            )
            lines.append("")
            if verdict.get("runs"):
                metric = verdict["metric"]
                walls, steps = _compute(url, verdict["study"])
                lines += [
                    f"| seed | dev {metric}: chosen | alone | Δ dev | test {metric}: chosen | alone | Δ test |",
                    "|---|---|---|---|---|---|---|",
                ]
                runs = verdict["runs"]
                for seed in verdict["seed_list"]:
                    a, b = runs["chosen"].get(str(seed)), runs["primary-only"].get(str(seed))
                    if a is None or b is None:
                        continue
                    test = (
                        f"{a['test']:.4f} | {b['test']:.4f} | {a['test'] - b['test']:+.4f}"
                        if a.get("test") is not None and b.get("test") is not None
                        else "– | – | –"
                    )
                    lines.append(f"| {seed} | {a['dev']:.4f} | {b['dev']:.4f} | {a['dev'] - b['dev']:+.4f} | {test} |")
                lines.append("")
                if walls:
                    lines += [
                        f"Compute: {len(walls)} runs, {sum(steps)} training steps in all; "
                        f"{statistics.mean(walls):.0f} s a run on average, {sum(walls) / 60:.0f} min in all "
                        "(wall time on this machine, shared with "
                        "whatever else ran: a cost, not a speed figure).",
                        "",
                    ]
            lines += [*verdict_lines(verdict), ""]
    return lines


def _compute(url: str, study_name: str) -> tuple[list[float], list[int]]:
    """Wall seconds and training steps of each finished run of the companion study."""
    import optuna

    study = optuna.load_study(study_name=study_name, storage=url)
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    walls = [float(t.user_attrs.get("wall_time_s", 0.0)) for t in done]
    return walls, [int(t.user_attrs.get("steps", 0)) for t in done]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help=f"write the section of {_common.RESULTS}")
    args = parser.parse_args(argv)
    section = "\n".join([*_common.header(TITLE), "", *verdict_tables()])
    print(section)
    if args.write:
        _common.write_section(_common.RESULTS, TITLE, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
