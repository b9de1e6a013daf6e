"""Costs of networks with shared gates, choice groups and `concat` layers: what absent slots save
(flops, params), the cheapest legal architecture, consistent masks, and `bsnc cost --mask`.
Every number is counted by hand in a comment next to the network."""

from __future__ import annotations

import itertools
import json
import textwrap

import pytest
import torch
from click.testing import CliRunner

from bsnc.cli import main
from bsnc.codegen.architecture import active_edges, structure_of
from bsnc.codegen.masks import load_mask, mask_json
from bsnc.codegen.runtime import sample_architecture
from bsnc.costs.analytic import FlopsCost, ParamsCost
from bsnc.costs.cheapest import cheapest_consistent
from bsnc.costs.registry import parse_cost
from bsnc.errors import BsncError, UsageError
from bsnc.ir import Network
from bsnc.lang.frontend import network_from_text
from bsnc.lang.summary import summary_dict, summary_lines
from tests.helpers import DECISIONS_NET

# edges (canonical order) and their costs, C = 4, maps 4x4 (16 positions):
#   x->a        fixed conv 2->4 k1     MACs 4*16*2 = 128    params 8 + 4 = 12
#   x->b:op[i]  conv 2->4 k3           MACs 4*16*2*9 = 1152 params 72 + 4 = 76      (choose pick)
#   x->c        conv 2->4 k1           128                  12                       slot 8
#   a->c        conv 4->4 k1           4*16*4 = 256         16 + 4 = 20  (gate g)    slot 0
#   b->c        identity               0                    0            (gate g)    slot 4
#   c->y        fixed global_avgpool >> linear(12 -> 5): MACs 60, params 60 + 5 = 65; head: the linear
# an absent 4-channel slot of c saves the linear 60 * 4/12 = 20 MACs and 20 weights
EXAMPLE = DECISIONS_NET.replace("READER", "global_avgpool >> linear(5)")

# p: conv 2->4 k1, 128 MACs, 12 params, slot 0 (4 of 6 channels); q: conv 2->2 k1 no bias, 64 MACs,
# 4 params, slot 4 (2 of 6). The consumer's head, linear(6 -> 3): 18 MACs, 18 weights + 3 biases.
# An absent p saves 18 * 4/6 = 12 MACs and 12 weights; an absent q 6 and 6.
CONCAT = """
network k() {
    input x : [2, 4, 4]
    layer c : [6, 4, 4] aggregate concat
    output y : [3]
    x -> c as p : conv(4, k=1)
    x -> c as q : conv(2, k=1, bias=false)
    fixed c -> y : CONSUMER
}
"""


def _net(text: str, **replace: str) -> Network:
    for old, new in replace.items():
        text = text.replace(old, new)
    return network_from_text(textwrap.dedent(text))


def _active(network: Network, on: set[str]) -> torch.Tensor:
    """The [1, E] active mask of the proposal that switches on the stochastic edges ``on``."""
    unknown = on - set(network.edge_index)
    assert not unknown, unknown
    proposal = torch.tensor([e.fixed or e.key in on for e in network.edges], dtype=torch.bool)
    return active_edges(network, proposal).unsqueeze(0)


def _legal_proposals(network: Network):
    """Every proposal a draw of the network's decisions gives."""
    ranges = [range(2) if d.kind == "gate" else range(d.width) for d in network.decisions]
    for values in itertools.product(*ranges):
        yield torch.tensor([e.fixed or values[e.decision] == e.option for e in network.edges], dtype=torch.bool)


def _brute_force(network: Network, cost) -> float:
    structure = structure_of(network)
    logits = torch.zeros(network.n_logits)
    best = float("inf")
    for proposal in _legal_proposals(network):
        arch = sample_architecture(structure, logits, 1, "mask", proposal)
        if not bool(arch.inconsistent[0]):
            best = min(best, float(cost(arch.active)[0]))
    return best


# --- what absent concat slots save -------------------------------------------------------------------


def test_the_example_costs_count_absent_slots_and_no_concat_additions():
    network = _net(EXAMPLE)
    assert [e.key for e in network.edges] == ["x->a", "x->b:op[0]", "x->b:op[1]", "x->c", "a->c", "b->c", "c->y"]
    flops, params = FlopsCost(network), ParamsCost(network)
    full = torch.ones((1, len(network.edges)), dtype=torch.bool)
    # every slot present; b adds its two inputs (4*16 = 64 additions), c concatenates (none)
    assert flops(full).tolist() == [128 + 2 * 1152 + 128 + 256 + 0 + 60 + 64]
    assert params(full).tolist() == [12 + 2 * 76 + 12 + 20 + 0 + 65]
    assert flops.additions_per_layer(full)[0].tolist() == [0, 0, 64, 0, 0]  # x, a, b, c, y

    # x->c off: its slot is absent, the linear loses 20 MACs and 20 weights
    gated = _active(network, {"x->b:op[0]", "a->c", "b->c"})
    assert gated[0].tolist() == [True, True, False, False, True, True, True]
    assert flops(gated).tolist() == [128 + 1152 + 256 + 0 + (60 - 20)]
    assert params(gated).tolist() == [12 + 76 + 20 + 0 + (65 - 20)]

    # pick's zero option and g off: only x->c's slot is present, 2 of 3 slots absent
    alone = _active(network, {"x->c"})
    assert alone[0].tolist() == [False, False, False, True, False, False, True]
    assert flops(alone).tolist() == [128 + (60 - 40)]
    assert params(alone).tolist() == [12 + (65 - 40)]
    # a linear(4 -> 5) is 25 parameters: what the pruned model holds
    assert params(alone).tolist() == [12 + 4 * 5 + 5]


def test_slot_discounts_are_vectorised_over_rows_and_charged_to_the_consumer():
    network = _net(EXAMPLE)
    masks = torch.rand(200, len(network.edges), generator=torch.Generator().manual_seed(0)) < 0.5
    for cost in (FlopsCost(network), ParamsCost(network)):
        batch = cost(masks)
        assert torch.equal(batch, torch.stack([cost(row.unsqueeze(0))[0] for row in masks]))
    alone = _active(network, {"x->c"})
    charged = FlopsCost(network).charged(alone)[0].tolist()
    assert charged[network.edge_index["c->y"]] == 20 and charged[network.edge_index["x->c"]] == 128
    assert float(FlopsCost(network)(alone)[0]) == sum(c for c, on in zip(charged, alone[0].tolist()) if on)


@pytest.mark.parametrize("consumer, only_p, only_q, full", [
    # linear head: absent q saves 6 MACs/weights, absent p 12
    ("global_avgpool >> linear(3)", (128 + 18 - 6, 12 + 21 - 6), (64 + 18 - 12, 4 + 21 - 12), (210, 37)),
    # zero-keeping ops before the head keep it sliceable
    ("relu >> maxpool(2) >> global_avgpool >> linear(3)", (140, 27), (70, 13), (210, 37)),
    # conv head 6 -> 3, k3: 3*16*6*9 = 2592 MACs, 162 weights + 3 biases; a 4-channel slot is 2/3 of it
    ("conv(3, k=3) >> global_avgpool", (128 + 2592 - 864, 12 + 165 - 54), (64 + 2592 - 1728, 4 + 165 - 108),
     (128 + 64 + 2592, 12 + 4 + 165)),
    # hsigmoid(0) is not 0: an absent slot is not zero where the linear reads it, no discount
    ("global_avgpool >> hsigmoid >> linear(3)", (128 + 18, 12 + 21), (64 + 18, 4 + 21), (210, 37)),
])
def test_a_consumer_is_charged_for_the_present_slots_only_when_it_starts_with_its_head(consumer, only_p, only_q, full):
    network = _net(CONCAT, CONSUMER=consumer)
    flops, params = FlopsCost(network), ParamsCost(network)
    for on, (expected_flops, expected_params) in (({"x->c:p"}, only_p), ({"x->c:q"}, only_q),
                                                  ({"x->c:p", "x->c:q"}, full)):
        active = _active(network, on)
        assert (flops(active).item(), params(active).item()) == (expected_flops, expected_params), on


def test_a_concat_layer_whose_post_does_not_keep_zeros_gets_no_discount():
    network = _net(CONCAT.replace("aggregate concat", "aggregate concat post sigmoid"),
                   CONSUMER="global_avgpool >> linear(3)")
    assert not FlopsCost(network).discount and ParamsCost(network).additive
    assert FlopsCost(network)(_active(network, {"x->c:q"})).item() == 64 + 18


def test_params_stay_additive_without_a_sliceable_consumer():
    network = _net(CONCAT, CONSUMER="global_avgpool >> hsigmoid >> linear(3)")
    assert ParamsCost(network).additive
    sliced = ParamsCost(_net(CONCAT, CONSUMER="global_avgpool >> linear(3)"))
    assert not sliced.additive
    assert sliced.per_edge().tolist() == [12, 4, 21], "per edge: each edge on its own, in full"


# --- custom, distributed and latency costs see the same architectures -----------------------------


def test_custom_distributed_and_latency_costs_on_decisions_and_concat(tmp_path, monkeypatch):
    network = _net(EXAMPLE)
    (tmp_path / "sliced_costs.py").write_text(
        "def params(arch):\n    return float(arch.params)\n\ndef flops(arch):\n    return float(arch.flops)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    table = tmp_path / "table.json"
    table.write_text(json.dumps({
        "format": "bsnc-latency-table/1", "device": "cpu", "device_name": "cpu: test", "torch": torch.__version__,
        "batch_size": 1, "entries": {e.signature(): float(i + 1) for i, e in enumerate(network.edges)}}))
    rows = torch.cat([torch.ones((1, len(network.edges)), dtype=torch.bool), _active(network, {"x->c"}),
                      _active(network, {"x->b:op[0]", "a->c", "b->c"})])
    # the custom view charges each edge what params and flops charge it (flops without additions)
    assert parse_cost("sliced_costs:params", network)(rows).tolist() == ParamsCost(network)(rows).tolist()
    assert parse_cost("sliced_costs:flops", network)(rows).tolist() == [2940 - 64, 148, 1576]
    # distributed: b->c (identity) takes no step; n=2 full: {x->a, op[0]}, {op[1], x->c}, {a->c}, {c->y};
    # the third: {x->a, op[0]}, {a->c}, {c->y}
    assert parse_cost("distributed:n=2", network)(rows).tolist() == [4, 2, 3]
    assert parse_cost("distributed:n=4", network)(rows).tolist() == [3, 2, 3]
    # latency: the table's entries of the active edges, full modules; x->a and x->c share a signature
    # (entry 4, the later edge's), and so do the two options (entry 3)
    assert parse_cost(f"latency:{table}", network)(rows).tolist() == [4 + 3 + 3 + 4 + 5 + 6 + 7, 4 + 7,
                                                                      4 + 3 + 5 + 6 + 7]


# --- the cheapest legal architecture ------------------------------------------------------------------

# a path through x -> a costs 128 on its own, but g switches x -> b on too, and b reaches y
SHARED = """
network s() {
    input x : [2, 4, 4]
    layer a : [4, 4, 4]
    layer b : [4, 4, 4]
    output y : [4, 4, 4]
    x -> a : conv(4, k=1) gate g
    x -> b : conv(4, k=3) gate g
    fixed a -> y : identity
    fixed b -> y : identity
    x -> y : conv(4, k=1) >> conv(4, k=1)
}
"""

# p: 2*16*2*9 = 576 MACs, q: 2*16*2 = 64; y adds 2*16 = 32 per extra input
CHOICE = """
network ch() {
    input x : [2, 4, 4]
    layer a : [2, 4, 4]
    output y : [2, 4, 4]
    x -> a as p : conv(2, k=3) choose G
    x -> a as q : conv(2, k=1) choose G
    ZERO
    fixed a -> y : identity
    x -> y : identity
}
"""

# option p is x -> a and x -> y; the cheap path x -> a -> y takes options p and q at once
CONFLICT = """
network cf() {
    input x : [2, 4, 4]
    layer a : [2, 4, 4]
    output y : [2, 4, 4]
    x -> a as p : conv(2, k=1) choose G
    a -> y as q : conv(2, k=1) choose G
    x -> y as p : conv(2, k=3) choose G
}
"""


def _on(network: Network, active: torch.Tensor) -> set[str]:
    return {e.key for e, on in zip(network.edges, active.tolist()) if on}


def test_a_shared_gate_brings_all_its_edges():
    network = _net(SHARED)
    cost = FlopsCost(network)
    found = cheapest_consistent(network, cost, enumerate_limit=0)
    # g on: 128 + 1152 + 64 additions at y = 1344; g off, x -> y: 128 + 256 = 384
    assert found.cost == 384 == _brute_force(network, cost)
    assert _on(network, found.active) == {"x->y"}
    assert not found.exact and found.kind == "estimate"


def test_a_choice_group_takes_its_zero_option_when_untouched():
    network = _net(CHOICE, ZERO="x -> a as none : zero choose G")
    cost = FlopsCost(network)
    found = cheapest_consistent(network, cost, enumerate_limit=0)
    assert found.cost == 0 == _brute_force(network, cost)
    assert _on(network, found.active) == {"x->y"}
    assert not found.exact


def test_a_choice_group_without_zero_option_always_takes_one():
    network = _net(CHOICE, ZERO="")
    cost = FlopsCost(network)
    found = cheapest_consistent(network, cost, enumerate_limit=0)
    # x -> y alone is no architecture: G's cheapest option q comes along (0 + 64 + 32 = 96);
    # q alone is cheaper
    assert found.cost == 64 == _brute_force(network, cost)
    assert _on(network, found.active) == {"x->a:q", "a->y"}


def test_a_path_through_two_options_of_a_group_is_skipped():
    network = _net(CONFLICT)
    cost = FlopsCost(network)
    found = cheapest_consistent(network, cost, enumerate_limit=0)
    # x -> a -> y (128) takes p and q; option p proposes x -> a and x -> y, and only x -> y is active
    assert found.cost == 576 == _brute_force(network, cost)
    assert _on(network, found.active) == {"x->y:p"}


@pytest.mark.parametrize("name", ["flops", "params"])
def test_the_cheapest_architecture_of_the_example_matches_every_legal_one(name):
    network = _net(EXAMPLE)
    cost = parse_cost(name, network)
    found = cheapest_consistent(network, cost, enumerate_limit=0)
    assert found.cost == _brute_force(network, cost) == {"flops": 128 + 20, "params": 12 + 25}[name]
    assert _on(network, found.active) == {"x->c", "c->y"}
    assert float(cost(found.active.unsqueeze(0))[0]) == found.cost


def test_a_plain_network_with_a_sliced_consumer_is_an_estimate():
    network = _net(CONCAT, CONSUMER="global_avgpool >> linear(3)")
    assert network.plain
    found = cheapest_consistent(network, FlopsCost(network), enumerate_limit=0)
    assert found.cost == 70 and not found.exact  # only q: 64 + 18 - 12
    plain = _net(CONCAT, CONSUMER="global_avgpool >> hsigmoid >> linear(3)")
    assert cheapest_consistent(plain, FlopsCost(plain), enumerate_limit=0).exact



@pytest.mark.parametrize("text, replace", [(SHARED, {}), (CHOICE, {"ZERO": ""}), (CONFLICT, {}), (EXAMPLE, {}),
                                           (CONCAT, {"CONSUMER": "global_avgpool >> linear(3)"})])
@pytest.mark.parametrize("name", ["flops", "params", "distributed:n=1"])
def test_a_small_space_is_enumerated_and_exact_for_every_cost(text, replace, name):
    network = _net(text, **replace)
    cost = parse_cost(name, network)
    found = cheapest_consistent(network, cost)
    assert found.exact and found.kind == "exact"
    assert found.cost == _brute_force(network, cost)
    assert float(cost(found.active.unsqueeze(0))[0]) == found.cost, "the mask has the cost"
    assert found.paths_tried == len(list(_legal_proposals(network)))


# --- masks -------------------------------------------------------------------------------------------


def _mask(tmp_path, network: Network, on: set[str]):
    path = tmp_path / "mask.json"
    path.write_text(json.dumps({"edges": {e.key: e.key in on for e in network.stochastic_edges}}))
    return path


@pytest.mark.parametrize("text, on, message", [
    (EXAMPLE, {"x->b:op[0]", "a->c"}, "shared gate 'g' switches its edges together, but the mask sets 'a->c' true "
                                      "and 'b->c' false"),
    (EXAMPLE, {"x->b:op[0]", "x->b:op[1]"}, "choice group 'pick' takes one option, but the mask turns on options "
                                            "'op[0]' ('x->b:op[0]') and 'op[1]' ('x->b:op[1]')"),
    (CHOICE.replace("ZERO", ""), {"x->y"}, "choice group 'G' has no zero option, so one of its options ('p', 'q') "
                                           "must be on; the mask turns on none"),
    (CONFLICT, {"x->a:p"}, "option 'p' of choice group 'G' switches its edges together, but the mask sets "
                           "'x->a:p' true and 'x->y:p' false"),
])
def test_a_mask_must_set_every_decision_consistently(tmp_path, text, on, message):
    network = _net(text)
    path = _mask(tmp_path, network, on)
    with pytest.raises(UsageError) as info:
        load_mask(path, network)
    assert str(info.value) == f"--mask {path}: {message}"


def test_a_consistent_mask_loads_and_round_trips(tmp_path):
    network = _net(EXAMPLE)
    path = _mask(tmp_path, network, {"a->c", "b->c"})  # pick: its zero option
    proposal = load_mask(path, network)
    assert proposal.tolist() == [True, False, False, False, True, True, True]
    assert json.loads(mask_json(network, proposal))["edges"] == {
        "x->b:op[0]": False, "x->b:op[1]": False, "x->c": False, "a->c": True, "b->c": True}
    path.write_text(mask_json(network, proposal))
    assert torch.equal(load_mask(path, network), proposal)


# --- bsnc cost and bsnc check ------------------------------------------------------------------------


def test_cost_command_with_a_mask_counts_absent_slots(tmp_path):
    source = tmp_path / "t.bsn"
    source.write_text(EXAMPLE)
    network = _net(EXAMPLE)
    mask = _mask(tmp_path, network, {"x->b:op[0]", "a->c", "b->c"})
    result = CliRunner().invoke(main, ["cost", str(source), "--mask", str(mask), "--cost", "flops", "--cost", "params",
                                       "--by-edge", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["costs"] == {"flops": 1576.0, "params": 153.0}
    assert data["active_edges"] == 5
    by_key = {e["key"]: e for e in data["edges"]}
    assert (by_key["c->y"]["flops"], by_key["c->y"]["params"]) == (40.0, 45.0)
    assert data["layer_additions"]["c"] == 0
    text = CliRunner().invoke(main, ["cost", str(source), "--mask", str(mask), "--by-edge"])
    assert text.exit_code == 0, text.output
    assert "  flops   1.58 k\n  params  153\n" in text.output


def test_cost_command_refuses_an_inconsistent_mask(tmp_path):
    source = tmp_path / "t.bsn"
    source.write_text(EXAMPLE)
    mask = _mask(tmp_path, _net(EXAMPLE), {"x->b:op[0]", "x->b:op[1]", "x->c"})
    result = CliRunner().invoke(main, ["cost", str(source), "--mask", str(mask)])
    assert result.exit_code == 1
    assert f"--mask {mask}: choice group 'pick' takes one option" in result.output
    assert "Traceback" not in result.output


def test_check_names_the_decisions_of_a_network_that_is_not_plain():
    network = _net(EXAMPLE)
    assert "  decisions   5 stochastic edges in 3 decisions (1 shared gate, 1 choice group, 1 per-edge gate)" \
        in summary_lines(network)
    assert summary_dict(network)["decisions"] == {"total": 3, "shared_gates": 1, "choice_groups": 1,
                                                  "per_edge_gates": 1}
    plain = _net(CONCAT, CONSUMER="global_avgpool >> linear(3)")
    assert not any("decisions" in line for line in summary_lines(plain)) and "decisions" not in summary_dict(plain)


# A concat layer read by a conv (which export can narrow) and by a pool (which reads every channel).
MIXED_READERS = """
network cm() {
    input x : [1, 8, 8]
    layer s : [4, 8, 8] post relu
    fixed x -> s : conv(4)
    layer q : [8, 8, 8] aggregate concat
    s -> q as u : conv(4, k=1)
    s -> q as v : conv(4, k=3)
    layer r : [8, 4, 4]
    q -> r as cv : conv(8, stride=2)
    q -> r as pool : maxpool(2)
    output y : [10]
    fixed r -> y : global_avgpool >> linear(10)
}
"""


@pytest.mark.parametrize("text", [MIXED_READERS, DECISIONS_NET.replace("READER", "global_avgpool >> linear(5)"),
                                  DECISIONS_NET.replace("READER", "bn >> relu >> global_avgpool >> linear(5)")],
                         ids=["mixed-readers", "head", "no-head"])
def test_the_cost_of_an_architecture_is_the_cost_of_its_exported_network(text):
    """Every architecture of the network (each decision's every value): flops and params as
    training charges them equal those of the static network export writes. A head was once
    discounted for absent slots while another reader kept the layer whole, so export shipped a
    model over the budget its run had met."""
    from bsnc.codegen.architecture import prune

    network = network_from_text(text)
    flops, params = FlopsCost(network), ParamsCost(network)
    stochastic = [i for i, e in enumerate(network.edges) if e.stochastic]
    checked = 0
    for bits in itertools.product((False, True), repeat=len(stochastic)):
        proposal = torch.ones(len(network.edges), dtype=torch.bool)
        proposal[stochastic] = torch.tensor(bits)
        try:
            pruned = prune(network, proposal)
        except BsncError:  # inconsistent with the decisions, or an unreachable output: nothing to export
            continue
        active = active_edges(network, proposal).unsqueeze(0)
        assert flops(active).item() == FlopsCost(pruned).full(), bits
        assert params(active).item() == ParamsCost(pruned).full(), bits
        checked += 1
    assert checked >= 4


@pytest.mark.parametrize("name", ["darts.bsn", "densenet.bsn", "unet.bsn", "proxyless.bsn"])
def test_shipped_search_spaces_cost_what_their_exported_networks_cost(name):
    """The same on the shipped spaces with concatenations and choice groups, over sampled
    architectures (Γ at one half: every decision's values occur)."""
    from bsnc.codegen.architecture import prune
    from bsnc.lang.frontend import load_network
    from tests.helpers import FABRICS, SMALL

    network = load_network(FABRICS / name, {k: str(v) for k, v in SMALL[name].items()})
    flops, params = FlopsCost(network), ParamsCost(network)
    structure = structure_of(network)
    generator = torch.Generator().manual_seed(0)
    arch = sample_architecture(structure, torch.zeros(network.n_logits), 64, "sample", generator=generator)
    checked = 0
    for row in range(64):
        if arch.inconsistent[row]:
            continue
        active = arch.active[row]
        try:
            pruned = prune(network, active)
        except BsncError:  # a slot no exported layer can fill with zeros: export refuses it
            continue
        assert flops(active.unsqueeze(0)).item() == FlopsCost(pruned).full(), (name, row)
        assert params(active.unsqueeze(0)).item() == ParamsCost(pruned).full(), (name, row)
        checked += 1
    assert checked >= 12, checked


def test_the_largest_architecture_is_the_costliest_of_all_and_percentages_measure_against_it(tmp_path):
    """With choice groups the full super network (every option on at once) is no architecture:
    the largest is every gate on and each group's costliest option, the most any architecture of
    the space costs (all 24 of CELLS enumerated), and `--budget N%` is N% of it."""
    from bsnc.costs.largest import largest_architecture
    from bsnc.search.train import parse_budget
    from bsnc.search.warnings import budget_warnings
    from tests.test_decisions import CELLS

    network = network_from_text(CELLS)
    structure = structure_of(network)
    values = [range(d.width) if d.kind == "choice" else (0, 1) for d in network.decisions]
    rows = []
    for picks in itertools.product(*values):
        rows.append([e.fixed or (picks[e.decision] == e.option if network.decisions[e.decision].kind == "choice"
                                 else picks[e.decision] == 1) for e in network.edges])
    arch = sample_architecture(structure, torch.zeros(network.n_logits), len(rows), "mask", torch.tensor(rows))
    assert len(rows) == 24
    for cost in (FlopsCost(network), ParamsCost(network)):
        largest = largest_architecture(network, cost)
        every = cost(arch.active)[~arch.inconsistent]
        assert largest.cost == every.max().item() < cost.full()
        assert not largest.full and cost(largest.active.unsqueeze(0)).item() == largest.cost
        assert parse_budget(cost, "50%", largest.cost) == 0.5 * largest.cost
        warned = list(budget_warnings(cost, largest.cost, cheapest_consistent(network, cost), largest))
        assert any("at or above the largest architecture's (every gate on, each choice group on its costliest option)"
                   in w for w in warned), warned
        assert not list(budget_warnings(cost, 0.9 * largest.cost, cheapest_consistent(network, cost), largest))
    gates_only = network_from_text(MIXED_READERS)  # no choice group: the largest is the full super network
    largest = largest_architecture(gates_only, FlopsCost(gates_only))
    assert largest.full and largest.cost == FlopsCost(gates_only).full()


def test_cost_command_shows_the_largest_architecture_of_a_space_with_choice_groups(tmp_path):
    from bsnc.costs.largest import largest_architecture
    from tests.test_decisions import CELLS

    (tmp_path / "cells.bsn").write_text(CELLS)
    network = network_from_text(CELLS)
    text = CliRunner().invoke(main, ["cost", str(tmp_path / "cells.bsn")])
    assert text.exit_code == 0, text.output
    assert "largest architecture (every gate on, each choice group on its costliest option; what --budget N% " \
           "measures against):" in text.output
    data = json.loads(CliRunner().invoke(main, ["cost", str(tmp_path / "cells.bsn"), "--json"]).output)
    assert data["largest_architecture"]["flops"] == largest_architecture(network, FlopsCost(network)).cost
    plain = CliRunner().invoke(main, ["cost", "resnet20"])  # no choice group: the full network is the largest
    assert plain.exit_code == 0 and "largest architecture" not in plain.output


# Group A decides whether B's edges are reached at all: B's costly option counts only with a1.
TRAP = """
network trap() {
    input x : [3, 8, 8]
    layer p : [16, 8, 8]
    layer q : [2, 8, 8]
    output y : [10]
    x -> p as a0 : conv(16, k=3) choose A
    x -> q as a1 : conv(2, k=1) choose A
    fixed p -> y : global_avgpool >> linear(10)
    q -> y as b0 : global_avgpool >> linear(10) choose B
    q -> y as b1 : conv(64, k=5) >> conv(64, k=5) >> global_avgpool >> linear(10) choose B
}
"""


def test_the_largest_architecture_counts_options_that_reach_other_groups(monkeypatch):
    """One group at a time from A's first option, B's options all tie (unreached) and the
    ascent stopped at 37 k flops; the largest is (a1, b1), 6.76 M. Exact by enumeration here;
    past the enumeration limit, the ascents from several starts find it too, and say they estimate."""
    from bsnc.costs import largest as module

    network = network_from_text(TRAP)
    cost = FlopsCost(network)
    found = module.largest_architecture(network, cost)
    keys = [e.key for e, on in zip(network.edges, found.active.tolist()) if on]
    assert found.exact and "x->q:a1" in keys and "q->y:b1" in keys
    every = [cost(active_edges(network, torch.tensor([e.fixed or e.name in pair for e in network.edges]))
                  .unsqueeze(0)).item() for pair in (("a0", "b0"), ("a0", "b1"), ("a1", "b0"), ("a1", "b1"))]
    assert found.cost == max(every) > 100 * min(every)
    monkeypatch.setattr(module, "ENUMERATE_LIMIT", 1)
    estimate = module.largest_architecture(network, cost)
    assert not estimate.exact and estimate.cost == found.cost
    assert "an estimate, there may be a costlier one" in estimate.describe()
