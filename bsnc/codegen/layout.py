"""Memory layout: image layers may run channels-last (NHWC in memory), which oneDNN and cuDNN
convolve without reordering; the executor's gathers, scatters and zero buffers keep whichever
layout their tensors have, so that no edge converts its maps back and forth."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from bsnc.ir import Network

_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


def memory_format(x: torch.Tensor) -> torch.memory_format:
    """``x``'s layout, read from its strides: channels-last when its channels are adjacent in
    memory and its pixels and rows ordered outside them (a channel slice of a channels-last map
    included); contiguous otherwise, and for a tensor with one channel or one pixel, which is
    both."""
    last = _CHANNELS_LAST.get(x.dim())
    if last is None or x.stride(1) != 1 or x.shape[1] == 1:
        return torch.contiguous_format
    if x.is_contiguous(memory_format=last):  # the common case, without reading every stride
        return torch.contiguous_format if x.is_contiguous() else last
    if math.prod(x.shape[2:]) == 1:
        return torch.contiguous_format
    order = (0, *range(2, x.dim()), 1)
    strides = [x.stride(d) for d in order if x.shape[d] > 1]
    return last if all(a >= b for a, b in zip(strides, strides[1:])) and strides[-1] == 1 else torch.contiguous_format


def take_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``x.index_select(0, rows)`` in ``x``'s layout (``index_select`` returns a contiguous
    tensor, and a channels-last network would convert every gathered map back)."""
    if memory_format(x) is torch.contiguous_format:
        return x.index_select(0, rows)
    last = x.dim() - 1
    return x.permute(0, *range(2, x.dim()), 1).index_select(0, rows).permute(0, last, *range(1, last))


def index_add_rows(target: torch.Tensor, rows: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``target.index_add_(0, rows, y)`` (``rows`` distinct), in ``target``'s layout: on
    channels-last maps torch's ``index_add_`` takes a generic scatter several times slower, so
    both are added through their [N, H, W, C] views (``index_put_`` when the target is a channel
    slice, whose view is not contiguous)."""
    if memory_format(target) is torch.contiguous_format:
        return target.index_add_(0, rows, y)
    order = (0, *range(2, y.dim()), 1)
    view = target.permute(order)
    if view.is_contiguous():
        view.index_add_(0, rows, y.permute(order))
    else:
        view.index_put_((rows,), y.permute(order), accumulate=True)
    return target


def zeros_rows(like: torch.Tensor, n: int, shape: "tuple[int, ...] | None" = None,
               layout: torch.memory_format | None = None) -> torch.Tensor:
    """Zeros of ``n`` rows of ``shape`` (``like``'s by default), in ``like``'s dtype and device,
    and in ``layout`` (``like``'s when None) when they are maps."""
    size = (n,) + tuple(like.shape[1:] if shape is None else shape)
    if len(size) != like.dim():
        fmt = torch.contiguous_format
    else:
        fmt = memory_format(like) if layout is None else layout
        fmt = fmt if _CHANNELS_LAST.get(len(size)) is fmt else torch.contiguous_format
    return torch.empty(size, dtype=like.dtype, device=like.device, memory_format=fmt).zero_()


def channels_last_by_default(network: "Network") -> bool:
    """Whether ``network`` trains channels-last unless told: when it takes [C, H, W] images and
    is built from bsnc's primitives only (a user's module may ``.view`` its input, which a
    channels-last map refuses)."""
    from bsnc.primitives import BUILTIN

    return len(network.layer(network.input).shape) == 3 and network.primitives_used() <= BUILTIN


def memory_format_for(network: "Network", channels_last: bool) -> torch.memory_format:
    """The layout ``network`` trains in: channels-last for [C, H, W] input when ``channels_last``
    is asked for, contiguous otherwise."""
    image = len(network.layer(network.input).shape) == 3
    return torch.channels_last if channels_last and image else torch.contiguous_format
