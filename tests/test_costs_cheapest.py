"""The cheapest architecture that reaches the output: exact (against every architecture of small
spaces, fixed edges switched on by connectivity included) for flops and params, an estimate
otherwise."""

from __future__ import annotations

import itertools

import pytest
import torch

from bsnc.codegen.architecture import structure_of
from bsnc.codegen.runtime import sample_architecture
from bsnc.costs.cheapest import cheapest_consistent
from bsnc.costs.registry import parse_cost
from bsnc.lang.frontend import load_network
from tests.helpers import FABRICS

# a fixed edge out of `a` is switched on whenever `a` is connected, and its destination `c`
# reaches the output through a fixed edge too: the path x -> a -> y is cheap on its own, but pays
# for a -> c -> y, and then x -> y is cheaper
FORCED = """
network forced(C: int = 4) {
    input x : [3, 8, 8]
    layer a : [C, 8, 8] post relu
    layer b : [C, 8, 8] post relu
    layer c : [C, 8, 8] post relu
    output y : [10]
    x -> a : conv(C, k=1)
    x -> b : conv(C, k=3)
    fixed a -> c : conv(C, k=5)
    fixed c -> y : global_avgpool >> linear(10)
    a -> y : global_avgpool >> linear(10)
    b -> y : global_avgpool >> linear(10)
    x -> y : flatten >> linear(10)
}
"""


def _brute_force(network, cost) -> float:
    structure = structure_of(network)
    stochastic = [i for i, e in enumerate(network.edges) if e.stochastic]
    best = float("inf")
    logits = torch.zeros(len(stochastic))
    for bits in itertools.product([False, True], repeat=len(stochastic)):
        proposal = torch.ones(len(network.edges), dtype=torch.bool)
        proposal[stochastic] = torch.tensor(bits, dtype=torch.bool)
        arch = sample_architecture(structure, logits, 1, "mask", proposal)
        if not bool(arch.inconsistent[0]):
            best = min(best, float(cost(arch.active)[0]))
    return best


@pytest.mark.parametrize("cost_name", ["flops", "params"])
@pytest.mark.parametrize("case", ["forced", "cnf"])
def test_the_cheapest_architecture_is_exact_against_every_architecture(tmp_path, case, cost_name):
    if case == "forced":
        path = tmp_path / "forced.bsn"
        path.write_text(FORCED)
        network = load_network(path, {})
    else:
        network = load_network(FABRICS / "cnf.bsn", {"W": "2", "C": "2", "size": "4", "in_channels": "1"})
    cost = parse_cost(cost_name, network)
    found = cheapest_consistent(network, cost, enumerate_limit=0)
    assert found.exact
    assert found.cost == pytest.approx(_brute_force(network, cost))
    assert float(cost(found.active.unsqueeze(0))[0]) == pytest.approx(found.cost), "the mask has the cost"


def test_a_path_that_switches_on_a_fixed_edge_pays_for_it(tmp_path):
    path = tmp_path / "forced.bsn"
    path.write_text(FORCED)
    network = load_network(path, {})
    found = cheapest_consistent(network, parse_cost("flops", network), enumerate_limit=0)
    keys = {e.key for e, on in zip(network.edges, found.active.tolist()) if on}
    assert "a->c" not in keys and "x->a" not in keys, "going through a would switch on a -> c"


def test_a_cost_that_is_not_monotone_gives_an_estimate(tmp_path):
    network = load_network(FABRICS / "cnf.bsn", {"W": "2", "C": "2", "size": "4", "in_channels": "1"})
    found = cheapest_consistent(network, parse_cost("distributed:n=2", network), enumerate_limit=0)
    assert not found.exact and found.kind == "estimate"
    assert found.cost >= _brute_force(network, parse_cost("distributed:n=2", network))


def test_a_small_space_is_enumerated_exact_even_for_a_cost_that_is_not_monotone():
    network = load_network(FABRICS / "cnf.bsn", {"W": "2", "C": "2", "size": "4", "in_channels": "1"})
    cost = parse_cost("distributed:n=2", network)
    found = cheapest_consistent(network, cost)
    assert found.exact and found.paths_tried == 2 ** len(network.stochastic_edges)
    assert found.cost == _brute_force(network, cost)
    walked = cheapest_consistent(network, cost, enumerate_limit=2 ** len(network.stochastic_edges) - 1)
    assert not walked.exact and walked.paths_tried < found.paths_tried, "one architecture over the limit: walked"
