"""From flat declarations to a checked Network: one input and one output, declared layers, no
cycle, every layer on an input-to-output path, and shapes that agree along every edge."""

from __future__ import annotations

import dataclasses
import math

import networkx as nx

from bsnc.errors import Note, SourceError, Span, did_you_mean
from bsnc.ir import Edge, Layer, Network, canonical_order, order_edges
from bsnc.lang.expand import Flat
from bsnc.lang.limits import MAX_PARAMETERS, MAX_TENSOR_ELEMENTS
from bsnc.ops import REGISTRY, Shape, ShapeError, format_shape


def build_network(flat: Flat, source: str = "", source_hash: str = "", file_span: Span | None = None) -> Network:
    layers = {layer.name: layer for layer in flat.layers}
    input_layer = _single(flat.layers, "input", file_span)
    output_layer = _single(flat.layers, "output", file_span)

    graph = nx.MultiDiGraph()
    for layer in flat.layers:
        graph.add_node(layer.name, layer=layer)
    for edge in flat.edges:
        for end, span in ((edge.src, edge.src_span), (edge.dst, edge.dst_span)):
            if end not in layers:
                raise SourceError(f"edge uses undeclared layer '{end}'{did_you_mean(end, set(layers))}", span)
        if edge.dst == input_layer.name:
            raise SourceError(f"edge into the input layer '{edge.dst}'; the input takes no edges", edge.dst_span)
        if edge.src == output_layer.name:
            raise SourceError(f"edge out of the output layer '{edge.src}'; the output feeds no edges", edge.src_span)
        graph.add_edge(edge.src, edge.dst, key=edge.key, edge=edge)

    _check_acyclic(graph)
    _check_paths(graph, layers, input_layer.name, output_layer.name)

    order = canonical_order(graph)
    rank = {name: i for i, name in enumerate(order)}
    edges = [_infer_shapes(e, layers) for e in order_edges(flat.edges, rank)]
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
    )


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


def _infer_shapes(edge: Edge, layers: dict[str, Layer]) -> Edge:
    shape: Shape = layers[edge.src].shape
    shapes = [shape]
    for op in edge.ops:
        try:
            shape = REGISTRY[op.prim].shape(shape, op.kwargs)
        except ShapeError as exc:
            notes = [Note("in this primitive of a module type", op.span)] if op.span != op.site else []
            raise SourceError(f"edge '{edge.key}': {exc}", op.site, notes) from None
        if math.prod(shape) > MAX_TENSOR_ELEMENTS:
            raise SourceError(f"edge '{edge.key}': {op.prim} makes a tensor of {format_shape(shape)}, "
                              f"{math.prod(shape):,} elements per example; the limit is {MAX_TENSOR_ELEMENTS:,}",
                              op.site)
        shapes.append(shape)
    expected = layers[edge.dst].shape
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
            raise SourceError(f"post-op of layer '{layer.name}': {exc}", op.site) from None
        if out != shape or prim.params(shape, op.kwargs) != 0:
            raise SourceError(
                f"post-op '{op.prim}' of layer '{layer.name}' must keep the shape and have no parameters; "
                "put it on the edges instead", op.site)
