"""The payoff benchmark's AutoSeM search for one suite and seed, as a study file: what ``auxopt
export`` and ``auxopt verify`` take. It builds the same :class:`auxopt.pipelines.AutoSeM` that
``payoff.py`` ran (its stage studies are in the benchmark's SQLite file), so nothing is searched again.

    AUXOPT_DATA=../shared/data auxopt verify benchmarks/end_task/studies/payoff_autosem.py --seeds 5
    PAYOFF_SEED=1 AUXOPT_DATA=../shared/data auxopt export benchmarks/end_task/studies/payoff_autosem.py \
        --out cr-autosem

Environment: ``PAYOFF_SUITE`` (default ``sentiment``), ``PAYOFF_SCALE`` (``cpu``), ``PAYOFF_SEED``
(``0``), ``PAYOFF_ROW`` (``autosem-online``).
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]  # benchmarks/end_task: payoff.py and its SQLite file
sys.path.insert(0, str(HERE))

import payoff  # noqa: E402

suite_name = os.environ.get("PAYOFF_SUITE", "sentiment")
scale_name = os.environ.get("PAYOFF_SCALE", "cpu")
suite, scale = payoff.SUITES[suite_name], payoff.SCALES[scale_name]
primary, auxiliaries = payoff.load_suite(suite, scale)
study = payoff.autosem_pipeline(
    os.environ.get("PAYOFF_ROW", "autosem-online"),
    int(os.environ.get("PAYOFF_SEED", "0")),
    primary,
    auxiliaries,
    scale,
    f"sqlite:///{HERE / f'payoff-{scale_name}.db'}",
    f"payoff-{suite_name}",
)
