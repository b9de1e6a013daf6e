"""What the search says on stderr when its result may not be usable: a budget no architecture
can meet (or that does not constrain), and an epoch whose deterministic architecture does not
reach the output or is over budget."""

from __future__ import annotations

import sys
from typing import Iterator

from bsnc.costs.base import Cost
from bsnc.costs.cheapest import Cheapest
from bsnc.costs.largest import Largest


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def budget_warnings(cost: Cost, budget: float | None, cheapest: Cheapest | None, largest: Largest) -> Iterator[str]:
    """Before training: a budget below the cheapest architecture that reaches the output, or at
    or above the largest one's cost (the full super network's without choice groups)."""
    if budget is None:
        return
    if cheapest is None:
        yield "no path of edges leads from the input to the output: no architecture can reach it"
    elif budget < cheapest.cost:
        how = "" if cheapest.exact else " (an estimate: the cheapest found, there may be a cheaper one)"
        yield (f"--budget {cost.format(budget)} is below the cheapest architecture that reaches the output, "
               f"{cost.format(cheapest.cost)}{how}: no architecture can be within budget")
    if budget >= largest.cost:
        yield (f"--budget {cost.format(budget)} is at or above {largest.describe()} {cost.name} cost "
               f"{cost.format(largest.cost)}: the budget does not constrain the search")


def epoch_warnings(cost: Cost, epoch: int, consistent: bool, value: float, budget: float | None,
                   search_budget: float | None = None) -> Iterator[str]:
    """After a search epoch: its deterministic architecture (of cost ``value``) is no model, or
    is over budget. Not while the reward's budget is still annealing down to ``budget``
    (``search_budget`` above it, search/budget_anneal.py): the architecture is then meant to be
    over budget, shrinking a step at a time behind the search budget the epoch line shows."""
    if not consistent:
        yield (f"epoch {epoch}: the deterministic architecture (γ > 0.5) does not reach the output; "
               "it is no model")
    elif budget is not None and value > budget and not (search_budget is not None and search_budget > budget):
        shown, limit = cost.format_apart(value, budget)
        yield f"epoch {epoch}: the deterministic architecture costs {shown}, over the budget {limit}"
