"""The registry of primitives: each defines, in one place, its argument schema, its shape rule,
its multiply-accumulates and parameter count, and the torch module it builds.

Input channels are never written in `.bsn`: a primitive reads them from its input shape.
Shapes are tuples of ints, ``(C, H, W)`` for feature maps and ``(F,)`` for vectors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

Shape = tuple[int, ...]
Args = dict[str, Any]

REQUIRED = object()


class ShapeError(Exception):
    """A primitive cannot take this input shape or these arguments; the message says why."""


@dataclass(frozen=True)
class ArgSpec:
    name: str
    type: type | tuple[type, ...]
    default: Any = REQUIRED
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    doc: str = ""

    def type_name(self) -> str:
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        return " or ".join(t.__name__ for t in types if t is not type(None))


_TORCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "nn.Conv2d": {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, "bias": True},
    "nn.Linear": {"bias": True},
    "nn.MaxPool2d": {"padding": 0},
    "nn.AvgPool2d": {"padding": 0},
    "nn.Upsample": {"mode": "nearest"},
}


@dataclass(frozen=True)
class ModuleSpec:
    """How to build a torch module: a constructor name (``nn.X`` or a helper of bsnc.nn) and
    keyword arguments, rendered with repr() in generated code."""

    ctor: str
    kwargs: tuple[tuple[str, Any], ...]

    def source(self, ctor: str | None = None) -> str:
        """Constructor call text (``ctor`` replaces the constructor's name, e.g. by an import
        alias); keyword arguments equal to torch's defaults are left out."""
        defaults = _TORCH_DEFAULTS.get(self.ctor, {})
        shown = [(k, v) for k, v in self.kwargs if k not in defaults or defaults[k] != v or type(defaults[k]) is not type(v)]
        return f"{ctor or self.ctor}({', '.join(f'{k}={v!r}' for k, v in shown)})"

    def build(self) -> Any:
        import importlib

        import torch.nn

        from bsnc import nn as helpers

        if self.ctor.startswith("nn."):
            cls = getattr(torch.nn, self.ctor[3:])
        elif self.external:
            module, _, name = self.ctor.rpartition(".")
            cls = getattr(importlib.import_module(module), name)
        else:
            cls = getattr(helpers, self.ctor)
        return cls(**dict(self.kwargs))

    @property
    def external(self) -> bool:
        """Built from a user's package (``package.module.Class``), not from torch or bsnc."""
        return "." in self.ctor and not self.ctor.startswith("nn.")


@dataclass(frozen=True)
class Primitive:
    name: str
    args: tuple[ArgSpec, ...]
    shape: Callable[[Shape, Args], Shape]
    macs: Callable[[Shape, Shape, Args], int]
    params: Callable[[Shape, Args], int]
    torch: Callable[[Shape, Args], ModuleSpec]
    doc: str
    example: str

    def arg(self, name: str) -> ArgSpec | None:
        return next((a for a in self.args if a.name == name), None)


REGISTRY: dict[str, Primitive] = {}


def _register(prim: Primitive) -> Primitive:
    REGISTRY[prim.name] = prim
    return prim


def _zero(*_: Any) -> int:
    return 0


def _same_shape(shape: Shape, args: Args) -> Shape:
    return shape


def _need_map(name: str, shape: Shape) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeError(f"{name} needs a [C, H, W] input, got {format_shape(shape)}")
    return shape[0], shape[1], shape[2]


def _need_vector(name: str, shape: Shape) -> int:
    if len(shape) != 1:
        raise ShapeError(f"{name} needs a [F] input, got {format_shape(shape)}; use flatten or global_avgpool first")
    return shape[0]


def format_shape(shape: Shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _window_out(size: int, k: int, stride: int, pad: int, dilation: int = 1) -> int:
    return (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1


# --- conv ----------------------------------------------------------------------------------


def _conv_padding(args: Args) -> int:
    padding = args["padding"]
    if padding == "same":
        span = args["dilation"] * (args["k"] - 1)
        if span % 2:
            raise ShapeError(f'padding "same" needs an odd kernel size, got k={args["k"]}; give padding=N')
        return span // 2
    if padding == "valid":
        return 0
    if isinstance(padding, int) and not isinstance(padding, bool) and padding >= 0:
        return padding
    raise ShapeError(f'padding must be "same", "valid" or an integer >= 0, got {padding!r}')


def _conv_shape(shape: Shape, args: Args) -> Shape:
    cin, h, w = _need_map("conv", shape)
    groups = args["groups"]
    if cin % groups or args["c"] % groups:
        raise ShapeError(f"groups={groups} must divide input channels {cin} and output channels {args['c']}")
    pad = _conv_padding(args)
    ho = _window_out(h, args["k"], args["stride"], pad, args["dilation"])
    wo = _window_out(w, args["k"], args["stride"], pad, args["dilation"])
    if ho < 1 or wo < 1:
        raise ShapeError(f"conv with k={args['k']} on a {h}x{w} map leaves no output")
    return (args["c"], ho, wo)


def _conv_macs(i: Shape, o: Shape, args: Args) -> int:
    return o[0] * o[1] * o[2] * (i[0] // args["groups"]) * args["k"] * args["k"]


def _conv_params(i: Shape, args: Args) -> int:
    return args["c"] * (i[0] // args["groups"]) * args["k"] ** 2 + (args["c"] if args["bias"] else 0)


def _conv_torch(i: Shape, args: Args) -> ModuleSpec:
    return ModuleSpec("nn.Conv2d", (
        ("in_channels", i[0]), ("out_channels", args["c"]), ("kernel_size", args["k"]),
        ("stride", args["stride"]), ("padding", _conv_padding(args)), ("dilation", args["dilation"]),
        ("groups", args["groups"]), ("bias", args["bias"]),
    ))


_register(Primitive(
    "conv",
    (
        ArgSpec("c", int, minimum=1, doc="output channels"),
        ArgSpec("k", int, 3, minimum=1, doc="kernel size"),
        ArgSpec("stride", int, 1, minimum=1),
        ArgSpec("padding", (str, int), "same", doc='"same" (keeps H and W at stride 1), "valid" or N'),
        ArgSpec("groups", int, 1, minimum=1),
        ArgSpec("dilation", int, 1, minimum=1),
        ArgSpec("bias", bool, True),
    ),
    _conv_shape, _conv_macs, _conv_params, _conv_torch,
    "2-D convolution; input channels come from the source layer.",
    "conv(64, k=3, stride=2)",
))


# --- normalisation, activations, identity ------------------------------------------------


def _bn_torch(i: Shape, args: Args) -> ModuleSpec:
    if len(i) == 3:
        return ModuleSpec("nn.BatchNorm2d", (("num_features", i[0]),))
    return ModuleSpec("nn.BatchNorm1d", (("num_features", i[0]),))


def _bn_shape(shape: Shape, args: Args) -> Shape:
    if len(shape) not in (1, 3):
        raise ShapeError(f"bn needs a [C, H, W] or [F] input, got {format_shape(shape)}")
    return shape


_register(Primitive(
    "bn", (), _bn_shape, _zero, lambda i, a: 2 * i[0], _bn_torch,
    "Batch normalisation over channels (BatchNorm2d on maps, BatchNorm1d on vectors).", "bn",
))

_register(Primitive(
    "relu", (), _same_shape, _zero, _zero, lambda i, a: ModuleSpec("nn.ReLU", ()),
    "Rectified linear unit.", "relu",
))

_ACTIVATIONS = (
    ("sigmoid", "nn.Sigmoid", "The logistic function 1 / (1 + exp(-x))."),
    ("tanh", "nn.Tanh", "The hyperbolic tangent."),
    ("gelu", "nn.GELU", "The Gaussian error linear unit (exact form)."),
    ("relu6", "nn.ReLU6", "min(max(0, x), 6): the activation of MobileNetV2."),
    ("hswish", "nn.Hardswish", "Hard swish x * relu6(x + 3) / 6: the activation of MobileNetV3."),
    ("hsigmoid", "nn.Hardsigmoid", "Hard sigmoid relu6(x + 3) / 6."),
)


def _activation(ctor: str) -> Callable[[Shape, Args], ModuleSpec]:
    return lambda i, a: ModuleSpec(ctor, ())


for _name, _ctor, _doc in _ACTIVATIONS:
    _register(Primitive(_name, (), _same_shape, _zero, _zero, _activation(_ctor), _doc, _name))


def _zero_shape(shape: Shape, args: Args) -> Shape:
    s, c = args["stride"], args["c"]
    if len(shape) != 3:
        if s != 1:
            raise ShapeError(f"zero with stride={s} needs a [C, H, W] input, got {format_shape(shape)}")
        return shape if c is None else (c,) + shape[1:]
    channels, h, w = shape
    return (channels if c is None else c, -(-h // s), -(-w // s))


def _zero_torch(i: Shape, args: Args) -> ModuleSpec:
    channels = (("channels", args["c"]),) if args["c"] is not None else ()
    return ModuleSpec("Zero", (("stride", args["stride"]),) + channels)


_register(Primitive(
    "zero", (ArgSpec("stride", int, 1, minimum=1, doc="spatial subsampling of the zeros' shape"),
             ArgSpec("c", (int, type(None)), None, minimum=1, doc="their channels (features); default the input's")),
    _zero_shape, _zero, _zero, _zero_torch,
    "Outputs zeros and costs nothing: the 'none' operation of DARTS.", "zero",
))


def _layernorm_shape(shape: Shape, args: Args) -> Shape:
    if len(shape) not in (1, 3):
        raise ShapeError(f"layernorm needs a [C, H, W] or [F] input, got {format_shape(shape)}")
    return shape


_register(Primitive(
    "layernorm", (), _layernorm_shape, _zero, lambda i, a: 2 * i[0],
    lambda i, a: ModuleSpec("ChannelLayerNorm", (("channels", i[0]),)),
    "Layer normalisation over channels, at each position of a map (or over the features of a vector).",
    "layernorm",
))


def _se_hidden(channels: int, args: Args) -> int:
    return max(1, channels // args["r"])


def _se_shape(shape: Shape, args: Args) -> Shape:
    _need_map("se", shape)
    return shape


_register(Primitive(
    "se", (ArgSpec("r", int, 4, minimum=1, doc="reduction: the hidden width is max(1, C // r)"),),
    _se_shape,
    lambda i, o, a: 2 * i[0] * _se_hidden(i[0], a),
    lambda i, a: 2 * i[0] * _se_hidden(i[0], a) + _se_hidden(i[0], a) + i[0],
    lambda i, a: ModuleSpec("SqueezeExcite", (("channels", i[0]), ("hidden", _se_hidden(i[0], a)))),
    "Squeeze-and-excitation: channels scaled by sigmoid(linear(relu(linear(global_avgpool(x))))).",
    "se(r=4)",
))


_register(Primitive(
    "identity", (), _same_shape, _zero, _zero, lambda i, a: ModuleSpec("nn.Identity", ()),
    "Passes its input through unchanged (a skip connection).", "identity",
))

_register(Primitive(
    "dropout", (ArgSpec("p", float, 0.5, minimum=0.0, doc="drop probability, below 1"),),
    _same_shape, _zero, _zero, lambda i, a: ModuleSpec("nn.Dropout", (("p", a["p"]),)),
    "Dropout during training; identity in evaluation.", "dropout(0.2)",
))


# --- resampling ----------------------------------------------------------------------------


def _upsample_shape(shape: Shape, args: Args) -> Shape:
    c, h, w = _need_map("upsample", shape)
    return (c, h * args["scale"], w * args["scale"])


def _upsample_torch(i: Shape, args: Args) -> ModuleSpec:
    kwargs: tuple[tuple[str, Any], ...] = (("scale_factor", float(args["scale"])), ("mode", args["mode"]))
    if args["mode"] == "bilinear":
        kwargs += (("align_corners", False),)
    return ModuleSpec("nn.Upsample", kwargs)


_register(Primitive(
    "upsample",
    (ArgSpec("scale", int, 2, minimum=1), ArgSpec("mode", str, "nearest", choices=("nearest", "bilinear"))),
    _upsample_shape, _zero, _zero, _upsample_torch,
    "Up-sampling by an integer factor.", "upsample(2)",
))


def _pool_shape(name: str) -> Callable[[Shape, Args], Shape]:
    def rule(shape: Shape, args: Args) -> Shape:
        c, h, w = _need_map(name, shape)
        stride = args["stride"] if args["stride"] is not None else args["k"]
        if args["padding"] * 2 > args["k"]:
            raise ShapeError(f"{name} padding {args['padding']} is more than half of k={args['k']}")
        ho = _window_out(h, args["k"], stride, args["padding"])
        wo = _window_out(w, args["k"], stride, args["padding"])
        if ho < 1 or wo < 1:
            raise ShapeError(f"{name} with k={args['k']} on a {h}x{w} map leaves no output")
        return (c, ho, wo)

    return rule


def _pool_torch(ctor: str) -> Callable[[Shape, Args], ModuleSpec]:
    def build(i: Shape, args: Args) -> ModuleSpec:
        stride = args["stride"] if args["stride"] is not None else args["k"]
        return ModuleSpec(ctor, (("kernel_size", args["k"]), ("stride", stride), ("padding", args["padding"])))

    return build


_POOL_ARGS = (
    ArgSpec("k", int, 2, minimum=1, doc="window size"),
    ArgSpec("stride", (int, type(None)), None, minimum=1, doc="defaults to k"),
    ArgSpec("padding", int, 0, minimum=0),
)

_register(Primitive(
    "maxpool", _POOL_ARGS, _pool_shape("maxpool"), _zero, _zero, _pool_torch("nn.MaxPool2d"),
    "Max pooling.", "maxpool(k=3, stride=2, padding=1)",
))
_register(Primitive(
    "avgpool", _POOL_ARGS, _pool_shape("avgpool"), _zero, _zero, _pool_torch("nn.AvgPool2d"),
    "Average pooling.", "avgpool(2)",
))


def _gap_shape(shape: Shape, args: Args) -> Shape:
    c, _, _ = _need_map("global_avgpool", shape)
    return (c,)


_register(Primitive(
    "global_avgpool", (), _gap_shape, _zero, _zero, lambda i, a: ModuleSpec("GlobalAvgPool", ()),
    "Mean over H and W: [C, H, W] to [C].", "global_avgpool",
))


def _gmp_shape(shape: Shape, args: Args) -> Shape:
    c, _, _ = _need_map("global_maxpool", shape)
    return (c,)


_register(Primitive(
    "global_maxpool", (), _gmp_shape, _zero, _zero, lambda i, a: ModuleSpec("GlobalMaxPool", ()),
    "Maximum over H and W: [C, H, W] to [C].", "global_maxpool",
))


def _flatten_shape(shape: Shape, args: Args) -> Shape:
    return (math.prod(shape),)


_register(Primitive(
    "flatten", (), _flatten_shape, _zero, _zero, lambda i, a: ModuleSpec("nn.Flatten", ()),
    "Flattens [C, H, W] to [C*H*W].", "flatten",
))


# --- linear --------------------------------------------------------------------------------


def _linear_shape(shape: Shape, args: Args) -> Shape:
    _need_vector("linear", shape)
    return (args["f"],)


_register(Primitive(
    "linear",
    (ArgSpec("f", int, minimum=1, doc="output features"), ArgSpec("bias", bool, True)),
    _linear_shape,
    lambda i, o, a: i[0] * o[0],
    lambda i, a: i[0] * a["f"] + (a["f"] if a["bias"] else 0),
    lambda i, a: ModuleSpec("nn.Linear", (("in_features", i[0]), ("out_features", a["f"]), ("bias", a["bias"]))),
    "Fully connected layer on a [F] input.", "linear(10)",
))


# --- ResNet option-A shortcut ------------------------------------------------------------


def _pad_shape(shape: Shape, args: Args) -> Shape:
    cin, h, w = _need_map("pad_channels", shape)
    if args["c"] < cin:
        raise ShapeError(f"pad_channels cannot reduce {cin} channels to {args['c']}")
    s = args["stride"]
    return (args["c"], -(-h // s), -(-w // s))


_register(Primitive(
    "pad_channels",
    (ArgSpec("c", int, minimum=1, doc="output channels"), ArgSpec("stride", int, 2, minimum=1)),
    _pad_shape, _zero, _zero,
    lambda i, a: ModuleSpec("PadChannels", (("in_channels", i[0]), ("out_channels", a["c"]), ("stride", a["stride"]))),
    "Zero channel padding plus spatial subsampling (ResNet option-A shortcut).", "pad_channels(32)",
))


def check_value(prim: Primitive, spec: ArgSpec, value: Any) -> str | None:
    """Why ``value`` does not fit ``spec``, or None when it does."""
    types = spec.type if isinstance(spec.type, tuple) else (spec.type,)
    ok = any(
        (t is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (t is int and isinstance(value, int) and not isinstance(value, bool))
        or (t is bool and isinstance(value, bool))
        or (t is str and isinstance(value, str))
        or (t is type(None) and value is None)
        for t in types
    )
    if not ok:
        return f"argument '{spec.name}' of {prim.name} must be {spec.type_name()}, got {type_name(value)} {bsn_repr(value)}"
    if spec.choices is not None and value not in spec.choices:
        return f"argument '{spec.name}' of {prim.name} must be one of {', '.join(map(bsn_repr, spec.choices))}; got {bsn_repr(value)}"
    if spec.minimum is not None and isinstance(value, (int, float)) and not isinstance(value, bool) and value < spec.minimum:
        return f"argument '{spec.name}' of {prim.name} must be at least {spec.minimum}, got {bsn_repr(value)}"
    if prim.name == "dropout" and spec.name == "p" and value >= 1:
        return f"argument 'p' of dropout must be below 1, got {bsn_repr(value)}"
    return None


def quote(value: str) -> str:
    """A `.bsn` string literal for ``value``."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def printable(text: str) -> str:
    """``text`` with every character that is not printable (newline, carriage return, other control
    characters, line separators, undecodable bytes of a file name) escaped as Python writes it,
    so that text put in a comment of generated `.bsn` or Python can never start a new line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def bsn_repr(value: Any) -> str:
    """A value as `.bsn` text writes it: true, "text", 3, 0.5."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, list):
        return "[" + ", ".join(bsn_repr(v) for v in value) + "]"
    if isinstance(value, tuple):
        inner = ", ".join(bsn_repr(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    return repr(value)


def type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    return {int: "int", float: "float", str: "str", list: "list", tuple: "tuple"}.get(type(value), type(value).__name__)
