"""Paired comparisons over seeds: the statistics of the payoff benchmark and of ``auxopt verify``.

Two configurations trained with the same seeds give paired scores ``a_s`` and ``b_s``; the verdict
rests on the differences ``d_s = a_s − b_s``: their mean, the 95 % Student-t interval
``mean ± t_{0.975, n−1} · sd(d) / √n``, and how many seeds each side won (a tie is ``|d_s| ≤ 1e-9``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass

TIE = 1e-9


@dataclass(frozen=True)
class PairedDifference:
    """The paired difference of two rows of scores over their common seeds."""

    n: int
    mean: float
    low: float  # 95 % interval; NaN with one seed
    high: float
    wins: int
    ties: int
    losses: int

    @property
    def resolved(self) -> bool:
        """The interval lies on one side of 0 (it excludes "no difference")."""
        return not math.isnan(self.low) and (self.low > 0 or self.high < 0)

    def interval(self) -> str:
        return "no interval with one seed" if math.isnan(self.low) else f"[{self.low:+.4f}, {self.high:+.4f}]"

    def verdict(self, better: str = "helps", worse: str = "hurts") -> str:
        """``better`` / ``worse`` when the interval excludes 0, else says plainly that it crosses 0."""
        if self.resolved:
            return better if self.low > 0 else worse
        return "no difference shown (the 95 % interval crosses 0)"

    def sentence(self, what: str) -> str:
        """One line: ``dev accuracy: +0.0210 [+0.0040, +0.0380] over 5 paired seeds, W/T/L 5/0/0: helps``."""
        return (
            f"{what}: {self.mean:+.4f} {self.interval()} over {self.n} paired seed{'s' * (self.n != 1)}, "
            f"W/T/L {self.wins}/{self.ties}/{self.losses}: {self.verdict()}"
        )

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping) -> PairedDifference:
        return cls(**{k: (math.nan if data[k] is None else data[k]) for k in cls.__dataclass_fields__})


def paired_difference(rows: Mapping, baseline: Mapping) -> PairedDifference | None:
    """The paired difference ``rows[s] − baseline[s]`` over the seeds ``s`` both have a score for
    (None scores are left out); None when they share no seed."""
    seeds = sorted(s for s in rows if s in baseline and rows[s] is not None and baseline[s] is not None)
    if not seeds:
        return None
    d = [float(rows[s]) - float(baseline[s]) for s in seeds]
    mean = statistics.mean(d)
    if len(d) > 1:
        from scipy import stats

        half = float(stats.t.ppf(0.975, len(d) - 1)) * statistics.stdev(d) / math.sqrt(len(d))
    else:
        half = math.nan
    return PairedDifference(
        n=len(d),
        mean=mean,
        low=mean - half,
        high=mean + half,
        wins=sum(x > TIE for x in d),
        ties=sum(abs(x) <= TIE for x in d),
        losses=sum(x < -TIE for x in d),
    )


def verdict_lines(verdict: Mapping) -> list[str]:
    """``auxopt verify``'s verdict (the record :data:`auxopt.records.VERDICT`) as lines of text (plain,
    and markdown list items): the paired difference per split, then the summary."""
    if verdict.get("alone"):
        return [verdict.get("summary", "The search chose the primary task alone.")]
    metric = verdict.get("metric", "")
    lines = []
    for split in ("dev", "test"):
        if verdict.get(split):
            lines.append("- " + PairedDifference.from_dict(verdict[split]).sentence(f"{split} {metric}"))
    if verdict.get("summary"):
        lines += ["", verdict["summary"]]
    return lines
