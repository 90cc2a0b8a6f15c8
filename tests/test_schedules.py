import collections
import itertools

import pytest

from auxopt.errors import AuxoptError
from auxopt.train import ProportionalSchedule, RoundRobinSchedule, make_schedule


def take(schedule, n):
    return [schedule.next_task() for _ in range(n)]


def test_round_robin_exact_order():
    schedule = RoundRobinSchedule({"p": 1, "a": 2, "b": 1})
    assert take(schedule, 10) == ["p", "a", "a", "b", "p", "a", "a", "b", "p", "a"]


def test_round_robin_skips_zero_ratios_and_keeps_given_order():
    schedule = RoundRobinSchedule({"b": 3, "p": 1, "z": 0})
    assert take(schedule, 8) == ["b", "b", "b", "p", "b", "b", "b", "p"]


def test_round_robin_resumes_from_state():
    a = RoundRobinSchedule({"p": 2, "a": 3})
    take(a, 7)
    b = RoundRobinSchedule({"p": 2, "a": 3})
    b.load_state_dict(a.state_dict())
    assert take(a, 11) == take(b, 11)


def test_round_robin_rejects_fractional_ratios():
    with pytest.raises(AuxoptError, match="integer ratios"):
        RoundRobinSchedule({"p": 1, "a": 1.5})


def test_proportional_frequencies_follow_ratios():
    schedule = ProportionalSchedule({"p": 1.0, "a": 3.0}, seed=1)
    counts = collections.Counter(take(schedule, 8000))
    assert counts["a"] / 8000 == pytest.approx(0.75, abs=0.02)


def test_proportional_is_seeded_and_resumable():
    assert take(ProportionalSchedule({"p": 1, "a": 0.5}, seed=3), 50) == take(
        ProportionalSchedule({"p": 1, "a": 0.5}, seed=3), 50
    )
    a = ProportionalSchedule({"p": 1, "a": 0.5}, seed=3)
    take(a, 13)
    b = ProportionalSchedule({"p": 1, "a": 0.5}, seed=99)
    b.load_state_dict(a.state_dict())
    assert take(a, 30) == take(b, 30)


def test_auto_picks_round_robin_for_whole_numbers():
    assert isinstance(make_schedule({"p": 1, "a": 2.0}), RoundRobinSchedule)
    assert isinstance(make_schedule({"p": 1, "a": 0.3}), ProportionalSchedule)


@pytest.mark.parametrize(
    "ratios, message",
    [({"p": 0, "a": 0}, "every mixing ratio is 0"), ({"p": -1}, ">= 0"), ({"p": float("nan")}, "finite")],
)
def test_bad_ratios(ratios, message):
    with pytest.raises(AuxoptError, match=message):
        make_schedule(ratios)


def test_unknown_schedule():
    with pytest.raises(AuxoptError, match="unknown schedule"):
        make_schedule({"p": 1}, "cosine")


def test_round_robin_counts_match_ratios_over_whole_rounds():
    ratios = {"p": 1, "a": 4, "b": 2}
    counts = collections.Counter(itertools.islice(iter(RoundRobinSchedule(ratios).next_task, None), 70))
    assert counts == {"p": 10, "a": 40, "b": 20}
