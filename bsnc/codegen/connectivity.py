"""Connectivity of sampled architectures: from the proposed edges, which layers each example
reaches from the input (``connected``), which edges are drawn (proposed from a connected
source) and which of those are active (their destination reaches the output).

Two implementations of the same rule (DESIGN §4), checked against each other in the tests:

* :func:`by_levels` on the sampling device: every layer of one longest-path level at once,
  a handful of tensor operations per level and no host synchronisation;
* :func:`by_bits` for CPU tensors: each edge's B rows packed into one Python integer, so an
  edge costs three integer operations. Tensor operations cost microseconds each whatever
  their size, and on the CPU the level-by-level version took ~1.5 ms of a converged step
  that the static network runs in ~65 ms (CNF W=8, C=16).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch


class Structure(Protocol):
    """What connectivity reads of :class:`bsnc.codegen.runtime.Structure`."""

    n_layers: int
    input_index: int
    output_index: int
    edges_by_dst: list[tuple[int, int, int]]  # (edge, source, destination), by destination
    edges_by_src: list[tuple[int, int, int]]  # the same, by source

    def on(self, device: torch.device) -> Any:  # edge_src, edge_dst, levels_in, levels_out there
        ...


Connectivity = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # drawn [B, E], connected [B, L], active [B, E]


def connectivity(structure: Structure, proposal: torch.Tensor) -> Connectivity:
    """``drawn``, ``connected`` and ``active`` for ``proposal`` ([B, E] bool, fixed edges set)."""
    if proposal.device.type == "cpu":
        return by_bits(structure, proposal)
    return by_levels(structure, proposal)


def by_levels(structure: Structure, proposal: torch.Tensor) -> Connectivity:
    """Level by level, on ``proposal``'s device."""
    device = proposal.device
    tables = structure.on(device)
    batch, n_edges = proposal.shape
    src, dst = tables.edge_src, tables.edge_dst
    connected = torch.zeros((batch, structure.n_layers), dtype=torch.bool, device=device)
    connected[:, structure.input_index] = True
    drawn = torch.zeros((batch, n_edges), dtype=torch.bool, device=device)
    for incoming, layers, position in tables.levels_in:  # in topological order of levels
        h = proposal[:, incoming] & connected[:, src[incoming]]
        drawn[:, incoming] = h
        connected[:, layers] |= _any_per_layer(h, layers, position)

    reaches = torch.zeros((batch, structure.n_layers), dtype=torch.bool, device=device)
    reaches[:, structure.output_index] = connected[:, structure.output_index]
    active = torch.zeros_like(drawn)
    for outgoing, layers, position in reversed(tables.levels_out):
        a = drawn[:, outgoing] & reaches[:, dst[outgoing]]
        active[:, outgoing] = a
        reaches[:, layers] |= _any_per_layer(a, layers, position)
    return drawn, connected, active


def _any_per_layer(h: torch.Tensor, layers: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """[B, len(layers)]: whether any of a row's edges in ``h`` ([B, edges]) ends at each layer
    (edge j ends at ``layers[position[j]]``)."""
    hits = torch.zeros((h.shape[0], layers.numel()), dtype=torch.float32, device=h.device)
    return hits.index_add_(1, position, h.to(torch.float32)) > 0


def by_bits(structure: Structure, proposal: torch.Tensor) -> Connectivity:
    """Edge by edge over bit sets of rows, for a CPU ``proposal``."""
    batch = proposal.shape[0]
    proposed = _pack(proposal.numpy().T)
    connected = [0] * structure.n_layers
    connected[structure.input_index] = (1 << batch) - 1
    drawn = [0] * len(proposed)
    for edge, src, dst in structure.edges_by_dst:  # a layer's incoming edges before its outgoing ones
        h = proposed[edge] & connected[src]
        drawn[edge] = h
        connected[dst] |= h
    reaches = [0] * structure.n_layers
    reaches[structure.output_index] = connected[structure.output_index]
    active = [0] * len(proposed)
    for edge, src, dst in reversed(structure.edges_by_src):
        a = drawn[edge] & reaches[dst]
        active[edge] = a
        reaches[src] |= a
    return _unpack(drawn, batch), _unpack(connected, batch), _unpack(active, batch)


def _pack(rows: np.ndarray) -> list[int]:
    """One integer per row of ``rows`` ([N, B] bool): bit b is column b."""
    return [int.from_bytes(row, "little") for row in np.packbits(rows, axis=1, bitorder="little")]


def _unpack(values: list[int], batch: int) -> torch.Tensor:
    """[B, N] bool: bit b of ``values[n]`` at [b, n]."""
    width = (batch + 7) // 8
    raw = np.frombuffer(b"".join(v.to_bytes(width, "little") for v in values), dtype=np.uint8)
    bits = np.unpackbits(raw.reshape(len(values), width), axis=1, count=batch, bitorder="little")
    return torch.from_numpy(np.ascontiguousarray(bits.T)).bool()
