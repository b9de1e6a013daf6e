"""The primitive registry against torch: output shapes, parameter counts and MACs."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from bsnc.ops import REGISTRY, REQUIRED, ShapeError, check_value


def full_args(name: str, **given) -> dict:
    """Arguments as expansion binds them: every schema argument, defaults filled in."""
    prim = REGISTRY[name]
    unknown = set(given) - {a.name for a in prim.args}
    assert not unknown, unknown
    args = {}
    for spec in prim.args:
        if spec.name in given:
            args[spec.name] = given[spec.name]
        else:
            assert spec.default is not REQUIRED, f"{name} needs {spec.name}"
            args[spec.name] = spec.default
    return args


CASES: dict[str, list[tuple[tuple[int, ...], dict]]] = {
    "conv": [
        ((3, 8, 8), {"c": 4}),
        ((3, 9, 7), {"c": 6, "k": 5, "stride": 2}),
        ((4, 8, 8), {"c": 8, "k": 1, "groups": 2, "bias": False}),
        ((4, 10, 10), {"c": 4, "k": 3, "padding": "valid", "dilation": 2, "groups": 4}),
        ((2, 5, 6), {"c": 3, "k": 2, "padding": 1, "stride": 3}),
    ],
    "bn": [((3, 4, 4), {}), ((7,), {}), ((1, 1, 1), {})],
    "relu": [((3, 4, 4), {}), ((5,), {})],
    "identity": [((3, 4, 4), {}), ((5,), {}), ((2, 3), {})],
    "dropout": [((3, 4, 4), {"p": 0.2}), ((5,), {})],
    "upsample": [
        ((3, 4, 4), {}),
        ((2, 3, 5), {"scale": 3, "mode": "bilinear"}),
        ((1, 2, 2), {"scale": 1}),
    ],
    "maxpool": [
        ((3, 8, 8), {}),
        ((3, 7, 7), {"k": 3, "stride": 2, "padding": 1}),
        ((2, 5, 9), {"k": 2, "stride": 1}),
    ],
    "avgpool": [
        ((3, 8, 8), {}),
        ((3, 7, 7), {"k": 3, "stride": 2, "padding": 1}),
        ((2, 5, 9), {"k": 3}),
    ],
    "global_avgpool": [((3, 8, 8), {}), ((16, 1, 1), {})],
    "flatten": [((3, 4, 4), {}), ((5,), {})],
    "linear": [((10,), {"f": 3}), ((1,), {"f": 7, "bias": False})],
    "sigmoid": [((3, 4, 4), {}), ((5,), {})],
    "tanh": [((3, 4, 4), {}), ((5,), {})],
    "gelu": [((3, 4, 4), {}), ((5,), {})],
    "relu6": [((3, 4, 4), {}), ((5,), {})],
    "hswish": [((3, 4, 4), {}), ((5,), {})],
    "hsigmoid": [((3, 4, 4), {}), ((5,), {})],
    "zero": [((3, 4, 4), {}), ((3, 5, 7), {"stride": 2}), ((5,), {}), ((3, 5, 7), {"stride": 2, "c": 8}),
             ((6,), {"c": 2})],
    "global_maxpool": [((3, 8, 8), {}), ((16, 1, 1), {})],
    "layernorm": [((3, 4, 4), {}), ((7,), {})],
    "se": [((8, 4, 4), {}), ((6, 3, 5), {"r": 2}), ((3, 2, 2), {"r": 16})],
    "pad_channels": [
        ((16, 8, 8), {"c": 32}),
        ((3, 7, 7), {"c": 8, "stride": 2}),
        ((4, 5, 6), {"c": 4, "stride": 1}),
        ((3, 9, 9), {"c": 6, "stride": 3}),
    ],
}


def test_every_primitive_has_cases():
    assert set(CASES) == set(REGISTRY)


def test_registry_metadata_is_consistent():
    for name, prim in REGISTRY.items():
        assert prim.name == name
        assert prim.doc and prim.example
        for spec in prim.args:
            if spec.default is not REQUIRED:
                assert check_value(prim, spec, spec.default) is None, (name, spec.name)


ALL_CASES = [(name, shape, args) for name, cases in CASES.items() for shape, args in cases]


@pytest.mark.parametrize(
    "name, shape, given", ALL_CASES, ids=[f"{n}-{list(s)}-{a}" for n, s, a in ALL_CASES]
)
def test_torch_module_matches_shape_and_params(name, shape, given):
    prim = REGISTRY[name]
    args = full_args(name, **given)
    out = prim.shape(shape, args)
    module = prim.torch(shape, args).build()
    assert isinstance(module, torch.nn.Module)
    torch.manual_seed(0)
    x = torch.randn(2, *shape)
    y = module(x)
    assert tuple(y.shape) == (2, *out)
    assert prim.params(shape, args) == sum(p.numel() for p in module.parameters())
    with FlopCounterMode(display=False) as counter:
        module(x)
    # FlopCounterMode counts 2 FLOPs per multiply-accumulate; batch of 2
    assert counter.get_total_flops() == 2 * 2 * prim.macs(shape, out, args)


def test_module_source_builds_the_same_module():
    spec = REGISTRY["conv"].torch((4, 8, 8), full_args("conv", c=8, k=1, stride=2, bias=False))
    assert (
        spec.source()
        == "nn.Conv2d(in_channels=4, out_channels=8, kernel_size=1, stride=2, bias=False)"
    )
    module = spec.build()
    assert (module.in_channels, module.out_channels, module.kernel_size, module.stride) == (
        4,
        8,
        (1, 1),
        (2, 2),
    )
    assert module.bias is None


@pytest.mark.parametrize(
    "shape, given",
    [
        ((3, 8, 8), {"c": 4, "k": 3}),
        ((3, 8, 8), {"c": 4, "k": 1}),
        ((4, 9, 9), {"c": 8, "k": 3, "stride": 2}),
        ((4, 9, 9), {"c": 8, "k": 3, "stride": 2, "groups": 4}),
        ((6, 7, 5), {"c": 6, "k": 5, "groups": 6, "padding": 1}),
        ((6, 7, 5), {"c": 3, "k": 3, "padding": "valid", "dilation": 2, "groups": 3}),
        ((8, 16, 16), {"c": 16, "k": 7, "stride": 3, "padding": 0, "bias": False}),
    ],
)
def test_conv_macs_against_flop_counter(shape, given):
    prim = REGISTRY["conv"]
    args = full_args("conv", **given)
    out = prim.shape(shape, args)
    module = prim.torch(shape, args).build()
    with FlopCounterMode(display=False) as counter:
        module(torch.randn(1, *shape))
    macs = prim.macs(shape, out, args)
    assert macs > 0
    assert counter.get_total_flops() == 2 * macs


@pytest.mark.parametrize(
    "features, f, bias", [(10, 3, True), (64, 10, False), (1, 1, True), (512, 100, True)]
)
def test_linear_macs_against_flop_counter(features, f, bias):
    prim = REGISTRY["linear"]
    args = full_args("linear", f=f, bias=bias)
    module = prim.torch((features,), args).build()
    with FlopCounterMode(display=False) as counter:
        module(torch.randn(1, features))
    assert prim.macs((features,), (f,), args) == features * f
    assert counter.get_total_flops() == 2 * features * f
    assert prim.params((features,), args) == features * f + (f if bias else 0)


def _agrees_with_torch(name: str, shape: tuple[int, ...], args: dict) -> None:
    """shape() either raises ShapeError or gives what torch gives."""
    prim = REGISTRY[name]
    try:
        out = prim.shape(shape, args)
    except ShapeError:
        try:
            y = prim.torch(shape, args).build()(torch.zeros(1, *shape))
        except (RuntimeError, ValueError, ShapeError):
            return
        assert y.numel() == 0, (name, shape, args, "bsnc refuses what torch runs")
        return
    y = prim.torch(shape, args).build()(torch.zeros(1, *shape))
    assert tuple(y.shape[1:]) == out, (name, shape, args)


def test_pool_shape_rule_grid():
    for name in ("maxpool", "avgpool"):
        for k, stride, padding, h in itertools.product(
            range(1, 5), [None, 1, 2, 3], range(3), range(1, 7)
        ):
            _agrees_with_torch(
                name, (1, h, h + 2), full_args(name, k=k, stride=stride, padding=padding)
            )


def test_conv_shape_rule_grid():
    for k, stride, padding, dilation, h in itertools.product(
        range(1, 5), [1, 2, 3], ["same", "valid", 0, 2], [1, 2], [1, 4, 7]
    ):
        args = full_args("conv", c=2, k=k, stride=stride, padding=padding, dilation=dilation)
        _agrees_with_torch("conv", (2, h, h + 1), args)


def test_pad_channels_shape_rule_grid():
    for c, stride, h in itertools.product([3, 4, 7], [1, 2, 3], range(1, 6)):
        _agrees_with_torch(
            "pad_channels", (3, h, h + 1), full_args("pad_channels", c=c, stride=stride)
        )


def test_pad_channels_pads_zeros_on_both_sides():
    module = REGISTRY["pad_channels"].torch((2, 4, 4), full_args("pad_channels", c=6)).build()
    x = torch.ones(1, 2, 4, 4)
    y = module(x)
    assert y.shape == (1, 6, 2, 2)
    assert y.sum(dim=(0, 2, 3)).tolist() == [0, 0, 4, 4, 0, 0]


def test_global_avgpool_is_the_spatial_mean():
    module = REGISTRY["global_avgpool"].torch((3, 4, 5), {}).build()
    x = torch.randn(2, 3, 4, 5)
    assert torch.allclose(module(x), x.mean(dim=(2, 3)))


@pytest.mark.parametrize(
    "name, shape, given, words",
    [
        ("linear", (4, 8, 8), {"f": 10}, "needs a [F] input"),
        ("conv", (3, 8, 8), {"c": 4, "k": 2}, 'padding "same" needs an odd kernel'),
        ("conv", (3, 8, 8), {"c": 4, "k": 3, "dilation": 1, "padding": "oops"}, "padding must be"),
        ("conv", (3, 8, 8), {"c": 4, "groups": 2}, "groups=2 must divide"),
        ("conv", (16,), {"c": 4}, "needs a [C, H, W] input"),
        ("conv", (3, 2, 2), {"c": 4, "k": 5, "padding": "valid"}, "leaves no output"),
        ("pad_channels", (32, 8, 8), {"c": 16}, "cannot reduce 32 channels to 16"),
        ("maxpool", (3, 1, 1), {"k": 3}, "leaves no output"),
        ("avgpool", (3, 8, 8), {"k": 2, "padding": 2}, "more than half"),
        ("global_avgpool", (10,), {}, "needs a [C, H, W] input"),
        ("upsample", (10,), {}, "needs a [C, H, W] input"),
        ("bn", (3, 4), {}, "bn needs"),
    ],
)
def test_shape_errors(name, shape, given, words):
    with pytest.raises(ShapeError) as info:
        REGISTRY[name].shape(shape, full_args(name, **given))
    assert words in str(info.value)


@pytest.mark.parametrize(
    "name, arg, value, ok",
    [
        ("conv", "c", 4, True),
        ("conv", "c", 0, False),
        ("conv", "c", 4.0, False),
        ("conv", "c", True, False),
        ("conv", "padding", "same", True),
        ("conv", "padding", 2, True),
        ("conv", "bias", 1, False),
        ("dropout", "p", 0, True),
        ("dropout", "p", 0.99, True),
        ("dropout", "p", 1, False),
        ("dropout", "p", -0.1, False),
        ("upsample", "mode", "bicubic", False),
        ("maxpool", "stride", None, True),
    ],
)
def test_check_value(name, arg, value, ok):
    prim = REGISTRY[name]
    assert (check_value(prim, prim.arg(arg), value) is None) is ok
