"""The Pareto front of (validation accuracy, cost) and the choice of a point on it (paper §4.2)."""

from __future__ import annotations

import pytest

from bsnc.errors import UsageError
from bsnc.search.selection import ParetoFront, Point


def _front(*points: tuple[int, float, float, bool]) -> ParetoFront:
    front = ParetoFront()
    for epoch, acc, cost, within in points:
        front.offer(Point(epoch, acc, cost, within))
    return front


def test_the_front_keeps_exactly_the_non_dominated_points_cheapest_first():
    front = _front((1, 0.80, 100, False), (2, 0.70, 50, True), (3, 0.75, 60, True), (4, 0.72, 70, True),
                   (5, 0.75, 60, True), (6, 0.90, 100, False))
    # 4 is dominated by 3; 5 equals 3 (the earlier stays); 1 is dominated by 6
    assert [p.epoch for p in front.points] == [2, 3, 6]


def test_offer_reports_what_leaves_the_front():
    front = _front((1, 0.5, 10, True), (2, 0.6, 20, True))
    joined, dropped = front.offer(Point(3, 0.7, 10, True))
    assert joined and sorted(p.epoch for p in dropped) == [1, 2]
    assert front.offer(Point(4, 0.6, 30, True)) == (False, [])


def test_best_is_the_most_accurate_within_budget_and_picks_by_cost():
    front = _front((1, 0.70, 50, True), (2, 0.80, 90, True), (3, 0.95, 150, False))
    assert front.best().epoch == 2
    assert front.cheapest().epoch == 1
    assert front.pick("best", float).epoch == 2
    assert front.pick("cheapest", float).epoch == 1
    assert front.pick("100", float).epoch == 2
    assert front.pick("200", float).epoch == 3
    assert front.pick("60", float).epoch == 1
    with pytest.raises(UsageError, match="--pick 10: every architecture"):
        front.pick("10", float)


def test_a_front_without_a_point_within_budget_has_no_best():
    front = _front((1, 0.9, 150, False))
    assert front.best() is None
    with pytest.raises(UsageError, match="no architecture of this run is within its budget"):
        front.pick("best", float)


def test_the_front_round_trips_through_json():
    front = _front((1, 0.70, 50, True), (2, 0.80, 90, True))
    again = ParetoFront.from_json(front.to_json())
    assert again.points == front.points
    assert front.to_json()[0]["file"] == "pareto/epoch-001.pt"


def test_a_pick_that_is_no_cost_names_the_option():
    def parse(text: str) -> float:
        raise UsageError(f"--budget {text}: not a number")

    with pytest.raises(UsageError, match="--pick fastest: expected best, cheapest, or a cost"):
        _front((1, 0.7, 50, True)).pick("fastest", parse)


@pytest.mark.parametrize("text", ["1e400", "inf", "nan"])
def test_a_pick_that_is_no_finite_cost_is_refused(text):
    """1e400 parsed to infinity and picked the most accurate point, where inf was refused."""
    with pytest.raises(UsageError, match=f"--pick {text}: expected best, cheapest, or a cost"):
        _front((1, 0.7, 50, True)).pick(text, float)
