"""Costs counted from the network's shapes: multiply-accumulates (flops) and parameters."""

from __future__ import annotations

import math
from typing import Callable

import torch

from bsnc.costs.base import Cost, as_float_masks
from bsnc.ir import ZERO_KEEPING, Network, OpCall
from bsnc.ops import REGISTRY, Shape

# what one head op is charged in full: (op, its input shape, its output shape) -> count
HeadCharge = Callable[[OpCall, Shape, Shape], int]


def head_macs(op: OpCall, shape_in: Shape, shape_out: Shape) -> int:
    return REGISTRY[op.prim].macs(shape_in, shape_out, op.kwargs)


def head_weights(op: OpCall, shape_in: Shape, shape_out: Shape) -> int:
    """The head's parameters without its bias (one per output channel or feature), which does not
    depend on the input channels."""
    kwargs = op.kwargs
    return REGISTRY[op.prim].params(shape_in, kwargs) - (shape_out[0] if kwargs.get("bias", False) else 0)


class SlotDiscount:
    """What an edge out of a `concat` layer is *not* charged for the slots of its input that are
    absent: for each pair (consumer e', slot edge s into e''s source layer L) with e' active and s
    not, ``charge(head of e') * channels(s) / channels(L)``. A consumer counts when its
    :meth:`~bsnc.ir.Edge.head` exists and L's `post` keeps zero channels zero (otherwise an absent
    slot is not zero where the head reads it, and the head needs all its input weights), and only
    in architectures where no active edge out of L lacks a head: such a reader needs every channel,
    so the pruned network keeps L whole (:func:`~bsnc.codegen.architecture.prune`), and every
    head with it."""

    def __init__(self, network: Network, charge: HeadCharge):
        consumers: list[int] = []
        slots: list[int] = []
        amounts: list[float] = []
        pair_layer: list[int] = []
        columns: dict[str, int] = {}  # a discounted layer's column in ``whole_readers``
        whole_readers: list[list[int]] = []  # per discounted layer: its edges that read every channel
        for index, edge in enumerate(network.edges):
            layer = network.layer(edge.src)
            head = edge.head() if layer.aggregate == "concat" else None
            if head is None or any(op.prim not in ZERO_KEEPING for op in layer.post):
                continue
            if edge.src not in columns:
                columns[edge.src] = len(whole_readers)
                whole_readers.append([network.edge_index[e.key] for e in network.out_edges(edge.src)
                                      if e.head() is None])
            full = charge(edge.ops[head], edge.shapes[head], edge.shapes[head + 1])
            for slot in network.in_edges(layer.name):
                if slot.slot is None:
                    continue
                consumers.append(index)
                slots.append(network.edge_index[slot.key])
                pair_layer.append(columns[edge.src])
                # exact: a conv's or linear's charge is a multiple of its input channels
                amounts.append(full * slot.shapes[-1][0] / layer.shape[0])
        self.n_edges = len(network.edges)
        self.consumers = torch.tensor(consumers, dtype=torch.long)
        self.slots = torch.tensor(slots, dtype=torch.long)
        self.amounts = torch.tensor(amounts, dtype=torch.float64)
        self.pair_layer = torch.tensor(pair_layer, dtype=torch.long)
        self.whole_readers = torch.zeros((self.n_edges, len(whole_readers)), dtype=torch.float32)
        for column, readers in enumerate(whole_readers):
            self.whole_readers[readers, column] = 1.0

    def __bool__(self) -> bool:
        return bool(self.consumers.numel())

    def _absent(self, active: torch.Tensor) -> torch.Tensor:
        """[B, P] float: the pair's consumer is active, its slot edge is not, and no edge that
        reads every channel of their layer is active."""
        a = torch.as_tensor(active).bool()
        whole = (a.to(torch.float32) @ self.whole_readers) > 0  # [B, discounted layers]
        return (a[:, self.consumers] & ~a[:, self.slots] & ~whole[:, self.pair_layer]).to(torch.float64)

    def __call__(self, active: torch.Tensor) -> torch.Tensor:
        """[B] the total discount of each row of active masks [B, E]."""
        return self._absent(active) @ self.amounts

    def per_edge(self, active: torch.Tensor) -> torch.Tensor:
        """[B, E] each active consumer's discount (zero for every other edge)."""
        absent = self._absent(active)
        out = torch.zeros((absent.shape[0], self.n_edges), dtype=torch.float64)
        return out.index_add(1, self.consumers, absent * self.amounts)


class FlopsCost(Cost):
    """Multiply-accumulates of conv and linear modules, plus one addition per element for each
    extra input of a `sum` (or `mean`) aggregation (an edge through `zero` is not an input; a
    `concat` layer adds nothing). The conv or linear that starts an edge out of a `concat` layer
    is charged only for the channels of its active slots (:class:`SlotDiscount`)."""

    name = "flops"
    unit = ""

    def __init__(self, network: Network):
        super().__init__(network)
        self.edge_macs = torch.tensor([float(e.macs()) for e in network.edges], dtype=torch.float64)
        # the edges that add an input to their layer (an edge through `zero` adds nothing, and
        # concatenation adds nothing at all) and that layer: index lists, not a dense [edges,
        # layers] incidence, which took memory and time quadratic in the depth of a network
        adds = [i for i, edge in enumerate(network.edges)
                if not any(op.prim == "zero" for op in edge.ops) and network.layer(edge.dst).aggregate != "concat"]
        self.adding = torch.tensor(adds, dtype=torch.long)
        self.adding_dst = torch.tensor([network.layer_index[network.edges[i].dst] for i in adds], dtype=torch.long)
        self.layer_numel = torch.tensor([float(math.prod(layer.shape)) for layer in network.layers], dtype=torch.float64)
        self.edge_weight = self.edge_macs.clone()
        self.edge_weight[self.adding] += self.layer_numel[self.adding_dst]
        self.discount = SlotDiscount(network, head_macs)

    def __call__(self, active: torch.Tensor) -> torch.Tensor:
        # sum over layers of numel * max(0, inputs - 1) = a @ (macs + numel of dst) - present @ numel
        a = as_float_masks(active)
        present = self._inputs(a) > 0
        value = a @ self.edge_weight - present.to(torch.float64) @ self.layer_numel
        return value - self.discount(active) if self.discount else value

    def per_edge(self) -> torch.Tensor:
        return self.edge_macs

    def charged(self, active: torch.Tensor) -> torch.Tensor:
        """[B, E] each edge's MACs in the architectures of ``active`` (absent slots discounted)."""
        return self.edge_macs - self.discount.per_edge(active)

    def additions_per_layer(self, active: torch.Tensor) -> torch.Tensor:
        inputs = self._inputs(as_float_masks(active))
        return (inputs - 1).clamp(min=0) * self.layer_numel

    def _inputs(self, a: torch.Tensor) -> torch.Tensor:
        """[..., L] how many active edges add an input to each layer, for masks ``a`` [..., E]."""
        counts = a.new_zeros(a.shape[:-1] + (len(self.layer_numel),))
        if not len(self.adding):
            return counts
        return counts.index_add_(-1, self.adding_dst.to(a.device), a.index_select(-1, self.adding.to(a.device)))


class ParamsCost(Cost):
    """Parameters of the active edges' modules: what the pruned model holds (the conv or linear
    that starts an edge out of a `concat` layer loses the input weights of absent slots, when
    export narrows the layer).
    ``additive`` (the per-edge vector dotted with the mask) unless the network has such an edge."""

    name = "params"
    unit = ""

    def __init__(self, network: Network):
        super().__init__(network)
        self.vector = torch.tensor([float(e.param_count()) for e in network.edges], dtype=torch.float64)
        self.discount = SlotDiscount(network, head_weights)
        self.additive = not self.discount

    def __call__(self, active: torch.Tensor) -> torch.Tensor:
        value = as_float_masks(active) @ self.vector
        return value - self.discount(active) if self.discount else value

    def per_edge(self) -> torch.Tensor:
        return self.vector

    def charged(self, active: torch.Tensor) -> torch.Tensor:
        """[B, E] each edge's parameters in the architectures of ``active``."""
        return self.vector - self.discount.per_edge(active)
