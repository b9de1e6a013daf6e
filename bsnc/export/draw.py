"""Graphviz diagrams of super networks, laid out like the figures of the paper.

Layout. When every layer has a layout hint (`at (x, y)` in the `.bsn` file) and no two share a
spot, the layers are pinned on a grid: x to the right, y downwards (a CNF has its finest scale
at the top, a ResNet its first group), in points, with steps sized from the widest label. bsnc
then routes every edge itself and the file is rendered with ``neato -n2`` (keep the given node
and edge positions; no layout, so a 318-edge fabric renders in about a second):

- an edge between neighbouring columns (and rows) is a straight line from box to box; two edges
  joining the same pair of layers (a ResNet block's conv and skip paths) run side by side;
- a longer edge (two or more columns or rows apart, such as the shortcuts between the groups of a
  ResNet fabric) is a bridge drawn outside the rows it joins: over them when it ends in the upper
  half of the grid, under them otherwise (beside the column for a vertical one). Bridges of one
  side are nested: the wider the bridge, the higher it rises and the further out it leaves and
  reaches its boxes, so they cross only where their feet interleave.

Without hints (or with two layers on one spot) ``dot`` ranks the layers from left to right and
routes the edges itself. The `.dot` file records the command line that renders it.

Colours follow Figure 1 of the paper and depend on the spatial sizes of the two layers: blue
keeps the resolution, green lowers it (the destination map is smaller), red raises it. Skip
connections are grey: an edge without parameters (``identity``, ``pad_channels``, a pooling,
an up-sampling alone) and a *projection shortcut*, an edge made of 1x1 convolutions, batch norms
and parameter-free ops that runs beside another edge between the same two layers (the ``proj``
path of a ResNet block). A lone 1x1 convolution (a classifier head) is coloured by resolution.

With edge probabilities γ, kept edges (γ > threshold; fixed edges count as kept) are solid and
labelled with γ; dropped edges are dashed, thin and light grey, drawn beneath the kept ones;
layers that no kept edge touches are faded. A mask of kept edges (the active edges of an
exported architecture) may decide instead of the threshold. Every edge and layer has a tooltip
in the SVG (ops, parameters, MACs, γ).

Sharing: the edges of one shared gate (`gate G`) or one choice group (`choose G`) have a colour
of their own (instead of their kind's) and a label: ``G`` for a gate, ``G: OPTION`` for a
choice group's member, followed by its probability when there is one; the legend names each. A
`concat` layer says so under its shape.
"""

from __future__ import annotations

import html
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import graphviz

from bsnc import numeric
from bsnc.errors import BsncError, display_path
from bsnc.files import OutputError, atomic_write_text, describe
from bsnc.ir import Edge, Layer, Network
from bsnc.lang.summary import human

# Edge kinds and their colours (Figure 1 of the paper: blue, green, red; grey for skips).
SAME, DOWN, UP, SKIP = "same", "down", "up", "skip"
COLORS = {SAME: "#1f5fd6", DOWN: "#169c3a", UP: "#d62728", SKIP: "#8a8a8a"}
KIND_LABELS = {
    SAME: "same scale",
    DOWN: "down-sampling",
    UP: "up-sampling",
    SKIP: "skip / projection",
}
# Shared gates and choice groups, in the order of the network's decisions (cycling).
SHARED_COLORS = (
    "#9467bd", "#ff7f0e", "#17becf", "#e377c2", "#8c564b", "#bcbd22", "#637939", "#393b79"
)
MAX_SHARED_LEGEND = 12  # legend rows for shared decisions; more are summed up in one
DROPPED_COLOR = "#c8c8c8"
FADED_TEXT = "#b4b4b4"
INPUT_FILL, INPUT_PEN = "#ffe08a", "#b07c00"
OUTPUT_FILL, OUTPUT_PEN = "#c9b3f2", "#5a2ca0"
LAYER_FILL, LAYER_PEN = "#f4f6fb", "#5c6f91"

FONT = "Helvetica"
NAME_SIZE, SHAPE_SIZE, GAMMA_SIZE, LEGEND_SIZE, TITLE_SIZE = 10, 8, 7, 9, 16
PNG_DPI = 110  # points are 1/72 inch: about 1.5 pixels per point
RENDER_TIMEOUT = 300  # seconds

# Grid geometry, in points.
COLUMN_GAP = 56.0  # between two boxes of neighbouring columns
ROW_GAP = 50.0  # between two boxes of neighbouring rows
NODE_HEIGHT = 30.0
ARROW = 5.0  # arrowhead length: 10 points times arrowsize
DROPPED_ARROW = 4.0
PARALLEL_GAP = 6.0  # between two straight edges that join the same two layers
FOOT_GAP = 9.0  # between the feet of two bridges on one side of a box
BRIDGE_CLEARANCE = 22.0  # the lowest bridge clears its boxes by this much
BRIDGE_STEP = 3.0  # and each wider one rises by this much more
LABEL_T = 0.38  # where along a straight edge its γ sits (away from the crossings at mid-way)

# Ops that a projection shortcut may hold besides 1x1 convolutions.
_PROJECTION_OPS = {"bn", "identity", "pad_channels", "flatten", "dropout"}


@dataclass
class DrawResult:
    dot: Path
    rendered: list[Path] = field(default_factory=list)
    dot_missing: bool = False


# ---------------------------------------------------------------------------------------------
# Edge kinds


def edge_kind(network: Network, edge: Edge) -> str:
    """``same``, ``down``, ``up`` or ``skip`` (see the module docstring)."""
    if edge.param_count() == 0 or _is_projection(network, edge):
        return SKIP
    before = _pixels(network.layer(edge.src).shape)
    after = _pixels(network.layer(edge.dst).shape)
    if after < before:
        return DOWN
    if after > before:
        return UP
    return SAME


def _pixels(shape: Sequence[int]) -> int:
    """Spatial size of a feature map; a vector counts as one pixel."""
    return math.prod(shape[1:]) if len(shape) >= 2 else 1


def _is_projection(network: Network, edge: Edge) -> bool:
    convs = [op for op in edge.ops if op.prim == "conv"]
    if not convs or any(_kernel(op.kwargs.get("k", 3)) != 1 for op in convs):
        return False
    if any(op.prim not in _PROJECTION_OPS and op.prim != "conv" for op in edge.ops):
        return False
    return any(
        other.dst == edge.dst and other.key != edge.key for other in network.out_edges(edge.src)
    )


def _kernel(k: object) -> int:
    if isinstance(k, (tuple, list)):
        return max(int(v) for v in k)
    return int(k)  # type: ignore[call-overload]


# ---------------------------------------------------------------------------------------------
# Grid layout and edge routing (neato -n2)


@dataclass(frozen=True)
class _Box:
    x: float
    y: float
    w: float
    h: float


@dataclass
class _Route:
    pos: str
    label_at: tuple[float, float]
    extent: tuple[float, float, float, float]  # min x, min y, max x, max y


def _grid(network: Network) -> dict[str, tuple[float, float]] | None:
    """The layout hints when every layer has one and no two layers share a spot."""
    hints = {layer.name: layer.position for layer in network.layers}
    if any(p is None for p in hints.values()):
        return None
    grid = {name: (float(p[0]), float(p[1])) for name, p in hints.items()}  # type: ignore[index]
    if len(set(grid.values())) != len(grid):
        return None
    return grid


def _text_width(text: str, size: float) -> float:
    """A generous width in points: 0.66 em a character covers Liberation Sans, Arial, Helvetica
    and DejaVu Sans digits."""
    return 0.66 * size * len(text)


def _node_width(network: Network) -> float:
    widest = max(
        max(_text_width(layer.name, NAME_SIZE), _text_width(_shape_line(layer), SHAPE_SIZE))
        for layer in network.layers
    )
    return max(40.0, math.ceil(widest + 12))


def _boxes(network: Network, grid: Mapping[str, tuple[float, float]]) -> dict[str, _Box]:
    width = _node_width(network)
    x_step, y_step = width + COLUMN_GAP, NODE_HEIGHT + ROW_GAP
    x0 = min(x for x, _ in grid.values())
    y0 = min(y for _, y in grid.values())
    return {
        name: _Box((x - x0) * x_step, -(y - y0) * y_step, width, NODE_HEIGHT)
        for name, (x, y) in grid.items()
    }


def _fmt(value: float) -> str:
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


def _point(x: float, y: float) -> str:
    return f"{_fmt(x)},{_fmt(y)}"


def _spline(points: Sequence[tuple[float, float]], tip: tuple[float, float]) -> str:
    return "e," + _point(*tip) + " " + " ".join(_point(x, y) for x, y in points)


def _exit(box: _Box, px: float, py: float, ux: float, uy: float) -> tuple[float, float]:
    """Where the ray from (px, py) inside ``box`` along (ux, uy) leaves it."""
    ts = []
    if abs(ux) > 1e-9:
        ts.append((box.x + math.copysign(box.w / 2, ux) - px) / ux)
    if abs(uy) > 1e-9:
        ts.append((box.y + math.copysign(box.h / 2, uy) - py) / uy)
    t = max(0.0, min(ts))
    return px + t * ux, py + t * uy


def _straight(
    src: _Box, dst: _Box, offset: float, arrow: float, label_t: float = LABEL_T
) -> _Route:
    dx, dy = dst.x - src.x, dst.y - src.y
    length = math.hypot(dx, dy)
    ux, uy = dx / length, dy / length
    nx_, ny_ = -uy, ux  # to the left of the direction of travel
    start = _exit(src, src.x + nx_ * offset, src.y + ny_ * offset, ux, uy)
    tip = _exit(dst, dst.x + nx_ * offset, dst.y + ny_ * offset, -ux, -uy)
    base = (tip[0] - ux * arrow, tip[1] - uy * arrow)

    def at(end: tuple[float, float], f: float) -> tuple[float, float]:
        return start[0] + (end[0] - start[0]) * f, start[1] + (end[1] - start[1]) * f

    points = [start, at(base, 1 / 3), at(base, 2 / 3), base]
    label = at(tip, label_t)
    xs, ys = (start[0], tip[0]), (start[1], tip[1])
    return _Route(_spline(points, tip), label, (min(xs), min(ys), max(xs), max(ys)))


def _route_edges(
    network: Network,
    boxes: Mapping[str, _Box],
    grid: Mapping[str, tuple[float, float]],
    arrows: Mapping[str, float],
) -> dict[str, _Route]:
    routes: dict[str, _Route] = {}
    # Straight edges between neighbours; parallel ones side by side.
    pairs: dict[tuple[str, str], list[Edge]] = {}
    long_edges: list[Edge] = []
    for edge in network.edges:
        (sx, sy), (dx, dy) = grid[edge.src], grid[edge.dst]
        if abs(dx - sx) <= 1 and abs(dy - sy) <= 1:
            pairs.setdefault((edge.src, edge.dst), []).append(edge)
        else:
            long_edges.append(edge)
    for (src, dst), edges in pairs.items():
        for i, edge in enumerate(edges):
            offset = ((len(edges) - 1) / 2 - i) * PARALLEL_GAP
            # Parallel edges carry their labels at different places along the way.
            label_t = LABEL_T if len(edges) == 1 else 0.25 + 0.5 * i / (len(edges) - 1)
            routes[edge.key] = _straight(boxes[src], boxes[dst], offset, arrows[edge.key], label_t)
    if long_edges:
        neighbours: dict[str, list[float]] = {}
        for src, dst in pairs:
            neighbours.setdefault(src, []).append(grid[dst][0])
            neighbours.setdefault(dst, []).append(grid[src][0])
        routes.update(_bridges(long_edges, boxes, grid, arrows, neighbours))
    return routes


def _bridges(
    edges: Sequence[Edge],
    boxes: Mapping[str, _Box],
    grid: Mapping[str, tuple[float, float]],
    arrows: Mapping[str, float],
    neighbours: Mapping[str, Sequence[float]],
) -> dict[str, _Route]:
    """Long edges as nested bridges (see the module docstring). ``neighbours`` holds, for each
    layer, the grid x of the layers its straight edges join."""
    xs = [x for x, _ in grid.values()]
    ys = [y for _, y in grid.values()]
    mid_x, mid_y = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2

    # The side of each bridge: n(orth), s(outh) (in the picture), e(ast), w(est). A vertical
    # one goes round the side where its two boxes have fewer straight edges.
    side: dict[str, str] = {}
    for edge in edges:
        (sx, _), (dx, dy) = grid[edge.src], grid[edge.dst]
        if sx != dx:
            side[edge.key] = "n" if dy <= mid_y else "s"
        else:
            east = sum(1 for n in (edge.src, edge.dst) for x in neighbours.get(n, ()) if x > sx)
            west = sum(1 for n in (edge.src, edge.dst) for x in neighbours.get(n, ()) if x < sx)
            if east == west:
                side[edge.key] = "w" if dx <= mid_x else "e"
            else:
                side[edge.key] = "w" if west < east else "e"

    def along(edge: Edge) -> tuple[float, float]:
        """The bridge's span along its side's axis, then across."""
        (sx, sy), (dx, dy) = grid[edge.src], grid[edge.dst]
        if side[edge.key] in "ns":
            return abs(dx - sx), abs(dy - sy)
        return abs(dy - sy), abs(dx - sx)

    order = {edge.key: i for i, edge in enumerate(edges)}
    rank: dict[str, int] = {}
    for s in "nsew":
        family = sorted(
            (e for e in edges if side[e.key] == s), key=lambda e: (along(e), order[e.key])
        )
        rank.update({e.key: r for r, e in enumerate(family)})

    # Feet on each side of each box, ordered so that wider bridges leave and land further out.
    feet: dict[tuple[str, str], list[tuple[tuple, str]]] = {}
    for edge in edges:
        s = side[edge.key]
        for node, other in ((edge.src, edge.dst), (edge.dst, edge.src)):
            here, there = boxes[node], boxes[other]
            delta = (there.x - here.x) if s in "ns" else (there.y - here.y)
            key = (0, rank[edge.key]) if delta < 0 else (1, -rank[edge.key])
            feet.setdefault((node, s), []).append((key, edge.key))
    offsets: dict[tuple[str, str], float] = {}
    slot: dict[tuple[str, str], int] = {}
    for (node, s), items in feet.items():
        items.sort()
        length = boxes[node].w if s in "ns" else boxes[node].h
        gap = min(FOOT_GAP, (length - 8) / max(1, len(items) - 1))
        for i, (_, key) in enumerate(items):
            offsets[(key, node)] = (i - (len(items) - 1) / 2) * gap
            slot[(key, node)] = i

    routes = {}
    for edge in edges:
        s = side[edge.key]
        src, dst = boxes[edge.src], boxes[edge.dst]
        a, b = offsets[(edge.key, edge.src)], offsets[(edge.key, edge.dst)]
        arrow = arrows[edge.key]
        clearance = BRIDGE_CLEARANCE + BRIDGE_STEP * rank[edge.key]
        stagger = 6 + 9 * (slot[(edge.key, edge.dst)] % 3)  # neighbouring feet: three heights
        if s in "ns":
            sign = 1 if s == "n" else -1
            start = (src.x + a, src.y + sign * src.h / 2)
            tip = (dst.x + b, dst.y + sign * dst.h / 2)
            base = (tip[0], tip[1] + sign * arrow)
            far = max(start[1], base[1]) if s == "n" else min(start[1], base[1])
            if s == "n":
                level = max(src.y, dst.y) + src.h / 2 + clearance
            else:
                level = min(src.y, dst.y) - src.h / 2 - clearance
            control = far + (level - far) / 0.75  # a cubic with level controls peaks at 3/4 of them
            points = [start, (start[0], control), (base[0], control), base]
            label = (tip[0], base[1] + sign * (stagger + GAMMA_SIZE / 2))
        else:
            sign = 1 if s == "e" else -1
            start = (src.x + sign * src.w / 2, src.y + a)
            tip = (dst.x + sign * dst.w / 2, dst.y + b)
            base = (tip[0] + sign * arrow, tip[1])
            far = max(start[0], base[0]) if s == "e" else min(start[0], base[0])
            if s == "e":
                level = max(src.x, dst.x) + src.w / 2 + clearance
            else:
                level = min(src.x, dst.x) - src.w / 2 - clearance
            control = far + (level - far) / 0.75
            points = [start, (control, start[1]), (control, base[1]), base]
            label = (base[0] + sign * (stagger + 8), tip[1])
        bx = [p[0] for p in points] + [tip[0]]
        by = [p[1] for p in points] + [tip[1]]
        if s in "ns":
            by.append(level)
        else:
            bx.append(level)
        routes[edge.key] = _Route(_spline(points, tip), label, (min(bx), min(by), max(bx), max(by)))
    return routes


# ---------------------------------------------------------------------------------------------
# The DOT text


def diagram_source(
    network: Network,
    gammas: Mapping[str, float] | None = None,
    title: str | None = None,
    threshold: float = 0.5,
    kept: Sequence[bool] | Mapping[str, bool] | None = None,
) -> str:
    """The Graphviz DOT text of ``network``'s diagram (deterministic: same input, same bytes).

    ``gammas`` maps stochastic edge keys to their probability; an edge is kept when its γ is
    above ``threshold``. Fixed edges, and stochastic edges missing from ``gammas``, count as
    kept (without a γ label). A key that names no edge of the network is an error.

    ``kept``, when given, decides instead which edges are kept (solid) and which dropped
    (dashed), fixed ones included: one bool per edge in ``network.edges`` order (the active
    edges of an exported architecture), or edge key -> bool (missing keys: the rule above)."""
    if gammas is not None:
        unknown = sorted(set(gammas) - set(network.edge_index))
        if unknown:
            shown = ", ".join(unknown[:3]) + (", ..." if len(unknown) > 3 else "")
            raise BsncError(
                f"edge probabilities given for edges that {network.name} does not have: {shown}"
            )
    grid = _grid(network)
    engine = "neato" if grid is not None else "dot"

    graph = graphviz.Digraph(name=network.name, engine=engine, comment=_render_hint(engine))
    graph.attr(
        "graph",
        layout=engine,
        fontname=FONT,
        fontsize=str(TITLE_SIZE),
        bgcolor="white",
        pad="0.3",
        outputorder="edgesfirst",
        labelloc="t",
        labeljust="c",
        label=_title_label(title),
    )
    if grid is not None:
        graph.attr("graph", inputscale="72", notranslate="true", splines="true", overlap="true")
    else:
        graph.attr("graph", rankdir="LR", splines="true", nodesep="0.3", ranksep="0.7")
    graph.attr(
        "node",
        shape="box",
        style="rounded,filled",
        fontname=FONT,
        margin="0.06,0.03",
        height="0.3",
        width="0.3",
        penwidth="1",
    )
    graph.attr("edge", fontname=FONT, fontsize=str(GAMMA_SIZE), arrowsize="0.5", penwidth="1.2")

    kept_mask = kept
    kept = _kept_edges(network, gammas, threshold, kept_mask)
    labelled = {
        e.key for e in network.edges if gammas is not None and e.stochastic and e.key in gammas
    }
    touched = {n for e in network.edges if kept[e.key] for n in (e.src, e.dst)}
    kinds = {e.key: edge_kind(network, e) for e in network.edges}
    shares = _shares(network)

    boxes: dict[str, _Box] = {}
    routes: dict[str, _Route] = {}
    if grid is not None:
        boxes = _boxes(network, grid)
        arrows = {key: ARROW if kept[key] else DROPPED_ARROW for key in kept}
        routes = _route_edges(network, boxes, grid, arrows)

    for layer in network.layers:
        attrs = _node_attrs(layer, faded=layer.name not in touched)
        if layer.name in boxes:
            box = boxes[layer.name]
            attrs.update(
                pos=_point(box.x, box.y) + "!",
                width=f"{box.w / 72:.4f}",
                height=f"{box.h / 72:.4f}",
                fixedsize="true",
            )
        graph.node(layer.name, **attrs)

    # Dropped edges first, so that the kept ones are drawn over them.
    for edge in sorted(network.edges, key=lambda e: kept[e.key]):
        attrs = _edge_attrs(
            edge,
            kinds[edge.key],
            kept[edge.key],
            gammas if edge.key in labelled else None,
            shares.get(edge.key),
        )
        route = routes.get(edge.key)
        if route is not None:
            attrs["pos"] = route.pos
            if "label" in attrs:
                attrs["lp"] = _point(*route.label_at)
        graph.edge(edge.src, edge.dst, **attrs)

    present = sorted(
        {kind for key, kind in kinds.items() if key not in shares}, key=list(COLORS).index
    )
    if kept_mask is not None:
        rule = "kept" + (", labelled \u03b3" if labelled else "")
    elif gammas is not None:
        rule = f"kept (\u03b3 &gt; {threshold:g}), labelled \u03b3"
    else:
        rule = None
    shared = _shared_legend(network)
    legend, legend_rows = _legend(present, rule, shared)
    legend_attrs = {
        "shape": "plaintext",
        "style": "",
        "margin": "0",
        "label": legend,
        "tooltip": "legend",
    }
    if boxes:
        extents = [
            (b.x - b.w / 2, b.y - b.h / 2, b.x + b.w / 2, b.y + b.h / 2) for b in boxes.values()
        ]
        extents += [r.extent for r in routes.values()]
        right = max(e[2] for e in extents)
        bottom = min(e[1] for e in extents)
        left, top = min(e[0] for e in extents), max(e[3] for e in extents)
        # the rows of shared gates and groups may be wider than the usual legend's 160 points
        widest = max((_text_width(html.unescape(text), LEGEND_SIZE) for _, text in shared), default=0)
        width, height = max(160.0, 45 + widest), 16.0 * legend_rows + 22
        if right - left > 3 * (top - bottom):  # a wide picture: beside the grid, at its bottom
            row_bottom = min(b.y - b.h / 2 for b in boxes.values())
            legend_attrs["pos"] = _point(right + 30 + width / 2, row_bottom + height / 2) + "!"
        else:  # below the grid, at its right end
            legend_attrs["pos"] = _point(right - width / 2, bottom - 24 - height / 2) + "!"
    legend_name = "__legend__"
    while legend_name in network.layer_index:
        legend_name += "_"
    graph.node(legend_name, **legend_attrs)
    return graph.source


def _render_hint(engine: str) -> str:
    if engine == "neato":
        return (
            "Node and edge positions are given: render with  neato -n2 -Tsvg FILE.dot -o FILE.svg"
        )
    return "Render with  dot -Tsvg FILE.dot -o FILE.svg"


def _title_label(title: str | None) -> str:
    """A plain (not HTML) label: backslashes literal, line breaks kept."""
    if not title:
        return ""
    return graphviz.nohtml(title.replace("\\", "\\\\").replace("\n", "\\n"))


def _kept_edges(
    network: Network,
    gammas: Mapping[str, float] | None,
    threshold: float,
    mask: Sequence[bool] | Mapping[str, bool] | None,
) -> dict[str, bool]:
    kept = {e.key: _kept(e, gammas, threshold) for e in network.edges}
    if mask is None:
        return kept
    if isinstance(mask, Mapping):
        unknown = sorted(set(mask) - set(kept))
        if unknown:
            raise BsncError(f"kept edges given that {network.name} does not have: {unknown[0]}")
        kept.update({key: bool(value) for key, value in mask.items()})
        return kept
    flags = list(mask)
    if len(flags) != len(network.edges):
        raise BsncError(
            f"{len(flags)} kept flags given for the {len(network.edges)} edges of {network.name}"
        )
    return {e.key: bool(flag) for e, flag in zip(network.edges, flags)}


def _kept(edge: Edge, gammas: Mapping[str, float] | None, threshold: float) -> bool:
    if gammas is None or edge.fixed or edge.key not in gammas:
        return True
    return float(gammas[edge.key]) > threshold


def _shape_text(shape: Sequence[int]) -> str:
    return "\u00d7".join(str(d) for d in shape)


def _shape_line(layer: Layer) -> str:
    """The second line of a layer's box: its shape, and ``concat`` for a concatenating layer."""
    text = _shape_text(layer.shape)
    return f"{text} concat" if layer.aggregate == "concat" else text


def _shares(network: Network) -> dict[str, tuple[str, str]]:
    """Edge key -> (label, colour) for the edges of shared gates and choice groups."""
    colors = _shared_colors(network)
    shares = {}
    for edge in network.edges:
        if edge.stochastic and edge.decision in colors:
            decision = network.decisions[edge.decision]
            label = decision.name if decision.kind == "gate" else f"{decision.name}: {edge.name}"
            shares[edge.key] = (label, colors[edge.decision])
    return shares


def _shared_colors(network: Network) -> dict[int, str]:
    shared = [i for i, d in enumerate(network.decisions) if d.shared]
    return {index: SHARED_COLORS[n % len(SHARED_COLORS)] for n, index in enumerate(shared)}


def _shared_legend(network: Network) -> list[tuple[str, str]]:
    """(colour, text) legend rows for the shared gates and choice groups."""
    rows = []
    for index, color in _shared_colors(network).items():
        decision = network.decisions[index]
        if decision.kind == "gate":
            text = f"gate {decision.name}"
        else:
            text = f"choose {decision.name} ({', '.join(decision.option_names())})"
        rows.append((color, html.escape(text)))
    if len(rows) > MAX_SHARED_LEGEND:
        more = len(rows) - MAX_SHARED_LEGEND + 1
        rows = rows[: MAX_SHARED_LEGEND - 1] + [("#555555", f"{more} more gates and groups")]
    return rows


def _node_attrs(layer: Layer, faded: bool) -> dict[str, str]:
    name_color = FADED_TEXT if faded else "#000000"
    shape_color = FADED_TEXT if faded else "#444444"
    label = (
        f'<<FONT POINT-SIZE="{NAME_SIZE}" COLOR="{name_color}"><B>{html.escape(layer.name)}</B></FONT><BR/>'
        f'<FONT POINT-SIZE="{SHAPE_SIZE}" COLOR="{shape_color}">{html.escape(_shape_line(layer))}</FONT>>'
    )
    if layer.kind == "input":
        fill, pen, width = INPUT_FILL, INPUT_PEN, "2.2"
    elif layer.kind == "output":
        fill, pen, width = OUTPUT_FILL, OUTPUT_PEN, "2.2"
    else:
        fill, pen, width = LAYER_FILL, LAYER_PEN, "1"
    tooltip = f"{layer.kind} {layer.name} [{', '.join(str(d) for d in layer.shape)}]"
    if layer.aggregate == "concat":
        tooltip += ", aggregate concat"
    attrs = {"label": label, "fillcolor": fill, "color": pen, "penwidth": width, "tooltip": tooltip}
    if faded:
        attrs.update(
            fillcolor="#fbfbfb", color="#d4d4d4", style="rounded,filled,dashed", penwidth="1"
        )
    return attrs


def _edge_attrs(
    edge: Edge,
    kind: str,
    kept: bool,
    gammas: Mapping[str, float] | None,
    share: tuple[str, str] | None = None,
) -> dict[str, str]:
    chain = " >> ".join(op.prim for op in edge.ops)
    tooltip = (
        f"{edge.key}: {chain} ({'fixed' if edge.fixed else 'stochastic'}, "
        f"{human(edge.param_count())} params, {human(edge.macs())} MACs)"
    )
    color = COLORS[kind] if share is None else share[1]
    attrs = {"color": color, "tooltip": tooltip}
    if share is not None:
        attrs["tooltip"] += f" {edge.group[0] if edge.group else 'gate'} {share[0]}"
    if gammas is not None:
        gamma = float(gammas[edge.key])
        attrs["tooltip"] += f" \u03b3={gamma:.3f}"
        if kept:
            attrs.update(penwidth="1.5", label=_gamma_label(gamma, color, share[0] if share else None))
    elif share is not None and kept:
        attrs["label"] = _gamma_label(None, color, share[0])
    if not kept:
        attrs.update(color=DROPPED_COLOR, style="dashed", penwidth="0.7", arrowsize="0.4")
    return attrs


def _gamma_label(gamma: float | None, color: str, annotation: str | None = None) -> str:
    """An edge's label: its γ, after the name of its shared gate or choice when it has one."""
    parts = [] if annotation is None else [html.escape(annotation)]
    if gamma is not None:
        parts.append(f"{gamma:.2f}")
    return (
        f'<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="0" BGCOLOR="white"><TR><TD>'
        f'<FONT POINT-SIZE="{GAMMA_SIZE}" COLOR="{color}">{" ".join(parts)}</FONT></TD></TR></TABLE>>'
    )


def _legend(
    kinds: Sequence[str], kept_rule: str | None, shared: Sequence[tuple[str, str]] = ()
) -> tuple[str, int]:
    rows = [_legend_line(COLORS[kind], "2", False, KIND_LABELS[kind]) for kind in kinds]
    rows += [_legend_line(color, "2", False, text) for color, text in shared]
    if kept_rule is not None:
        rows.append(_legend_line("#555555", "2", False, kept_rule))
        rows.append(_legend_line("#aaaaaa", "1", True, "dropped"))
    for fill, pen, text in ((INPUT_FILL, INPUT_PEN, "input"), (OUTPUT_FILL, OUTPUT_PEN, "output")):
        rows.append(
            f'<TR><TD WIDTH="30" HEIGHT="12" FIXEDSIZE="TRUE" BGCOLOR="{fill}" COLOR="{pen}" BORDER="1"></TD>'
            f'<TD ALIGN="LEFT"><FONT POINT-SIZE="{LEGEND_SIZE}">{text}</FONT></TD></TR>'
        )
    table = (
        '<<TABLE BORDER="1" CELLBORDER="0" CELLSPACING="3" CELLPADDING="1" COLOR="#b0b0b0" BGCOLOR="white">'
        f'<TR><TD COLSPAN="2"><FONT POINT-SIZE="{LEGEND_SIZE}"><B>legend</B></FONT></TD></TR>{"".join(rows)}'
        "</TABLE>>"
    )
    return table, len(rows) + 1


def _legend_line(color: str, width: str, dashed: bool, text: str) -> str:
    style = ' STYLE="dashed"' if dashed else ""
    return (
        f'<TR><TD WIDTH="30" HEIGHT="8" FIXEDSIZE="TRUE" SIDES="B" BORDER="{width}" COLOR="{color}"{style}></TD>'
        f'<TD ALIGN="LEFT"><FONT POINT-SIZE="{LEGEND_SIZE}">{text}</FONT></TD></TR>'
    )


# ---------------------------------------------------------------------------------------------
# Files


def draw(
    network: Network,
    out_base: Path,
    gammas: Mapping[str, float] | None = None,
    title: str | None = None,
    formats: Sequence[str] = ("svg", "png"),
    threshold: float = 0.5,
    kept: Sequence[bool] | Mapping[str, bool] | None = None,
) -> DrawResult:
    """Write ``out_base.dot`` and, when Graphviz is installed, ``out_base.<format>`` for each
    format (PNG at 110 dpi); each file is written beside its target and renamed over it. Without
    Graphviz only the ``.dot`` file is written and ``dot_missing`` is set (the caller says so).
    ``gammas``, ``title``, ``threshold`` and ``kept`` are those of `diagram_source`."""
    numeric.real("--keep-threshold", threshold, 0, 1, min_open=True, max_open=True)
    out_base = Path(out_base)
    if out_base.suffix in (".dot", ".svg", ".png"):
        out_base = out_base.with_suffix("")  # `-o cnf.png` means the base name cnf
    source = diagram_source(network, gammas=gammas, title=title, threshold=threshold, kept=kept)
    dot_path = out_base.parent / f"{out_base.name}.dot"
    try:
        dot_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{dot_path.parent}: cannot create the directory ({describe(exc)})") from None
    atomic_write_text(dot_path, source)
    neato = _grid(network) is not None
    binary = shutil.which("neato" if neato else "dot")
    if binary is None:
        return DrawResult(dot=dot_path, rendered=[], dot_missing=True)
    rendered = []
    for fmt in formats:
        target = out_base.parent / f"{out_base.name}.{fmt}"
        _render(binary, ["-n2"] if neato else [], dot_path, target, fmt)
        rendered.append(target)
    return DrawResult(dot=dot_path, rendered=rendered, dot_missing=False)


def _render(binary: str, flags: list[str], dot_path: Path, target: Path, fmt: str) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write it ({describe(exc)})") from None
    os.close(fd)
    # Absolute paths start with '/': a user's path (`-o -o/x`) can never read as an option.
    command = [binary, *flags, f"-T{fmt}", "-o", os.path.abspath(tmp), os.path.abspath(dot_path)]
    if fmt in ("png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "webp"):
        command.insert(1, f"-Gdpi={PNG_DPI}")
    try:
        try:
            done = subprocess.run(
                command, check=False, capture_output=True, text=True, timeout=RENDER_TIMEOUT
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise BsncError(f"Graphviz could not render {display_path(target)}: {error}") from error
        if done.returncode != 0 or os.path.getsize(tmp) == 0:
            message = done.stderr.strip() or f"exit status {done.returncode}"
            raise BsncError(f"Graphviz could not render {display_path(target)}: {message}")
        os.chmod(tmp, 0o644)  # mkstemp made it private; a picture is for sharing
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
