"""The largest architecture: the reference that percentage budgets, the "does not constrain"
warning and the budget anneal measure against.

Without choice groups it is the full super network, every edge on. A choice group takes one
option per example, so with every option on at once the super network is no architecture at
all: a DARTS cell's eight operations cost several times its costliest one, and a budget of 60%
of that could constrain nothing. The largest architecture has every gate on and the options that
cost most together: found exactly by trying every combination when there are at most
:data:`ENUMERATE_LIMIT`, else estimated (a lower bound) by ascents that change one group's option
at a time, from several starts, since one group's option can decide whether another group's
edges are reached at all.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

from bsnc.codegen.architecture import structure_of
from bsnc.codegen.runtime import Structure, sample_architecture
from bsnc.costs.base import Cost
from bsnc.ir import Decision, Network

ENUMERATE_LIMIT = 4096  # option combinations costed one by one, in batches of BATCH
BATCH = 512
STARTS = 4  # ascents when the combinations are too many: all first options, all last, then random
ROUNDS = 2  # passes over the groups per ascent


@dataclass(frozen=True)
class Largest:
    cost: float
    active: torch.Tensor  # [E] bool: its active edges
    full: bool  # it is the full super network (no choice groups)
    exact: bool  # False: the costliest found, there may be a costlier one

    def describe(self) -> str:
        """What the cost is of, for messages."""
        if self.full:
            return "the full super network's"
        what = "the largest architecture's (every gate on, each choice group on its costliest option"
        return what + ("" if self.exact else "; an estimate, there may be a costlier one") + ")"


class _Space:
    """Proposals of every gate on and one option per group, costed in batches."""

    def __init__(self, network: Network, cost: Cost, groups: list[Decision]):
        self.network, self.cost = network, cost
        self.structure: Structure = structure_of(network)
        self.groups = [network.decisions.index(g) for g in groups]
        edges = network.edges
        self.base = torch.tensor([not (e.stochastic and e.decision in self.groups) for e in edges])
        self.member = {(d, o): torch.tensor([e.stochastic and e.decision == d and e.option == o for e in edges])
                       for d, g in zip(self.groups, groups) for o in range(len(g.options))}

    def proposal(self, picks: tuple[int, ...]) -> torch.Tensor:
        on = self.base.clone()
        for d, o in zip(self.groups, picks):
            on |= self.member[(d, o)]
        return on

    def costs(self, combos: list[tuple[int, ...]]) -> torch.Tensor:
        """[B] each combination's cost; -inf for one that does not reach the output."""
        proposals = torch.stack([self.proposal(c) for c in combos])
        arch = sample_architecture(self.structure, torch.zeros(self.network.n_logits), len(combos), "mask",
                                   proposals)
        values = self.cost(arch.active).to(torch.float64)
        return torch.where(arch.inconsistent, torch.full_like(values, -math.inf), values)

    def active(self, picks: tuple[int, ...]) -> torch.Tensor:
        arch = sample_architecture(self.structure, torch.zeros(self.network.n_logits), 1, "mask", self.proposal(picks))
        return arch.active[0]


def largest_architecture(network: Network, cost: Cost) -> Largest:
    """The largest architecture (see the module's docstring) and its cost."""
    groups = [d for d in network.decisions if d.kind == "choice"]
    full = torch.ones(len(network.edges), dtype=torch.bool)
    if not groups:
        arch = sample_architecture(structure_of(network), torch.zeros(network.n_logits), 1, "mask", full)
        return Largest(float(cost(arch.active)[0]), arch.active[0], True, True)
    space = _Space(network, cost, groups)
    widths = [len(g.options) for g in groups]  # a `zero` option has no edges: never the costliest
    if math.prod(widths) <= ENUMERATE_LIMIT:
        best, picks = -math.inf, tuple(0 for _ in widths)
        combos = itertools.product(*(range(w) for w in widths))
        while chunk := list(itertools.islice(combos, BATCH)):
            values = space.costs(chunk)
            i = int(torch.argmax(values))
            if float(values[i]) > best:
                best, picks = float(values[i]), chunk[i]
        exact = True
    else:
        generator = torch.Generator().manual_seed(0)
        starts = [tuple(0 for _ in widths), tuple(w - 1 for w in widths)]
        starts += [tuple(int(torch.randint(w, (), generator=generator)) for w in widths) for _ in range(STARTS - 2)]
        best, picks = max((_ascend(space, start, widths) for start in starts), key=lambda found: found[0])
        exact = False
    if best == -math.inf:  # no choice of options reaches the output: nothing to measure but the whole
        return Largest(cost.full(), full, True, True)
    return Largest(best, space.active(picks), False, exact)


def _ascend(space: _Space, start: tuple[int, ...], widths: list[int]) -> tuple[float, tuple[int, ...]]:
    """From ``start``, each group in turn on its costliest option given the others."""
    picks, best = list(start), -math.inf
    for _ in range(ROUNDS):
        for g, width in enumerate(widths):
            combos = [tuple(picks[:g] + [o] + picks[g + 1:]) for o in range(width)]
            values = space.costs(combos)
            o = int(torch.argmax(values))
            picks[g], best = o, float(values[o])
    return best, tuple(picks)
