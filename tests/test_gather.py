"""Edges run on some rows of their source without keeping a gathered copy for backward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bsnc.codegen.gather import GatheredConv, add_rows, run_on_rows
from bsnc.codegen.reference import reference_forward
from tests.helpers import FABRICS, build, build_text, input_for

CONVS = [
    (nn.Conv1d(3, 4, 3, padding=1), (7, 3, 9)),
    (nn.Conv2d(4, 6, 3, stride=2, padding=1), (7, 4, 8, 8)),
    (nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=4, bias=False), (7, 4, 6, 6)),
    (nn.Conv2d(4, 2, 1, bias=False), (7, 4, 5, 5)),
    (nn.Conv3d(2, 3, (1, 3, 3), padding=(0, 1, 1)), (7, 2, 3, 4, 4)),
]


@pytest.mark.parametrize("conv, shape", CONVS, ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else "")
def test_gathered_convolution_gradients_are_exact(conv, shape):
    conv = conv.double()
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    rows = torch.tensor([5, 0, 3])
    inputs = (x, rows, conv.weight, conv.bias, conv)
    assert torch.autograd.gradcheck(lambda x, w, b: GatheredConv.apply(x, rows, w, b, conv), (x, conv.weight, conv.bias)
                                    if conv.bias is not None else (x, conv.weight, None))
    assert torch.equal(GatheredConv.apply(*inputs), conv(x[rows]))


def _block(train: bool) -> nn.Module:
    torch.manual_seed(0)
    block = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 2, 1))
    return block.double().train(train)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("picked", [[1, 2, 4, 8], [0, 1, 2, 4, 8], list(range(9))],
                         ids=["plain-gather", "gathered-conv", "whole"])
def test_run_on_rows_equals_the_module_on_the_gathered_rows(train, picked):
    plain, ours = _block(train), _block(train)
    x = torch.randn(9, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    rows = torch.tensor(picked)
    expected, got = plain(x.index_select(0, rows)), run_on_rows(ours, x2, rows)
    assert torch.allclose(got, expected, rtol=0, atol=1e-12)
    weights = torch.randn_like(expected)
    (expected * weights).sum().backward()
    (got * weights).sum().backward()
    assert torch.allclose(x2.grad, x.grad, atol=1e-12)
    assert not x2.grad[[r for r in range(9) if r not in picked]].any()
    for a, b in zip(plain.parameters(), ours.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-12)
    if train:  # the batch norm's statistics are those of the gathered rows alone
        assert torch.allclose(plain[1].running_mean, ours[1].running_mean, atol=1e-12)


def _saved_bytes(fn) -> int:
    """Bytes of the distinct tensors autograd saves while ``fn`` runs."""
    seen: dict[int, int] = {}
    alive: list[torch.Tensor] = []  # so that no storage is freed, and its address reused, meanwhile

    def pack(t: torch.Tensor):
        alive.append(t)
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def test_no_gathered_copy_is_kept_for_backward():
    x = torch.randn(64, 4, 16, 16, requires_grad=True)
    halves = [torch.arange(0, 64, 2), torch.arange(0, 32)]  # two edges, each on half the rows
    copies = 2 * 32 * 4 * 16 * 16 * 4

    def step(apply) -> None:
        layer = torch.relu(x)  # a layer's value, which its ReLU post-op saves anyway
        for rows in halves:
            apply(_block(True).float(), layer, rows)

    plain = _saved_bytes(lambda: step(lambda m, h, rows: m(h.index_select(0, rows))))
    ours = _saved_bytes(lambda: step(run_on_rows))
    assert plain - ours == copies, (plain, ours)  # both keep the indices


def _uses_gathered_conv(y: torch.Tensor) -> bool:
    seen, todo = set(), [y.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if "GatheredConv" in type(fn).__name__:
            return True
        todo.extend(f for f, _ in fn.next_functions)
    return False


def test_fewer_than_half_the_rows_keep_their_copy():
    x = torch.randn(64, 4, 8, 8, dtype=torch.float64, requires_grad=True)
    assert _uses_gathered_conv(run_on_rows(_block(True), x, torch.arange(32)))
    assert not _uses_gathered_conv(run_on_rows(_block(True), x, torch.arange(31)))


def test_other_modules_and_no_grad_take_the_plain_gather():
    torch.manual_seed(0)
    relu_first = nn.Sequential(nn.ReLU(), nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2))
    subclass = nn.Sequential(type("MyConv", (nn.Conv2d,), {})(2, 2, 1))  # may compute otherwise
    hooked = nn.Sequential(nn.Conv2d(2, 2, 1))
    hooked.register_forward_hook(lambda *_: None)
    x = torch.randn(5, 2, 3, 3, requires_grad=True)
    rows = torch.tensor([0, 4, 2])
    for module in (relu_first, hooked, subclass):
        got = run_on_rows(module, x, rows)
        assert torch.allclose(got, module(x.index_select(0, rows)), atol=1e-6) and not _uses_gathered_conv(got)
    assert _saved_bytes(lambda: run_on_rows(hooked, x, rows)) == _saved_bytes(lambda: hooked(x.index_select(0, rows)))
    with torch.no_grad():
        assert torch.equal(run_on_rows(hooked, x, rows), hooked(x[rows]))


def test_generated_gradients_equal_the_reference_on_random_masks():
    """Every parameter's gradient, through gathered convolutions, as the dense reference's."""
    torch.manual_seed(3)
    network, module = build(FABRICS / "cnf.bsn", W=3, C=3, size=8)
    module = module.double().eval()  # running statistics: rows are independent, as in the reference
    x = input_for(network, 10, torch.float64)
    module.set_mode("mask", torch.rand(10, len(network.edges)) < 0.6)
    out = module(x)
    assert 0 < int(module.last.active.sum()) < module.last.active.numel()
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    ours = {name: p.grad.clone() for name, p in module.edges.named_parameters() if p.grad is not None}
    module.zero_grad()
    (reference_forward(network, module, x, module.last.active) * weights).sum().backward()
    theirs = {name: p.grad for name, p in module.edges.named_parameters() if p.grad is not None}
    assert ours and set(ours) <= set(theirs)
    for name, grad in theirs.items():  # the reference runs unused edges too, on masked rows: zeros
        assert torch.allclose(ours.get(name, torch.zeros_like(grad)), grad, atol=1e-10), name


@pytest.mark.parametrize("inplace", [False, True])
def test_adding_rows_is_index_add_with_exact_gradients_and_keeps_no_copy_of_the_rows(inplace):
    rows = torch.tensor([4, 0, 2])
    y = torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True)
    base = torch.randn(6, 2, 3, dtype=torch.float64, requires_grad=True)

    def ours(base, y):
        acc = base * 1.0  # a sum the caller owns
        return add_rows(acc, rows, y, inplace=inplace)
    assert torch.autograd.gradcheck(ours, (base, y))
    assert torch.equal(ours(base, y), base.index_add(0, rows, y))
    torchs = _saved_bytes(lambda: (base * 1.0).index_add(0, rows, y))
    assert torchs - _saved_bytes(lambda: ours(base, y)) == y.numel() * 8, "torch's index_add keeps y"
    with torch.no_grad():
        assert torch.equal(add_rows(base.detach().clone(), rows, y, inplace=inplace), base.index_add(0, rows, y))


@pytest.mark.parametrize("inplace", [False, True])
def test_adding_rows_into_channels_writes_a_concat_slot_with_exact_gradients(inplace):
    rows = torch.tensor([3, 1])
    y = torch.randn(2, 2, 3, dtype=torch.float64, requires_grad=True)
    base = torch.randn(5, 6, 3, dtype=torch.float64, requires_grad=True)

    def ours(base, y):
        return add_rows(base * 1.0, rows, y, inplace=inplace, channels=3)
    assert torch.autograd.gradcheck(ours, (base, y))
    expected = base.detach().clone()
    expected[:, 3:5].index_add_(0, rows, y.detach())
    assert torch.equal(ours(base, y).detach(), expected)


def test_an_executor_keeps_no_copy_of_an_edges_output_for_its_scatter():
    """At γ = 0.95 most edges are partial: their scatter used to keep every output once more
    (torch's index_add saves its source)."""
    torch.manual_seed(4)
    network, module = build(FABRICS / "cnf.bsn", W=3, C=3, size=8)
    module.train().set_mode("mask", torch.rand(16, len(network.edges)) < 0.8)
    out = module(input_for(network, 16))
    names, todo, seen = set(), [out.grad_fn], set()
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names.add(type(fn).__name__)
        todo.extend(f for f, _ in fn.next_functions)
    assert "IndexAddBackward0" not in names and "RowsAddBackward" in names, names
    out.sum().backward()


CONCAT = """
network t(C: int = 2) {
    input x : [2, 4, 4]
    layer a : [C, 4, 4] post relu
    layer c : [2 * C, 4, 4] aggregate concat
    output y : [5]
    fixed x -> a : conv(C, k=1)
    a -> c as p : identity
    a -> c as q : identity
    fixed c -> y : global_avgpool >> linear(5)
}
"""


def test_a_concatenation_keeps_no_copy_of_its_partial_inputs():
    """Identity edges save nothing: any saved map of a partial edge's rows would be its slot's."""
    network, module = build_text(CONCAT)
    proposal = torch.ones(16, len(network.edges), dtype=torch.bool)
    proposal[::2, 1] = False  # p on half the rows
    proposal[1::4, 2] = False  # q on three quarters, never off where p is
    module.train().set_mode("mask", proposal)
    shapes: list[tuple[int, ...]] = []

    def pack(t: torch.Tensor):
        shapes.append(tuple(t.shape))
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = module(input_for(network, 16))
    assert module.last_strategy == {0: "all", 1: "gather", 2: "gather", 3: "all"}
    partial = [s for s in shapes if s[1:] == (2, 4, 4) and s[0] < 16]
    assert (16, 2, 4, 4) in shapes and not partial, shapes  # whole maps: the stem's input, a's ReLU output
    out.sum().backward()
