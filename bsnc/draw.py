"""Graphviz diagrams of super networks, laid out like the figures of the paper.

Layers with layout hints (`at (x, y)` in the `.bsn` file) are pinned on a grid: x to the right,
y downwards (a CNF has its finest scale at the top, a ResNet its first group), and the ``neato``
engine only routes the edges. Without hints (or with two layers on one spot) ``dot`` ranks the
layers from left to right instead.

Edges are coloured by kind as in Figure 1 of the paper, from the spatial size of the two layers:
blue keeps the resolution, green lowers it, red raises it. Skip connections are grey: an edge
without parameters (``identity``, ``pad_channels``, a pooling), and a *projection shortcut*,
an edge of only 1x1 convolutions, batch norms and parameter-free ops that runs beside another
edge between the same two layers (the ``proj`` path of a ResNet block). A 1x1 convolution alone
between two layers (a classifier head) is coloured by resolution like any other edge.

With edge probabilities γ, kept edges (γ > threshold; fixed edges count as kept) are solid and
labelled with γ; dropped edges are dashed, thin and light grey, drawn beneath the kept ones;
layers that no kept edge touches are faded.
"""

from __future__ import annotations

import html
import math
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import graphviz

from bsnc.errors import BsncError, display_path
from bsnc.files import atomic_write_text
from bsnc.ir import Edge, Layer, Network
from bsnc.ops import REGISTRY

# Edge kinds and their colours (Figure 1 of the paper: blue, green, red; grey for skips).
SAME, DOWN, UP, SKIP = "same", "down", "up", "skip"
COLORS = {SAME: "#1f5fd6", DOWN: "#179c3c", UP: "#d62728", SKIP: "#8a8a8a"}
KIND_LABELS = {SAME: "same scale", DOWN: "down-sampling", UP: "up-sampling", SKIP: "skip / projection"}
DROPPED_COLOR = "#c8c8c8"
FADED_TEXT = "#b0b0b0"
INPUT_FILL, OUTPUT_FILL, LAYER_FILL = "#ffe08a", "#c9b3f2", "#f4f6fb"

# Layout: grid steps in points, fonts in points, PNG resolution.
FONT = "Helvetica"
NAME_SIZE, SHAPE_SIZE, GAMMA_SIZE = 10, 8, 7
MIN_X_STEP, MIN_Y_STEP = 96.0, 80.0
PNG_DPI = 110
# Ops that neither learn nor change where information goes: allowed inside a projection shortcut.
_PROJECTION_OPS = {"bn", "identity", "pad_channels", "flatten", "dropout", "relu"}


@dataclass
class DrawResult:
    dot: Path
    rendered: list[Path] = field(default_factory=list)
    dot_missing: bool = False


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
    if not any(op.prim == "conv" for op in edge.ops):
        return False
    for op in edge.ops:
        if op.prim == "conv":
            if op.kwargs.get("k", 3) not in (1, (1, 1), [1, 1]):
                return False
        elif op.prim not in _PROJECTION_OPS and REGISTRY[op.prim].params(edge.shapes[0], op.kwargs) != 0:
            return False
    return any(other.dst == edge.dst and other.key != edge.key for other in network.out_edges(edge.src))


def _gamma_text(gamma: float) -> str:
    return f"{gamma:.2f}"


def _num(value: float) -> str:
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


def _shape_text(shape: Sequence[int]) -> str:
    return "\u00d7".join(str(d) for d in shape)


def _human(count: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= size:
            return f"{count / size:.3g}{unit}"
    return str(count)


def _grid(network: Network) -> dict[str, tuple[float, float]] | None:
    """The layout hints when every layer has one and no two layers share a spot."""
    positions = {layer.name: layer.position for layer in network.layers}
    if any(p is None for p in positions.values()):
        return None
    spots = [(float(x), float(y)) for x, y in positions.values()]  # type: ignore[misc]
    if len(set(spots)) != len(spots):
        return None
    return {name: (float(p[0]), float(p[1])) for name, p in positions.items()}  # type: ignore[index]


def _label_width(layer: Layer) -> float:
    """A generous estimate of a node's width in points (Helvetica is ~0.6 em per character)."""
    chars = max(len(layer.name) * NAME_SIZE, len(_shape_text(layer.shape)) * SHAPE_SIZE)
    return 0.6 * chars + 16


def _steps(network: Network, grid: Mapping[str, tuple[float, float]]) -> tuple[float, float]:
    """Grid steps in points: room for the widest label plus a gap that keeps the edges apart,
    and rows pulled apart when the picture is very wide (a deep ResNet fabric), so that the
    edges between rows fan out instead of lying flat."""
    xs = sorted({x for x, _ in grid.values()})
    ys = sorted({y for _, y in grid.values()})
    widest = max(_label_width(layer) for layer in network.layers)
    x_step = max(MIN_X_STEP, widest + 44)
    y_step = MIN_Y_STEP
    columns, rows = len(xs), len(ys)
    if rows > 1:
        y_step = max(y_step, min(4.0 * MIN_Y_STEP, x_step * (columns - 1) / (rows - 1) / 6.0))
    return x_step, y_step


def diagram_source(
    network: Network,
    gammas: Mapping[str, float] | None = None,
    title: str | None = None,
    threshold: float = 0.5,
) -> str:
    """The Graphviz DOT text of ``network``'s diagram (deterministic: same input, same bytes).

    ``gammas`` maps stochastic edge keys to their probability; an edge is kept when its γ is
    above ``threshold`` (fixed edges, and stochastic edges missing from ``gammas``, count as
    kept; the latter get no γ label). A key that names no edge is an error."""
    if gammas is not None:
        unknown = sorted(set(gammas) - set(network.edge_index))
        if unknown:
            shown = ", ".join(unknown[:3]) + (", ..." if len(unknown) > 3 else "")
            raise BsncError(f"edge probabilities for edges that {network.name} does not have: {shown}")
    grid = _grid(network)
    engine = "neato" if grid is not None else "dot"

    graph = graphviz.Digraph(name=network.name, engine=engine)
    graph.attr(
        "graph",
        layout=engine,
        fontname=FONT,
        bgcolor="white",
        pad="0.3",
        outputorder="edgesfirst",
        label=_title_label(title),
        labelloc="t",
        labeljust="c",
        fontsize="16",
    )
    if grid is not None:
        graph.attr("graph", inputscale="72", notranslate="true", splines="curved", overlap="true")
    else:
        graph.attr("graph", rankdir="LR", splines="true", nodesep="0.25", ranksep="0.6")
    graph.attr("node", shape="box", style="rounded,filled", fontname=FONT, margin="0.06,0.03",
               height="0.3", width="0.3", penwidth="1")
    graph.attr("edge", fontname=FONT, fontsize=str(GAMMA_SIZE), arrowsize="0.5", penwidth="1.2")

    kept = {e.key: _kept(e, gammas, threshold) for e in network.edges}
    touched = {n for e in network.edges if kept[e.key] for n in (e.src, e.dst)}
    positions: dict[str, tuple[float, float]] = {}
    if grid is not None:
        x_step, y_step = _steps(network, grid)
        x0 = min(x for x, _ in grid.values())
        y0 = min(y for _, y in grid.values())
        positions = {n: ((x - x0) * x_step, -(y - y0) * y_step) for n, (x, y) in grid.items()}

    for layer in network.layers:
        attrs = _node_attrs(network, layer, faded=layer.name not in touched)
        if layer.name in positions:
            x, y = positions[layer.name]
            attrs["pos"] = f"{_num(x)},{_num(y)}!"
        graph.node(layer.name, **attrs)

    kinds = {e.key: edge_kind(network, e) for e in network.edges}
    # Dropped edges first, so that the kept ones are drawn over them.
    for edge in sorted(network.edges, key=lambda e: kept[e.key]):
        graph.edge(edge.src, edge.dst, **_edge_attrs(edge, kinds[edge.key], kept[edge.key], gammas))

    legend = _legend(sorted(set(kinds.values()), key=list(COLORS).index), gammas is not None, threshold)
    legend_attrs = {"shape": "plaintext", "style": "", "margin": "0", "label": legend}
    if grid is not None:
        xs = [x for x, _ in positions.values()]
        ys = [y for _, y in positions.values()]
        # Below the grid, at its right end (the output of a classifier sits at the bottom right).
        legend_attrs["pos"] = f"{_num(max(xs) - 40)},{_num(min(ys) - 90)}!"
        graph.node("__legend__", **legend_attrs)
    else:
        graph.node("__legend__", **legend_attrs)
    return graph.source


def _title_label(title: str | None) -> str:
    """A plain (not HTML) label; backslashes literal, line breaks kept."""
    if not title:
        return ""
    return graphviz.nohtml(title.replace("\\", "\\\\").replace("\n", "\\n"))


def _kept(edge: Edge, gammas: Mapping[str, float] | None, threshold: float) -> bool:
    if gammas is None or edge.fixed or edge.key not in gammas:
        return True
    return float(gammas[edge.key]) > threshold


def _node_attrs(network: Network, layer: Layer, faded: bool) -> dict[str, str]:
    name = html.escape(layer.name)
    shape = html.escape(_shape_text(layer.shape))
    text_color = FADED_TEXT if faded else "#000000"
    label = (f'<<FONT POINT-SIZE="{NAME_SIZE}" COLOR="{text_color}"><B>{name}</B></FONT><BR/>'
             f'<FONT POINT-SIZE="{SHAPE_SIZE}" COLOR="{FADED_TEXT if faded else "#444444"}">{shape}</FONT>>')
    if layer.kind == "input":
        fill, pen, width = INPUT_FILL, "#b07c00", "2"
    elif layer.kind == "output":
        fill, pen, width = OUTPUT_FILL, "#5a2ca0", "2"
    else:
        fill, pen, width = LAYER_FILL, "#5c6f91", "1"
    attrs = {"label": label, "fillcolor": fill, "color": pen, "penwidth": width,
             "tooltip": f"{layer.name} {list(layer.shape)}"}
    if faded:
        attrs.update(fillcolor="#fbfbfb", color="#d6d6d6", style="rounded,filled,dashed", penwidth="1")
    return attrs


def _edge_attrs(edge: Edge, kind: str, kept: bool, gammas: Mapping[str, float] | None) -> dict[str, str]:
    chain = " >> ".join(op.prim for op in edge.ops)
    tooltip = f"{edge.key}: {chain} ({_human(edge.param_count())} params, {_human(edge.macs())} MACs)"
    attrs = {"color": COLORS[kind], "tooltip": tooltip}
    if gammas is not None and edge.stochastic and edge.key in gammas:
        gamma = float(gammas[edge.key])
        attrs["tooltip"] += f", \u03b3={gamma:.3f}"
        if kept:
            attrs.update(label=_gamma_text(gamma), fontcolor=COLORS[kind], penwidth="1.6")
        else:
            attrs.update(color=DROPPED_COLOR, style="dashed", penwidth="0.7", arrowsize="0.4")
    return attrs


def _legend(kinds: Sequence[str], with_gammas: bool, threshold: float) -> str:
    rows = []
    for kind in kinds:
        rows.append(_legend_row(COLORS[kind], "solid", "2", KIND_LABELS[kind]))
    if with_gammas:
        rows.append(_legend_row("#555555", "solid", "2", f"kept (\u03b3 &gt; {threshold:g}), label \u03b3"))
        rows.append(_legend_row("#b0b0b0", "dashed", "1", "dropped"))
    rows.append('<TR><TD WIDTH="36" HEIGHT="14" BGCOLOR="{}" COLOR="#b07c00" BORDER="1"></TD>'
                '<TD ALIGN="LEFT">input</TD></TR>'.format(INPUT_FILL))
    rows.append('<TR><TD WIDTH="36" HEIGHT="14" BGCOLOR="{}" COLOR="#5a2ca0" BORDER="1"></TD>'
                '<TD ALIGN="LEFT">output</TD></TR>'.format(OUTPUT_FILL))
    return ('<<TABLE BORDER="1" CELLBORDER="0" CELLSPACING="3" CELLPADDING="1" COLOR="#aaaaaa">'
            f'<TR><TD COLSPAN="2"><FONT POINT-SIZE="9"><B>edges</B></FONT></TD></TR>{"".join(rows)}</TABLE>>')


def _legend_row(color: str, style: str, width: str, text: str) -> str:
    dash = ' STYLE="dashed"' if style == "dashed" else ""
    return (f'<TR><TD WIDTH="36" HEIGHT="8" SIDES="B" BORDER="{width}" COLOR="{color}"{dash}></TD>'
            f'<TD ALIGN="LEFT"><FONT POINT-SIZE="9">{text}</FONT></TD></TR>')


def graphviz_binary(engine: str = "dot") -> str | None:
    return shutil.which(engine)


def draw(
    network: Network,
    out_base: Path,
    gammas: Mapping[str, float] | None = None,
    title: str | None = None,
    formats: Sequence[str] = ("svg", "png"),
    threshold: float = 0.5,
) -> DrawResult:
    """Write ``out_base.dot`` and, when Graphviz is installed, ``out_base.<format>`` for each
    format; every file is written atomically. Without Graphviz only the ``.dot`` file is written
    and ``dot_missing`` is set (the caller says so once)."""
    out_base = Path(out_base)
    source = diagram_source(network, gammas=gammas, title=title, threshold=threshold)
    dot_path = out_base.with_suffix(".dot")
    dot_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(dot_path, source)
    engine = "neato" if "layout=neato" in source else "dot"
    binary = shutil.which(engine)
    if binary is None:
        return DrawResult(dot=dot_path, rendered=[], dot_missing=True)
    rendered = []
    for fmt in formats:
        target = out_base.with_suffix(f".{fmt}")
        _render(binary, dot_path, target, fmt)
        rendered.append(target)
    return DrawResult(dot=dot_path, rendered=rendered, dot_missing=False)


def _render(binary: str, dot_path: Path, target: Path, fmt: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    command = [binary, f"-T{fmt}", "-o", tmp, str(dot_path)]
    if fmt in ("png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "webp"):
        command.insert(1, f"-Gdpi={PNG_DPI}")
    try:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise BsncError(f"Graphviz could not render {display_path(target)}: {error}") from error
        if done.returncode != 0 or os.path.getsize(tmp) == 0:
            message = done.stderr.strip() or f"exit status {done.returncode}"
            raise BsncError(f"Graphviz could not render {display_path(target)}: {message}")
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
