"""The executor's three strategies (all rows, dense-masked, gather/scatter) compute the same
thing: against the reference interpreter, and against each other in training, where batch
norms take statistics over the active rows only; one batch may mix them."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from bsnc.codegen import runtime
from bsnc.codegen.connectivity import by_levels
from bsnc.codegen.layout import memory_format
from bsnc.codegen.masked import eligible, masked_batch_norm, masked_forward
from bsnc.codegen.reference import architecture_from_mask
from bsnc.errors import UsageError
from tests.helpers import DECISIONS_NET, FABRICS, build, build_text, input_for, matches_reference

ROWS = torch.tensor([True, False, True, True, False, True, False, True, True])


@pytest.mark.parametrize("norm", [nn.BatchNorm1d(3), nn.BatchNorm2d(3), nn.BatchNorm2d(3, momentum=None),
                                  nn.BatchNorm2d(3, affine=False), nn.BatchNorm2d(3, track_running_stats=False)],
                         ids=["1d", "2d", "cumulative", "no-affine", "no-running-stats"])
def test_masked_batch_norm_is_torchs_batch_norm_on_the_selected_rows(norm):
    torch.manual_seed(0)
    shape = (9, 3) if isinstance(norm, nn.BatchNorm1d) else (9, 3, 4, 5)
    ours, theirs = norm.double().train(), copy.deepcopy(norm).double().train()
    if ours.affine:
        with torch.no_grad():
            for p in (*ours.parameters(), *theirs.parameters()):
                p.copy_(torch.linspace(0.5, 1.5, p.numel(), dtype=torch.float64))
    for _ in range(2):  # twice: the cumulative average needs a second step to show
        x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
        x2 = x.detach().clone().requires_grad_(True)
        expected = theirs(x[ROWS])
        got = masked_batch_norm(ours, x2, ROWS)[ROWS]
        assert torch.allclose(got, expected, rtol=0, atol=1e-12)
        weights = torch.randn_like(expected)
        (expected * weights).sum().backward()
        (got * weights).sum().backward()
        assert torch.allclose(x2.grad, x.grad, atol=1e-12) and not x2.grad[~ROWS].any()
        for a, b in zip(theirs.parameters(), ours.parameters()):
            assert torch.allclose(a.grad, b.grad, atol=1e-12)
        for name, buffer in theirs.named_buffers():
            assert torch.allclose(buffer.double(), dict(ours.named_buffers())[name].double(), atol=1e-12), name


def test_only_row_wise_modules_are_eligible():
    block = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2))
    assert eligible(block)
    assert not eligible(nn.Sequential(nn.Conv2d(3, 3, 1), nn.Dropout(0.1))), "random: equal only in distribution"

    class Mine(nn.Module):
        def forward(self, x):
            return x - x.mean(dim=0)  # mixes rows
    assert not eligible(nn.Sequential(nn.Conv2d(3, 3, 1), Mine()))

    class GlobalAvgPool(nn.Module):  # a user's primitive with the name of one of bsnc's
        def forward(self, x):
            return x.mean(dim=0)
    assert not eligible(GlobalAvgPool())
    hooked = nn.Sequential(nn.Conv2d(3, 3, 1))
    hooked[0].register_forward_hook(lambda *args: None)
    assert not eligible(hooked)
    _, cnf = build(FABRICS / "resnet_fabric_n3.bsn")
    assert all(eligible(m) for m in cnf.edges.values()), "bsnc's primitives, embedded in generated code"


def test_masked_forward_keeps_a_module_in_evaluation_as_it_is():
    block = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)).double().eval()
    x = torch.randn(9, 3, 4, 4, dtype=torch.float64)
    assert torch.equal(masked_forward(block, x, ROWS), block(x))


CASES = [(FABRICS / "cnf.bsn", {"W": 3, "C": 4, "size": 8}), (FABRICS / "resnet_fabric_n3.bsn", {}), (None, {})]


def _network(case):
    path, overrides = case
    return build_text(DECISIONS_NET.replace("READER", "global_avgpool >> linear(5)")) if path is None \
        else build(path, **overrides)


@pytest.mark.parametrize("threshold", [None, 0.0, 0.5, "always"], ids=["gather", "dense", "mixed", "sync-free"])
@pytest.mark.parametrize("case", CASES, ids=["cnf", "resnet-fabric", "decisions"])
def test_every_strategy_matches_the_reference_interpreter(case, threshold):
    network, module = _network(case)
    module.dense_threshold = threshold
    torch.manual_seed(1)
    matches_reference(network, module, batch=12, p=0.7)


@pytest.mark.parametrize("case", CASES, ids=["cnf", "resnet-fabric", "decisions"])
def test_strategies_agree_in_training_on_outputs_gradients_and_running_statistics(case):
    network, module = _network(case)
    module = module.double().train()
    torch.manual_seed(2)
    x = input_for(network, 16, torch.float64)
    proposal = torch.rand(16, len(network.edges)) < 0.75
    _, active, _ = architecture_from_mask(network, proposal)
    runs = {}
    for name, threshold in (("gather", None), ("dense", 0.0), ("mixed", 0.8), ("sync-free", "always")):
        copy_ = copy.deepcopy(module)
        copy_.dense_threshold = threshold
        copy_.set_mode("mask", proposal)
        out = copy_(x)
        (out * torch.linspace(-1, 1, out[0].numel(), dtype=torch.float64).view(out[0].shape)).sum().backward()
        runs[name] = (copy_, out, copy_.last_strategy)
    used = {name: set(strategy.values()) for name, (_, _, strategy) in runs.items()}
    assert used["gather"] <= {"all", "gather"} and "dense" in used["dense"] and used["sync-free"] == {"dense"}
    assert {"dense", "gather"} <= used["mixed"], f"one batch mixes strategies: {used}"
    base, out, _ = runs["gather"]
    assert active.any(0).sum() > 1
    for name in ("dense", "mixed", "sync-free"):
        other, other_out, _ = runs[name]
        assert torch.allclose(other_out, out, rtol=0, atol=1e-10), name
        for (key, a), b in zip(base.named_parameters(), other.parameters()):
            if a.grad is None:
                assert b.grad is None or not b.grad.any(), key
            else:
                assert torch.allclose(a.grad, b.grad, rtol=0, atol=1e-10), (name, key)
        for (key, a), b in zip(base.named_buffers(), other.buffers()):
            assert torch.allclose(a.double(), b.double(), rtol=0, atol=1e-10), (name, key)


def test_the_device_threshold_comes_from_the_table_or_the_environment(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv("BSNC_DENSE_THRESHOLD", raising=False)
    assert runtime.dense_threshold(cpu) is None, "measured: dense-masked never wins on this CPU"
    monkeypatch.setenv("BSNC_DENSE_THRESHOLD", "0.9")
    assert runtime.dense_threshold(cpu) == 0.9
    monkeypatch.setenv("BSNC_DENSE_THRESHOLD", "never")
    assert runtime.dense_threshold(cpu) is None
    monkeypatch.setenv("BSNC_DENSE_THRESHOLD", "always")
    assert runtime.dense_threshold(cpu) == "always"
    monkeypatch.setenv("BSNC_DENSE_THRESHOLD", "2")
    with pytest.raises(UsageError, match="BSNC_DENSE_THRESHOLD='2': expected a share from 0 to 1, never or always"):
        runtime.dense_threshold(cpu)


def test_the_sync_free_executor_reads_nothing_back_to_the_host(monkeypatch):
    """What would synchronise a GPU: a tensor's value read on the host. Forbidden during the
    forward pass with ``dense_threshold = "always"`` (checked here on the CPU: no GPU to watch;
    connectivity as a GPU derives it, level by level, where the CPU packs bits on the host)."""
    network, module = build(FABRICS / "cnf.bsn", W=3, C=4, size=8)
    module.train().set_mode("sample")
    module.dense_threshold = "always"
    x = input_for(network, 8)

    def forbidden(name):
        def read(*args, **kwargs):
            raise AssertionError(f"{name} reads a device value on the host")
        return read
    monkeypatch.setattr(runtime, "connectivity", by_levels)
    with monkeypatch.context() as patch:
        for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "nonzero"):
            patch.setattr(torch.Tensor, name, forbidden(f"Tensor.{name}"))
        patch.setattr(torch, "nonzero", forbidden("torch.nonzero"))
        out = module(x)
    out.sum().backward()
    assert set(module.last_strategy.values()) == {"dense"}
    module.dense_threshold = None
    with monkeypatch.context() as patch:
        patch.setattr(torch.Tensor, "cpu", forbidden("Tensor.cpu"))
        with pytest.raises(AssertionError, match="Tensor.cpu reads a device value"):
            module(x)  # the compact executor learns its row counts once per pass


@pytest.mark.parametrize("rows", [ROWS, torch.tensor([False] * 8 + [True])], ids=["batch", "one-value"])
def test_masked_batch_norm_gradients_are_exact(rows):
    norm = nn.BatchNorm1d(3).double().train()
    with torch.no_grad():
        norm.running_mean.copy_(torch.tensor([0.1, -0.2, 0.3]))
        norm.running_var.copy_(torch.tensor([1.5, 0.5, 2.0]))
    x = torch.randn(9, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: masked_batch_norm(norm, x, rows),
                                    (x, norm.weight, norm.bias))
    if rows.sum() == 1:  # a single value per channel: the running statistics, left unchanged
        before = norm.running_mean.clone()
        expected = (x - norm.running_mean) / torch.sqrt(norm.running_var + norm.eps) * norm.weight + norm.bias
        assert torch.allclose(masked_batch_norm(norm, x, rows), expected, atol=1e-12)
        assert torch.equal(norm.running_mean, before)


@pytest.mark.parametrize("threshold", [None, "always"], ids=["compact", "sync-free"])
def test_both_executors_train_under_autocast(threshold):
    """Mixed precision (CUDA's float16 is not here: the CPU's bfloat16 takes the same paths)."""
    network, module = build(FABRICS / "cnf.bsn", W=3, C=4, size=8)
    module.train().set_mode("sample")
    module.dense_threshold = threshold
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module(input_for(network, 8))
    out.float().sum().backward()
    assert torch.isfinite(out.float()).all()
    grads = [p.grad for p in module.edges.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


# an identity edge hands its source's value (a sum, as `a` has no post-op) to the next layer as
# is: that value must never be added to in place for the next layer
ALIAS = """
network t() {
    input x : [2, 4, 4]
    layer a : [2, 4, 4]
    layer b : [2, 4, 4]
    layer c : [2, 4, 4]
    output y : [2, 4, 4]
    x -> a as p : conv(2, k=1)
    x -> a as q : conv(2, k=3)
    a -> c as skip : identity
    fixed a -> b : conv(2, k=1)
    b -> c : identity
    a -> y as late : conv(2, k=1)
    fixed c -> y : identity
}
"""


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_a_value_handed_on_by_an_identity_edge_is_never_summed_into(train):
    from bsnc.codegen.reference import reference_forward

    network, module = build_text(ALIAS)
    module = module.double().train(train)
    module.set_mode("full")
    x = input_for(network, 3, torch.float64)
    out = module(x)
    expected = reference_forward(network, module, x, module.last.active)
    assert torch.allclose(out, expected, rtol=0, atol=1e-12)
    ours = torch.autograd.grad(out.sum(), list(module.edges.parameters()))  # would raise if `a` were changed
    theirs = torch.autograd.grad(expected.sum(), list(module.edges.parameters()))
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(ours, theirs))


def test_one_active_row_takes_batch_statistics_where_there_are_several_values_in_every_strategy():
    """conv >> bn (16 values a channel: batch statistics) >> ... >> bn on a vector (one value:
    running statistics, left unchanged), on the one row where the edge is active."""
    network, module = build_text("""
network s() {
    input x : [2, 4, 4]
    output y : [5]
    x -> y as a : conv(3) >> bn >> global_avgpool >> linear(5) >> bn
    x -> y as b : global_avgpool >> linear(5)
}
""")
    module = module.double().train()
    x = torch.randn(4, 2, 4, 4, dtype=torch.float64)
    proposal = torch.tensor([[1, 1], [0, 1], [0, 1], [0, 1]], dtype=torch.bool)
    reference = copy.deepcopy(module)
    edge = reference.edges["x__y__a"]
    edge[4].eval()
    expected = edge(x[:1]) + reference.edges["x__y__b"](x[:1])
    for threshold in (None, 0.0, "always"):
        run = copy.deepcopy(module)
        run.dense_threshold = threshold
        run.set_mode("mask", proposal)
        out = run(x)
        assert torch.allclose(out[0], expected[0], atol=1e-12), threshold
        assert int(run.edges["x__y__a"][4].num_batches_tracked) == 0, "the vector's batch norm took no statistics"
        assert torch.allclose(run.edges["x__y__a"][1].running_mean, edge[1].running_mean, atol=1e-12)


def test_masked_batch_norm_creates_no_tensor_from_host_numbers(monkeypatch):
    """torch.tensor(number, device=cuda) copies to the GPU and waits: not in the sync-free path."""
    norm = nn.BatchNorm2d(3).train()
    x = torch.randn(9, 3, 4, 4)

    def forbidden(*args, **kwargs):
        raise AssertionError("torch.tensor called")
    monkeypatch.setattr(torch, "tensor", forbidden)
    masked_batch_norm(norm, x, ROWS)
    norm.momentum = None
    masked_batch_norm(norm, x, ROWS)


def _unambiguous(t: torch.Tensor) -> bool:
    """A map whose layout can be told: several rows, channels and pixels."""
    return t.dim() == 4 and t.shape[0] > 1 and t.shape[1] > 1 and t.shape[2] * t.shape[3] > 1


def _record_layouts(monkeypatch) -> tuple[list[bool], list[bool]]:
    """Records whether every layer value the executors build, and every gradient that the
    executor's scatters hand back to an edge's output, is channels-last (maps whose layout can be
    told only). A gradient that reaches a layer from a reader's module comes in whatever layout
    that module's backward gives (a mean's is expanded): the scatter lays it out once."""
    values: list[bool] = []
    grads: list[bool] = []

    def note_grad(g):
        if _unambiguous(g):
            grads.append(memory_format(g) is torch.channels_last)

    def recording(method):
        def wrapper(*args, **kwargs):
            y = method(*args, **kwargs)
            if y is not None and _unambiguous(y):
                values.append(memory_format(y) is torch.channels_last)
            return y
        return wrapper

    def add_rows(acc, rows, y, *args, **kwargs):
        if y.requires_grad and _unambiguous(y):
            y.register_hook(note_grad)
        return real_add_rows(acc, rows, y, *args, **kwargs)
    real_add_rows = runtime.add_rows
    monkeypatch.setattr(runtime, "add_rows", add_rows)
    for executor in (runtime.Executor, runtime.DenseExecutor):
        for name in ("run", "place"):
            monkeypatch.setattr(executor, name, recording(getattr(executor, name)))
    return values, grads


@pytest.mark.parametrize("threshold", [None, 0.0, 0.8, "always"], ids=["gather", "dense", "mixed", "sync-free"])
@pytest.mark.parametrize("case", CASES, ids=["cnf", "resnet-fabric", "decisions"])
def test_a_channels_last_network_stays_channels_last_and_computes_the_same(case, threshold, monkeypatch):
    """Every strategy keeps a channels-last input's layout through gathers, scatters and zero
    buffers (a converted map would cost a copy per edge), and trains to the same outputs,
    gradients and running statistics as the contiguous layout."""
    network, module = _network(case)
    module = module.double().train()
    module.dense_threshold = threshold
    torch.manual_seed(3)
    x = input_for(network, 16, torch.float64)
    proposal = torch.rand(16, len(network.edges)) < 0.75
    runs = []
    for layout in (torch.contiguous_format, torch.channels_last):
        copy_ = copy.deepcopy(module).to(memory_format=layout)
        with monkeypatch.context() as patch:
            seen = _record_layouts(patch)
            copy_.memory_format = layout
            copy_.set_mode("mask", proposal)
            out = copy_(x.contiguous(memory_format=layout))
        (out * torch.linspace(-1, 1, out[0].numel(), dtype=torch.float64).view(out[0].shape)).sum().backward()
        runs.append((copy_, out, seen))
    (base, out, (values_base, grads_base)), (other, other_out, (values, grads)) = runs
    assert values and all(values), f"a layer's value came out contiguous: {values}"
    assert all(grads), f"a gradient came back contiguous: {grads}"
    # the sync-free executor scatters nothing but concatenation slots
    assert grads or (threshold == "always" and case[0] is not None)
    assert not any(values_base) and not any(grads_base)
    assert torch.allclose(other_out, out, rtol=0, atol=1e-10)
    for (key, a), b in zip(base.named_parameters(), other.parameters()):
        assert (a.grad is None) == (b.grad is None), key
        assert a.grad is None or torch.allclose(a.grad, b.grad, rtol=0, atol=1e-10), key
    for (key, a), b in zip(base.named_buffers(), other.buffers()):
        assert torch.allclose(a.double(), b.double(), rtol=0, atol=1e-10), key


@pytest.mark.parametrize("threshold", [None, 0.5, "always"], ids=["gather", "mixed", "sync-free"])
def test_a_channels_last_network_matches_the_reference_interpreter(threshold):
    network, module = _network(CASES[0])
    module = module.double().eval().to(memory_format=torch.channels_last)
    module.dense_threshold = threshold
    torch.manual_seed(4)
    from bsnc.codegen.reference import reference_forward

    x = input_for(network, 12, torch.float64)
    proposal = torch.rand(12, len(network.edges)) < 0.7
    module.set_mode("mask", proposal)
    out = module(x.contiguous(memory_format=torch.channels_last))
    _, active, _ = architecture_from_mask(network, proposal)
    assert torch.allclose(out, reference_forward(network, module, x, active), atol=1e-12)
