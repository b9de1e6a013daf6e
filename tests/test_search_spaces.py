"""The constructs of real search spaces: computed edge names, loops over lists and tuples,
conditional expressions, the input's shape in module types, `cost` on module types, and the
fabrics written with them (proxyless.bsn, densenet.bsn)."""

from __future__ import annotations

import textwrap

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from bsnc.costs.analytic import FlopsCost, ParamsCost
from bsnc.costs.distributed import DistributedCost
from bsnc.errors import SourceError
from bsnc.export.exporter import export
from bsnc.lang.formatter import format_file
from bsnc.lang.frontend import load_network, network_from_program, network_from_text
from bsnc.lang.parser import parse
from bsnc.lang.program import load_program
from bsnc.search.checkpoint import load_checkpoint
from bsnc.search.train import TrainConfig, train
from tests.helpers import FABRICS, ROOT, SMALL, build, input_for, matches_reference

SPACE = textwrap.dedent("""\
    module mbconv(c, k=3, e=6, stride=1) = conv(in_channels * e, k=1) >> bn >> relu6 >> conv(in_channels * e, k=k, stride=stride, groups=in_channels * e) >> bn >> conv(c, k=1)
    module sep(k=3) = conv(in_channels, k=k, groups=in_channels) >> conv(in_channels, k=1)
    module pool3() = maxpool(3, stride=1, padding=1) cost in_channels * in_height * in_width * 9
    module head(classes, in_channels=1) = linear(classes * in_channels)

    network space(wide: bool = false) {
        let kernels = [3, 5]
        input x : [4, 8, 8]
        layer h : [8, 4, 4]
        layer g : [8, 4, 4]
        layer v : [if wide then 16 else 8]
        output y : [20]
        for (k, e) in [(3, 1), (5, 2)] { x -> h as mb[k][e] : mbconv(8, k=k, e=e, stride=2) }
        for k in kernels { h -> g as sep[k] : sep(k) }
        h -> g as pool : pool3  # a comment stays
        h -> g as none : zero
        g -> v : global_avgpool >> linear(if wide then 2 * 8 else 8)
        v -> y : head(10, in_channels=2)
    }
""")


def test_the_constructs_expand_as_written():
    net = network_from_text(SPACE)
    keys = [e.key for e in net.edges]
    assert keys == ["x->h:mb[3][1]", "x->h:mb[5][2]", "h->g:none", "h->g:pool", "h->g:sep[3]", "h->g:sep[5]",
                    "g->v", "v->y"]
    mb = net.edge("x->h:mb[5][2]")
    # in_channels is the input's channels: 4, expanded 2 times
    assert [op.kwargs.get("c") for op in mb.ops if op.prim == "conv"] == [8, 8, 8]
    assert dict(mb.ops[3].args)["groups"] == 8 and dict(mb.ops[3].args)["k"] == 5
    # in the chain `sep` sees the 8 channels of h; a parameter named in_channels wins
    assert dict(net.edge("h->g:sep[5]").ops[0].args)["groups"] == 8
    assert net.layer("y").shape == (20,)
    assert net.edge("h->g:pool").extra_macs == 8 * 4 * 4 * 9
    assert net.edge("h->g:pool").macs() == 8 * 4 * 4 * 9
    assert network_from_text(SPACE, {"wide": True}).edge("g->v").shapes[-1] == (16,)


def test_the_constructs_format_back_to_the_same_text():
    tree = parse(SPACE, "space.bsn")
    assert format_file(tree) == SPACE
    assert parse(format_file(tree)) == tree


def test_conditional_expression_evaluates_only_its_branch():
    text = "network t(d: int = 0) { input x : [if d == 0 then 2 else 8 // d] output y : [2] x -> y : identity }"
    assert network_from_text(text).layer("x").shape == (2,)
    with pytest.raises(SourceError, match="shape mismatch"):
        network_from_text(text, {"d": 2})


def test_cost_of_a_module_type_counts_in_flops_and_distributed_steps():
    net = network_from_text(SPACE)
    flops = FlopsCost(net)
    only_pool = torch.tensor([[e.key in ("x->h:mb[3][1]", "h->g:pool", "g->v", "v->y") for e in net.edges]])
    expected = sum(net.edge(k).macs() for k in ("x->h:mb[3][1]", "h->g:pool", "g->v", "v->y"))
    assert flops(only_pool).item() == expected
    assert DistributedCost(net, 1)(only_pool).item() == 4, "an edge with a cost takes a step"


@pytest.mark.parametrize("name", ["proxyless.bsn", "densenet.bsn", "darts.bsn", "unet.bsn"])
def test_new_fabrics_count_like_torch(name):
    network, module = build(FABRICS / name, **SMALL[name])
    module.eval()
    assert network.param_count() == sum(p.numel() for p in module.edges.parameters())
    for edge, edge_module in zip(network.edges, module.edges.values()):
        with FlopCounterMode(display=False) as counter:
            edge_module(torch.randn((1,) + tuple(edge.shapes[0])))
        assert counter.get_total_flops() == 2 * edge.macs(), edge.key


def test_densenet_bc_100_has_the_published_size():
    net = load_network(FABRICS / "densenet.bsn")
    # DenseNet-BC (L=100, k=12): 0.8 M parameters in the paper; 769,162 in its reference code
    assert ParamsCost(net).full() == 769_162
    assert len(net.stochastic_edges) == 3 * (16 * 17 // 2) + 2 * 17 + 17


def test_proxyless_has_six_candidates_per_block():
    net = load_network(FABRICS / "proxyless.bsn")
    assert len(net.stochastic_edges) == 6 * 4 * 2
    assert {e.name for e in net.in_edges("b[3]")} == {f"mb[{k}][{e}]" for k in (3, 5, 7) for e in (3, 6)}
    assert {e.name for e in net.in_edges("b[4]")} == {f"mb[{k}][{e}]" for k in (3, 5, 7) for e in (3, 6)} | {"skip"}


@pytest.mark.parametrize("name", ["proxyless.bsn", "densenet.bsn"])
def test_new_fabrics_train_one_epoch_and_export(name, tmp_path):
    defines = {k: str(v) for k, v in SMALL[name].items()}
    run = tmp_path / "run"
    result = train(TrainConfig(file=str(FABRICS / name), defines=defines, data="fake", cost="flops", budget="50k",
                               epochs=1, batch_size=32, lr=0.05, path_lr=0.5, lam=2.0, seed=0, device="cpu",
                               run_dir=str(run), progress=False))
    assert 0 <= result.test_acc <= 1
    program = load_program(FABRICS / name)
    network = network_from_program(program, defines)
    state = load_checkpoint(run / "ckpt.pt")["model"]
    out = export(network, program, state, tmp_path / "out", draw_diagram=False)
    stem = network.name + "_pruned"
    pruned = load_network(tmp_path / "out" / f"{stem}.bsn")
    assert [e.name for e in pruned.edges] == [e.name for e in out.pruned.edges]
    assert FlopsCost(pruned).full() == FlopsCost(network)(out.active.unsqueeze(0))[0].item()


def test_pruned_export_keeps_computed_names_and_module_costs(tmp_path):
    source = tmp_path / "space.bsn"
    source.write_text(SPACE)
    program = load_program(source)
    network = network_from_program(program)
    module = build(source)[1]
    out = export(network, program, module.state_dict(), tmp_path / "out", draw_diagram=False)
    text = (tmp_path / "out" / "space_pruned.bsn").read_text()
    assert "as mb[5][2]" in text and "cost in_channels * in_height * in_width * 9" in text
    pruned = load_network(tmp_path / "out" / "space_pruned.bsn")
    assert FlopsCost(pruned).full() == FlopsCost(network)(out.active.unsqueeze(0))[0].item()
    x = input_for(network, 3)
    static = build(tmp_path / "out" / "space_pruned.bsn")[1]
    static.load_state_dict(torch.load(tmp_path / "out" / "space_pruned.pt", weights_only=True))
    module.eval().set_mode("deterministic")
    assert torch.allclose(static.eval()(x), module(x), atol=1e-5)


@pytest.mark.parametrize("name", ["proxyless.bsn", "densenet.bsn"])
def test_readme_table_rows_are_the_measured_figures(name):
    from bsnc.costs.registry import parse_cost
    from tests.helpers import ROOT

    net = load_network(FABRICS / name)
    row = next(line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith(f"| `{name}`"))
    cells = [c.strip() for c in row.strip("|").split("|")][1:]
    steps = [int(parse_cost(f"distributed:n={k}", net).full()) for k in (1, 4)]
    assert cells == [
        str(len(net.layers)), f"{len(net.edges)} ({len(net.stochastic_edges)})",
        f"{FlopsCost(net).full() / 1e6:,.2f}", f"{ParamsCost(net).full() / 1e6:.2f}", str(steps[0]), str(steps[1]),
    ]


def test_module_defaults_see_the_input_shape_and_parameters_shadow_it():
    net = network_from_text(textwrap.dedent("""\
        module squeeze(mid=in_channels // 4) = conv(mid, k=1) >> conv(in_channels, k=1)
        module fixed_width(in_channels) = conv(in_channels, k=1)
        network t() {
            input x : [16, 4, 4]
            layer h : [16, 4, 4]
            output y : [6, 4, 4]
            x -> h : squeeze
            h -> y : fixed_width(6)
        }
    """))
    # in the body, in_channels stays the module's input (16), not the 4 channels after its first stage
    assert [dict(op.args)["c"] for op in net.edge("x->h").ops] == [4, 16]
    assert net.edge("h->y").shapes[-1] == (6, 4, 4)


def test_new_syntax_parses_to_its_nodes():
    from bsnc.lang import ast

    net = parse("network t() {\n    for (k, e) in [(3, 1), (5,)] { a -> b as op[k][e + 1] : relu }\n"
                "    let c = if x then (1, 2) else []\n}\n").items[0]
    loop, let = net.body
    assert loop.targets == ("k", "e") and loop.unpack and loop.stop is None
    assert loop.start == ast.ListLit((ast.TupleLit((ast.IntLit(3), ast.IntLit(1))), ast.TupleLit((ast.IntLit(5),))))
    assert loop.body[0].name == ast.LayerName("op", (ast.Var("k"), ast.BinOp("+", ast.Var("e"), ast.IntLit(1))))
    assert let.value == ast.Cond(ast.Var("x"), ast.TupleLit((ast.IntLit(1), ast.IntLit(2))), ast.ListLit(()))
    assert "for (k, e) in [(3, 1), (5,)]" in format_file(parse(format_file(parse(
        "network t() { for (k, e) in [(3, 1), (5,)] { a -> b : relu } }"))))


def test_in_size_and_len():
    text = textwrap.dedent("""\
        module wide() = conv(in_channels * in_size, k=1)
        network t(h: int = 4) {
            let ks = [3, 5, 7]
            input x : [2, h, 4]
            output y : [len(ks) * 4 * 2, h, 4]
            x -> y : wide >> conv(len(ks) * 4 * 2, k=1)
        }
    """)
    assert network_from_text(text).edge("x->y").ops[0].kwargs["c"] == 8
    with pytest.raises(SourceError, match="the map is 5x4, not square; use in_height and in_width"):
        network_from_text(text, {"h": 5})


@pytest.mark.parametrize("seed", range(2))
def test_new_primitives_run_like_the_reference_interpreter(seed):
    torch.manual_seed(seed)
    matches_reference(*build(ROOT / "tests" / "data" / "golden" / "search_space.bsn"))
