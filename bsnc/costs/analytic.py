"""Costs counted from the network's shapes: multiply-accumulates (flops) and parameters."""

from __future__ import annotations

import math

import torch

from bsnc.costs.base import Additive, Cost, as_float_masks
from bsnc.ir import Network


class FlopsCost(Cost):
    """Multiply-accumulates of conv and linear modules, plus one addition per element for each
    extra input of a `sum` (or `mean`) aggregation (an edge through `zero` is not an input)."""

    name = "flops"
    unit = ""

    def __init__(self, network: Network):
        super().__init__(network)
        self.edge_macs = torch.tensor([float(e.macs()) for e in network.edges], dtype=torch.float64)
        dst = torch.tensor([network.layer_index[e.dst] for e in network.edges], dtype=torch.long)
        self.incidence = torch.zeros((len(network.edges), len(network.layers)), dtype=torch.float64)
        self.incidence[torch.arange(len(network.edges)), dst] = 1.0
        # an edge through `zero` adds nothing to its layer: it causes no addition
        for i, edge in enumerate(network.edges):
            if any(op.prim == "zero" for op in edge.ops):
                self.incidence[i] = 0.0
        self.layer_numel = torch.tensor([float(math.prod(layer.shape)) for layer in network.layers], dtype=torch.float64)
        self.incidence32 = self.incidence.to(torch.float32)
        self.edge_weight = self.edge_macs + self.incidence @ self.layer_numel

    def __call__(self, active: torch.Tensor) -> torch.Tensor:
        # sum over layers of numel * max(0, inputs - 1) = a @ (macs + numel of dst) - present @ numel
        a = torch.as_tensor(active).to(torch.float32)
        present = (a @ self.incidence32) > 0
        return a.to(torch.float64) @ self.edge_weight - present.to(torch.float64) @ self.layer_numel

    def per_edge(self) -> torch.Tensor:
        return self.edge_macs

    def additions_per_layer(self, active: torch.Tensor) -> torch.Tensor:
        inputs = as_float_masks(active) @ self.incidence
        return (inputs - 1).clamp(min=0) * self.layer_numel


class ParamsCost(Additive):
    """Parameters of the active edges' modules: what the pruned model holds."""

    name = "params"
    unit = ""

    def __init__(self, network: Network):
        super().__init__(network, [float(e.param_count()) for e in network.edges])
