"""The FLOPs cost of a deep network in memory linear in its size: it held a dense float64 (and a
float32) [edges, layers] incidence, 3.5 GB for a 12,000-layer chain, and every call multiplied
the batch's masks by it."""

from __future__ import annotations

import math

import pytest
import torch

from bsnc.costs.analytic import FlopsCost
from bsnc.lang.frontend import load_network, network_from_program
from bsnc.lang.program import load_program
from tests.helpers import FABRICS

CHAIN = """
network chain(n: int = 3000) {
    input x : [1, 8, 8]
    layer l[0] : [4, 8, 8]
    fixed x -> l[0] : conv(4, k=3)
    for i in 1..n {
        layer l[i] : [4, 8, 8] post relu
        l[i - 1] -> l[i] as a : conv(4, k=1) >> bn
        l[i - 1] -> l[i] as skip : identity
    }
    output y : [10]
    fixed l[n] -> y : global_avgpool >> linear(10)
}
"""


def _dense(network, active):
    """The formula as it was written with a dense incidence: the reference."""
    E, L = len(network.edges), len(network.layers)
    incidence = torch.zeros((E, L), dtype=torch.float64)
    for i, edge in enumerate(network.edges):
        if not any(op.prim == "zero" for op in edge.ops) and network.layer(edge.dst).aggregate != "concat":
            incidence[i, network.layer_index[edge.dst]] = 1.0
    numel = torch.tensor([float(math.prod(layer.shape)) for layer in network.layers], dtype=torch.float64)
    macs = torch.tensor([float(e.macs()) for e in network.edges], dtype=torch.float64)
    a = active.to(torch.float64)
    inputs = a @ incidence
    return a @ macs + ((inputs - 1).clamp(min=0) * numel).sum(-1), (inputs - 1).clamp(min=0) * numel


@pytest.mark.parametrize("name, overrides", [("cnf.bsn", {"W": 2, "C": 4, "size": 8}), ("darts.bsn", {}),
                                             ("densenet.bsn", {})])
def test_sparse_flops_equal_the_dense_formula(name, overrides):
    network = network_from_program(load_program(FABRICS / name), overrides)
    cost = FlopsCost(network)
    torch.manual_seed(0)
    active = torch.rand((6, len(network.edges))) < 0.6
    want, additions = _dense(network, active)
    got = cost(active) + (cost.discount(active) if cost.discount else 0)  # the discount is apart
    assert torch.allclose(got, want)
    assert torch.allclose(cost.additions_per_layer(active), additions)
    assert torch.allclose(cost(active[:1]), cost(active)[:1])


def test_a_deep_chain_costs_in_linear_memory(tmp_path):
    (tmp_path / "chain.bsn").write_text(CHAIN)
    network = load_network(tmp_path / "chain.bsn", {"n": "3000"})
    cost = FlopsCost(network)
    held = sum(t.numel() for t in vars(cost).values() if isinstance(t, torch.Tensor))
    assert held <= 4 * (len(network.edges) + len(network.layers))  # a dense incidence was 2 x 6,002 x 3,003
    full = cost(torch.ones((64, len(network.edges)), dtype=torch.bool))
    assert float(full[0]) == pytest.approx(float(cost.full()))
