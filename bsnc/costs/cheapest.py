"""The cheapest consistent architecture: the least cost of any architecture that reaches the
output, and one architecture that has it.

Every consistent architecture A holds an input-to-output path P of active edges. Proposing only
P's stochastic edges gives the architecture A(P) (the connectivity rule adds the fixed edges out
of every connected layer); each of its active edges is also active in A, since every layer A(P)
connects is connected in A. So for a cost that never decreases when an edge is added (an
additive cost with non-negative edge costs, and flops, whose sum additions grow with the inputs
of a layer), min over A of C(A) = min over paths P of C(A(P)); and C(A(P)) >= w(P), the sum of
P's single-edge costs. The search walks paths in increasing w(P) (a shortest-path enumeration)
and stops once w(P) reaches the best C(A(P)) found: the result is then exact. For other costs
(distributed, custom, a latency table with negative entries) or when the walk hits its limit,
the result is the cheapest architecture among the paths tried: an *estimate* (an upper bound),
and it says so.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import networkx as nx
import torch

from bsnc.codegen.architecture import structure_of
from bsnc.codegen.runtime import sample_architecture
from bsnc.costs.analytic import FlopsCost
from bsnc.costs.base import Cost
from bsnc.ir import Network

PATH_LIMIT = 5000  # paths tried before settling for an estimate
BATCH = 64


@dataclass(frozen=True)
class Cheapest:
    """The least cost of a consistent architecture (``exact``) or an upper bound of it."""

    cost: float
    active: torch.Tensor  # [E] bool: the active edges of one architecture that has this cost
    exact: bool
    paths_tried: int

    @property
    def kind(self) -> str:
        return "exact" if self.exact else "estimate"


def monotone(cost: Cost) -> bool:
    """Whether adding an edge can never lower the cost (what makes the search exact)."""
    if isinstance(cost, FlopsCost):
        return True
    vector = cost.per_edge() if cost.additive else None
    return vector is not None and bool((vector >= 0).all())


def cheapest_consistent(network: Network, cost: Cost, limit: int = PATH_LIMIT) -> Cheapest | None:
    """The cheapest architecture of ``network`` that reaches its output under ``cost``; None when
    no path leads from the input to the output."""
    n_edges = len(network.edges)
    single = cost(torch.eye(n_edges, dtype=torch.bool)).double().clamp(min=0).tolist() if n_edges else []
    graph = nx.DiGraph()
    graph.add_nodes_from(range(len(network.layers)))
    choice: dict[tuple[int, int], int] = {}  # (src, dst) layer pair -> the cheapest parallel edge
    for index, edge in enumerate(network.edges):
        pair = (network.layer_index[edge.src], network.layer_index[edge.dst])
        if pair not in choice or single[index] < single[choice[pair]]:
            choice[pair] = index
            graph.add_edge(*pair, weight=single[index])
    source, target = network.layer_index[network.input], network.layer_index[network.output]
    if not nx.has_path(graph, source, target):
        return None
    structure = structure_of(network)
    logits = torch.zeros(network.n_logits)
    exact_possible = monotone(cost)
    best: tuple[float, torch.Tensor] | None = None
    tried = 0
    paths = nx.shortest_simple_paths(graph, source, target, weight="weight")
    while True:
        chunk = list(itertools.islice(paths, BATCH))
        if not chunk:
            return Cheapest(best[0], best[1], exact_possible, tried) if best else None
        proposals = torch.zeros((len(chunk), n_edges), dtype=torch.bool)
        weights = []
        for row, path in enumerate(chunk):
            edges = [choice[pair] for pair in zip(path, path[1:])]
            proposals[row, edges] = True
            weights.append(sum(single[e] for e in edges))
        arch = sample_architecture(structure, logits, len(chunk), "mask", proposals)
        values = cost(arch.active).double().tolist()
        for row, weight in enumerate(weights):
            if exact_possible and best is not None and weight >= best[0]:
                return Cheapest(best[0], best[1], True, tried)
            tried += 1
            if best is None or values[row] < best[0]:
                best = (float(values[row]), arch.active[row].clone())
            if tried >= limit:
                return Cheapest(best[0], best[1], False, tried)
