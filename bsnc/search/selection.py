"""Model selection (paper §4.2): the Pareto front of (validation accuracy, cost) over the
deterministic architectures of a run's epochs, and the choice of one point on it.

A point is an epoch whose deterministic architecture reaches the output. It stays on the front
while no other point is at least as accurate and at most as costly, and better in one of the
two; of two equal points the earlier stays. Each point on the front has its own checkpoint
(``pareto/epoch-NNN.pt`` in the run directory); a point that leaves the front loses it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from bsnc.errors import BsncError, UsageError, brief


def point_file(epoch: int) -> str:
    """The checkpoint of a point on the front, relative to the run directory."""
    return f"pareto/epoch-{epoch:03d}.pt"


@dataclass(frozen=True)
class Point:
    epoch: int
    val_acc: float
    cost: float
    within_budget: bool
    test_acc: float | None = None

    @property
    def file(self) -> str:
        return point_file(self.epoch)

    def dominates(self, other: Point) -> bool:
        """At least as accurate and as cheap, and not equal (equal: the earlier one wins)."""
        if self.val_acc >= other.val_acc and self.cost <= other.cost:
            if self.val_acc > other.val_acc or self.cost < other.cost:
                return True
            return self.epoch < other.epoch
        return False


class ParetoFront:
    """The non-dominated points of a run, cheapest first."""

    def __init__(self, points: list[Point] | None = None):
        self.points: list[Point] = sorted(points or [], key=lambda p: (p.cost, -p.val_acc, p.epoch))

    def offer(self, point: Point) -> tuple[bool, list[Point]]:
        """Add ``point`` if no point dominates it. Returns whether it joined and the points it
        pushed off the front."""
        if any(p.dominates(point) for p in self.points):
            return False, []
        dropped = [p for p in self.points if point.dominates(p)]
        self.points = sorted([p for p in self.points if p not in dropped] + [point],
                             key=lambda p: (p.cost, -p.val_acc, p.epoch))
        return True, dropped

    def replace(self, point: Point) -> None:
        """Update a point's fields (its test accuracy, once measured)."""
        self.points = [point if p.epoch == point.epoch else p for p in self.points]

    def best(self) -> Point | None:
        """The most accurate point within budget (the cheaper of equals): what best.pt holds."""
        inside = [p for p in self.points if p.within_budget]
        return max(inside, key=lambda p: (p.val_acc, -p.cost, -p.epoch)) if inside else None

    def cheapest(self) -> Point | None:
        return self.points[0] if self.points else None

    def at_most(self, cost: float) -> Point | None:
        """The most accurate point that costs at most ``cost``."""
        inside = [p for p in self.points if p.cost <= cost]
        return max(inside, key=lambda p: (p.val_acc, -p.cost, -p.epoch)) if inside else None

    def pick(self, choice: str, parse_cost: Any) -> Point:
        """``best``, ``cheapest`` or a cost (parsed by ``parse_cost``, e.g. '200k')."""
        if choice == "best":
            point = self.best()
            if point is None:
                raise UsageError("--pick best: no architecture of this run is within its budget "
                                 f"(front: {self.describe()}); pass --pick cheapest or a cost, "
                                 "with --allow-over-budget")
            return point
        if choice == "cheapest":
            point = self.cheapest()
        else:
            try:
                limit = parse_cost(choice)
            except UsageError:
                limit = math.nan
            if not math.isfinite(limit):  # 1e400 parses, to infinity
                raise UsageError(f"--pick {choice}: expected best, cheapest, or a cost in the run's unit "
                                 "such as 200k") from None
            point = self.at_most(limit)
            if point is None and self.points:
                raise UsageError(f"--pick {choice}: every architecture of this run's Pareto front costs more "
                                 f"(front: {self.describe()})")
        if point is None:
            raise UsageError(f"--pick {choice}: this run has no architecture that reaches the output")
        return point

    def describe(self) -> str:
        return ", ".join(f"epoch {p.epoch}: val {p.val_acc * 100:.1f}% at {p.cost:,.0f}" for p in self.points) or "empty"

    def to_json(self) -> list[dict[str, Any]]:
        return [{**asdict(p), "file": p.file} for p in self.points]

    @classmethod
    def from_json(cls, data: Any, source: str = "pareto.json") -> ParetoFront:
        """The front ``to_json`` wrote (pareto.json, a checkpoint's "pareto"); a damaged one is a
        BsncError naming ``source``."""
        problem = front_problem(data)
        if problem is not None:
            raise BsncError(f"{source}: damaged Pareto front: {problem}")
        fields = ("epoch", "val_acc", "cost", "within_budget", "test_acc")
        return cls([Point(**{k: item.get(k) for k in fields}) for item in data])


def front_problem(data: Any) -> str | None:
    """What is wrong with a Pareto front as ``to_json`` writes it, or None."""
    if not isinstance(data, list):
        return f"expected a list of points, got a {type(data).__name__}"
    for i, item in enumerate(data, 1):
        if not isinstance(item, dict):
            return f"point {i} is a {type(item).__name__}, expected an object"
        epoch = item.get("epoch")
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
            return f"point {i}: 'epoch' is {brief(epoch)}, expected a whole number from 1"
        for key, optional in (("val_acc", False), ("cost", False), ("test_acc", True)):
            value = item.get(key)
            if value is None and optional:
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                return f"point {i}: {key!r} is {brief(value)}, expected a number"
        if not isinstance(item.get("within_budget"), bool):
            return f"point {i}: 'within_budget' is {brief(item.get('within_budget'))}, expected true or false"
    return None
