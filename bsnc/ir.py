"""The intermediate representation: a checked networkx.MultiDiGraph of layers and edge modules,
with one deterministic topological order (ties broken by natural name order)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterator

import networkx as nx

from bsnc.errors import Span
from bsnc.ops import REGISTRY, ModuleSpec, Shape

Value = int | float | bool | str
# per-channel operations that keep a zero channel zero: a `concat` slot that is absent from their
# input is absent from their output, so the conv or linear after them can drop its weights
ZERO_KEEPING = frozenset({"identity", "relu", "relu6", "hswish", "tanh", "gelu", "dropout", "maxpool", "avgpool",
                          "upsample", "global_avgpool", "global_maxpool", "flatten"})
DEFAULT_LOGIT = 3.0  # a stochastic edge starts at sigmoid(3) ~ 0.95, the paper's initialisation


@dataclass(frozen=True)
class OpCall:
    """A primitive with its arguments resolved, in schema order."""

    prim: str
    args: tuple[tuple[str, Any], ...]
    span: Span | None = field(default=None, compare=False, repr=False)  # where the primitive is written
    site: Span | None = field(default=None, compare=False, repr=False)  # the call in the edge or layer

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.args)

    def signature(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.args)
        return f"{self.prim}({inner})" if inner else self.prim


@dataclass(frozen=True)
class ResolvedCall:
    """A stage of an edge's module expression as written (primitive or module type), with its
    argument values; export prints these back."""

    name: str
    args: tuple[tuple[str | None, Value], ...]


@dataclass(frozen=True)
class Layer:
    name: str
    base: str
    indices: tuple[int, ...]
    kind: str  # "input", "output" or "layer"
    shape: Shape
    aggregate: str = "sum"
    post: tuple[OpCall, ...] = ()
    position: tuple[float, float] | None = None
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Decision:
    """One learned random choice per example: an on/off *gate* (one logit, γ = sigmoid) shared by
    the edges that name it, or an edge's own; or a *choice* group (a logit per option, softmax)
    whose options are the member labels, then `zero` ("none of them") when a member is `zero`."""

    name: str  # the `gate`/`choose` name, or the edge key of an edge's own gate
    kind: str  # "gate" or "choice"
    offset: int  # index of the first logit in the network's gate logits
    init_logits: tuple[float, ...]
    options: tuple[str, ...] = ()  # choice: the member labels, in order of first appearance
    zero: str | None = None  # choice: the label of its `zero` member, the "none" option
    shared: bool = False  # declared by name (`gate G`, `choose G`), not an edge's own gate
    span: Span | None = field(default=None, compare=False, repr=False)

    @property
    def width(self) -> int:
        return len(self.init_logits)

    def option_names(self) -> tuple[str, ...]:
        return self.options + ((self.zero,) if self.zero is not None else ())


@dataclass(frozen=True)
class Edge:
    key: str  # stable and unique: "src->dst" or "src->dst:name"
    src: str
    dst: str
    name: str | None
    fixed: bool
    ops: tuple[OpCall, ...]
    calls: tuple[ResolvedCall, ...]
    init_prob: float | None
    shapes: tuple[Shape, ...] = ()  # input shape, then the shape after each op
    extra_macs: int = 0  # charged by `cost N` of the module types the edge uses
    group: tuple[str, str] | None = None  # as written: ("gate", G) or ("choose", G)
    decision: int = -1  # index into Network.decisions (-1: fixed)
    option: int = 1  # the decision's value that switches the edge on (a gate: 1; a choice: its option)
    slot: int | None = None  # first channel of its output in a `concat` destination
    span: Span | None = field(default=None, compare=False, repr=False)
    group_span: Span | None = field(default=None, compare=False, repr=False)
    src_span: Span | None = field(default=None, compare=False, repr=False)
    dst_span: Span | None = field(default=None, compare=False, repr=False)

    @property
    def stochastic(self) -> bool:
        return not self.fixed

    def module_specs(self) -> list[ModuleSpec]:
        return [REGISTRY[op.prim].torch(shape, op.kwargs) for op, shape in zip(self.ops, self.shapes)]

    def param_count(self) -> int:
        return sum(REGISTRY[op.prim].params(shape, op.kwargs) for op, shape in zip(self.ops, self.shapes))

    def macs(self) -> int:
        return self.extra_macs + sum(
            REGISTRY[op.prim].macs(self.shapes[i], self.shapes[i + 1], op.kwargs)
            for i, op in enumerate(self.ops)
        )

    def head(self) -> int | None:
        """The op that reads this edge's input channel by channel, when the edge leaves a
        `concat` layer: its first ``conv`` with ``groups=1`` or ``linear``, if only
        :data:`ZERO_KEEPING` operations come before it (None otherwise). Its MACs and weights
        scale with the input channels that are present; export slices its input weights."""
        for index, op in enumerate(self.ops):
            if (op.prim == "conv" and op.kwargs.get("groups", 1) == 1) or op.prim == "linear":
                return index
            if op.prim not in ZERO_KEEPING:
                return None
        return None

    def signature(self) -> str:
        """The op chain and input shape: what determines the module's cost on a device."""
        chain = " >> ".join(op.signature() for op in self.ops)
        return f"{chain} @ {list(self.shapes[0])}"


def natural_key(name: str) -> tuple:
    """Order names so that n[2] comes before n[10]."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", name) if p)


@dataclass
class Network:
    """A checked super network. ``layers`` and ``edges`` are in canonical order: layers
    topologically, edges by (destination, source, key) in that order."""

    name: str
    params: dict[str, Value]
    graph: nx.MultiDiGraph
    input: str
    output: str
    layers: list[Layer]
    edges: list[Edge]
    source: str = ""  # file name as shown to the user
    source_hash: str = ""
    modules_used: tuple[str, ...] = ()
    decisions: list[Decision] = field(default_factory=list)  # in order of their first stochastic edge

    @property
    def n_logits(self) -> int:
        return sum(d.width for d in self.decisions)

    @property
    def plain(self) -> bool:
        """Every stochastic edge has a gate of its own (the paper's super networks): then the
        gate logits are one per stochastic edge, in edge order."""
        return all(d.kind == "gate" and not d.shared for d in self.decisions)

    def decision_edges(self, index: int) -> list[Edge]:
        return [e for e in self.edges if e.decision == index]

    @cached_property
    def layer_index(self) -> dict[str, int]:
        return {layer.name: i for i, layer in enumerate(self.layers)}

    @cached_property
    def edge_index(self) -> dict[str, int]:
        return {edge.key: i for i, edge in enumerate(self.edges)}

    def layer(self, name: str) -> Layer:
        return self.layers[self.layer_index[name]]

    def edge(self, key: str) -> Edge:
        return self.edges[self.edge_index[key]]

    def in_edges(self, layer: str) -> list[Edge]:
        return [self.edges[i] for i in self._in_edge_ids[layer]]

    def out_edges(self, layer: str) -> list[Edge]:
        return [self.edges[i] for i in self._out_edge_ids[layer]]

    @cached_property
    def _in_edge_ids(self) -> dict[str, list[int]]:
        table: dict[str, list[int]] = {layer.name: [] for layer in self.layers}
        for i, edge in enumerate(self.edges):
            table[edge.dst].append(i)
        return table

    @cached_property
    def _out_edge_ids(self) -> dict[str, list[int]]:
        table: dict[str, list[int]] = {layer.name: [] for layer in self.layers}
        for i, edge in enumerate(self.edges):
            table[edge.src].append(i)
        return table

    @property
    def stochastic_edges(self) -> list[Edge]:
        return [e for e in self.edges if e.stochastic]

    def param_count(self) -> int:
        return sum(e.param_count() for e in self.edges)

    def primitives_used(self) -> set[str]:
        """The names of the primitives its edges and layers' post-ops call."""
        return {op.prim for e in self.edges for op in e.ops} | {op.prim for layer in self.layers for op in layer.post}

    def iter_edges(self) -> Iterator[Edge]:
        return iter(self.edges)


def canonical_order(graph: nx.MultiDiGraph) -> list[str]:
    return list(nx.lexicographical_topological_sort(graph, key=natural_key))


def order_edges(edges: list[Edge], layer_rank: dict[str, int]) -> list[Edge]:
    return sorted(edges, key=lambda e: (layer_rank[e.dst], layer_rank[e.src], natural_key(e.key)))
