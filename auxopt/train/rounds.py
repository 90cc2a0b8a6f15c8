"""The order and the rewards of AutoSeM's online stage 1 judged in rounds: ``OnlineThompson(reward="round")``.

AutoSeM judges each pull against the dev score before it, so a pull's reward also carries the state
it started from: the run's trend, and the optimiser's momentum from the previous pull, which goes on
moving the encoder for the first steps of the next one. On the synthetic selection benchmark
(``benchmarks/search/thompson_selection.py``) helpful tasks won such a pull 0.59 of the time against
0.46 for neutral ones; pulled from the same saved states, a helpful task's pull lowered the dev loss
more than the median candidate's 0.61–0.78 of the time and a neutral one's 0.33–0.43
(``benchmarks/RESULTS.md``).

In rounds, every auxiliary trains ``steps_per_pull`` minibatches **from the same saved state** (the
trainer puts back the shared encoder, the primary's head and their optimiser moments after each pull;
an auxiliary's own head keeps what it learnt, so that it has trained before it is judged again), and
the pulls are compared with one another: the better half of the round by the primary's dev metric (a
tie decided by the dev loss) wins. Then the run goes on with a pull of the primary task. Before the
first round, every task trains ``warmup_pulls`` pulls in turn, unjudged, so that no auxiliary is
judged on a head that has never trained. The pulls are spent evenly; the bandit holds the evidence,
which AutoSeM's selection reads as before.

:class:`~auxopt.train.ThompsonSchedule` runs a :class:`RoundPlan` when its spec says
``reward="round"``; the trainer saves and restores the state (``auxopt.train.loop.RoundFeedback``).
In your own loop: save the state when ``schedule.round_starts()``, and after each pull that
``schedule.judged()`` names call ``schedule.observe((metric, loss))`` and restore it.
"""

from __future__ import annotations

from collections.abc import Sequence

from auxopt.errors import AuxoptError

#: what a pull of a round plan is: an unjudged warm-up pull, a judged pull, or the primary's pull after a round
WARMUP, JUDGED, PRIMARY = "warm-up", "judged", "primary"


class RoundPlan:
    """Which task pull ``n`` trains, and the rewards of a complete round.

    Args:
        arms: the task names, **the primary task first** (as ``TrainConfig.active_ratios()`` lists
            them), then at least two auxiliaries.
        warmup_pulls: the pulls of every task, in turn, before the first round.
        steps_per_pull: minibatches a pull (for :meth:`rounds_in`).
    """

    def __init__(self, arms: Sequence[str], warmup_pulls: int, steps_per_pull: int):
        self.primary, *self.auxiliaries = arms
        if len(self.auxiliaries) < 2:
            raise AuxoptError(
                "reward='round' compares the auxiliaries' pulls with one another: it needs at least 2 "
                f"auxiliary tasks, not {len(self.auxiliaries)}"
            )
        self.warmup, self.steps_per_pull = warmup_pulls * len(arms), steps_per_pull
        self.scores: dict[str, tuple[float, float]] = {}  # this round's judged pulls so far

    def slot(self, n: int) -> tuple[str, str]:
        """(kind, task) of pull ``n`` (from 0): kind :data:`WARMUP`, :data:`JUDGED` or :data:`PRIMARY`."""
        cycle = len(self.auxiliaries) + 1
        if n < self.warmup:
            return WARMUP, [self.primary, *self.auxiliaries][n % cycle]
        i = (n - self.warmup) % cycle
        return (JUDGED, self.auxiliaries[i]) if i < len(self.auxiliaries) else (PRIMARY, self.primary)

    def starts(self, n: int) -> bool:
        """Whether pull ``n`` opens a round."""
        return n >= self.warmup and (n - self.warmup) % (len(self.auxiliaries) + 1) == 0

    def score(self, task: str, metric: float, loss: float) -> list[tuple[str, int, dict]]:
        """Keep a judged pull's score; after the round's last one, its rewards: ``(task, reward, dev
        scores)`` for every auxiliary (the better half wins), else ``[]``."""
        self.scores[task] = (float(metric), float(loss))
        if len(self.scores) < len(self.auxiliaries):
            return []
        ranked = sorted(self.scores, key=lambda t: (-self.scores[t][0], self.scores[t][1]))
        winners = set(ranked[: len(ranked) // 2])
        out = [
            (t, int(t in winners), {"dev": self.scores[t][0], "dev_loss": self.scores[t][1]}) for t in self.auxiliaries
        ]
        self.scores = {}
        return out

    def resume_at(self, n: int) -> int:
        """The pull to go on from when a run saved after ``n`` finished pulls resumes: the start of
        the round it was in (that round's judged pulls are dropped, their saved state is gone), or
        ``n`` itself between rounds or in the warm-up."""
        self.scores = {}
        cycle = len(self.auxiliaries) + 1
        if n > self.warmup and (n - self.warmup) % cycle not in (0, len(self.auxiliaries)):
            return self.warmup + (n - self.warmup) // cycle * cycle
        return n

    def rounds_in(self, steps: int) -> int:
        """How many whole rounds a run of ``steps`` minibatches judges."""
        pulls = steps // self.steps_per_pull - self.warmup
        return max(0, (pulls + 1) // (len(self.auxiliaries) + 1))  # a round is judged before its primary pull

    def check_length(self, steps: int) -> None:
        """Raise when a run of ``steps`` minibatches would end before its first round is judged."""
        if self.rounds_in(steps) < 1:
            k = len(self.auxiliaries)
            raise AuxoptError(
                f"reward='round' judges no pull in {steps} steps: the warm-up ({self.warmup // (k + 1)} pulls of "
                f"each of {k + 1} tasks) and one round ({k} pulls) take {(self.warmup + k) * self.steps_per_pull} "
                f"steps of {self.steps_per_pull} a pull; train longer or lower warmup_pulls or steps_per_pull"
            )
