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

A search space of at most :data:`ENUMERATE_LIMIT` architectures (every value of every gate and
choice group) is not walked but enumerated: the result is then exact for every cost.

With shared gates and choice groups a path's edges are not enough to propose: every decision a
path edge belongs to takes that edge's value (all its edges with that value are proposed), the
untouched gates are off, and the untouched choice groups take their `zero` option, or without
one their cheapest option. The argument above needs every edge to be a decision of its own
(and an edge's cost not to depend on other edges), so the result is then an estimate, as it is
when absent `concat` slots lower the cost of an edge out of the layer.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import networkx as nx
import torch

from bsnc.codegen.architecture import structure_of
from bsnc.codegen.runtime import sample_architecture
from bsnc.costs.analytic import FlopsCost, ParamsCost
from bsnc.costs.base import Cost
from bsnc.ir import Network

PATH_LIMIT = 5000  # paths tried before settling for an estimate
# with shared decisions a path's architecture may cost far more than its edges (a shared group
# switches its option on in every cell), so the walk rarely stops early, and the walk's paths
# grow costlier to find: settle sooner
DECISION_PATH_LIMIT = 256
BATCH = 64
ENUMERATE_LIMIT = 4096  # architectures costed one by one, in batches of ENUMERATE_BATCH
ENUMERATE_BATCH = 512


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
    """Whether adding an edge can never lower the cost (what lets the walk stop early, and makes
    it exact on plain networks)."""
    if isinstance(cost, (FlopsCost, ParamsCost)):
        return True
    vector = cost.per_edge() if cost.additive else None
    return vector is not None and bool((vector >= 0).all())


def _discounted(cost: Cost) -> bool:
    """Whether an edge's charge depends on other edges (absent `concat` slots)."""
    return isinstance(cost, (FlopsCost, ParamsCost)) and bool(cost.discount)


class _Decisions:
    """Makes a path's edges a legal proposal of a network with shared gates or choice groups."""

    def __init__(self, network: Network, single: list[float]):
        self.stochastic = [e.stochastic for e in network.edges]
        self.decision = [e.decision for e in network.edges]
        self.option = [e.option for e in network.edges]
        # members[d][value]: the edges that decision d's value switches on
        self.members: list[dict[int, list[int]]] = [{} for _ in network.decisions]
        for index, edge in enumerate(network.edges):
            if edge.stochastic:
                self.members[edge.decision].setdefault(edge.option, []).append(index)
        # untouched decisions: a gate off, a group its `zero` option (nothing on) or its cheapest
        self.default_edges: list[list[int]] = []
        for d, decision in enumerate(network.decisions):
            if decision.kind == "choice" and decision.zero is None:
                options = self.members[d]
                cheapest = min(options, key=lambda v: (sum(single[e] for e in options[v]), v))
                self.default_edges.append(options[cheapest])
            else:
                self.default_edges.append([])

    def proposal(self, path_edges: list[int]) -> list[int] | None:
        """The stochastic edges to propose for a path, or None when the path takes two values
        of one decision (two options of a choice group)."""
        values: dict[int, int] = {}
        for e in path_edges:
            if not self.stochastic[e]:
                continue
            d, v = self.decision[e], self.option[e]
            if values.setdefault(d, v) != v:
                return None
        edges: list[int] = []
        for d, default in enumerate(self.default_edges):
            edges.extend(self.members[d].get(values[d], []) if d in values else default)
        return edges


def cheapest_consistent(network: Network, cost: Cost, limit: int | None = None,
                        enumerate_limit: int = ENUMERATE_LIMIT) -> Cheapest | None:
    """The cheapest architecture of ``network`` that reaches its output under ``cost``, trying
    at most ``limit`` paths (default: :data:`PATH_LIMIT`, :data:`DECISION_PATH_LIMIT` with shared
    gates or choice groups); None when no path leads from the input to the output (or, with
    decisions, none of the paths tried is legal). A space of at most ``enumerate_limit``
    architectures is enumerated instead."""
    enumerated = _enumerate(network, cost, enumerate_limit)
    if enumerated is not NotImplemented:
        return enumerated
    if limit is None:
        limit = PATH_LIMIT if network.plain else DECISION_PATH_LIMIT
    n_edges = len(network.edges)
    n_layers = len(network.layers)
    single = cost(torch.eye(n_edges, dtype=torch.bool)).double().clamp(min=0).tolist() if n_edges else []
    # a monotone cost is at least a path's single-edge costs once the path is proposed, so the walk
    # may stop at the first path whose weight reaches the best cost found; the result is the least
    # cost of *every* path's architecture, but exact only in the case the module docstring proves
    bounded = monotone(cost)
    exact_possible = bounded and network.plain and not _discounted(cost)
    # parallel edges may differ in more than their own cost (their decisions, their slots): then
    # a node per edge lets the walk try each of them
    edge_nodes = not network.plain or _discounted(cost)
    graph = nx.DiGraph()
    graph.add_nodes_from(range(n_layers))
    choice: dict[tuple[int, int], int] = {}  # (src, dst) layer pair -> the cheapest parallel edge
    for index, edge in enumerate(network.edges):
        pair = (network.layer_index[edge.src], network.layer_index[edge.dst])
        if edge_nodes:
            graph.add_edge(pair[0], n_layers + index, weight=single[index])
            graph.add_edge(n_layers + index, pair[1], weight=0.0)
        elif pair not in choice or single[index] < single[choice[pair]]:
            choice[pair] = index
            graph.add_edge(*pair, weight=single[index])
    source, target = network.layer_index[network.input], network.layer_index[network.output]
    if not nx.has_path(graph, source, target):
        return None
    structure = structure_of(network)
    logits = torch.zeros(network.n_logits)
    decisions = None if network.plain else _Decisions(network, single)
    best: tuple[float, torch.Tensor] | None = None
    tried = 0
    paths = nx.shortest_simple_paths(graph, source, target, weight="weight")
    while True:
        chunk = list(itertools.islice(paths, BATCH))
        if not chunk:
            return Cheapest(best[0], best[1], exact_possible, tried) if best else None
        proposals = torch.zeros((len(chunk), n_edges), dtype=torch.bool)
        weights: list[float | None] = []
        for row, path in enumerate(chunk):
            if edge_nodes:
                edges = [node - n_layers for node in path if node >= n_layers]
            else:
                edges = [choice[pair] for pair in zip(path, path[1:])]
            weights.append(sum(single[e] for e in edges))
            if decisions is not None:
                legal = decisions.proposal(edges)
                if legal is None:
                    weights[-1] = None  # two options of one choice group: no architecture
                    continue
                edges = legal
            proposals[row, edges] = True
        arch = sample_architecture(structure, logits, len(chunk), "mask", proposals)
        values = cost(arch.active).double().tolist()
        for row, weight in enumerate(weights):
            if bounded and best is not None and weight is not None and weight >= best[0]:
                return Cheapest(best[0], best[1], exact_possible, tried)
            tried += 1
            if weight is not None and not bool(arch.inconsistent[row]) and (best is None or values[row] < best[0]):
                best = (float(values[row]), arch.active[row].clone())
            if tried >= limit:
                return Cheapest(best[0], best[1], False, tried) if best else None


def _enumerate(network: Network, cost: Cost, limit: int) -> Cheapest | None:
    """The exact cheapest consistent architecture of a small search space, by costing every
    proposal; NotImplemented when the space has more than ``limit`` of them."""
    n_edges = len(network.edges)
    members: list[list[list[int]]] = [[[] for _ in range(d.width if d.kind == "choice" else 2)]
                                      for d in network.decisions]
    for index, edge in enumerate(network.edges):
        if edge.stochastic:
            members[edge.decision][edge.option].append(index)
    if math.prod(len(values) for values in members) > limit:
        return NotImplemented
    structure = structure_of(network)
    logits = torch.zeros(network.n_logits)
    best: tuple[float, torch.Tensor] | None = None
    tried = 0
    choices = itertools.product(*members)
    while chunk := list(itertools.islice(choices, ENUMERATE_BATCH)):
        proposals = torch.zeros((len(chunk), n_edges), dtype=torch.bool)
        for row, values in enumerate(chunk):
            proposals[row, [e for edges in values for e in edges]] = True
        arch = sample_architecture(structure, logits, len(chunk), "mask", proposals)
        values = cost(arch.active).double()
        values[arch.inconsistent] = math.inf
        row = int(values.argmin())
        if math.isfinite(values[row]) and (best is None or float(values[row]) < best[0]):
            best = (float(values[row]), arch.active[row].clone())
        tried += len(chunk)
    return Cheapest(best[0], best[1], True, tried) if best else None
