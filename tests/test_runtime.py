"""Semantics of generated stochastic networks against an independent reference."""

from __future__ import annotations

import math
import re

import pytest
import torch

from bsnc.codegen.connectivity import by_bits, by_levels
from bsnc.codegen.reference import architecture_from_mask, reference_forward
from tests.helpers import FABRICS, build, build_text, input_for, matches_reference, small_overrides

ALL_FABRICS = sorted(FABRICS.glob("*.bsn"))
SUPER_NETWORKS = [p for p in ALL_FABRICS if not re.fullmatch(r"resnet\d*", p.stem)]  # those: static networks
MODES = ["sample", "full", "deterministic", "mask"]


@pytest.mark.parametrize("path", ALL_FABRICS, ids=lambda p: p.stem)
def test_forward_and_backward_in_every_mode(path):
    torch.manual_seed(0)
    network, module = build(path, **small_overrides(path))
    x = input_for(network, 4)
    out_shape = (4,) + network.layer(network.output).shape
    stochastic = bool(network.stochastic_edges)
    for mode in MODES if stochastic else [None]:
        module.zero_grad()
        if stochastic:
            mask = torch.rand(4, len(network.edges)) < 0.7 if mode == "mask" else None
            module.set_mode(mode, mask)
        out = module(x)
        assert out.shape == out_shape
        loss = out.float().pow(2).mean()
        if stochastic:
            loss = loss + module.last.log_prob.mean()
        loss.backward()
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads, f"no gradient reached any parameter in mode {mode}"
        assert all(torch.isfinite(g).all() for g in grads)
        if stochastic:
            assert module.gate_logits.grad is not None


@pytest.mark.parametrize("path", SUPER_NETWORKS, ids=lambda p: p.stem)
def test_both_connectivity_implementations_equal_the_reference_walk(path):
    """The CPU's bit sets and the device's level-by-level tensors give the reference's drawn and
    active edges, at batch sizes that fill, split and overflow a byte and a machine word."""
    network, module = build(path, **small_overrides(path))
    assert network.stochastic_edges
    structure = module.structure
    fixed = ~torch.tensor(module.STOCHASTIC, dtype=torch.bool)
    unreached = dead_end = False
    for batch, p in [(1, 0.5), (7, 0.3), (8, 0.6), (63, 0.5), (64, 0.8), (65, 0.5), (130, 0.6)]:
        torch.manual_seed(batch)
        proposal = (torch.rand(batch, structure.n_edges) < p) | fixed
        drawn, active, reached = architecture_from_mask(network, proposal)
        connected = torch.zeros(batch, structure.n_layers, dtype=torch.bool)  # the input, or a drawn edge in
        connected[:, structure.input_index] = True
        for edge, dst in enumerate(structure.dst_list):
            connected[:, dst] |= drawn[:, edge]
        for implementation in (by_bits, by_levels):
            got = implementation(structure, proposal)
            assert torch.equal(got[0], drawn), (implementation.__name__, batch)
            assert torch.equal(got[1], connected), (implementation.__name__, batch)
            assert torch.equal(got[2], active), (implementation.__name__, batch)
        unreached |= bool((proposal & ~drawn).any())
        dead_end |= bool((drawn & ~active).any())
    if path.stem.startswith("cnf"):  # a fabric has both proposed edges out of unreached layers and dead ends
        assert unreached and dead_end


def _cnf(W=3, C=3, size=8):
    return build(FABRICS / "cnf.bsn", W=W, C=C, size=size)


@pytest.mark.parametrize("seed", range(4))
def test_generated_equals_reference_on_random_masks(seed):
    torch.manual_seed(seed)
    reached = matches_reference(*_cnf(), batch=12, p=0.55)
    assert not reached.all() and reached.any(), "the masks should mix consistent and inconsistent rows"


def test_edge_used_by_a_single_row_in_training():
    torch.manual_seed(1)
    network, module = _cnf(W=2, C=3, size=4)
    module = module.double().train()
    proposal = torch.ones(5, len(network.edges), dtype=torch.bool)
    lonely = network.edge_index["n[0][2]->n[1][1]"]
    proposal[:, lonely] = False
    proposal[3, lonely] = True
    module.set_mode("mask", proposal)
    x = input_for(network, 5, torch.float64)
    out = module(x)
    assert int(module.last.active[:, lonely].sum()) == 1
    module.eval()
    eval_out = module(x)
    expected = reference_forward(network, module, x, module.last.active)
    assert torch.allclose(eval_out, expected, atol=1e-12)
    assert out.shape == eval_out.shape


def test_sampling_frequencies_match_gamma():
    torch.manual_seed(0)
    network, module = _cnf(W=3, C=2, size=4)
    n_stochastic = len(network.stochastic_edges)
    gammas = torch.linspace(0.2, 0.9, n_stochastic)
    with torch.no_grad():
        module.gate_logits.copy_(torch.log(gammas / (1 - gammas)))
    module.set_mode("sample")
    x = input_for(network, 8000)
    module(x)
    arch = module.last
    src = torch.tensor([network.layer_index[e.src] for e in network.edges])
    src_connected = arch.connected[:, src]
    stochastic = [i for i, e in enumerate(network.edges) if e.stochastic]
    for j, i in enumerate(stochastic):
        trials = int(src_connected[:, i].sum())
        assert trials >= 100
        freq = float(arch.drawn[src_connected[:, i], i].float().mean())
        gamma = float(gammas[j])
        tolerance = 5 * math.sqrt(gamma * (1 - gamma) / trials)
        assert abs(freq - gamma) <= tolerance, (network.edges[i].key, freq, gamma, trials)
        assert not arch.drawn[~src_connected[:, i], i].any(), "an edge from an unconnected layer is never drawn"


def test_log_probability_is_the_sum_over_drawn_edges():
    torch.manual_seed(3)
    network, module = _cnf(W=3, C=2, size=4)
    with torch.no_grad():
        module.gate_logits.uniform_(-2, 2)
    module.set_mode("sample")
    module(input_for(network, 64))
    arch = module.last
    gamma = torch.sigmoid(module.gate_logits.detach()).tolist()
    stochastic_pos = {i: j for j, i in enumerate(i for i, e in enumerate(network.edges) if e.stochastic)}
    for b in range(64):
        connected = {network.input}
        expected = 0.0
        for i, edge in enumerate(network.edges):
            if edge.src not in connected:
                assert not arch.drawn[b, i]
                continue
            if edge.stochastic:
                g = gamma[stochastic_pos[i]]
                expected += math.log(g) if arch.drawn[b, i] else math.log(1 - g)
            if arch.drawn[b, i]:
                connected.add(edge.dst)
        assert arch.log_prob[b].item() == pytest.approx(expected, abs=1e-4)


def test_deterministic_mode_equals_mask_gamma_above_half():
    torch.manual_seed(2)
    network, module = _cnf()
    module = module.double().eval()
    with torch.no_grad():
        module.gate_logits.uniform_(-1.5, 1.5)
    x = input_for(network, 3, torch.float64)
    module.set_mode("deterministic")
    det = module(x)
    det_active = module.last.active.clone()
    proposal = torch.ones(len(network.edges), dtype=torch.bool)
    stochastic = [i for i, e in enumerate(network.edges) if e.stochastic]
    proposal[stochastic] = torch.sigmoid(module.gate_logits.detach()) > 0.5
    module.set_mode("mask", proposal)
    masked = module(x)
    assert torch.equal(det, masked)
    assert torch.equal(det_active, module.last.active)
    _, active, _ = architecture_from_mask(network, proposal.expand(3, -1))
    assert torch.equal(det_active, active)


def test_dead_end_edges_are_never_computed():
    text = """
    network t() {
        input x : [2]
        layer a : [2]
        layer dead : [2]
        output y : [2]
        x -> a : linear(2)
        a -> dead : linear(2)
        dead -> y : linear(2)
        a -> y : linear(2)
    }
    """
    network, module = build_text(text)
    calls = []
    for key, edge_module in zip(type(module).EDGE_KEYS, module.edges.values()):
        edge_module.register_forward_hook(lambda m, i, o, key=key: calls.append((key, i[0].shape[0])))
    assert list(type(module).EDGE_KEYS) == ["x->a", "a->dead", "a->y", "dead->y"]
    proposal = torch.tensor([True, True, True, False])  # dead -> y is off: a -> dead is a dead end
    module.set_mode("mask", proposal)
    module(torch.randn(3, 2))
    assert [k for k, _ in calls] == ["x->a", "a->y"]
    assert module.last.drawn[0].tolist() == [True, True, True, False]
    assert module.last.active[0].tolist() == [True, False, True, False]


def test_edges_run_only_on_their_active_rows():
    network, module = _cnf(W=2, C=2, size=4)
    seen = {}
    for key, edge_module in zip(type(module).EDGE_KEYS, module.edges.values()):
        edge_module.register_forward_hook(lambda m, i, o, key=key: seen.__setitem__(key, i[0].shape[0]))
    torch.manual_seed(5)
    module.train().set_mode("sample")
    module(input_for(network, 32))
    counts = module.last.active.sum(dim=0).tolist()
    for i, edge in enumerate(network.edges):
        if counts[i] == 0:
            assert edge.key not in seen
        else:
            assert seen[edge.key] == counts[i]


def test_full_mode_draws_every_edge():
    network, module = _cnf(W=2, C=2, size=4)
    module.set_mode("full")
    module(input_for(network, 2))
    assert module.last.drawn.all() and module.last.active.all()


def test_bad_mask_shape_is_refused():
    network, module = _cnf(W=2, C=2, size=4)
    module.set_mode("mask", torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask has shape"):
        module(input_for(network, 2))


def test_mixed_precision_edges_add_up_under_autocast():
    text = """
    network t() {
        input x : [2, 4, 4]
        output y : [2, 4, 4]
        x -> y : conv(2, k=3)
        x -> y as skip : identity
    }
    """
    network, module = build_text(text)
    module.set_mode("mask", torch.tensor([[True, True], [True, False], [False, True]]))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module(torch.randn(3, 2, 4, 4))
    assert out.shape == (3, 2, 4, 4)


def test_a_network_named_like_a_helper_class_still_builds():
    text = "network GlobalAvgPool() {\n input x : [2, 4, 4]\n output y : [2]\n x -> y : global_avgpool\n}\n"
    network, module = build_text(text)
    module.set_mode("full")
    assert module(torch.randn(2, 2, 4, 4)).shape == (2, 2)


def test_a_structure_refuses_layers_out_of_topological_order():
    """Connectivity walks edges by index order; generated code numbers layers so, and a hand-built
    structure that does not is refused rather than given wrong architectures."""
    from bsnc.codegen.runtime import Structure

    with pytest.raises(ValueError, match="topological order"):
        Structure(3, 0, 1, [0, 2], [2, 1], [True, True])


def test_the_level_tables_of_a_deep_chain_grow_with_its_edges_not_edges_times_layers():
    import torch

    from bsnc.codegen.connectivity import by_bits, by_levels
    from bsnc.codegen.runtime import Structure

    n = 3000  # layers in a chain, each joined to the next by two edges: 3,000 levels
    src = [i for i in range(n - 1) for _ in range(2)]
    dst = [i + 1 for i in range(n - 1) for _ in range(2)]
    structure = Structure(n, 0, n - 1, src, dst, [True] * len(src))
    held = sum(t.numel() for group in structure.levels_in + structure.levels_out for t in group)
    assert held <= 6 * len(src)  # a dense [edges, layers] incidence per level held 2 * 6,000 * 3,000
    proposal = torch.rand((5, len(src))) < 0.9
    for got, want in zip(by_levels(structure, proposal), by_bits(structure, proposal)):
        assert torch.equal(got, want)
