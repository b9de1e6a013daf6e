"""A user primitive package for the tests: a flatten written with ``.view``, as much user code
is, which a channels-last map refuses (``--primitives viewflat``)."""

from __future__ import annotations

import math

import torch
from torch import nn

from bsnc.ops import ModuleSpec, Primitive, ShapeError


class ViewFlatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.size(0), -1)


def _shape(shape: tuple[int, ...], args: dict) -> tuple[int, ...]:
    if len(shape) != 3:
        raise ShapeError(f"viewflat needs a [C, H, W] input, got {list(shape)}")
    return (math.prod(shape),)


PRIMITIVES = [
    Primitive("viewflat", (), _shape, lambda i, o, a: 0, lambda i, a: 0,
              lambda i, a: ModuleSpec("viewflat.ViewFlatten", ()),
              "Flattens a [C, H, W] map with .view.", "viewflat"),
]
