"""Shared gates, choice groups and concatenation: generated code against the reference
interpreter, sampling frequencies, log P, deterministic mode, located errors, the formatter and
the DARTS and U-Net fabrics that use them."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from bsnc.codegen.generate import generate
from bsnc.codegen.reference import architecture_from_mask, reference_forward
from bsnc.codegen.runtime import sample_architecture
from bsnc.costs.analytic import FlopsCost, ParamsCost
from bsnc.costs.registry import parse_cost
from bsnc.errors import SourceError
from bsnc.ir import Network
from bsnc.lang.formatter import format_file
from bsnc.lang.frontend import load_network, network_from_text
from bsnc.lang.parser import parse
from tests.helpers import (
    FABRICS,
    ROOT,
    build,
    build_text,
    input_for,
    matches_reference,
    small_overrides,
)

# Two cells that share the groups `first` (with a zero option) and `second` (without) and the
# gate `g` (edges from different sources); concat layers, one of them the output; a plain edge.
CELLS = """\
# Two cells that share their choice groups and a gate, concatenations, and a plain edge.
module sepish(c) = relu >> conv(c, k=3, groups=c, bias=false) >> conv(c, k=1) >> bn

network cells(C: int = 2) {
    input x : [3, 6, 6]
    layer u[0] : [C, 6, 6] post relu
    fixed x -> u[0] : conv(C) >> bn
    for l in 0..1 {
        layer p[l] : [C, 6, 6]
        layer q[l] : [C, 6, 6] post relu
        layer o[l] : [2 * C, 6, 6] aggregate concat
        layer u[l + 1] : [C, 6, 6]
        u[l] -> p[l] as sep : sepish(C) choose first
        u[l] -> p[l] as pool : avgpool(3, stride=1, padding=1) choose first
        u[l] -> p[l] as none : zero choose first
        u[l] -> q[l] as wide : conv(C, k=3) >> bn choose second
        u[l] -> q[l] as thin : conv(C, k=1) choose second
        p[l] -> q[l] as link : conv(C, k=1) prob 0.4 gate g
        fixed p[l] -> o[l] : identity
        fixed q[l] -> o[l] : bn
        fixed o[l] -> u[l + 1] : relu >> conv(C, k=1)
    }
    output y : [4] aggregate concat
    fixed u[2] -> y : global_avgpool >> linear(2)
    u[0] -> y as direct : global_avgpool >> linear(2) prob 0.3
}
"""

# One group of three operations and `none`, one shared gate on two edges from the input and on
# one edge whose source exists only when the group picks an operation.
SAMPLER = """\
network sampler() {
    input x : [2]
    layer a : [2]
    output y : [2]
    x -> a as one : linear(2) choose op
    x -> a as two : linear(2) choose op
    x -> a as three : linear(2) choose op
    x -> a as none : zero choose op
    x -> y as left : linear(2) gate g
    x -> y as right : linear(2) gate g
    a -> y as late : linear(2) gate g
}
"""

TINY = {name: small_overrides(FABRICS / f"{name}.bsn") for name in ("darts", "unet")}  # 4 cells of 2 nodes; depth 2


def _fabric(name: str) -> tuple[Network, torch.nn.Module]:
    return build(FABRICS / f"{name}.bsn", **TINY[name])


def _network(which: str) -> tuple[Network, torch.nn.Module]:
    return build_text(CELLS) if which == "cells" else _fabric(which)


# --- an independent account of the semantics, in plain Python ------------------------------------


def _connected(network: Network, drawn_row: list[bool]) -> set[str]:
    return {network.input} | {e.dst for e, on in zip(network.edges, drawn_row) if on}


def _values(network: Network, drawn_row: list[bool]) -> dict[int, int]:
    """Per offered decision, the value the row's drawn edges show; asserts that they show one."""
    connected = _connected(network, drawn_row)
    values = {}
    for d, decision in enumerate(network.decisions):
        offered = [(e, on) for e, on in zip(network.edges, drawn_row) if e.decision == d and e.src in connected]
        if not offered:
            continue
        if decision.kind == "gate":
            assert len({on for _, on in offered}) == 1, f"gate {decision.name}: its offered edges differ"
            values[d] = int(offered[0][1])
        else:
            picked = {e.option for e, on in offered if on}
            assert len(picked) <= 1, f"group {decision.name}: several options in one example"
            assert picked or decision.zero is not None, f"group {decision.name}: no option drawn"
            values[d] = picked.pop() if picked else decision.width - 1
    return values


def _log_prob(network: Network, logits: torch.Tensor, values: dict[int, int]) -> float:
    """Σ over the offered decisions of log P(value), each counted once."""
    total = 0.0
    for d, value in values.items():
        decision = network.decisions[d]
        theta = [float(t) for t in logits[decision.offset:decision.offset + decision.width]]
        if decision.kind == "gate":
            p = 1 / (1 + math.exp(-theta[0]))
            total += math.log(p if value else 1 - p)
        else:
            total += theta[value] - math.log(sum(math.exp(t) for t in theta))
    return total


def _proposal(network: Network, values: list[list[int]]) -> torch.Tensor:
    """The [B, E] mask that states one value per example and decision (fixed edges on)."""
    return torch.tensor([[e.fixed or row[e.decision] == e.option for e in network.edges] for row in values])


def _random_values(network: Network, batch: int, generator: torch.Generator) -> list[list[int]]:
    widths = [d.width if d.kind == "choice" else 2 for d in network.decisions]
    return [[int(torch.randint(w, (), generator=generator)) for w in widths] for _ in range(batch)]


# --- generated code equals the reference interpreter ---------------------------------------------


@pytest.mark.parametrize("which", ["cells", "darts", "unet"])
@pytest.mark.parametrize("seed", range(2))
def test_generated_equals_reference_on_random_masks(which, seed):
    torch.manual_seed(seed)
    matches_reference(*_network(which))


@pytest.mark.parametrize("which", ["cells", "darts", "unet"])
def test_generated_equals_reference_on_sampled_architectures(which):
    torch.manual_seed(3)
    network, module = _network(which)
    module = module.double().eval()
    with torch.no_grad():
        module.gate_logits.copy_(torch.randn(network.n_logits, dtype=torch.float64))
    module.generator = torch.Generator().manual_seed(5)
    module.set_mode("sample")
    x = input_for(network, 12, torch.float64)
    out = module(x)
    arch = module.last
    assert len({tuple(row) for row in arch.active.tolist()}) > 1, "the batch should mix architectures"
    drawn, active, reached = architecture_from_mask(network, arch.drawn)
    assert torch.equal(arch.drawn, drawn) and torch.equal(arch.active, active)
    assert torch.equal(arch.inconsistent, ~reached)
    assert torch.allclose(out, reference_forward(network, module, x, arch.active), atol=1e-12)
    for b, row in enumerate(arch.drawn.tolist()):  # one value per decision, counted once in log P
        expected = _log_prob(network, module.gate_logits.detach(), _values(network, row))
        assert arch.log_prob[b].item() == pytest.approx(expected, abs=1e-9)


def test_concat_slots_absent_present_and_used_by_one_row():
    torch.manual_seed(0)
    network, module = build_text(CELLS)
    module = module.double()
    keys = [e.key for e in network.edges]
    proposal = torch.ones(6, len(keys), dtype=torch.bool)
    for key in ("u[0]->q[0]:wide", "u[0]->q[0]:thin", "p[0]->q[0]:link", "p[1]->q[1]:link"):  # q[0]: rows 2, 4
        proposal[:, keys.index(key)] = False
    proposal[2, keys.index("u[0]->q[0]:thin")] = True
    proposal[1::2, keys.index("u[0]->y:direct")] = False  # the second slot of y in rows 0, 2, 4
    for key in ("u[0]->p[0]:sep", "u[0]->p[0]:pool"):  # p[0] absent in row 4: only q[0] fills o[0]
        proposal[4, keys.index(key)] = False
    proposal[4, keys.index("u[0]->q[0]:wide")] = True
    module.set_mode("mask", proposal)
    x = input_for(network, 6, torch.float64)
    module.train()(x)  # the lonely row runs in training too
    assert int(module.last.active[:, keys.index("q[0]->o[0]")].sum()) == 2
    out = module.eval()(x)
    active = module.last.active
    assert torch.allclose(out, reference_forward(network, module, x, active), atol=1e-12)
    direct = active[:, keys.index("u[0]->y:direct")]
    assert direct.tolist() == [True, False, True, False, True, False]
    assert torch.all(out[~direct, 2:] == 0) and torch.all(out[direct, 2:] != 0)


def test_reference_concatenates_slots_of_different_widths():
    network, module = build_text(CONCAT.format(channels=7, stride=""))
    module = module.double().eval()
    proposal = torch.tensor([[True, True, True], [False, True, True], [True, False, True]])
    module.set_mode("mask", proposal)
    x = input_for(network, 3, torch.float64)
    assert torch.allclose(module(x), reference_forward(network, module, x, module.last.active), atol=1e-12)


# --- sampling ----------------------------------------------------------------------------------


def _within(frequency: float, p: float, n: int) -> None:
    assert abs(frequency - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1e-9, (frequency, p)


def test_sampling_frequencies_match_the_probabilities():
    network, module = build_text(SAMPLER)
    keys = [e.key for e in network.edges]
    logits = torch.tensor([0.5, -1.0, 1.5, 0.0, -0.7])  # op: one, three, two, none; g
    op, gate = network.decisions
    assert op.options == ("one", "three", "two") and op.zero == "none" and gate.width == 1
    n = 20_000
    arch = sample_architecture(module.structure, logits, n, "sample", generator=torch.Generator().manual_seed(0))
    drawn = arch.drawn
    p = torch.softmax(logits[:4], dim=0)
    members = [drawn[:, keys.index(f"x->a:{label}")] for label in op.options]
    assert torch.all(sum(m.long() for m in members) <= 1), "one option per example"
    for member, prob in zip(members, p):
        _within(member.float().mean().item(), prob.item(), n)
    none = ~torch.stack(members).any(dim=0)
    _within(none.float().mean().item(), p[3].item(), n)
    left, right, late = (drawn[:, keys.index(f"{src}->y:{name}")] for src, name in
                         (("x", "left"), ("x", "right"), ("a", "late")))
    assert torch.equal(left, right)
    assert torch.equal(late, left & ~none), "the gate's edge from a is drawn with the others when a is reached"
    _within(left.float().mean().item(), torch.sigmoid(logits[4]).item(), n)
    assert not torch.equal(left, ~none) and not torch.equal(left, none), "gate and group are drawn independently"
    with torch.no_grad():
        module.gate_logits.copy_(logits)
    gamma = dict(zip(module.stochastic_keys, module.gamma().tolist()))
    for label, prob in zip(op.options, p):
        assert gamma[f"x->a:{label}"] == pytest.approx(prob.item())
    assert gamma["a->y:late"] == gamma["x->y:left"] == pytest.approx(torch.sigmoid(logits[4]).item())


@pytest.mark.parametrize("which", ["cells", "darts"])
def test_log_prob_counts_each_offered_decision_once(which):
    network, module = _network(which)
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(network.n_logits, generator=generator)
    values = _random_values(network, 32, generator)
    proposal = _proposal(network, values)
    arch = sample_architecture(module.structure, logits, 32, "mask", proposal)
    unoffered = 0
    for b, row in enumerate(values):
        connected = _connected(network, arch.drawn[b].tolist())
        offered = {d: v for d, v in enumerate(row)
                   if any(e.decision == d and e.src in connected for e in network.edges)}
        unoffered += len(offered) < len(row)
        assert arch.log_prob[b].item() == pytest.approx(_log_prob(network, logits, offered), abs=1e-5)
    if which == "cells":
        assert unoffered > 0, "some examples should leave a decision unoffered"


def test_log_prob_is_differentiable_and_skips_unoffered_decisions():
    network, module = build_text(CELLS)
    keys = [e.key for e in network.edges]
    logits = torch.zeros(network.n_logits, requires_grad=True)
    # `first` picks none in both cells, `second` thin: the gate g is never offered (no p[l])
    proposal = torch.tensor([[e.fixed or e.name == "thin" for e in network.edges]])
    arch = sample_architecture(module.structure, logits, 1, "mask", proposal)
    assert not arch.drawn[0, keys.index("p[0]->q[0]:link")]
    expected = math.log(1 / 3) + math.log(1 / 2) + math.log(1 - 1 / (1 + math.exp(0)))
    assert arch.log_prob.item() == pytest.approx(expected)
    arch.log_prob.sum().backward()
    g = network.decisions[2]
    assert g.name == "g" and logits.grad[g.offset] == 0, "an unoffered gate gets no gradient"
    assert logits.grad[:3].abs().sum() > 0


def test_deterministic_mode_takes_the_argmax_first_on_ties_and_gates_above_one_half():
    network, module = build_text(CELLS)
    first, second, g, direct = network.decisions
    assert (first.options, second.options) == (("pool", "sep"), ("thin", "wide"))
    keys = [e.key for e in network.edges]

    def on(logits: list[float]) -> set[str]:
        arch = sample_architecture(module.structure, torch.tensor(logits, dtype=torch.float32), 2, "deterministic")
        assert torch.equal(arch.drawn[0], arch.drawn[1])
        return {k for k, d, e in zip(keys, arch.drawn[0].tolist(), network.edges) if d and not e.fixed}

    # first: pool, sep, none; second: thin, wide; g; direct
    assert on([1, 1, 0, 2, 2, 0.1, 0.1]) == {"u[0]->p[0]:pool", "u[1]->p[1]:pool", "u[0]->q[0]:thin",
                                               "u[1]->q[1]:thin", "p[0]->q[0]:link", "p[1]->q[1]:link",
                                               "u[0]->y:direct"}
    assert on([0, 3, 3, -1, 2, 0.0, -0.1]) == {"u[0]->p[0]:sep", "u[1]->p[1]:sep", "u[0]->q[0]:wide",
                                                "u[1]->q[1]:wide"}
    assert on([0, 1, 5, 0, 0, 4, 4]) == {"u[0]->q[0]:thin", "u[1]->q[1]:thin", "u[0]->y:direct"}


# --- errors -------------------------------------------------------------------------------------

_HEAD = "network t() {\n    input x : [4]\n    output y : [4]\n"

ERRORS = [
    ("fixed x -> y as a : linear(4) choose g\n", (4, 35), "a fixed edge is always on; it cannot take part in `choose`"),
    ("x -> y as a : linear(4) prob 0.5 choose g\n    x -> y as b : identity choose g\n", (4, 34),
     "the options of a choice group start equally likely; remove `prob`"),
    ("x -> y : linear(4) choose g\n    x -> y as b : identity choose g\n", (4, 5),
     "an option of a choice group needs a name, `as NAME`"),
    ("x -> y as a : linear(4) choose g\n", (4, 29), "choice group 'g' has a single option, 'a'"),
    ("x -> y as a : linear(4) gate g\n    x -> y as b : identity choose g\n    x -> y as c : relu choose g\n",
     (5, 28), "'g' is used both as a gate and as a choice group"),
    ("x -> y as a : linear(4) prob 0.5 gate g\n    x -> y as b : identity prob 0.25 gate g\n", (5, 5),
     "gate 'g' is given two probabilities, 0.5 and 0.25"),
    ("x -> y as a : linear(4) choose g\n    x -> y as b : zero choose g\n    x -> y as c : zero choose g\n",
     (6, 5), "choice group 'g' has two `zero` options, 'b' and 'c'"),
    ("x -> y as a : zero choose g\n    fixed x -> y as b : identity\n", (4, 24),
     "choice group 'g' has only its `zero` option"),
    # a layer whose only inputs are `zero` options: the group is named, not the layers left
    # without an edge ("layer 'x' cannot reach the output")
    ("x -> y as a : zero choose g\n", (4, 24), "choice group 'g' has only its `zero` option"),
    ("x -> y as a : zero choose g\n    x -> y as b : zero choose g\n", (5, 5),
     "choice group 'g' has two `zero` options, 'a' and 'b'"),
]


@pytest.mark.parametrize("body, where, message", ERRORS, ids=[m.split(";")[0][:40] for _, _, m in ERRORS])
def test_decision_mistakes_are_located_errors(body, where, message):
    with pytest.raises(SourceError) as caught:
        network_from_text(_HEAD + "    " + body + "}\n", name="t.bsn")
    assert message in caught.value.message
    assert (caught.value.span.line, caught.value.span.column) == where
    assert caught.value.render().startswith(f"t.bsn:{where[0]}:{where[1]}: error: ")


ZERO_CLASH = """\
network t() {
    input x : [4]
    layer a : [4]
    output b : [4]
    x -> a as p : identity choose c
    x -> a as none : zero choose c
    a -> b as p : identity choose c
    a -> b as none : identity choose c
}
"""


def test_an_option_zero_in_one_edge_and_an_operation_in_another_is_shown_at_both():
    with pytest.raises(SourceError) as caught:
        network_from_text(ZERO_CLASH, name="t.bsn")
    error = caught.value
    assert "option 'none' is `zero` in one place and an operation in another" in error.message
    assert (error.span.line, error.span.column) == (8, 5)  # `a -> b as none : identity`, not `x -> a as p`
    assert [(n.message, n.span.line, n.span.column) for n in error.notes] == [
        ("option 'none' is `zero` here", 6, 5)]
    shown = error.render()
    assert shown.count("error:") == 1
    assert "a -> b as none : identity choose c" in shown and "x -> a as none : zero choose c" in shown
    assert "x -> a as p" not in shown


CONCAT = """\
network t() {{
    input x : [3, 8, 8]
    layer h : [{channels}, 8, 8] aggregate concat
    output y : [10]
    x -> h as a : conv(4, k=1)
    x -> h as b : conv(3{stride})
    fixed h -> y : global_avgpool >> linear(10)
}}
"""


@pytest.mark.parametrize("channels, stride, where, message", [
    (8, "", (3, 11), "layer 'h' concatenates 7 channels, but is declared with 8"),
    (7, ", stride=2", (6, 5), "shape mismatch on edge 'x->h:b': layer 'h' concatenates along the channels "
                              "inputs of shape [C, 8, 8], the edge produces [3, 4, 4]"),
])
def test_concat_mistakes_are_located_errors(channels, stride, where, message):
    with pytest.raises(SourceError) as caught:
        network_from_text(CONCAT.format(channels=channels, stride=stride), name="t.bsn")
    assert caught.value.message == message
    assert (caught.value.span.line, caught.value.span.column) == where
    assert network_from_text(CONCAT.format(channels=7, stride=""), name="t.bsn").edge("x->h:b").slot == 4


def test_a_concat_that_miscounts_its_choice_options_says_each_takes_a_slot():
    """Researchers declared the layer with one slot for a group; the note says why it is short."""
    text = CONCAT.format(channels=4, stride="").replace("conv(4, k=1)", "conv(4, k=1) choose op").replace(
        "conv(3)", "conv(4) choose op")
    with pytest.raises(SourceError) as caught:
        network_from_text(text, name="t.bsn")
    assert caught.value.message == "layer 'h' concatenates 8 channels, but is declared with 4"
    note = caught.value.notes[-1]
    assert note.message.startswith("edge 'x->h:a' is an option of choice group 'op': each option takes its own slot")
    assert "`sum` layer" in note.message and (note.span.line, note.span.column) == (5, 5)
    plain = CONCAT.format(channels=8, stride="")
    with pytest.raises(SourceError) as caught:
        network_from_text(plain, name="t.bsn")
    assert len(caught.value.notes) == 1  # no choice group, no such note


# --- the formatter, generated code and the fabrics ------------------------------------------------


@pytest.mark.parametrize("name", ["cells", "sampler", "darts", "unet"])
def test_formatter_round_trip_with_gates_and_groups(name):
    text = {"cells": CELLS, "sampler": SAMPLER}.get(name) or (FABRICS / f"{name}.bsn").read_text(encoding="utf-8")
    tree = parse(text, "t.bsn")
    assert format_file(tree) == text
    assert parse(format_file(tree), "t.bsn") == tree


def test_generated_code_is_deterministic_for_the_fabrics():
    code = ("import sys, bsnc\nfor name in ('darts', 'unet'):\n"
            "    sys.stdout.write(bsnc.compile_source(f'fabrics/{name}.bsn'))\n")
    child = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONHASHSEED="7"), cwd=ROOT,
                           check=True, capture_output=True, text=True).stdout
    ours = [generate(load_network(FABRICS / f"{name}.bsn")) for name in ("darts", "unet")]
    assert ours == [generate(load_network(FABRICS / f"{name}.bsn")) for name in ("darts", "unet")]
    assert child == "".join(ours)


def test_darts_shares_one_group_per_mixed_edge_and_cell_kind():
    for overrides, mixed in ((TINY["darts"], 2 + 3), ({}, 2 + 3 + 4 + 5)):
        network = load_network(FABRICS / "darts.bsn", overrides)
        assert len(network.decisions) == 2 * mixed
        assert all(d.kind == "choice" and d.zero == "none" and d.width == 8 for d in network.decisions)
        assert {d.name.split("[")[0] for d in network.decisions} == {"normal", "reduce"}
        assert set(network.decisions[0].options) == {"sep3", "sep5", "dil3", "dil5", "max", "avg", "skip"}
    # normal cells 1 and 4 draw from the same groups, and so do reduction cells 2 and 3
    network = load_network(FABRICS / "darts.bsn", TINY["darts"])
    group = {e.key: network.decisions[e.decision].name for e in network.edges if e.stochastic}
    assert group["st[1][0]->st[1][2]:sep3"] == group["st[4][0]->st[4][2]:sep3"] == "normal[0][0]"
    assert group["st[2][1]->st[2][3]:max"] == group["st[3][1]->st[3][3]:max"] == "reduce[1][1]"
    assert network.layer("c[4]").aggregate == "concat" and network.layer("c[4]").shape == (16, 2, 2)


def test_unet_skips_are_the_stochastic_half_of_each_concat():
    network = load_network(FABRICS / "unet.bsn", TINY["unet"])
    assert network.layer(network.output).shape == (3, 8, 8)
    assert [e.key for e in network.stochastic_edges] == ["e[1]->m[1]:skip", "e[0]->m[0]:skip"]
    for s in range(2):
        assert network.layer(f"m[{s}]").shape == (2 * (2 << s), 8 >> s, 8 >> s)
        assert (network.edge(f"d[{s + 1}]->m[{s}]:up").slot, network.edge(f"e[{s}]->m[{s}]:skip").slot) == (0, 2 << s)


@pytest.mark.parametrize("name", ["darts", "unet"])
def test_readme_rows_are_the_measured_figures(name):
    net = load_network(FABRICS / f"{name}.bsn")
    row = next(line for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
               if line.startswith(f"| `{name}.bsn`"))
    steps = [int(parse_cost(f"distributed:n={k}", net).full()) for k in (1, 4)]
    assert [c.strip() for c in row.strip("|").split("|")][1:] == [
        str(len(net.layers)), f"{len(net.edges)} ({len(net.stochastic_edges)})",
        f"{FlopsCost(net).full() / 1e6:,.2f}", f"{ParamsCost(net).full() / 1e6:.2f}", str(steps[0]), str(steps[1]),
    ]


# --- training ------------------------------------------------------------------------------------

TWO_HEADS = """
network t() {
    input x : [3, 4, 4]
    output y : [10]
    x -> y as big : flatten >> linear(64) >> relu >> linear(10) choose G   # 3,712 MACs
    x -> y as small : global_avgpool >> linear(10) choose G                # 30 MACs
}
"""


def test_reinforce_moves_a_choice_group_to_the_option_within_budget(tmp_path):
    from click.testing import CliRunner

    from bsnc.cli import main

    (tmp_path / "t.bsn").write_text(TWO_HEADS)
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(tmp_path / "t.bsn"), "--data", "fake", "--budget", "100",
                                       "--epochs", "3", "--batch-size", "32", "--device", "cpu", "--seed", "0",
                                       "--run-dir", str(run), "-q"])
    assert result.exit_code == 0, result.output
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    gamma = [e["gamma"]["x->y:small"] for e in epochs if "gamma" in e]
    assert gamma[-1] > 0.99 and gamma == sorted(gamma), gamma  # from one half, up at every epoch
    assert epochs[-1]["deterministic_cost"] == 30


def test_entropy_of_groups_of_different_widths_has_a_finite_gradient():
    """`first` has three options and `second` two: the narrower group's padding once made the
    entropy's gradient NaN (0 * -inf), and training died at its first search step."""
    network, module = build_text(CELLS)
    torch.manual_seed(0)
    logits = torch.randn(network.n_logits, dtype=torch.float64, requires_grad=True)
    module.gate_logits = torch.nn.Parameter(logits.detach().clone())
    module.entropy().backward()
    expected = torch.zeros((), dtype=torch.float64)
    for decision in network.decisions:
        theta = logits[decision.offset:decision.offset + decision.width]
        if decision.kind == "gate":
            p = torch.sigmoid(theta)
            expected = expected - (p * torch.log(p) + (1 - p) * torch.log(1 - p)).sum()
        else:
            p = torch.softmax(theta, dim=0)
            expected = expected - (p * torch.log(p)).sum()
    expected.backward()
    assert sorted({d.width for d in network.decisions if d.kind == "choice"}) == [2, 3]
    assert torch.isfinite(module.gate_logits.grad).all()
    assert torch.allclose(module.gate_logits.grad, logits.grad, rtol=0, atol=1e-12)
    assert module.entropy().item() == pytest.approx(expected.item(), abs=1e-12)


WIDTHS = """\
network widths() {
    input x : [1, 8, 8]
    layer a : [4, 8, 8] post relu
    output y : [10]
    x -> a as k1 : conv(4, k=1) choose g
    x -> a as k3 : conv(4, k=3) choose g
    x -> a as k5 : conv(4, k=5) choose g
    fixed a -> y as head : global_avgpool >> linear(10)
    a -> y as lin : flatten >> linear(10) choose h
    a -> y as none : zero choose h
}
"""


def test_a_space_with_groups_of_different_widths_trains(tmp_path):
    from click.testing import CliRunner

    from bsnc.cli import main

    (tmp_path / "w.bsn").write_text(WIDTHS)
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(tmp_path / "w.bsn"), "--data", "digits", "--budget", "50%",
                                       "--epochs", "2", "--device", "cpu", "--seed", "0", "--run-dir", str(run), "-q"])
    assert result.exit_code in (0, 3), result.output  # 3: no architecture within budget, said loudly
    assert "nan" not in result.output.lower(), result.output
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(epochs) == 2 and all(math.isfinite(e["train_loss"]) and e["entropy"] > 0 for e in epochs)


def test_zero_with_channels_stands_beside_a_widening_conv():
    """`zero(stride=2, c=...)`: a `none` option, or an edge, beside an operation that changes
    channels and resolution."""
    text = """
network w() {
    input x : [2, 8, 8]
    layer d : [6, 4, 4] post relu
    output y : [3]
    x -> d as conv : conv(6, stride=2) choose op
    x -> d as none : zero(stride=2, c=6) choose op
    x -> d as pad : zero(stride=2, c=6)
    fixed x -> d as keep : conv(6, k=1, stride=2)
    fixed d -> y : global_avgpool >> linear(3)
}
"""
    network, module = build_text(text)
    assert network.edge("x->d:pad").shapes[-1] == (6, 4, 4)
    rows = matches_reference(network, module)
    assert rows.any()
