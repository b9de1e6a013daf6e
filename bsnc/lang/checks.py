"""From flat declarations to a checked Network: one input and one output, declared layers, no
cycle, every layer on an input-to-output path, and shapes that agree along every edge."""

from __future__ import annotations

import dataclasses
import math
from typing import NoReturn

import networkx as nx

from bsnc.errors import Note, SourceError, Span, did_you_mean
from bsnc.ir import DEFAULT_LOGIT, Decision, Edge, Layer, Network, canonical_order, order_edges
from bsnc.lang.evaluate import capped
from bsnc.lang.expand import Flat
from bsnc.lang.limits import MAX_PARAMETERS, MAX_TENSOR_ELEMENTS
from bsnc.ops import REGISTRY, Shape, ShapeError, format_shape


def build_network(flat: Flat, source: str = "", source_hash: str = "", file_span: Span | None = None) -> Network:
    layers = {layer.name: layer for layer in flat.layers}
    input_layer = _single(flat.layers, "input", file_span)
    output_layer = _single(flat.layers, "output", file_span)
    for edge in flat.edges:
        for end, span in ((edge.src, edge.src_span), (edge.dst, edge.dst_span)):
            if end not in layers:
                raise SourceError(f"edge uses undeclared layer '{end}'{did_you_mean(end, set(layers))}", span)
    # a `zero` option of a choice group is not an edge (never computed, its shape unchecked):
    # choosing it switches every member off
    zero_options = [e for e in flat.edges if _is_zero_option(e)]
    flat_edges = [e for e in flat.edges if not _is_zero_option(e)]

    graph = nx.MultiDiGraph()
    for layer in flat.layers:
        graph.add_node(layer.name, layer=layer)
    for edge in flat_edges:
        for end, span in ((edge.src, edge.src_span), (edge.dst, edge.dst_span)):
            if end not in layers:
                raise SourceError(f"edge uses undeclared layer '{end}'{did_you_mean(end, set(layers))}", span)
        if edge.dst == input_layer.name:
            raise SourceError(f"edge into the input layer '{edge.dst}'; the input takes no edges", edge.dst_span)
        if edge.src == output_layer.name:
            raise SourceError(f"edge out of the output layer '{edge.src}'; the output feeds no edges", edge.src_span)
        graph.add_edge(edge.src, edge.dst, key=edge.key, edge=edge)

    zeros = _groups(flat_edges, zero_options)
    _check_acyclic(graph)
    _check_paths(graph, layers, input_layer.name, output_layer.name)

    order = canonical_order(graph)
    rank = {name: i for i, name in enumerate(order)}
    slots = _concat_slots(flat_edges, layers)
    edges = [_infer_shapes(dataclasses.replace(e, slot=slots.get(e.key)), layers)
             for e in order_edges(flat_edges, rank)]
    edges, decisions = _decisions(edges, zeros)
    _check_parameters(edges)
    for layer in flat.layers:
        _check_post(layer)
    for edge in edges:
        nx.set_edge_attributes(graph, {(edge.src, edge.dst, edge.key): edge}, "edge")

    return Network(
        name=flat.name,
        params=dict(flat.params),
        graph=graph,
        input=input_layer.name,
        output=output_layer.name,
        layers=[layers[name] for name in order],
        edges=edges,
        source=source,
        source_hash=source_hash,
        modules_used=tuple(flat.modules_used),
        decisions=decisions,
    )


def _is_zero_option(edge: Edge) -> bool:
    return edge.group is not None and edge.group[0] == "choose" and all(op.prim == "zero" for op in edge.ops)


def _concat_slots(edges: list[Edge], layers: dict[str, Layer]) -> dict[str, int]:
    """The first channel of each edge into a `concat` layer: edges side by side in the order
    they are declared (loops unrolled); their channels must add up to the layer's."""
    slots: dict[str, int] = {}
    filled: dict[str, int] = {}
    last: dict[str, Edge] = {}
    for edge in edges:
        layer = layers[edge.dst]
        if layer.aggregate != "concat":
            continue
        slots[edge.key] = filled.get(layer.name, 0)
        filled[layer.name] = slots[edge.key] + _channels_out(edge, layers)
        last[layer.name] = edge
    for name, channels in filled.items():
        declared = layers[name].shape[0]
        if channels != declared:
            notes = [Note(f"its last input, edge '{last[name].key}'", last[name].span)]
            option = next((e for e in edges if e.dst == name and e.group is not None and e.group[0] == "choose"), None)
            if option is not None:
                notes.append(Note(f"edge '{option.key}' is an option of choice group '{option.group[1]}': each option "
                                  "takes its own slot; to give the group one slot, let its options meet in a `sum` "
                                  "layer and concatenate that", option.span))
            raise SourceError(f"layer '{name}' concatenates {channels} channels, but is declared with {declared}",
                              layers[name].span, notes)
    return slots


def _channels_out(edge: Edge, layers: dict[str, Layer]) -> int:
    """The channels an edge into a concat layer produces (the rest of its shape is checked later)."""
    dst = layers[edge.dst]
    shape = _output_shape(edge, layers)
    if len(shape) != len(dst.shape) or shape[1:] != dst.shape[1:]:
        raise SourceError(
            f"shape mismatch on edge '{edge.key}': layer '{edge.dst}' concatenates along the channels "
            f"inputs of shape [C{''.join(f', {d}' for d in dst.shape[1:])}], the edge produces {format_shape(shape)}",
            edge.span, [Note(f"'{edge.dst}' declared here", dst.span)])
    return shape[0]


def _groups(edges: list[Edge], zero_options: list[Edge]) -> dict[str, Edge]:
    """Check how edges name their gates and choice groups, before the graph's paths (an edge of
    a group of `zero` options only is no edge there); return each group's `zero` option."""
    kinds: dict[str, tuple[str, Span | None]] = {}
    for edge in edges + zero_options:
        if edge.group is None:
            continue
        kind, name = edge.group
        seen = kinds.setdefault(name, (kind, edge.group_span))
        if seen[0] != kind:
            raise SourceError(f"'{name}' is used both as a gate and as a choice group; give them different names",
                              edge.group_span, [Note(f"used with `{seen[0]}` here", seen[1])])
    zeros: dict[str, Edge] = {}
    for edge in zero_options:
        first = zeros.setdefault(edge.group[1], edge)
        if first.name != edge.name:
            raise SourceError(f"choice group '{edge.group[1]}' has two `zero` options, '{first.name}' and "
                              f"'{edge.name}'; name them alike (one option stands for none)", edge.span,
                              [Note("the first one", first.span)])
    operations = {e.group[1] for e in edges if e.group is not None and not e.fixed}
    for name, edge in zeros.items():
        if name not in operations:
            raise SourceError(f"choice group '{name}' has only its `zero` option; it needs an operation too",
                              edge.group_span)
    return zeros


def _decisions(edges: list[Edge], zeros: dict[str, Edge]) -> tuple[list[Edge], list[Decision]]:
    """Number the learned choices in the order of their first stochastic edge, and tell each
    stochastic edge which choice and which of its values switch it on (``zeros``: each group's
    `zero` option, from :func:`_groups`)."""
    members: dict[str, list[str]] = {}
    for edge in edges:
        if edge.group is not None and edge.group[0] == "choose":
            labels = members.setdefault(edge.group[1], [])
            if edge.name not in labels:
                labels.append(edge.name)
    decisions: list[Decision] = []
    index: dict[str, int] = {}
    out: list[Edge] = []
    offset = 0
    for edge in edges:
        if edge.fixed:
            out.append(edge)
            continue
        kind, name = edge.group if edge.group is not None else ("own", edge.key)
        if name not in index:
            if kind == "choose":
                zero = zeros[name].name if name in zeros else None
                if zero in members[name]:
                    _zero_clash(edges, zeros[name])
                width = len(members[name]) + (zero is not None)
                if width < 2:
                    raise SourceError(f"choice group '{name}' has a single option, '{edge.name}'; a choice needs two "
                                      "or more (add a `zero` option to make it switchable, or make the edge fixed)",
                                      edge.group_span)
                decision = Decision(name, "choice", offset, (0.0,) * width, tuple(members[name]), zero,
                                    shared=True, span=edge.group_span)
            else:
                decision = Decision(name, "gate", offset, (_initial_logit(edges, edge),), shared=kind == "gate",
                                    span=edge.group_span or edge.span)
            index[name] = len(decisions)
            decisions.append(decision)
            offset += decision.width
        decision = decisions[index[name]]
        option = decision.options.index(edge.name) if decision.kind == "choice" else 1
        out.append(dataclasses.replace(edge, decision=index[name], option=option))
    return out, decisions


def _zero_clash(edges: list[Edge], zero: Edge) -> NoReturn:
    """Refuse a choice option that is `zero` on one edge and an operation on another: located at
    the first edge where it is an operation, with a note at the `zero` one."""
    assert zero.group is not None
    op = next(e for e in edges if e.group == zero.group and e.name == zero.name)
    raise SourceError(f"choice group '{zero.group[1]}': option '{zero.name}' is `zero` in one place and an "
                      "operation in another; give the operation a name of its own", op.span,
                      [Note(f"option '{zero.name}' is `zero` here", zero.span)])


def _initial_logit(edges: list[Edge], edge: Edge) -> float:
    """The logit a gate starts at: from its edges' `prob` (which must agree), else 3."""
    if edge.group is None:
        return _logit(edge.init_prob) if edge.init_prob is not None else DEFAULT_LOGIT
    given = [e for e in edges if e.group == edge.group and e.init_prob is not None]
    for other in given[1:]:
        if other.init_prob != given[0].init_prob:
            raise SourceError(f"gate '{edge.group[1]}' is given two probabilities, {given[0].init_prob} and "
                              f"{other.init_prob}; give it one", other.span, [Note("the first", given[0].span)])
    return _logit(given[0].init_prob) if given else DEFAULT_LOGIT


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _single(layers: list[Layer], kind: str, file_span: Span | None) -> Layer:
    found = [layer for layer in layers if layer.kind == kind]
    if not found:
        raise SourceError(f"the network has no {kind} layer; declare one with `{kind} NAME : [shape]`", file_span)
    if len(found) > 1:
        raise SourceError(
            f"a network has one {kind}; '{found[1].name}' is a second one",
            found[1].span,
            [Note(f"first {kind} '{found[0].name}' here", found[0].span)],
        )
    return found[0]


def _check_acyclic(graph: nx.MultiDiGraph) -> None:
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        return
    path = " -> ".join([cycle[0][0]] + [v for _, v, *_ in cycle])
    edges = [graph.edges[u, v, k]["edge"] for u, v, k, *_ in cycle]
    notes = [Note(f"edge '{e.key}' closes the cycle" if i == len(edges) - 1 else f"edge '{e.key}'", e.span)
             for i, e in enumerate(edges[1:], start=1)]
    raise SourceError(f"the edges form a cycle: {path}", edges[0].span, notes)


def _check_paths(graph: nx.MultiDiGraph, layers: dict[str, Layer], source: str, sink: str) -> None:
    reached = nx.descendants(graph, source) | {source}
    reaching = nx.ancestors(graph, sink) | {sink}
    for name, layer in layers.items():
        if name not in reached:
            why = ("it has no incoming edge, and only the input may be a source" if graph.in_degree(name) == 0
                   else "no path leads to it")
            raise SourceError(f"layer '{name}' is unreachable from the input '{source}': {why}", layer.span)
        if name not in reaching:
            why = ("it has no outgoing edge, and only the output may be a sink" if graph.out_degree(name) == 0
                   else "no path leads from it")
            raise SourceError(f"layer '{name}' cannot reach the output '{sink}': {why}", layer.span)


def _walk_shapes(edge: Edge, layers: dict[str, Layer]) -> list[Shape]:
    """The edge's input shape, then its shape after each op; located errors when an op does not
    fit or makes a tensor beyond the limit."""
    shape: Shape = layers[edge.src].shape
    shapes = [shape]
    for op in edge.ops:
        try:
            shape = REGISTRY[op.prim].shape(shape, op.kwargs)
        except ShapeError as exc:
            notes = [Note("in this primitive of a module type", op.span)] if op.span != op.site else []
            raise SourceError(f"edge '{edge.key}': {capped(str(exc), op.kwargs.values())}", op.site, notes) from None
        if math.prod(shape) > MAX_TENSOR_ELEMENTS:
            raise SourceError(f"edge '{edge.key}': {op.prim} makes a tensor of {format_shape(shape)}, "
                              f"{math.prod(shape):,} elements per example; the limit is {MAX_TENSOR_ELEMENTS:,}",
                              op.site)
        shapes.append(shape)
    return shapes


def _output_shape(edge: Edge, layers: dict[str, Layer]) -> Shape:
    return _walk_shapes(edge, layers)[-1]


def _infer_shapes(edge: Edge, layers: dict[str, Layer]) -> Edge:
    shapes = _walk_shapes(edge, layers)
    shape = shapes[-1]
    expected = layers[edge.dst].shape
    if edge.slot is not None:  # one slot of a concat layer: its own channels, the layer's other sizes
        expected = (shape[0],) + expected[1:] if shape else expected
    if shape != expected:
        raise SourceError(
            f"shape mismatch on edge '{edge.key}': layer '{edge.dst}' is {format_shape(expected)}, "
            f"the edge produces {format_shape(shape)}",
            edge.span,
            [Note(f"'{edge.dst}' declared here", layers[edge.dst].span)],
        )
    return dataclasses.replace(edge, shapes=tuple(shapes))


def _check_parameters(edges: list[Edge]) -> None:
    """Refuse a super network whose weights alone are beyond any machine (counted in Python ints)."""
    total = 0
    for edge in edges:
        total += edge.param_count()
        if total > MAX_PARAMETERS:
            raise SourceError(f"the super network has more than {MAX_PARAMETERS:,} parameters "
                              f"({MAX_PARAMETERS * 4 // 2**30} GiB in float32) by edge '{edge.key}'; "
                              "make it smaller", edge.span)


def _check_post(layer: Layer) -> None:
    shape = layer.shape
    for op in layer.post:
        prim = REGISTRY[op.prim]
        try:
            out = prim.shape(shape, op.kwargs)
        except ShapeError as exc:
            raise SourceError(f"post-op of layer '{layer.name}': {capped(str(exc), op.kwargs.values())}",
                              op.site) from None
        if out != shape or prim.params(shape, op.kwargs) != 0:
            raise SourceError(
                f"post-op '{op.prim}' of layer '{layer.name}' must keep the shape and have no parameters; "
                "put it on the edges instead", op.site)
