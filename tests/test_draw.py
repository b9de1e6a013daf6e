"""Diagrams: the DOT text (deterministic, complete, coloured by edge kind, γ styles) and the
files `draw` writes (atomically; without Graphviz only the .dot file)."""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import bsnc.export.draw as draw_module
from bsnc.errors import BsncError
from bsnc.export.draw import COLORS, DROPPED_COLOR, DrawResult, diagram_source, draw, edge_kind
from bsnc.lang.frontend import load_network, network_from_text

from .helpers import FABRICS

HAS_GRAPHVIZ = shutil.which("neato") is not None and shutil.which("dot") is not None
needs_graphviz = pytest.mark.skipif(not HAS_GRAPHVIZ, reason="Graphviz is not installed")

NODE = re.compile(r'^\t("(?:[^"\\]|\\.)*"|\w+) \[(.*)\]$')
EDGE = re.compile(r'^\t("(?:[^"\\]|\\.)*"|\w+) -> ("(?:[^"\\]|\\.)*"|\w+) \[(.*)\]$')


@pytest.fixture(scope="module")
def cnf():
    return load_network(FABRICS / "cnf.bsn", {"W": 3, "C": 4, "size": 8})


@pytest.fixture(scope="module")
def resnet():
    return load_network(FABRICS / "resnet20.bsn", {"width": 4, "size": 8})


def _unquote(name: str) -> str:
    return name[1:-1].replace('\\"', '"') if name.startswith('"') else name


def _attr(attrs: str, name: str) -> str | None:
    match = re.search(rf'(?:^| ){name}=("(?:[^"\\]|\\.)*"|<<.*?>>|[^ ]+)', attrs)
    if match is None:
        return None
    value = match.group(1)
    return value[1:-1] if value.startswith('"') else value


def _nodes(source: str) -> dict[str, str]:
    out = {}
    for line in source.splitlines():
        match = NODE.match(line)
        if match and _unquote(match.group(1)) not in ("graph", "node", "edge"):
            out[_unquote(match.group(1))] = match.group(2)
    return out


def _edges(source: str) -> dict[str, str]:
    """Edge statements by edge key (the key opens each edge's tooltip)."""
    out = {}
    for line in source.splitlines():
        match = EDGE.match(line)
        if match:
            key = _attr(match.group(3), "tooltip").split(": ")[0]
            assert key not in out, f"edge {key} drawn twice"
            out[key] = match.group(3)
    return out


def test_source_is_deterministic(cnf):
    gammas = {e.key: (i % 7) / 7 for i, e in enumerate(cnf.stochastic_edges)}
    first = diagram_source(cnf, gammas=gammas, title="cnf: 1.2 M flops")
    again = load_network(FABRICS / "cnf.bsn", {"W": 3, "C": 4, "size": 8})
    assert (
        diagram_source(again, gammas=dict(reversed(gammas.items())), title="cnf: 1.2 M flops")
        == first
    )
    assert diagram_source(cnf) == diagram_source(cnf)


@pytest.mark.parametrize(
    "fabric, overrides",
    [
        ("cnf.bsn", {"W": 3, "C": 4, "size": 8}),
        ("resnet20.bsn", {"width": 4, "size": 8}),
        ("resnet_fabric_n3.bsn", {"width": 4, "size": 8}),
        ("cnf_seg.bsn", {"W": 3, "C": 4, "size": 8}),
    ],
)
def test_every_layer_and_edge_appears(fabric, overrides):
    network = load_network(FABRICS / fabric, overrides)
    source = diagram_source(network)
    nodes = _nodes(source)
    assert set(nodes) == {layer.name for layer in network.layers} | {"__legend__"}
    edges = _edges(source)
    assert set(edges) == {edge.key for edge in network.edges}
    assert source.count(" -> ") == len(network.edges)
    # Laid out on the grid of the layout hints: every layer pinned, every edge routed.
    assert "layout=neato" in source
    assert all(_attr(attrs, "pos").endswith("!") for attrs in nodes.values())
    assert all(_attr(attrs, "pos").startswith("e,") for attrs in edges.values())


def test_grid_follows_the_layout_hints(cnf):
    nodes = _nodes(diagram_source(cnf))

    def pos(name):
        x, y = _attr(nodes[name], "pos").rstrip("!").split(",")
        return float(x), float(y)

    assert (
        pos("n[0][0]")[1] == pos("n[2][0]")[1] > pos("n[0][1]")[1] > pos("n[0][3]")[1]
    )  # finer on top
    assert (
        pos("x")[0] < pos("n[0][0]")[0] == pos("n[0][3]")[0] < pos("n[1][0]")[0] < pos("n[2][0]")[0]
    )


def test_colours_by_kind(cnf):
    edges = _edges(diagram_source(cnf))
    expected = {
        "n[0][0]->n[1][1]": "down",
        "n[0][0]->n[0][1]": "down",
        "n[0][1]->n[1][0]": "up",
        "n[0][0]->n[1][0]": "same",
        "n[1][2]->n[2][2]": "same",
        "x->n[0][0]": "same",
    }
    for key, kind in expected.items():
        assert edge_kind(cnf, cnf.edge(key)) == kind
        assert _attr(edges[key], "color") == COLORS[kind], key
    assert "n[0][1]->n[1][0]" in cnf.edge_index


def test_resnet_block_draws_both_paths(resnet):
    edges = _edges(diagram_source(resnet))
    conv, skip = edges["r[0]->r[1]:conv"], edges["r[0]->r[1]:skip"]
    assert _attr(conv, "color") == COLORS["same"]
    assert _attr(skip, "color") == COLORS["skip"]  # identity
    assert _attr(conv, "pos") != _attr(skip, "pos")  # side by side, not on top of each other
    # The projection shortcut of a down-sampling block is a skip; its conv path goes down.
    first = next(e for e in resnet.edges if e.name == "skip" and e.ops[0].prim == "conv")
    assert edge_kind(resnet, first) == "skip"
    assert edge_kind(resnet, resnet.edge(first.key.replace(":skip", ":conv"))) == "down"


def test_fabric_shortcuts_are_routed_apart():
    network = load_network(FABRICS / "resnet_fabric_n3.bsn", {"width": 4, "size": 8})
    edges = _edges(diagram_source(network))
    routes = [_attr(attrs, "pos") for attrs in edges.values()]
    assert len(set(routes)) == len(routes)


def test_gammas_kept_solid_dropped_dashed(cnf):
    gammas = {e.key: (0.9 if i % 2 else 0.1) for i, e in enumerate(cnf.stochastic_edges)}
    source = diagram_source(cnf, gammas=gammas, title="with γ")
    edges = _edges(source)
    for edge in cnf.edges:
        attrs = edges[edge.key]
        if edge.fixed:
            assert _attr(attrs, "style") is None and "0.90" not in attrs
        elif gammas[edge.key] > 0.5:
            assert _attr(attrs, "style") is None
            assert _attr(attrs, "color") == COLORS[edge_kind(cnf, edge)]
            assert "0.90" in _attr(attrs, "label") and _attr(attrs, "lp") is not None
        else:
            assert _attr(attrs, "style") == "dashed"
            assert _attr(attrs, "color") == DROPPED_COLOR
            assert _attr(attrs, "label") is None
    assert "dropped" in _attr(_nodes(source)["__legend__"], "label")
    # Dropped edges come first so that kept ones are drawn over them.
    styles = [_attr(a, "style") for a in edges.values()]
    assert styles.index(None) > max(i for i, s in enumerate(styles) if s == "dashed")


def test_threshold_and_faded_layers(cnf):
    gammas = {e.key: 0.6 for e in cnf.stochastic_edges}
    for edge in cnf.in_edges("n[2][2]") + cnf.out_edges("n[2][2]"):
        gammas[edge.key] = 0.2
    source = diagram_source(cnf, gammas=gammas, threshold=0.7)  # everything dropped
    assert all(
        _attr(a, "style") == "dashed" for k, a in _edges(source).items() if cnf.edge(k).stochastic
    )
    source = diagram_source(cnf, gammas=gammas, threshold=0.5)
    nodes = _nodes(source)
    assert "dashed" in _attr(nodes["n[2][2]"], "style")
    assert "dashed" not in (_attr(nodes["n[1][2]"], "style") or "")


def test_unknown_gamma_key_is_an_error(cnf):
    with pytest.raises(BsncError, match="no-such-edge"):
        diagram_source(cnf, gammas={"no-such-edge": 0.5})


def test_title_is_escaped(cnf):
    source = diagram_source(cnf, title='cnf "W=3" <b>\\ 1.2 M flops\nsecond')
    assert 'label="cnf \\"W=3\\" <b>\\\\ 1.2 M flops\\nsecond"' in source


def test_without_layout_hints_dot_ranks_the_layers():
    network = network_from_text("""
        network plain(C: int = 4) {
            input x : [3, 8, 8]
            layer a : [C, 8, 8]
            output y : [10]
            fixed x -> a : conv(C, k=3)
            a -> y : global_avgpool >> linear(10)
        }
    """)
    source = diagram_source(network, gammas={"a->y": 0.8})
    assert "layout=dot" in source and "rankdir=LR" in source and "pos=" not in source
    assert set(_edges(source)) == {"x->a", "a->y"}


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@needs_graphviz
def test_draw_writes_dot_svg_png(cnf, tmp_path):
    result = draw(
        cnf, tmp_path / "cnf", gammas={e.key: 0.7 for e in cnf.stochastic_edges}, title="cnf"
    )
    assert isinstance(result, DrawResult) and not result.dot_missing
    assert result.dot == tmp_path / "cnf.dot"
    assert result.rendered == [tmp_path / "cnf.svg", tmp_path / "cnf.png"]
    assert _files(tmp_path) == ["cnf.dot", "cnf.png", "cnf.svg"]  # no temporary file left
    assert result.dot.read_text() == diagram_source(
        cnf, gammas={e.key: 0.7 for e in cnf.stochastic_edges}, title="cnf"
    )
    assert (tmp_path / "cnf.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = ET.parse(tmp_path / "cnf.svg").getroot()
    assert svg.tag.endswith("svg")
    titles = {t.text for t in svg.iter("{http://www.w3.org/2000/svg}title")}
    assert {layer.name for layer in cnf.layers} <= titles


@needs_graphviz
def test_draw_without_positions_uses_dot(tmp_path):
    network = network_from_text("""
        network plain(C: int = 4) {
            input x : [3, 8, 8]
            output y : [10]
            x -> y : global_avgpool >> linear(10)
        }
    """)
    result = draw(network, tmp_path / "out" / "plain", formats=("svg",))
    assert result.rendered == [tmp_path / "out" / "plain.svg"]
    assert _files(tmp_path / "out") == ["plain.dot", "plain.svg"]


def test_draw_without_graphviz_keeps_the_dot(cnf, tmp_path, monkeypatch):
    monkeypatch.setattr(draw_module.shutil, "which", lambda name, *a, **k: None)
    result = draw(cnf, tmp_path / "cnf")
    assert result.dot_missing and result.rendered == []
    assert _files(tmp_path) == ["cnf.dot"]
    assert result.dot.read_text() == diagram_source(cnf)


def test_graphviz_errors_become_bsnc_errors(cnf, tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "neato"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'Error: syntax error in line 3' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(draw_module.shutil, "which", lambda name, *a, **k: str(fake))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(BsncError, match="syntax error in line 3"):
        draw(cnf, out / "cnf")
    assert _files(out) == ["cnf.dot"]  # nothing half-written


def test_kept_mask_overrides_the_threshold(cnf):
    gammas = {e.key: 0.9 for e in cnf.stochastic_edges}
    mask = [edge.key != "n[0][0]->n[1][1]" and edge.key != "x->n[0][0]" for edge in cnf.edges]
    edges = _edges(diagram_source(cnf, gammas=gammas, kept=mask))
    assert _attr(edges["n[0][0]->n[1][1]"], "style") == "dashed"  # γ 0.9, yet not active
    assert _attr(edges["x->n[0][0]"], "style") == "dashed"  # a fixed edge, pruned
    assert _attr(edges["n[0][0]->n[1][0]"], "style") is None
    by_key = _edges(diagram_source(cnf, gammas=gammas, kept={"n[0][0]->n[1][1]": False}))
    assert _attr(by_key["n[0][0]->n[1][1]"], "style") == "dashed"
    assert _attr(by_key["x->n[0][0]"], "style") is None
    with pytest.raises(BsncError, match="kept flags"):
        diagram_source(cnf, kept=[True])
