"""Costs: figures from the paper, cross-checks against torch, scheduling, custom costs, errors."""

from __future__ import annotations

import json
import math
import re
import textwrap

import pytest
import torch
from click.testing import CliRunner
from torch.utils.flop_counter import FlopCounterMode

from bsnc.api import compile_network
from bsnc.cli import main
from bsnc.codegen.architecture import active_edges
from bsnc.costs.analytic import FlopsCost, ParamsCost
from bsnc.costs.distributed import DistributedCost
from bsnc.costs.latency import LatencyCost, LatencyTable
from bsnc.costs.registry import parse_cost
from bsnc.errors import BsncError, UsageError
from bsnc.lang.frontend import load_network, network_from_text
from tests.helpers import FABRICS, ROOT, build

PAPER = {  # (params in M, flops in M): Tables 1 and 3 of the paper
    "resnet20": (0.27, 40.90),
    "resnet32": (0.47, 69.27),
    "resnet44": (0.66, 97.64),
    "resnet56": (0.86, 126.01),
    "resnet110": (1.73, 253.70),
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_resnet_costs_match_the_paper(name):
    network = load_network(FABRICS / f"{name}.bsn")
    params, flops = PAPER[name]
    assert ParamsCost(network).full() / 1e6 == pytest.approx(params, rel=0.02)
    assert FlopsCost(network).full() / 1e6 == pytest.approx(flops, rel=0.02)


def test_cnf_w8_params_match_the_paper():
    assert ParamsCost(load_network(FABRICS / "cnf_w8.bsn")).full() / 1e6 == pytest.approx(18.04, rel=0.02)


@pytest.mark.parametrize("name", ["cnf.bsn", "resnet_fabric_n3.bsn", "resnet20.bsn"])
def test_every_edge_flops_agree_with_torch_flop_counter(name):
    overrides = {"W": 3, "C": 8, "size": 8} if name == "cnf.bsn" else {"width": 4, "size": 8}
    network, module = build(FABRICS / name, **overrides)
    module.eval()
    for edge, edge_module in zip(network.edges, module.edges.values()):
        x = torch.randn((1,) + tuple(edge.shapes[0]))
        with FlopCounterMode(display=False) as counter:
            edge_module(x)
        assert counter.get_total_flops() == 2 * edge.macs(), edge.key


def test_params_equal_numel_of_the_active_modules():
    network, module = build(FABRICS / "cnf.bsn", W=3, C=4, size=8)
    cost = ParamsCost(network)
    torch.manual_seed(0)
    for _ in range(5):
        proposal = torch.rand(len(network.edges)) < 0.7
        try:
            active = active_edges(network, proposal)
        except BsncError:
            continue
        modules = list(module.edges.values())
        expected = sum(p.numel() for i, m in enumerate(modules) if active[i] for p in m.parameters())
        assert cost(active.unsqueeze(0))[0].item() == expected


def test_additive_costs_are_vectorised_over_rows():
    network = load_network(FABRICS / "cnf.bsn", {"W": 4, "C": 8, "size": 8})
    masks = torch.rand(64, len(network.edges)) < 0.5
    for cost in (FlopsCost(network), ParamsCost(network)):
        batch = cost(masks)
        one_by_one = torch.stack([cost(row.unsqueeze(0))[0] for row in masks])
        assert torch.equal(batch, one_by_one)


def test_flops_count_one_addition_per_element_per_extra_input():
    network = network_from_text(textwrap.dedent("""
        network t() {
            input x : [2, 4, 4]
            layer a : [3, 4, 4]
            output y : [3, 4, 4]
            x -> a as p : conv(3, k=1, bias=false)
            x -> a as q : conv(3, k=1, bias=false)
            x -> a as r : conv(3, k=1, bias=false)
            a -> y : identity
        }
    """))
    cost = FlopsCost(network)
    conv = 3 * 16 * 2  # MACs of one 1x1 conv
    elements = 3 * 16
    masks = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 1], [1, 1, 0, 1]], dtype=torch.bool)
    assert cost(masks).tolist() == [3 * conv + 2 * elements, conv, 2 * conv + elements]


def test_an_edge_through_zero_costs_nothing_not_even_its_addition():
    network = network_from_text(textwrap.dedent("""
        network t() {
            input x : [2, 4, 4]
            layer a : [3, 4, 4]
            output y : [3, 4, 4]
            x -> a as p : conv(3, k=1, bias=false)
            x -> a as none : conv(3, k=1, bias=false) >> zero
            x -> a as z : pad_channels(3, stride=1) >> zero
            a -> y : identity
        }
    """))
    cost = FlopsCost(network)
    conv = 3 * 16 * 2
    order = [e.key for e in network.edges]
    assert order == ["x->a:none", "x->a:p", "x->a:z", "a->y"]
    masks = torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1], [0, 0, 1, 1], [1, 0, 0, 1]], dtype=torch.bool)
    # the conv before `zero` still runs; the zeros are never added
    assert cost(masks).tolist() == [2 * conv, conv, 0, conv]


def _chain(n: int, name: str = "c") -> str:
    lines = [f"layer {name}{i} : [2]" for i in range(1, n)]
    src = "x"
    for i in range(1, n):
        lines.append(f"{src} -> {name}{i} : linear(2)")
        src = f"{name}{i}"
    lines.append(f"{src} -> y : linear(2)")
    return "\n".join(lines)


def _network(body: str):
    return network_from_text(f"network t() {{\n input x : [2]\n output y : [2]\n{body}\n}}\n")


@pytest.mark.parametrize("workers", [1, 2, 4, 8])
def test_a_chain_of_nine_modules_needs_nine_steps(workers):
    network = _network(_chain(9))
    assert DistributedCost(network, workers).full() == 9


def test_two_independent_chains():
    network = _network(_chain(5, "a") + "\n" + _chain(5, "b").replace("-> y", "-> y as b"))
    assert DistributedCost(network, 2).full() == 5
    assert DistributedCost(network, 1).full() == 10


def test_diamond_and_parameter_free_edges():
    network = _network("""
        layer a : [2]
        layer b : [2]
        x -> a : linear(2)
        x -> b : linear(2)
        a -> y : linear(2)
        b -> y : identity
    """)
    assert DistributedCost(network, 1).full() == 3  # the identity takes no step
    assert DistributedCost(network, 2).full() == 2
    masks = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 1]], dtype=torch.bool)  # edge order: x->a, x->b, a->y, b->y
    assert [e.key for e in network.edges] == ["x->a", "x->b", "a->y", "b->y"]
    assert DistributedCost(network, 2)(masks).tolist() == [2, 1]


def test_steps_never_increase_with_more_workers():
    network = load_network(FABRICS / "cnf_w8.bsn")
    torch.manual_seed(0)
    proposals = torch.rand(128, len(network.edges)) < 0.6
    active = torch.stack([_active_or_none(network, p) for p in proposals])
    previous = None
    for workers in (1, 2, 3, 4, 8):
        steps = DistributedCost(network, workers)(active)
        if previous is not None:
            assert torch.all(steps <= previous)
        previous = steps
    assert DistributedCost(network, 1)(active).tolist() == [
        float(sum(1 for i, e in enumerate(network.edges) if row[i] and e.param_count())) for row in active
    ], "with one worker every active module with parameters is one step"


def _active_or_none(network, proposal):
    try:
        return active_edges(network, proposal)
    except BsncError:
        return torch.zeros(len(network.edges), dtype=torch.bool)


def test_distributed_cost_is_memoised_by_mask():
    network = load_network(FABRICS / "cnf_w8.bsn")
    cost = DistributedCost(network, 4)
    row = torch.ones(1, len(network.edges), dtype=torch.bool)
    first = cost(row.expand(4096, -1))
    assert len(cost.memo) == 1 and torch.all(first == first[0])


@pytest.mark.parametrize("spec, message", [
    ("distributed", "expected distributed:n=K"),
    ("distributed:k=3", "expected distributed:n=K"),
    ("distributed:n=0", "n must be at least 1, got 0"),
    ("distributed:n=-2", "n must be at least 1, got -2"),
    ("distributed:n=2.5", "n must be a whole number of workers, got '2.5'"),
    ("flop", "unknown cost"),
    ("latency", "give the latency table"),
    ("nosuchmodule_xyz:f", "cannot import module 'nosuchmodule_xyz'"),
    ("json:nosuchfunction", "module 'json' has no attribute 'nosuchfunction'"),
    ("json:__doc__", "is not callable"),
])
def test_bad_cost_specs(spec, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_cost(spec, _network(_chain(2)))


def test_budget_units():
    network = _network(_chain(2))
    assert FlopsCost(network).parse_budget("40.9M") == pytest.approx(40.9e6)
    assert ParamsCost(network).parse_budget("0.27M") == pytest.approx(270000)
    assert DistributedCost(network, 2).parse_budget("6 steps") == 6
    with pytest.raises(UsageError, match="--budget 12ms"):
        FlopsCost(network).parse_budget("12ms")


# --- custom costs ------------------------------------------------------------------------------------

CUSTOM = '''
def conv_count(arch):
    return float(sum(op.prim == "conv" for edge in arch.edges for op in edge.ops))

def mutate(arch):
    arch.edges[0].ops[0].args["c"] = 3
    return 0.0

def boom(arch):
    raise ValueError("no budget for you")

def not_a_number(arch):
    return "cheap"

def too_big(arch):
    return 10 ** 400

def far_too_big(arch):
    return 10 ** 5000
'''


@pytest.fixture
def custom_module(tmp_path, monkeypatch):
    (tmp_path / "my_costs.py").write_text(CUSTOM)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_costs"


def test_custom_cost_sees_the_active_architecture(custom_module):
    network = load_network(FABRICS / "cnf.bsn", {"W": 2, "C": 4, "size": 4})
    cost = parse_cost(f"{custom_module}:conv_count", network)
    full = cost.full()
    assert full == sum(1 for e in network.edges for op in e.ops if op.prim == "conv")
    active = torch.zeros(1, len(network.edges), dtype=torch.bool)
    assert cost(active).tolist() == [0.0]


@pytest.mark.parametrize("function, message", [
    ("mutate", "raised TypeError"),
    ("boom", "raised ValueError: no budget for you"),
    ("not_a_number", "returned 'cheap'; expected a finite number"),
    ("too_big", r"returned 1000000000000000000000000000000000000000\.\.\.; expected a finite number"),  # an OverflowError
    ("far_too_big", "returned an integer of 16,610 bits; expected a finite number"),  # too long for repr()
])
def test_custom_cost_failures_name_the_function(custom_module, function, message):
    network = _network(_chain(2))
    cost = parse_cost(f"{custom_module}:{function}", network)
    with pytest.raises(BsncError, match=message) as info:
        cost.full()
    assert f"{custom_module}:{function}" in str(info.value)


def test_custom_cost_from_an_entry_point(tmp_path, monkeypatch, custom_module):
    dist = tmp_path / "mycosts-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mycosts\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[bsnc.costs]\nconvs = my_costs:conv_count\n")
    network = _network(_chain(3))
    cost = parse_cost("convs", network)
    assert cost.full() == 0.0
    with pytest.raises(UsageError, match=r"installed: convs"):
        parse_cost("nope", network)


# --- latency tables ----------------------------------------------------------------------------------


def _table(tmp_path, network, **changes):
    data = {"format": "bsnc-latency-table/1", "device": "cpu", "device_name": "cpu: test", "torch": torch.__version__,
            "batch_size": 1, "entries": {e.signature(): 1.0 + i for i, e in enumerate(network.edges)}}
    data.update(changes)
    path = tmp_path / "table.json"
    path.write_text(json.dumps(data))
    return path


def test_latency_cost_sums_active_edges(tmp_path):
    network = _network(_chain(3))
    path = _table(tmp_path, network)
    cost = parse_cost(f"latency:{path}", network)
    assert isinstance(cost, LatencyCost)
    masks = torch.tensor([[1, 1, 1], [1, 0, 1]], dtype=torch.bool)
    expected = [sum(LatencyTable.load(path).entries[e.signature()] for e, m in zip(network.edges, row) if m)
                for row in masks.tolist()]
    assert cost(masks).tolist() == expected
    assert cost.parse_budget("12ms") == 12 and cost.parse_budget("0.5s") == 500


def test_latency_table_errors(tmp_path):
    network = _network(_chain(3))
    with pytest.raises(UsageError, match="holds cuda timings"):
        parse_cost(f"latency:{_table(tmp_path, network, device='cuda')}@cpu", network)
    with pytest.raises(UsageError, match="measured with torch 1.0"):
        parse_cost(f"latency:{_table(tmp_path, network, torch='1.0')}", network)
    other = _network(_chain(3).replace("linear(2)", "linear(2, bias=false)"))
    with pytest.raises(UsageError, match="no timing for 3 of the 3 edges"):
        parse_cost(f"latency:{_table(tmp_path, network)}", other)
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(UsageError, match="not valid JSON"):
        parse_cost(f"latency:{tmp_path / 'bad.json'}", network)
    # entries no time can be: they were an OverflowError, inf and nan costs, or negative latencies trained on
    for value, message in ((10**400, "malformed"), (math.inf, "is inf; expected a time"),
                           (math.nan, "is nan; expected a time"), (-1.0, "is -1.0; expected a time"),
                           (True, "malformed"), ("1.5", "malformed")):
        entries = {**{e.signature(): 1.0 for e in network.edges}, network.edges[0].signature(): value}
        path = _table(tmp_path, network, entries=entries)
        with pytest.raises(UsageError, match=f"latency table {re.escape(str(path))}: .*{message}"):
            parse_cost(f"latency:{path}", network)


def test_latency_table_command_writes_reuses_and_reports(tmp_path):
    bsn = tmp_path / "t.bsn"
    bsn.write_text("network t() {\n input x : [2, 8, 8]\n layer a : [4, 8, 8]\n output y : [4]\n"
                   " x -> a : conv(4)\n x -> a as b : conv(4, k=1)\n a -> y : global_avgpool\n}\n")
    table = tmp_path / "cpu.json"
    runner = CliRunner()
    args = ["latency-table", str(bsn), "-o", str(table), "--samples", "3", "--repeats", "2"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "3 edge signatures (3 timed now)" in result.output
    assert "Spearman rank correlation" in result.output and "mean relative error" in result.output
    again = runner.invoke(main, args)
    assert "(0 timed now)" in again.output
    assert all(v > 0 for v in json.loads(table.read_text())["entries"].values())
    assert json.loads(table.read_text())["layout"] == "contiguous" and "contiguous maps" in result.output
    other_layout = runner.invoke(main, args + ["--channels-last"])
    assert other_layout.exit_code == 2 and "holds timings of contiguous maps (made with --no-channels-last (the " \
        "default)); pass the same, or -o another file" in other_layout.output and "Traceback" not in other_layout.output


def test_latency_table_times_image_edges_in_the_layout_it_records(tmp_path, monkeypatch):
    """A channels-last deployment is timed channels-last: the edge module and its input both."""
    bsn = tmp_path / "t.bsn"
    bsn.write_text("network t() {\n input x : [2, 8, 8]\n output y : [4, 8, 8]\n x -> y : conv(4)\n}\n")
    seen = []

    def spy(fn, device, warmup=3, repeats=15):
        module, x = fn.__defaults__
        weight = next(module.parameters())
        seen.append((x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous(),
                     weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()))
        return 1.0
    monkeypatch.setattr("bsnc.costs.latency.time_callable", spy)
    table = tmp_path / "cl.json"
    result = CliRunner().invoke(main, ["latency-table", str(bsn), "-o", str(table), "--samples", "2",
                                       "--channels-last", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert json.loads(table.read_text())["layout"] == "channels-last" and "channels-last maps" in result.output
    assert seen and all(x and w for x, w in seen), seen  # the edge, then the sampled static networks
    assert LatencyTable.load(table).layout == "channels-last"


def test_a_latency_table_without_a_layout_is_contiguous_and_a_bad_one_is_refused(tmp_path):
    from bsnc.costs.latency import measure_table

    network = _network(_chain(3))
    assert LatencyTable.load(_table(tmp_path, network)).layout == "contiguous"
    with pytest.raises(ValueError, match="contiguous timings; channels-last ones cannot extend it"):
        measure_table(network, torch.device("cpu"), 1, LatencyTable.load(_table(tmp_path, network)),
                      progress=False, layout="channels-last")
    for bad in ("nhwc", ["channels-last"], {"a": 1}, None):  # strings, and values JSON has that no dict can hold
        with pytest.raises(UsageError, match=r'"layout": .*; expected one of "contiguous", "channels-last"'):
            LatencyTable.load(_table(tmp_path, network, layout=bad))


# --- bsnc cost ---------------------------------------------------------------------------------------


def test_cost_command_prints_human_units(monkeypatch):
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(main, ["cost", "fabrics/resnet20.bsn"])
    assert result.exit_code == 0
    assert "40.90 M" in result.output and "272.47 k" in result.output


def test_cost_command_json_by_edge_and_mask(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    network = load_network(FABRICS / "cnf.bsn", {"W": 2, "C": 4, "size": 4})
    edges = {e.key: True for e in network.stochastic_edges}
    edges["n[0][0]->n[1][0]"] = False
    mask = tmp_path / "mask.json"
    mask.write_text(json.dumps({"edges": edges}))
    args = ["cost", "fabrics/cnf.bsn", "-D", "W=2", "-D", "C=4", "-D", "size=4", "--mask", str(mask),
            "--by-edge", "--json", "--cost", "flops", "--cost", "distributed:n=2"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    active = active_edges(network, torch.tensor([edges.get(e.key, True) for e in network.edges]))
    assert data["costs"]["flops"] == FlopsCost(network)(active.unsqueeze(0))[0].item()
    assert data["active_edges"] == int(active.sum())
    assert {e["key"] for e in data["edges"]} == {e.key for e in network.edges}
    text = CliRunner().invoke(main, args[:-5] + ["--by-edge"])
    assert "additions at sum aggregations" in text.output


def test_cost_by_edge_prints_no_additions_heading_when_no_layer_adds(tmp_path):
    """A chain (no layer with several incoming edges) has no additions: no empty section."""
    source = tmp_path / "chain.bsn"
    source.write_text("network chain() {\n    input x : [4]\n    layer a : [4]\n    output y : [4]\n"
                      "    x -> a : linear(4)\n    a -> y : linear(4)\n}\n")
    result = CliRunner().invoke(main, ["cost", str(source), "--by-edge"])
    assert result.exit_code == 0, result.output
    assert "a->y" in result.output
    assert "additions" not in result.output
    assert result.output.endswith("20\n")  # the edge table is the last thing printed


@pytest.mark.parametrize("content, message", [
    ({"edges": {"nope": True}}, "has no edge 'nope'"),
    ({"edges": {}}, "no value for"),
    ({"edges": "x"}, "expected an object"),
])
def test_cost_command_refuses_bad_masks(tmp_path, monkeypatch, content, message):
    monkeypatch.chdir(ROOT)
    mask = tmp_path / "mask.json"
    mask.write_text(json.dumps(content))
    result = CliRunner().invoke(main, ["cost", "fabrics/cnf_w1.bsn", "--mask", str(mask)])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_cost_command_refuses_mask_values_and_unreachable_output(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    network = load_network(FABRICS / "cnf_w1.bsn")
    edges = {e.key: True for e in network.stochastic_edges}
    first = network.stochastic_edges[0].key
    for value, message in ((2, "expected true or false"), (False, "unreachable")):
        edges[first] = value
        mask = tmp_path / "mask.json"
        mask.write_text(json.dumps({"edges": edges}))
        result = CliRunner().invoke(main, ["cost", "fabrics/cnf_w1.bsn", "--mask", str(mask)])
        assert result.exit_code == 1 and message in result.output


def test_generated_module_params_equal_registry_for_full_cnf():
    network = load_network(FABRICS / "cnf_w1.bsn")
    module = compile_network(network)()
    assert sum(p.numel() for p in module.edges.parameters()) == ParamsCost(network).full()


def test_distributed_memo_stays_bounded(monkeypatch):
    import bsnc.costs.distributed as costs

    monkeypatch.setattr(costs, "MEMO_LIMIT", 8)
    network = load_network(FABRICS / "cnf.bsn", {"W": 3, "C": 4, "size": 8})
    cost = DistributedCost(network, 2)
    torch.manual_seed(0)
    masks = torch.rand(64, len(network.edges)) < 0.5
    first = cost(masks)
    assert len(cost.memo) <= 64 and torch.equal(first, DistributedCost(network, 2)(masks))
    cost(torch.rand(64, len(network.edges)) < 0.5)
    assert len(cost.memo) <= 64
