"""Every shipped fabric: loads, is canonical, counts its weights like torch, matches the paper."""

from __future__ import annotations

import pytest

from bsnc.lang.formatter import format_file
from bsnc.lang.frontend import load_network
from bsnc.lang.parser import parse
from tests.conftest import FABRICS

FABRIC_FILES = sorted(FABRICS.glob("*.bsn"))


def small_overrides(path) -> dict[str, str]:
    """Overrides that keep CNF files fast and small; ResNets load as they are."""
    if path.name.startswith("cnf"):
        overrides = {"C": "16"}
        if path.name == "cnf_seg.bsn":
            overrides["size"] = "32"
        return overrides
    return {}


@pytest.mark.parametrize("path", FABRIC_FILES, ids=lambda p: p.name)
def test_fabric_loads_is_canonical_and_counts_like_torch(path):
    text = path.read_text(encoding="utf-8")
    assert format_file(parse(text, str(path))) == text

    net = load_network(path, small_overrides(path))
    assert net.name == path.stem
    assert len(net.layers) >= 3 and len(net.edges) >= len(net.layers) - 1
    assert net.layers[0].name == net.input and net.layers[-1].name == net.output

    counted = 0
    for edge in net.edges:
        assert len(edge.shapes) == len(edge.ops) + 1
        assert edge.shapes[0] == net.layer(edge.src).shape
        dst = net.layer(edge.dst).shape
        if edge.slot is not None:  # one slot of a concat layer: its own channels, within the layer's
            assert edge.shapes[-1][1:] == dst[1:] and edge.slot + edge.shapes[-1][0] <= dst[0], edge.key
        else:
            assert edge.shapes[-1] == dst
        modules = [spec.build() for spec in edge.module_specs()]
        weights = sum(p.numel() for m in modules for p in m.parameters())
        assert weights == edge.param_count(), edge.key
        counted += weights
    assert counted == net.param_count() > 0


def _millions(name: str, **overrides) -> float:
    return load_network(FABRICS / f"{name}.bsn", overrides).param_count() / 1e6


@pytest.mark.parametrize(
    "name, millions",
    [
        ("resnet20", 0.27),
        ("resnet32", 0.47),
        ("resnet44", 0.66),
        ("resnet56", 0.86),
        ("resnet110", 1.73),
    ],
)
def test_resnet_parameter_counts(name, millions):
    assert _millions(name) == pytest.approx(millions, rel=0.02)


@pytest.mark.parametrize(
    "name, millions", [("cnf_w1", 0.74), ("cnf_w2", 3.85), ("cnf_w4", 8.58), ("cnf_w8", 18.04)]
)
def test_cnf_parameter_counts(name, millions):
    assert _millions(name) == pytest.approx(millions, rel=0.02)


def test_cnf_w8_shape_of_the_fabric():
    net = load_network(FABRICS / "cnf_w8.bsn")
    assert net.param_count() == 18_041_610
    assert len(net.stochastic_edges) == 122
    assert len(net.edges) == 124
    assert len(net.layers) == 2 + 8 * 6
    assert net.layer("n[7][5]").shape == (128, 1, 1)
    assert net.layer("y").shape == (10,)
    assert {e.key for e in net.edges if e.fixed} == {"x->n[0][0]", "n[7][5]->y"}


def test_cnf_seg_output_is_a_full_resolution_map():
    net = load_network(FABRICS / "cnf_seg.bsn")
    assert net.layer(net.output).shape == (3, 256, 256)
    assert net.layer(net.input).shape == (3, 256, 256)
    assert net.params["segmentation"] is True


def test_cnf_alias_equals_overrides_of_the_base():
    alias = load_network(FABRICS / "cnf_w2.bsn", {"C": "16"})
    base = load_network(FABRICS / "cnf.bsn", {"W": "2", "C": "16"})
    assert alias.edges == base.edges
    assert alias.layers == base.layers


@pytest.mark.parametrize(
    "plain, fabric", [("resnet20", "resnet_fabric_n3"), ("resnet56", "resnet_fabric_n9")]
)
def test_resnet_is_a_subgraph_of_its_fabric(plain, fabric):
    small = load_network(FABRICS / f"{plain}.bsn")
    big = load_network(FABRICS / f"{fabric}.bsn")
    assert [(layer.name, layer.shape) for layer in small.layers] == [
        (layer.name, layer.shape) for layer in big.layers
    ]
    assert len(big.edges) > len(small.edges)
    for edge in small.edges:
        assert edge.key in big.edge_index, edge.key
        other = big.edge(edge.key)
        assert other.ops == edge.ops, edge.key
        assert other.shapes == edge.shapes, edge.key
    assert all(e.fixed for e in small.edges)
    assert not any(e.fixed for e in big.edges)
    # the fabric's extra edges are the cross-group shortcuts, in conv/skip pairs
    extra = [e.key for e in big.edges if e.key not in small.edge_index]
    assert extra and len(extra) % 2 == 0
    assert all(key.endswith((":conv", ":skip")) for key in extra)
