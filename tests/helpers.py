"""Small builders shared by the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from bsnc.api import compile_network
from bsnc.ir import Network
from bsnc.lang.frontend import load_network, network_from_text

ROOT = Path(__file__).resolve().parent.parent
FABRICS = ROOT / "fabrics"

# -D overrides that make each shipped fabric small enough for a unit test.
SMALL = {
    "cnf.bsn": {"W": 3, "C": 4, "size": 8},
    "cnf_w1.bsn": {"C": 4, "size": 8},
    "cnf_w2.bsn": {"C": 4, "size": 8},
    "cnf_w4.bsn": {"C": 4, "size": 8},
    "cnf_w8.bsn": {"C": 4, "size": 8},
    "cnf_seg.bsn": {"C": 4, "size": 8, "W": 3},
    "resnet_fabric_n18.bsn": {"width": 2, "size": 8},
    "proxyless.bsn": {"n": 1, "width": 2, "size": 8},
    "densenet.bsn": {"L": 2, "growth": 2, "size": 8},
    "darts.bsn": {"cells": 4, "nodes": 2, "C": 2, "size": 8},
    "unet.bsn": {"depth": 2, "C": 2, "size": 8},
}


def small_overrides(path: Path) -> dict[str, Any]:
    if path.name in SMALL:
        return dict(SMALL[path.name])
    if path.name.startswith("resnet"):
        return {"width": 4, "size": 8}
    return {}


def build(path: Path | str, **overrides: Any) -> tuple[Network, torch.nn.Module]:
    network = load_network(path, overrides)
    return network, compile_network(network)()


def build_text(text: str, **overrides: Any) -> tuple[Network, torch.nn.Module]:
    network = network_from_text(text, overrides)
    return network, compile_network(network)()


def input_for(network: Network, batch: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    shape = network.layer(network.input).shape
    return torch.randn((batch,) + tuple(shape), dtype=dtype)



def matches_reference(network: Network, module: torch.nn.Module, batch: int = 10, p: float = 0.6) -> torch.Tensor:
    """Run ``module`` in float64 on random proposals (each edge proposed with probability ``p``)
    and assert that its architectures and outputs are the reference interpreter's; the rows that
    reach the output."""
    from bsnc.codegen.reference import architecture_from_mask, reference_forward

    module = module.double().eval()
    x = input_for(network, batch, torch.float64)
    proposal = torch.rand(batch, len(network.edges)) < p
    module.set_mode("mask", proposal)
    out = module(x)
    drawn, active, reached = architecture_from_mask(network, proposal)
    assert torch.equal(module.last.drawn, drawn) and torch.equal(module.last.active, active)
    assert torch.equal(module.last.inconsistent, ~reached)
    assert torch.allclose(out, reference_forward(network, module, x, active), atol=1e-12)
    assert torch.all(out[~reached] == 0), "an inconsistent example predicts zeros"
    return reached

# a small network with a choice group (`pick`), a shared gate (`g`) and a concat layer (`c`);
# READER: the module that reads `c` into the output
DECISIONS_NET = """
network t(C: int = 4) {
    input x : [2, 4, 4]
    layer a : [C, 4, 4] post relu
    layer b : [C, 4, 4]
    layer c : [3 * C, 4, 4] aggregate concat
    output y : [5]
    fixed x -> a : conv(C, k=1)
    for i in 0..1 { x -> b as op[i] : conv(C, k=3) choose pick }
    x -> b as none : zero choose pick
    a -> c : conv(C, k=1) gate g
    b -> c : identity gate g
    x -> c : conv(C, k=1) prob 0.7
    fixed c -> y : READER
}
"""
