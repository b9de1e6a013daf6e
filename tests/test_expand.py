"""Expansion through the front end: parameters and overrides, loops, conditions, scopes,
module types, aliases, imports, edge keys and the canonical order of layers and edges."""

from __future__ import annotations

import math

import pytest

from bsnc.errors import BsncError, SourceError, UsageError
from bsnc.ir import OpCall, natural_key
from bsnc.lang.frontend import load_network, network_from_text


def chain(width: str = "4") -> str:
    return f"    input x : [{width}]\n    output y : [{width}]\n"


# --- parameters and overrides ------------------------------------------------------------

PARAMS = """network n(a: int = 2, f: float = 0.5, b: bool = false, s: str = "x", r: int, u = 7) {
    input x : [a]
    output y : [a]
    x -> y : dropout(f)
}
"""


def test_defaults_and_required_given():
    net = network_from_text(PARAMS, {"r": 3})
    assert net.params == {"a": 2, "f": 0.5, "b": False, "s": "x", "r": 3, "u": 7}
    assert list(net.params) == ["a", "f", "b", "s", "r", "u"]
    assert net.layer("x").shape == (2,)
    assert net.edges[0].ops == (OpCall("dropout", (("p", 0.5),)),)


def test_string_overrides_are_read_as_the_parameter_type():
    net = network_from_text(
        PARAMS, {"r": "3", "a": "4", "f": "0.1", "b": "true", "s": "hello", "u": "1_000"}
    )
    assert net.params == {"a": 4, "f": 0.1, "b": True, "s": "hello", "r": 3, "u": 1000}
    assert type(net.params["f"]) is float and type(net.params["a"]) is int
    assert net.layer("y").shape == (4,)
    assert net.edges[0].ops[0].kwargs == {"p": 0.1}


@pytest.mark.parametrize(
    "text, value",
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("false", False),
        ("0", False),
        ("no", False),
    ],
)
def test_bool_override_spellings(text, value):
    assert network_from_text(PARAMS, {"r": 1, "b": text}).params["b"] is value


def test_python_value_overrides():
    net = network_from_text(PARAMS, {"r": 5, "f": 0, "b": True, "s": "y"})
    assert net.params["r"] == 5
    assert net.params["f"] == 0.0 and type(net.params["f"]) is float  # int widens to float
    assert net.params["b"] is True
    assert net.params["s"] == "y"


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"r": "x"}, ["-D r=x", "int", "whole number"]),
        ({"r": "1.5"}, ["-D r=1.5", "int"]),
        ({"r": 1, "f": "fast"}, ["-D f=fast", "float"]),
        ({"r": 1, "b": "maybe"}, ["-D b=maybe", "bool", "true or false"]),
        ({"r": True}, ["-D r=True", "int", "bool"]),
        ({"r": 3.0}, ["-D r=3.0", "int", "float"]),
        ({"r": 1, "s": 3}, ["-D s=3", "str", "int"]),
        ({"r": 1, "b": 1}, ["-D b=1", "bool"]),
    ],
)
def test_wrongly_typed_override(overrides, words):
    with pytest.raises(UsageError) as info:
        network_from_text(PARAMS, overrides)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("text", ["_4", "4_", "4__0", "1_000_", "\u0663", "\uff14", "+-4", "4 4", "0x10", "", "-"])
def test_int_override_is_ascii_digits(text):
    """int() took '_4', '4_' and '4__0' once the underscores were removed, and digits of other
    scripts (Arabic-Indic 3, full-width 4)."""
    with pytest.raises(UsageError, match="is int; expected a whole number") as info:
        network_from_text(PARAMS, {"r": text})
    assert str(info.value).startswith(f"-D r={text}: parameter 'r' is int")


@pytest.mark.parametrize(("text", "value"), [("4", 4), ("-4", -4), ("+4", 4), ("1_000", 1000), (" 7 ", 7),
                                             ("1_2_3", 123), ("007", 7)])
def test_int_override_spellings(text, value):
    assert network_from_text(PARAMS, {"r": text}).params["r"] == value


def test_float_override_is_ascii():
    with pytest.raises(UsageError, match="is float; expected a finite number"):
        network_from_text(PARAMS, {"r": 1, "f": "\u0663.5"})
    assert network_from_text(PARAMS, {"r": 1, "f": "25e-2"}).params["f"] == 0.25


def test_unknown_override():
    with pytest.raises(UsageError) as info:
        network_from_text(PARAMS, {"r": 1, "zz": "2"})
    message = str(info.value)
    assert "-D zz=2" in message and "no parameter 'zz'" in message
    assert "a, f, b, s, r, u" in message


def test_missing_required_parameter():
    with pytest.raises(UsageError) as info:
        network_from_text(PARAMS)
    assert "needs a value for 'r'" in str(info.value)
    assert "-D r=VALUE" in str(info.value)


def test_non_finite_float_override_is_refused():
    with pytest.raises(UsageError):
        network_from_text(PARAMS, {"r": 1, "f": "nan"})


def test_parameter_defaults_are_type_checked():
    with pytest.raises(SourceError) as info:
        network_from_text('network n(a: int = "x") {\n' + chain() + "    x -> y : relu\n}\n")
    assert "parameter 'a' is int" in info.value.message
    # an int default widens to a float parameter
    net = network_from_text(
        "network n(a: float = 1) {\n" + chain() + "    x -> y : dropout(a / 4)\n}\n"
    )
    assert net.params == {"a": 1.0} and type(net.params["a"]) is float


# --- loops, conditions, scopes -----------------------------------------------------------


def test_for_ranges_are_inclusive():
    net = network_from_text(
        "network n(k: int = 3) {\n" + chain() + "    for i in 1..k {\n        layer h[i] : [4]\n"
        "        x -> h[i] : relu\n        h[i] -> y : relu\n    }\n}\n"
    )
    assert [layer.name for layer in net.layers] == ["x", "h[1]", "h[2]", "h[3]", "y"]
    assert [layer.indices for layer in net.layers] == [(), (1,), (2,), (3,), ()]
    assert net.layer("h[2]").base == "h"


@pytest.mark.parametrize("start, stop, count", [(0, 0, 1), (2, 1, 0), (5, -5, 0), (-2, 1, 4)])
def test_range_lengths_and_empty_ranges(start, stop, count):
    offset = f"i - ({start})"
    net = network_from_text(
        "network n() {\n" + chain() + "    x -> y as base : relu\n"
        f"    for i in {start}..{stop} {{\n"
        f"        layer h[{offset}] : [4]\n"
        f"        x -> h[{offset}] : relu\n"
        f"        h[{offset}] -> y : relu\n"
        "    }\n}\n"
    )
    assert len(net.layers) == 2 + count
    assert len(net.edges) == 1 + 2 * count
    assert [layer.name for layer in net.layers[1:-1]] == [f"h[{i}]" for i in range(count)]


def test_loop_variable_drives_shapes():
    net = network_from_text(
        "network n() {\n    input x : [1, 16, 16]\n    output y : [1, 2, 2]\n"
        "    layer p[0] : [1, 16, 16]\n    x -> p[0] : identity\n"
        "    for i in 1..3 {\n        layer p[i] : [1, 16 >> i, 16 >> i]\n"
        "        p[i - 1] -> p[i] : maxpool(2)\n    }\n    p[3] -> y : identity\n}\n"
    )
    assert [net.layer(f"p[{i}]").shape for i in range(4)] == [
        (1, 16, 16),
        (1, 8, 8),
        (1, 4, 4),
        (1, 2, 2),
    ]
    assert net.edge("p[2]->p[3]").shapes == ((1, 4, 4), (1, 2, 2))


def test_if_else_and_else_if():
    text = (
        "network n(mode: int = 0) {\n"
        + chain()
        + "    if mode == 0 {\n        x -> y as zero : relu\n"
        "    } else if mode == 1 {\n        x -> y as one : identity\n"
        "    } else {\n        x -> y as other : dropout(0.1)\n    }\n}\n"
    )
    assert [e.key for e in network_from_text(text).edges] == ["x->y:zero"]
    assert [e.key for e in network_from_text(text, {"mode": 1}).edges] == ["x->y:one"]
    assert [e.key for e in network_from_text(text, {"mode": "7"}).edges] == ["x->y:other"]


def test_if_condition_must_be_bool():
    with pytest.raises(SourceError) as info:
        network_from_text(
            "network n() {\n" + chain() + "    if 1 {\n        x -> y : relu\n    }\n}\n"
        )
    assert "true or false" in info.value.message
    assert info.value.span.line == 4


def test_let_scoping():
    net = network_from_text(
        "network n() {\n"
        "    let c = 2\n"
        "    input x : [c]\n"
        "    for i in 0..1 {\n"
        "        let c = 3 + i  # shadows the outer c inside the loop body\n"
        "        layer h[i] : [c]\n"
        "        x -> h[i] : linear(c)\n"
        "        h[i] -> y : linear(2)\n"
        "    }\n"
        "    if true {\n        let d = c * 10\n        layer z : [d]\n"
        "        x -> z : linear(d)\n        z -> y : linear(c)\n    }\n"
        "    output y : [c]\n"
        "}\n"
    )
    assert net.layer("h[0]").shape == (3,)
    assert net.layer("h[1]").shape == (4,)
    assert net.layer("z").shape == (20,)
    assert net.layer("y").shape == (2,)


def test_let_is_not_visible_outside_its_block():
    with pytest.raises(SourceError) as info:
        network_from_text(
            "network n() {\n" + chain() + "    for i in 0..0 {\n        let q = 4\n    }\n"
            "    layer z : [q]\n    x -> z : relu\n    z -> y : relu\n}\n"
        )
    assert "undefined name 'q'" in info.value.message


def test_let_twice_in_one_block_is_an_error():
    with pytest.raises(SourceError) as info:
        network_from_text(
            "network n() {\n    let a = 1\n    let a = 2\n" + chain() + "    x -> y : relu\n}\n"
        )
    assert "already defined" in info.value.message
    assert info.value.span.line == 3


def test_loop_variable_shadows_a_parameter_only_inside():
    net = network_from_text(
        "network n(i: int = 9) {\n    input x : [i]\n    output y : [i]\n"
        "    for i in 0..1 {\n        layer h[i] : [9]\n"
        "        x -> h[i] : relu\n        h[i] -> y : relu\n    }\n}\n"
    )
    assert net.layer("x").shape == (9,)
    assert {layer.name for layer in net.layers} == {"x", "h[0]", "h[1]", "y"}


# --- module types ------------------------------------------------------------------------


def test_module_types_with_defaults_and_nesting():
    net = network_from_text(
        "module block(c, k=3, act=true) = conv(c, k=k, bias=false) >> bn\n"
        "module double(c, stride=1) = conv(c, k=1, stride=stride) >> block(c * 2, k=1)\n"
        "network n() {\n"
        "    input x : [3, 8, 8]\n"
        "    layer a : [4, 8, 8]\n"
        "    layer b : [8, 4, 4]\n"
        "    output y : [8, 4, 4]\n"
        "    x -> a : block(4)\n"
        "    a -> b : double(4, stride=2)\n"
        "    b -> y : identity\n"
        "}\n"
    )
    first = net.edge("x->a")
    assert [op.prim for op in first.ops] == ["conv", "bn"]
    assert first.ops[0].kwargs == {
        "c": 4,
        "k": 3,
        "stride": 1,
        "padding": "same",
        "groups": 1,
        "dilation": 1,
        "bias": False,
    }
    second = net.edge("a->b")
    assert [op.signature() for op in second.ops] == [
        "conv(c=4, k=1, stride=2, padding='same', groups=1, dilation=1, bias=True)",
        "conv(c=8, k=1, stride=1, padding='same', groups=1, dilation=1, bias=False)",
        "bn",
    ]
    assert second.shapes == ((4, 8, 8), (4, 4, 4), (8, 4, 4), (8, 4, 4))
    assert [(c.name, c.args) for c in second.calls] == [("double", ((None, 4), ("stride", 2)))]
    assert set(net.modules_used) == {"block", "double"}


def test_module_default_may_use_earlier_parameters():
    net = network_from_text(
        "module m(c, d=c * 2) = linear(d) >> linear(c)\n"
        "network n() {\n" + chain() + "    x -> y : m(4)\n}\n"
    )
    assert [op.kwargs["f"] for op in net.edges[0].ops] == [8, 4]


def test_module_missing_argument():
    with pytest.raises(SourceError) as info:
        network_from_text(
            "module m(c) = linear(c)\nnetwork n() {\n" + chain() + "    x -> y : m()\n}\n"
        )
    assert "needs argument 'c'" in info.value.message


def test_recursive_module_type_is_refused():
    with pytest.raises(SourceError) as info:
        network_from_text(
            "module a(c) = b(c)\nmodule b(c) = a(c)\nnetwork n() {\n"
            + chain()
            + "    x -> y : a(4)\n}\n"
        )
    assert "uses itself" in info.value.message


def test_module_cannot_hide_a_primitive():
    with pytest.raises(SourceError) as info:
        network_from_text(
            "module relu() = identity\nnetwork n() {\n" + chain() + "    x -> y : relu\n}\n"
        )
    assert "hide the primitive" in info.value.message


def test_unknown_module_suggests_a_name():
    with pytest.raises(SourceError) as info:
        network_from_text("network n() {\n" + chain() + "    x -> y : rleu\n}\n")
    assert "unknown primitive or module 'rleu'" in info.value.message
    assert "did you mean 'relu'" in info.value.message


# --- aliases and imports -----------------------------------------------------------------

BASE = """module blk(c) = linear(c) >> relu

network base(W: int = 2, C: int = 4, p: float = 0.5) {
    input x : [C]
    output y : [C]
    for i in 0..W - 1 {
        layer h[i] : [C]
        x -> h[i] : blk(C) prob p
        fixed h[i] -> y : identity
    }
}
"""


def test_alias_changes_defaults(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "base.bsn").write_text(BASE)
    (tmp_path / "wide.bsn").write_text('import "lib/base.bsn"\n\nnetwork wide = base(3, C=8)\n')
    net = load_network(tmp_path / "wide.bsn")
    assert net.name == "wide"
    assert net.params == {"W": 3, "C": 8, "p": 0.5}
    assert len(net.layers) == 5
    assert net.layer("h[2]").shape == (8,)
    # an override still wins over the alias default
    net = load_network(tmp_path / "wide.bsn", {"W": "1", "p": 0.25})
    assert net.params == {"W": 1, "C": 8, "p": 0.25}
    assert [e.init_prob for e in net.edges] == [0.25, None]
    assert net.modules_used == ("blk",)


def test_alias_of_alias(tmp_path):
    (tmp_path / "base.bsn").write_text(BASE)
    (tmp_path / "mid.bsn").write_text('import "base.bsn"\nnetwork mid = base(W=4)\n')
    (tmp_path / "top.bsn").write_text('import "mid.bsn"\nnetwork top = mid(C=2)\n')
    net = load_network(tmp_path / "top.bsn")
    assert net.params == {"W": 4, "C": 2, "p": 0.5}


def test_alias_unknown_parameter(tmp_path):
    (tmp_path / "base.bsn").write_text(BASE)
    (tmp_path / "bad.bsn").write_text('import "base.bsn"\nnetwork bad = base(Q=1)\n')
    with pytest.raises(SourceError) as info:
        load_network(tmp_path / "bad.bsn")
    assert "no parameter 'Q'" in info.value.message
    assert info.value.span.line == 2


def test_imports_are_relative_to_the_importing_file(tmp_path, monkeypatch):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "mods.bsn").write_text("module two(c) = linear(c) >> linear(c)\n")
    (tmp_path / "a" / "lib.bsn").write_text(
        'import "b/mods.bsn"\nmodule three(c) = two(c) >> linear(c)\n'
    )
    (tmp_path / "main.bsn").write_text(
        'import "a/lib.bsn"\nnetwork n() {\n' + chain() + "    x -> y : three(4)\n}\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working directory plays no part
    net = load_network(tmp_path / "main.bsn")
    assert [op.prim for op in net.edges[0].ops] == ["linear"] * 3


def test_missing_import(tmp_path):
    (tmp_path / "main.bsn").write_text(
        'import "nope.bsn"\nnetwork n() {\n' + chain() + "    x -> y : relu\n}\n"
    )
    with pytest.raises(SourceError) as info:
        load_network(tmp_path / "main.bsn")
    assert 'cannot import "nope.bsn"' in info.value.message


def test_import_cycle(tmp_path):
    (tmp_path / "a.bsn").write_text(
        'import "b.bsn"\nnetwork n() {\n' + chain() + "    x -> y : relu\n}\n"
    )
    (tmp_path / "b.bsn").write_text('import "a.bsn"\n')
    with pytest.raises(SourceError) as info:
        load_network(tmp_path / "a.bsn")
    assert "import cycle: a.bsn -> b.bsn -> a.bsn" in info.value.message


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(BsncError) as info:
        load_network(tmp_path / "absent.bsn")
    assert "no such file" in str(info.value)


# --- edges: keys, probabilities, fixed ---------------------------------------------------


def test_edge_keys_init_prob_and_fixed():
    net = network_from_text(
        "network n() {\n" + chain() + "    x -> y : relu prob 0.25\n"
        "    fixed x -> y as skip : identity\n"
        "    x -> y as half : dropout(0.5) prob 1 / 2\n"
        "}\n"
    )
    edges = {e.key: e for e in net.edges}
    assert set(edges) == {"x->y", "x->y:skip", "x->y:half"}
    plain, skip, half = edges["x->y"], edges["x->y:skip"], edges["x->y:half"]
    assert (plain.name, plain.fixed, plain.init_prob, plain.stochastic) == (None, False, 0.25, True)
    assert (skip.name, skip.fixed, skip.init_prob, skip.stochastic) == ("skip", True, None, False)
    assert half.init_prob == 0.5 and type(half.init_prob) is float
    assert [e.key for e in net.stochastic_edges] == ["x->y", "x->y:half"]
    assert (plain.src, plain.dst) == ("x", "y")


def test_duplicate_edge_key():
    with pytest.raises(SourceError) as info:
        network_from_text(
            "network n() {\n" + chain() + "    x -> y : relu\n    x -> y : identity\n}\n"
        )
    assert "edge 'x->y' is declared twice" in info.value.message
    assert "as NAME" in info.value.message


@pytest.mark.parametrize("prob", ["0", "1", "1.5", "-0.1"])
def test_probability_out_of_range(prob):
    with pytest.raises(SourceError) as info:
        network_from_text("network n() {\n" + chain() + f"    x -> y : relu prob {prob}\n}}\n")
    assert "between 0 and 1" in info.value.message


def test_fixed_edge_with_probability():
    with pytest.raises(SourceError) as info:
        network_from_text("network n() {\n" + chain() + "    fixed x -> y : relu prob 0.5\n}\n")
    assert "remove `prob`" in info.value.message


# --- canonical order ---------------------------------------------------------------------

ORDER = """network n() {
    output y : [4]
    for i in 0..11 {
        layer n[11 - i] : [4]
    }
    input x : [4]
    for i in 0..11 {
        n[11 - i] -> y : relu
    }
    for i in 0..11 {
        x -> n[11 - i] : relu
    }
    x -> y as z : relu
    x -> y as a : relu
}
"""


def test_layers_in_topological_then_natural_order():
    net = network_from_text(ORDER)
    assert [layer.name for layer in net.layers] == ["x"] + [f"n[{i}]" for i in range(12)] + ["y"]
    assert net.input == "x" and net.output == "y"


def test_edges_by_destination_then_source():
    net = network_from_text(ORDER)
    keys = [e.key for e in net.edges]
    assert keys == (
        [f"x->n[{i}]" for i in range(12)] + ["x->y:a", "x->y:z"] + [f"n[{i}]->y" for i in range(12)]
    )
    assert net.edge_index["x->y:z"] == 13
    assert [e.key for e in net.in_edges("n[3]")] == ["x->n[3]"]
    assert [e.key for e in net.out_edges("x")][:3] == ["x->n[0]", "x->n[1]", "x->n[2]"]


def test_order_is_deterministic():
    first = network_from_text(ORDER)
    for _ in range(3):
        again = network_from_text(ORDER)
        assert [layer.name for layer in again.layers] == [layer.name for layer in first.layers]
        assert again.edges == first.edges


def test_topological_order_beats_name_order():
    net = network_from_text(
        "network n() {\n    input x : [4]\n    output y : [4]\n"
        "    layer a : [4]\n    layer b : [4]\n"
        "    x -> b : relu\n    b -> a : relu\n    a -> y : relu\n}\n"
    )
    assert [layer.name for layer in net.layers] == ["x", "b", "a", "y"]


def test_natural_key():
    names = ["n[10]", "n[2]", "n[1][10]", "n[1][9]", "m", "n[1]"]
    assert sorted(names, key=natural_key) == ["m", "n[1]", "n[1][9]", "n[1][10]", "n[2]", "n[10]"]


def test_two_dimensional_natural_order():
    net = network_from_text(
        "network n() {\n"
        + chain()
        + "    for i in 0..10 {\n        for j in 0..1 {\n            layer g[i][j] : [4]\n"
        "            x -> g[i][j] : relu\n            g[i][j] -> y : relu\n        }\n    }\n}\n"
    )
    names = [layer.name for layer in net.layers][1:-1]
    assert names[:4] == ["g[0][0]", "g[0][1]", "g[1][0]", "g[1][1]"]
    assert names[-2:] == ["g[10][0]", "g[10][1]"]
    assert names == sorted(names, key=natural_key)


# --- values ------------------------------------------------------------------------------


def test_expression_values_in_shapes():
    net = network_from_text(
        "network n(size: int = 32) {\n"
        "    let H = log2(size) + 1\n"
        "    let w = int(float(size) / 3)\n"
        "    input x : [H, max(1, w - 20), 2 ** 3 ** 1, abs(-3),\n"
        "               -(-2) * 2, 7 // 2, 7 % 4, min(5, 9)]\n"
        "    output y : [H, max(1, w - 20), 8, 3, 4, 3, 3, 5]\n"
        "    x -> y : identity\n"
        "}\n"
    )
    assert net.layer("x").shape == (6, 1, 8, 3, 4, 3, 3, 5)
    assert math.prod(net.layer("y").shape) == 6 * 8 * 3 * 4 * 3 * 3 * 5


def test_an_error_from_a_value_set_elsewhere_notes_where_it_was_set(tmp_path):
    """A shape of 0 channels is located in cnf.bsn, where C is used; the -D value or the alias
    argument that made C 0 is named in a note."""
    from tests.helpers import FABRICS

    with pytest.raises(SourceError) as caught:
        load_network(FABRICS / "cnf.bsn", {"C": "0", "W": "2"})
    assert caught.value.message == "a shape dimension must be >= 1, got 0"
    assert caught.value.notes[-1].message == "network 'cnf' was given -D C=0 -D W=2"
    alias = tmp_path / "small.bsn"
    alias.write_text(f'import "{FABRICS / "cnf.bsn"}"\n\nnetwork small = cnf(C=0, W=2)\n')
    with pytest.raises(SourceError) as caught:
        load_network(alias)
    note = caught.value.notes[-1]
    assert note.message == "network 'small' is cnf with the arguments given here"
    assert (note.span.file, note.span.line) == (str(alias), 3)
    # an error in the alias itself needs no note pointing at it
    alias.write_text(f'import "{FABRICS / "cnf.bsn"}"\n\nnetwork small = cnf(C=0, Q=2)\n')
    with pytest.raises(SourceError) as caught:
        load_network(alias)
    assert caught.value.span.line == 3 and not caught.value.notes
