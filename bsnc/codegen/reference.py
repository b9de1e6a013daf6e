"""A reference interpreter: walks the IR with networkx and runs every edge on every row,
multiplying each output by its mask (the strategy of the paper's original code).

It shares weights with a generated module but none of its sampling or execution code, so it is
the oracle the tests compare generated code against, and the baseline of the benchmarks.
"""

from __future__ import annotations

import networkx as nx
import torch
from torch import nn

from bsnc.codegen.runtime import sample_architecture
from bsnc.ir import Network


def architecture_from_mask(network: Network, proposal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row: (drawn, active, connected-output) from a proposed [B, E] mask, with the
    connectivity rule applied by walking the graph row by row."""
    batch = proposal.shape[0]
    keys = [e.key for e in network.edges]
    column = {key: i for i, key in enumerate(keys)}
    drawn = torch.zeros(proposal.shape, dtype=torch.bool)
    active = torch.zeros(proposal.shape, dtype=torch.bool)
    reached = torch.zeros(batch, dtype=torch.bool)
    order = list(nx.topological_sort(network.graph))
    for b in range(batch):
        connected = {network.input}
        on: set[str] = set()
        for layer in order:
            for u, _, key in network.graph.in_edges(layer, keys=True):
                edge = network.graph.edges[u, layer, key]["edge"]
                if u in connected and (edge.fixed or bool(proposal[b, column[key]])):
                    on.add(key)
                    connected.add(layer)
        useful = {network.output} if network.output in connected else set()
        for layer in reversed(order):
            for _, v, key in network.graph.out_edges(layer, keys=True):
                if key in on and v in useful:
                    useful.add(layer)
        for i, key in enumerate(keys):
            drawn[b, i] = key in on
            edge = network.edge(key)
            active[b, i] = key in on and edge.dst in useful
        reached[b] = network.output in connected
    return drawn, active, reached


def reference_forward(network: Network, module: nn.Module, x: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """The network's output, computing every edge on every row and masking by ``active``."""
    batch = x.shape[0]
    values: dict[str, torch.Tensor] = {network.input: x}
    edges_by_key = {e.key: i for i, e in enumerate(network.edges)}
    edge_modules = dict(zip(type(module).EDGE_KEYS, module.edges.values()))
    posts = dict(zip(type(module).POST_LAYERS, module.post.values())) if type(module).POST_LAYERS else {}
    for layer_name in nx.topological_sort(network.graph):
        if layer_name == network.input:
            continue
        layer = network.layer(layer_name)
        total = None
        count = torch.zeros(batch, dtype=x.dtype, device=x.device)
        slots: list[tuple[int, torch.Tensor]] = []
        for u, _, key in network.graph.in_edges(layer_name, keys=True):
            mask = active[:, edges_by_key[key]].to(x.dtype).to(x.device)
            out = edge_modules[key](values[u])
            term = out * mask.view((-1,) + (1,) * (out.dim() - 1))
            count = count + mask
            if layer.aggregate == "concat":
                slots.append((network.edge(key).slot or 0, term))
            else:
                total = term if total is None else total + term
        if layer.aggregate == "concat":  # side by side, by first channel; absent inputs are zeros
            total = torch.cat([term for _, term in sorted(slots, key=lambda item: item[0])], dim=1)
        elif layer.aggregate == "mean":
            total = total / count.clamp(min=1).view((-1,) + (1,) * (total.dim() - 1))
        if layer.post:
            total = posts[layer_name](total)
        values[layer_name] = total
    return values[network.output]


class ReferenceInterpreter(nn.Module):
    """Wraps a generated stochastic module: same weights, gates and sampling (so ``module.last``
    holds the architecture and its log-probability), but the masked-everything forward pass."""

    def __init__(self, network: Network, module: nn.Module):
        super().__init__()
        self.network = network
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.module
        arch = sample_architecture(m.structure, m.gate_logits, x.shape[0], m.current_mode(), m.mask, m.generator)
        m.last = arch
        return reference_forward(self.network, m, x, arch.active)
