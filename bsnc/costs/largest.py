"""The largest architecture: the reference that percentage budgets, the "does not constrain"
warning and the budget anneal measure against.

Without choice groups it is the full super network, every edge on. A choice group takes one
option per example, so with every option on at once the super network is no architecture at
all: a DARTS cell's eight operations cost several times its costliest one, and a budget of 60%
of that could constrain nothing. The largest architecture has every gate on and each choice
group on its costliest option, chosen one group at a time given the others (in the network's
order, twice round): exact for an additive cost when the options do not change which layers are
reached, since each group's options then cost what their own edges cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bsnc.codegen.architecture import structure_of
from bsnc.codegen.runtime import Structure, sample_architecture
from bsnc.costs.base import Cost
from bsnc.ir import Network

ROUNDS = 2


@dataclass(frozen=True)
class Largest:
    cost: float
    active: torch.Tensor  # [E] bool: its active edges
    full: bool  # it is the full super network (no choice groups)


def _costs(structure: Structure, cost: Cost, proposals: torch.Tensor) -> torch.Tensor:
    """[B] the cost of each proposal's architecture; -inf for one that does not reach the output."""
    arch = sample_architecture(structure, torch.zeros(structure.n_logits), proposals.shape[0], "mask", proposals)
    values = cost(arch.active).to(torch.float64)
    return torch.where(arch.inconsistent, torch.full_like(values, float("-inf")), values)


def largest_architecture(network: Network, cost: Cost) -> Largest:
    """Every gate on, each choice group on its costliest option (see the module's docstring)."""
    groups = [d for d in network.decisions if d.kind == "choice"]
    structure = structure_of(network)
    if not groups:
        full = torch.ones(len(network.edges), dtype=torch.bool)
        arch = sample_architecture(structure, torch.zeros(network.n_logits), 1, "mask", full)
        return Largest(float(cost(arch.active)[0]), arch.active[0], True)
    decision = torch.tensor([e.decision if e.stochastic else -1 for e in network.edges])
    option = torch.tensor([e.option if e.stochastic else -1 for e in network.edges])
    in_group = torch.zeros(len(network.edges), dtype=torch.bool)
    for group in groups:
        in_group |= decision == network.decisions.index(group)
    chosen = {network.decisions.index(g): 0 for g in groups}  # each group's first option to start

    def proposal() -> torch.Tensor:
        on = ~in_group.clone()
        for d, o in chosen.items():
            on |= (decision == d) & (option == o)
        return on

    best = float("-inf")
    for _ in range(ROUNDS):
        for group in groups:
            d = network.decisions.index(group)
            options = list(range(len(group.options)))  # `zero`, the last option when there is one, is no candidate
            rows = []
            for o in options:
                chosen[d] = o
                rows.append(proposal())
            values = _costs(structure, cost, torch.stack(rows))
            pick = int(torch.argmax(values))
            chosen[d] = options[pick]
            best = float(values[pick])
    if best == float("-inf"):  # no choice of options reaches the output: nothing to measure but the whole
        return Largest(cost.full(), torch.ones(len(network.edges), dtype=torch.bool), True)
    arch = sample_architecture(structure, torch.zeros(network.n_logits), 1, "mask", proposal())
    return Largest(best, arch.active[0], False)
