"""Export, prune and diagrams of networks with shared gates, choice groups and `concat` layers."""

from __future__ import annotations

import re
import shutil

import pytest
import torch
from click.testing import CliRunner

from bsnc.cli import main
from bsnc.codegen.architecture import concat_channels, full_network, kept_proposal, prune
from bsnc.codegen.loader import compile_network
from bsnc.costs.analytic import FlopsCost, ParamsCost
from bsnc.errors import BsncError
from bsnc.export.draw import COLORS, SHARED_COLORS, diagram_source
from bsnc.export.exporter import export
from bsnc.ir import Network
from bsnc.lang.formatter import format_file
from bsnc.lang.frontend import load_network, network_from_program, network_from_text
from bsnc.lang.parser import parse
from bsnc.lang.program import parse_text

from .helpers import DECISIONS_NET, FABRICS, SMALL

# what reads `c`: its head is the linear layer (sliced on export), or nothing reads channel by channel
GLOBAL = "relu >> global_avgpool >> linear(5)"
FLATTEN = "flatten >> linear(5)"
NO_HEAD = "bn >> relu >> global_avgpool >> linear(5)"

# (pick, g, x->c) -> the kept edges into c, in slot order
CHOICES = [
    ("op[1]", True, True, ["a->c", "b->c", "x->c"]),
    ("none", True, False, ["a->c"]),
    ("op[0]", False, True, ["x->c"]),
    ("none", True, True, ["a->c", "x->c"]),
    ("op[0]", True, False, ["a->c", "b->c"]),
]


def _text(reader: str = GLOBAL) -> str:
    return DECISIONS_NET.replace("READER", reader)


def _trained_like(text: str, seed: int = 0) -> tuple:
    """The program, network and a super module with BN statistics, as training leaves them."""
    torch.manual_seed(seed)
    program = parse_text(text, "t.bsn")
    network = network_from_program(program)
    module = compile_network(network)()
    module.train().set_mode("full")
    for _ in range(3):
        module(torch.randn(8, *network.layer(network.input).shape))
    return program, network, module


def _decide(module: torch.nn.Module, network: Network, **values: bool | str) -> None:
    """Set gate_logits so that each decision (by name; an edge's own gate by its key) takes the
    given value: a gate True/False, a choice group an option's name."""
    logits = torch.zeros(network.n_logits)
    for decision in network.decisions:
        value = values[decision.name]
        if decision.kind == "gate":
            logits[decision.offset] = 4.0 if value else -4.0
        else:
            logits[decision.offset + decision.option_names().index(value)] = 4.0
    with torch.no_grad():
        module.gate_logits.copy_(logits)


def _static(directory, name: str = "t") -> tuple[Network, torch.nn.Module]:
    pruned = load_network(directory / f"{name}_pruned.bsn")
    static = compile_network(pruned)()
    static.load_state_dict(torch.load(directory / f"{name}_pruned.pt", weights_only=True))
    return pruned, static.double().eval()


def _same_outputs(network: Network, module: torch.nn.Module, static: torch.nn.Module) -> None:
    """The exported network computes the super network's deterministic mode, in float64."""
    module.double().eval().set_mode("deterministic")
    x = torch.randn(6, *network.layer(network.input).shape, dtype=torch.float64)
    assert torch.allclose(static(x), module(x), rtol=1e-12, atol=1e-12)


def _edge_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if "->" in line and not line.lstrip().startswith("#")]


# --- prune ------------------------------------------------------------------------------------


@pytest.mark.parametrize("pick, g, xc, into_c", CHOICES)
def test_prune_keeps_decisions_as_fixed_edges(pick, g, xc, into_c):
    program, network, module = _trained_like(_text())
    _decide(module, network, pick=pick, g=g, **{"x->c": xc})
    pruned = prune(network, kept_proposal(network, module.gate_logits))
    assert pruned.decisions == [] and pruned.plain and not pruned.stochastic_edges
    assert all(e.group is None and e.decision == -1 and e.fixed for e in pruned.edges)
    # a shared gate's edges go together (b->c only when b is reached), a group keeps its option
    assert [e.key for e in sorted(pruned.in_edges("c"), key=lambda e: e.slot)] == into_c
    members = {e.key for e in pruned.edges if e.dst == "b"}
    assert members == (set() if pick == "none" or "b->c" not in into_c else {f"x->b:{pick}"})
    widths = {"a->c": 4, "b->c": 4, "x->c": 4}
    assert pruned.layer("c").shape == (sum(widths[k] for k in into_c), 4, 4)
    first = {"a->c": 0, "b->c": 4, "x->c": 8}
    expected = [ch for key in into_c for ch in range(first[key], first[key] + 4)]
    assert concat_channels(network, pruned) == ({} if len(into_c) == 3 else {"c": expected})


def test_full_network_has_every_option_and_no_decision():
    network = network_from_text(_text())
    full = full_network(network)
    assert full.decisions == [] and not full.stochastic_edges
    assert [e.key for e in full.edges] == [e.key for e in network.edges]
    assert [e.slot for e in full.edges] == [e.slot for e in network.edges]


# --- export -----------------------------------------------------------------------------------


@pytest.mark.parametrize("reader", [GLOBAL, FLATTEN])
@pytest.mark.parametrize("pick, g, xc, into_c", CHOICES)
def test_export_is_static_and_computes_the_deterministic_mode(tmp_path, reader, pick, g, xc, into_c):
    program, network, module = _trained_like(_text(reader))
    _decide(module, network, pick=pick, g=g, **{"x->c": xc})
    result = export(network, program, module.state_dict(), tmp_path, draw_diagram=False)
    text = (tmp_path / "t_pruned.bsn").read_text()
    assert format_file(parse(text, "t_pruned.bsn")) == text, "canonical form"
    lines = _edge_lines(text)
    assert all(line.startswith("fixed ") for line in lines)
    assert not any(re.search(r"\b(gate|choose|prob)\b", line) for line in lines)
    assert "layer c : [" + str(4 * len(into_c)) + ", 4, 4] aggregate concat" in text
    # declared in slot order: the order of the lines is the order of the slots
    assert [line.split(" : ")[0].split()[1] for line in lines if " -> c" in line] == [k[0] for k in into_c]
    pruned, static = _static(tmp_path)
    assert [e.key for e in sorted(pruned.in_edges("c"), key=lambda e: e.slot)] == into_c
    assert not pruned.decisions and len(pruned.edges) == int(result.active.sum())
    det = module.edge_mask("deterministic").unsqueeze(0)
    for cost in (FlopsCost, ParamsCost):
        assert cost(pruned).full() == cost(network)(det)[0].item(), "costs count what the architecture needs"
    _same_outputs(network, module, static)


def test_concat_slicing_keeps_the_weights_of_the_kept_channels(tmp_path):
    program, network, module = _trained_like(_text(FLATTEN))
    _decide(module, network, pick="op[0]", g=False, **{"x->c": True})  # only x->c: channels 8-11
    export(network, program, module.state_dict(), tmp_path, draw_diagram=False)
    _, static = _static(tmp_path)
    before = module.edges["c__y"][1].weight.detach()  # flatten >> linear: 12 channels of 4x4 features
    after = static.edges["c__y"][1].weight.detach()
    assert before.shape == (5, 12 * 16) and after.shape == (5, 4 * 16)
    assert torch.equal(after, before[:, 8 * 16:].double())
    assert torch.equal(static.edges["c__y"][1].bias, module.edges["c__y"][1].bias.double())


def test_a_conv_after_a_narrowed_concat_keeps_its_input_columns(tmp_path):
    text = """
network v() {
    input x : [3, 4, 4]
    layer c : [6, 4, 4] aggregate concat post relu
    output y : [5, 2, 2]
    x -> c as p : conv(2, k=1)
    x -> c as q : conv(4, k=3)
    fixed c -> y : maxpool(2, stride=2) >> conv(5, k=1)
}
"""
    program, network, module = _trained_like(text)
    _decide(module, network, **{"x->c:p": False, "x->c:q": True})
    export(network, program, module.state_dict(), tmp_path, draw_diagram=False)
    pruned, static = _static(tmp_path, "v")
    assert pruned.layer("c").shape == (4, 4, 4) and "maxpool(2, stride=2) >> conv(5, k=1)" in (
        tmp_path / "v_pruned.bsn").read_text()
    assert torch.equal(static.edges["c__y"][1].weight, module.edges["c__y"][1].weight[:, 2:].double())
    _same_outputs(network, module, static)
    # costs: the head is charged for the channels that remain
    assert ParamsCost(pruned).full() == network.param_count() - 2 * 3 - 2 - 2 * 5


def test_a_linear_layer_after_a_vector_concat_keeps_its_columns(tmp_path):
    text = """
network l() {
    input x : [6]
    layer c : [5] aggregate concat
    output y : [3]
    x -> c as p : linear(2)
    x -> c as q : linear(3)
    fixed c -> y : dropout(0.5) >> linear(3)
}
"""
    program, network, module = _trained_like(text)
    _decide(module, network, **{"x->c:p": True, "x->c:q": False})
    export(network, program, module.state_dict(), tmp_path, draw_diagram=False)
    pruned, static = _static(tmp_path, "l")
    assert pruned.layer("c").shape == (2,)
    assert torch.equal(static.edges["c__y"][1].weight, module.edges["c__y"][1].weight[:, :2].double())
    _same_outputs(network, module, static)


@pytest.mark.parametrize("pick, g, xc, into_c", CHOICES)
def test_a_reader_without_a_head_keeps_absent_slots_as_zeros(tmp_path, pick, g, xc, into_c):
    program, network, module = _trained_like(_text(NO_HEAD))
    _decide(module, network, pick=pick, g=g, **{"x->c": xc})
    export(network, program, module.state_dict(), tmp_path, draw_diagram=False)
    text = (tmp_path / "t_pruned.bsn").read_text()
    pruned, static = _static(tmp_path)
    assert pruned.layer("c").shape == (12, 4, 4), "the layer keeps its channels"
    fillers = [e for e in pruned.in_edges("c") if e.name is not None and e.name.startswith("absent")]
    assert len(fillers) == 3 - len(into_c)
    assert all(op.prim == "zero" for e in fillers for op in e.ops)
    assert {e.slot for e in fillers} == {0, 4, 8} - {{"a->c": 0, "b->c": 4, "x->c": 8}[k] for k in into_c}
    # a and b are in the architecture only through their slots: zeros from the input, with the slot's channels
    for key, first in (("a->c", 0), ("b->c", 4), ("x->c", 8)):
        assert (f"fixed x -> c as absent[{first}] : zero(c=4)" in text) == (key not in into_c)
    assert not re.search(r"\b(gate|choose)\b", text)
    _same_outputs(network, module, static)
    assert FlopsCost(pruned).full() == FlopsCost(network)(module.edge_mask("deterministic").unsqueeze(0))[0].item()


def test_a_concat_output_keeps_its_shape(tmp_path):
    text = """
network o() {
    input x : [2, 8, 8]
    layer h : [3, 4, 4]
    layer k : [3, 4, 4]
    output y : [9, 4, 4] aggregate concat
    fixed x -> h : conv(3, k=3, stride=2)
    x -> k : conv(3, k=3, stride=2)
    h -> y as p : conv(3, k=1)
    h -> y as q : identity
    k -> y : identity
}
"""
    program, network, module = _trained_like(text)
    _decide(module, network, **{"h->y:p": False, "h->y:q": True, "x->k": False, "k->y": True})
    export(network, program, module.state_dict(), tmp_path, draw_diagram=False)
    pruned, static = _static(tmp_path, "o")
    assert pruned.layer("y").shape == (9, 4, 4)
    written = _edge_lines((tmp_path / "o_pruned.bsn").read_text())
    assert written == [
        "fixed x -> h : conv(3, k=3, stride=2)",
        "fixed h -> y as absent[0] : zero",  # from the slot's own source
        "fixed h -> y as q : identity",
        # k is not in the architecture: zeros from the input, subsampled, with the slot's channels
        "fixed x -> y as absent[6] : zero(stride=2, c=3)",
    ]
    _same_outputs(network, module, static)


def test_a_slot_larger_than_every_earlier_map_is_filled_by_upsampled_zeros(tmp_path):
    """With x->h off, the output's slot of `thin` is [2, 8, 8] and the only earlier map is the
    4x4 input: zeros of the input, up-sampled (training chose such architectures, which export
    once refused)."""
    text = """
network u() {
    input x : [4, 4, 4]
    layer h : [4, 8, 8]
    output y : [6, 8, 8] aggregate concat
    x -> h : upsample(2)
    fixed h -> y as thin : conv(2, k=1)
    x -> y as wide : upsample(2) >> conv(4, k=1)
}
"""
    program, network, module = _trained_like(text)
    _decide(module, network, **{"x->h": False, "x->y:wide": True})
    export(network, program, module.state_dict(), tmp_path, draw_diagram=False)
    assert _edge_lines((tmp_path / "u_pruned.bsn").read_text()) == [
        "fixed x -> y as absent[0] : zero(c=2) >> upsample(2)",
        "fixed x -> y as wide : upsample(2) >> conv(4, k=1)",
    ]
    pruned, static = _static(tmp_path, "u")
    assert pruned.layer("y").shape == (6, 8, 8)
    _same_outputs(network, module, static)
    assert FlopsCost(pruned).full() == FlopsCost(network)(module.edge_mask("deterministic").unsqueeze(0))[0].item()


def test_an_unfillable_slot_is_a_clear_error(tmp_path):
    """The slot is [2, 6, 10]; the input, [4, 2, 4], gives no such map by a stride and one
    up-sampling factor (6 / 2 != 10 / 4, and 6 != 10 once pooled to 1 x 1)."""
    text = """
network u() {
    input x : [4, 2, 4]
    layer h : [4, 6, 10]
    output y : [6, 6, 10] aggregate concat
    x -> h : upsample(2) >> conv(4, k=1, padding=1)
    fixed h -> y as thin : conv(2, k=1)
    x -> y as wide : upsample(2) >> conv(4, k=1, padding=1)
}
"""
    program, network, module = _trained_like(text)
    _decide(module, network, **{"x->h": False, "x->y:wide": True})
    with pytest.raises(BsncError) as error:
        export(network, program, module.state_dict(), tmp_path / "out", draw_diagram=False)
    message = str(error.value)
    assert "layer 'y'" in message and "'h->y:thin' (channels 0-1)" in message and "it is the output" in message
    assert "[2, 6, 10]" in message and "'h' is not in it" in message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


CONCAT_OUT = """
network n10(F: int = 8) {
    input x : INPUT
    layer h : [F] post relu
    x -> h as l : READ >> linear(F)
    output y : [10] aggregate concat
    h -> y as a : linear(5)
    x -> y as b : READ >> linear(5)
}
"""


@pytest.mark.parametrize("shape, read, filler", [
    ("[64]", "identity", "fixed x -> y as absent[0] : zero(c=5)"),  # a vector's zeros, narrowed
    ("[1, 8, 8]", "global_avgpool", "fixed x -> y as absent[0] : zero(c=5) >> global_avgpool"),  # a map's, pooled
])
def test_a_vector_slot_is_filled_from_any_earlier_layer(tmp_path, shape, read, filler):
    """The output's slot of `a` is absent: zeros of [5] from a [64] vector, or from a [1, 8, 8]
    map (training chose such architectures, which export once refused)."""
    text = CONCAT_OUT.replace("INPUT", shape).replace("READ", read)
    program, network, module = _trained_like(text)
    _decide(module, network, **{"x->h:l": False, "h->y:a": True, "x->y:b": True})
    export(network, program, module.state_dict(), tmp_path, draw_diagram=False)
    assert filler in _edge_lines((tmp_path / "n10_pruned.bsn").read_text())
    pruned, static = _static(tmp_path, "n10")
    assert pruned.layer("y").shape == (10,)
    _same_outputs(network, module, static)
    assert FlopsCost(pruned).full() == FlopsCost(network)(module.edge_mask("deterministic").unsqueeze(0))[0].item()


def test_a_module_type_that_reads_its_input_channels_is_written_as_primitives(tmp_path):
    text = """
module widen(c) = conv(in_channels * 2, k=1) >> relu >> conv(c, k=1)
module costly(c) = conv(in_channels, k=1) >> global_avgpool >> linear(c) cost in_channels * 10

network m() {
    input x : [2, 4, 4]
    layer c : [6, 4, 4] aggregate concat
    layer d : [3, 4, 4]
    output y : [5]
    x -> c as p : conv(2, k=1)
    x -> c as q : conv(4, k=1)
    fixed c -> d : widen(3)
    fixed c -> y : costly(5)
    fixed d -> y : global_avgpool >> linear(5)
}
"""
    program, network, module = _trained_like(text)
    _decide(module, network, **{"x->c:p": False, "x->c:q": True})
    export(network, program, module.state_dict(), tmp_path, draw_diagram=False)
    written = (tmp_path / "m_pruned.bsn").read_text()
    assert "fixed c -> d : conv(12, k=1) >> relu >> conv(3, k=1)" in written  # the super network's 6 * 2
    assert "module inlined() = conv(6, k=1) >> global_avgpool >> linear(5) cost 60" in written
    assert "fixed c -> y : inlined" in written and "fixed d -> y : global_avgpool >> linear(5)" in written
    pruned, static = _static(tmp_path, "m")
    assert pruned.layer("c").shape == (4, 4, 4)
    _same_outputs(network, module, static)


def test_a_module_type_that_no_longer_fits_is_written_as_primitives(tmp_path):
    text = """
module mixed(c) = conv(c, k=1) >> conv(c, k=3, groups=in_channels)

network f() {
    input x : [2, 4, 4]
    layer c : [6, 4, 4] aggregate concat
    output y : [6, 4, 4]
    x -> c as p : conv(2, k=1)
    x -> c as q : conv(4, k=1)
    fixed c -> y : mixed(6)
}
"""
    program, network, module = _trained_like(text)
    _decide(module, network, **{"x->c:p": False, "x->c:q": True})
    export(network, program, module.state_dict(), tmp_path, draw_diagram=False)  # groups=4 would not divide 6
    written = (tmp_path / "f_pruned.bsn").read_text()
    assert "fixed c -> y : conv(6, k=1) >> conv(6, groups=6)" in written and "module mixed" not in written
    _, static = _static(tmp_path, "f")
    _same_outputs(network, module, static)


def test_header_names_the_decisions(tmp_path):
    program, network, module = _trained_like(_text())
    _decide(module, network, pick="op[1]", g=False, **{"x->c": True})
    export(network, program, module.state_dict(), tmp_path, draw_diagram=False)
    assert "# decisions pick op[1], g off\n" in (tmp_path / "t_pruned.bsn").read_text()


# --- diagrams ---------------------------------------------------------------------------------


def test_diagram_shows_shared_gates_choice_groups_and_concat():
    from bsnc.codegen.architecture import edge_gammas, kept_edges

    network = network_from_text(_text())
    plain = diagram_source(network)
    pick, g = SHARED_COLORS[0], SHARED_COLORS[1]

    def edge_line(source: str, tail: str) -> str:
        return next(line for line in source.splitlines() if line.strip().startswith(tail))

    for tail, color in (("x -> b", pick), ("a -> c", g), ("b -> c", g)):
        assert f'color="{color}"' in edge_line(plain, tail), "one colour per shared gate and choice group"
    assert f'COLOR="{pick}">pick: op[0]</FONT>' in plain and f'COLOR="{pick}">pick: op[1]</FONT>' in plain
    assert plain.count(f'COLOR="{g}">g</FONT>') == 2, "both edges of gate g carry its name"
    assert f'color="{COLORS["same"]}"' in edge_line(plain, "x -> c"), "an edge's own gate: colour by kind"
    assert "choose pick (op[0], op[1], none)" in plain and "gate g" in plain
    assert "4×4×4 concat" not in plain and "12×4×4 concat" in plain
    # with probabilities: the group's label carries each option's probability
    logits = torch.tensor([0.0, 2.0, -1.0, 1.0, 1.0])
    gammas = edge_gammas(network, logits)
    probs = diagram_source(network, gammas=gammas, kept=kept_edges(network, logits).tolist())
    assert f'pick: op[1] {gammas["x->b:op[1]"]:.2f}</FONT>' in probs
    assert f'g {gammas["a->c"]:.2f}</FONT>' in probs
    assert f'pick: op[0] {gammas["x->b:op[0]"]:.2f}</FONT>' not in probs, "a dropped option has no label"


def test_plain_networks_draw_without_sharing():
    network = load_network(FABRICS / "cnf.bsn", {"W": 2, "C": 4, "size": 8})
    source = diagram_source(network)
    assert not any(color in source for color in SHARED_COLORS) and "concat" not in source


# --- the command line -------------------------------------------------------------------------


def test_train_then_export_draw_and_report(tmp_path):
    bsn = tmp_path / "t.bsn"
    bsn.write_text(_text())
    run = tmp_path / "run"
    runner = CliRunner()
    trained = runner.invoke(main, ["train", str(bsn), "--data", "fake", "--budget", "100%", "--epochs", "2",
                                   "--batch-size", "32", "--device", "cpu", "--run-dir", str(run), "-q"])
    assert trained.exit_code == 0, trained.output
    exported = runner.invoke(main, ["export", str(run), "--prune", "-o", str(tmp_path / "out")])
    assert exported.exit_code == 0, exported.output
    text = (tmp_path / "out" / "t_pruned.bsn").read_text()
    assert format_file(parse(text, "x")) == text
    assert not any(re.search(r"\b(gate|choose|prob)\b", line) for line in _edge_lines(text))
    assert "# decisions pick " in text
    # the exported network computes what the run's super network computes in deterministic mode
    from bsnc.search.checkpoint import load_checkpoint

    network = network_from_text(_text())
    module = compile_network(network)()
    module.load_state_dict(load_checkpoint(run / "best.pt")["model"])
    _, static = _static(tmp_path / "out")
    _same_outputs(network, module, static)

    drawn = runner.invoke(main, ["draw", str(bsn), "--probs", str(run), "-o", str(tmp_path / "d")])
    assert drawn.exit_code == 0, drawn.output
    dot = (tmp_path / "d.dot").read_text()
    assert "concat" in dot and "gate g" in dot and "choose pick" in dot
    if shutil.which("dot"):
        report = runner.invoke(main, ["report", str(run), "-o", str(tmp_path / "report")])
        assert report.exit_code == 0, report.output
        assert (tmp_path / "report" / "report.html").is_file()


# unet's cheapest architecture (no skip) costs 83% of its MACs: 90% leaves one skip to decide
@pytest.mark.parametrize("name, data, budget", [("darts", "fake", "60%"), ("unet", "synthetic-seg", "90%")])
def test_shipped_fabric_trains_exports_static_and_round_trips(tmp_path, name, data, budget):
    """darts.bsn and unet.bsn at tiny size: trained under a budget, exported as an ordinary
    static .bsn that compiles and computes the run's deterministic mode."""
    overrides = {key: str(value) for key, value in SMALL[f"{name}.bsn"].items()}
    defines = [arg for key, value in overrides.items() for arg in ("-D", f"{key}={value}")]
    run, out = tmp_path / "run", tmp_path / "out"
    runner = CliRunner()
    trained = runner.invoke(main, ["train", str(FABRICS / f"{name}.bsn"), *defines, "--data", data, "--budget", budget,
                                   "--epochs", "2", "--batch-size", "32", "--device", "cpu", "--seed", "0",
                                   "--run-dir", str(run), "-q"])
    assert trained.exit_code == 0, trained.output
    exported = runner.invoke(main, ["export", str(run), "--prune", "-o", str(out)])
    assert exported.exit_code == 0, exported.output

    text = (out / f"{name}_pruned.bsn").read_text()
    assert format_file(parse(text, "x")) == text
    assert not any(re.search(r"\b(gate|choose|prob)\b", line) for line in _edge_lines(text))
    pruned, static = _static(out, name)
    assert not pruned.decisions and not pruned.stochastic_edges
    # concatenation only of what is kept: no slot is refilled with zeros in these fabrics
    assert not [e.key for e in pruned.edges if ":absent[" in e.key]

    from bsnc.search.checkpoint import load_checkpoint

    network = load_network(FABRICS / f"{name}.bsn", overrides)
    module = compile_network(network)()
    module.load_state_dict(load_checkpoint(run / "best.pt")["model"])
    _same_outputs(network, module, static)


def test_export_says_how_it_chose_and_keeps_accuracies_only_of_the_evaluated_architecture(tmp_path):
    """--keep-threshold applies to gates; a choice group keeps its most probable option (0.6 here,
    under every threshold). An architecture other than the one the run evaluated gets no
    accuracy in its header (it once got that one's); a threshold that cuts the output is named."""
    import math

    from bsnc.search.checkpoint import load_checkpoint, save_checkpoint

    (tmp_path / "t.bsn").write_text(_text())
    run = tmp_path / "run"
    trained = CliRunner().invoke(main, ["train", str(tmp_path / "t.bsn"), "--data", "fake", "--epochs", "1",
                                        "--budget", "100%", "--device", "cpu", "--run-dir", str(run), "-q"])
    assert trained.exit_code == 0, trained.output
    state = load_checkpoint(run / "ckpt.pt")
    network = network_from_program(parse_text(_text(), "t.bsn"))
    logits = torch.zeros(network.n_logits)
    for decision in network.decisions:
        if decision.kind == "choice":  # op[0] 0.6, op[1] 0.3, none 0.1
            logits[decision.offset:decision.offset + 3] = torch.tensor([0.6, 0.3, 0.1]).log()
        else:  # g: 0.9; x->c's own gate: 0.95
            logits[decision.offset] = math.log(9.0) if decision.name == "g" else math.log(19.0)
    state["model"]["gate_logits"] = logits
    save_checkpoint(run / "ckpt.pt", state)

    def export_at(threshold: str):
        out = tmp_path / f"out{threshold}"
        result = CliRunner().invoke(main, ["export", str(run / "ckpt.pt"), "--prune", "--keep-threshold", threshold,
                                           "-o", str(out)])
        text = (out / "t_pruned.bsn").read_text() if result.exit_code == 0 else ""
        return result, text

    result, text = export_at("0.5")
    assert result.exit_code == 0, result.output
    assert "gates with gamma > 0.5; each choice group its most probable option" in text
    assert "decisions pick op[0], g on" in text and "val accuracy" in text and "not measured" not in text

    result, text = export_at("0.92")  # g (0.9) off, x->c (0.95) on: not the evaluated architecture
    assert result.exit_code == 0, result.output
    assert "gates with gamma > 0.92; each choice group its most probable option" in text
    assert "decisions pick op[0], g off" in text
    assert "val accuracy" not in text and "test accuracy" not in text
    assert "accuracy not measured: the run evaluated another architecture" in text

    result, _ = export_at("0.99")  # every gate off: nothing reaches c, so nothing reaches y
    assert result.exit_code == 1
    assert "the edges kept at --keep-threshold 0.99 leaves the output 'y' unreachable" in result.stderr
