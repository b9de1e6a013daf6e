"""A user primitive package for the tests: multi-head self-attention over the positions of a
map, registered with bsnc through ``PRIMITIVES`` (``--primitives tinyattn`` or an entry point)."""

from __future__ import annotations

import torch
from torch import nn

from bsnc.ops import ArgSpec, ModuleSpec, Primitive, ShapeError


class SpatialAttention(nn.Module):
    """Self-attention between the H*W positions of a [N, C, H, W] map, then a 1x1 projection."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Conv2d(channels, 3 * channels, kernel_size=1, bias=False)
        self.proj = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(x).reshape(n, 3, self.heads, c // self.heads, h * w).unbind(1)
        scores = torch.matmul(q.transpose(-1, -2), k) / (c // self.heads) ** 0.5  # [n, heads, hw, hw]
        out = torch.matmul(v, scores.softmax(dim=-1).transpose(-1, -2))  # [n, heads, c/heads, hw]
        return self.proj(out.reshape(n, c, h, w))


def _shape(shape: tuple[int, ...], args: dict) -> tuple[int, ...]:
    if len(shape) != 3:
        raise ShapeError(f"attention needs a [C, H, W] input, got {list(shape)}")
    if shape[0] % args["heads"]:
        raise ShapeError(f"attention: heads={args['heads']} must divide the {shape[0]} channels")
    return shape


def _macs(i: tuple[int, ...], o: tuple[int, ...], args: dict) -> int:
    c, h, w = i
    positions = h * w
    return 4 * c * c * positions + 2 * positions * positions * c  # qkv and proj convs, two products


def _params(i: tuple[int, ...], args: dict) -> int:
    return 4 * i[0] * i[0] + i[0]


def _torch(i: tuple[int, ...], args: dict) -> ModuleSpec:
    return ModuleSpec("tinyattn.SpatialAttention", (("channels", i[0]), ("heads", args["heads"])))


PRIMITIVES = [
    Primitive(
        "attention", (ArgSpec("heads", int, 1, minimum=1, doc="attention heads; must divide C"),),
        _shape, _macs, _params, _torch,
        "Multi-head self-attention over the positions of a map.", "attention(heads=2)",
    )
]
