"""Memory layout: image layers may run channels-last (NHWC in memory), which oneDNN and cuDNN
convolve without reordering; the executor's gathers, scatters and zero buffers keep whichever
layout their tensors have, so that no edge converts its maps back and forth."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from bsnc.ir import Network

_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


def memory_format(x: torch.Tensor) -> torch.memory_format:
    """``x``'s layout: channels-last when it is laid out so (and not also plainly contiguous, as
    a tensor with one channel or one pixel is), contiguous otherwise."""
    last = _CHANNELS_LAST.get(x.dim())
    if last is not None and not x.is_contiguous() and x.is_contiguous(memory_format=last):
        return last
    return torch.contiguous_format


def take_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``x.index_select(0, rows)`` in ``x``'s layout (``index_select`` returns a contiguous
    tensor, and a channels-last network would convert every gathered map back)."""
    if memory_format(x) is torch.contiguous_format:
        return x.index_select(0, rows)
    last = x.dim() - 1
    return x.permute(0, *range(2, x.dim()), 1).index_select(0, rows).permute(0, last, *range(1, last))


def index_add_rows(target: torch.Tensor, rows: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``target.index_add_(0, rows, y)``, in ``target``'s layout: on channels-last tensors torch
    takes a generic scatter path several times slower, so both are added through their permuted
    [N, H, W, C] views, which are contiguous."""
    if memory_format(target) is torch.contiguous_format:
        return target.index_add_(0, rows, y)
    order = (0, *range(2, y.dim()), 1)
    target.permute(order).index_add_(0, rows, y.permute(order))
    return target


def zeros_rows(like: torch.Tensor, n: int, shape: "tuple[int, ...] | None" = None) -> torch.Tensor:
    """Zeros of ``n`` rows of ``shape`` (``like``'s by default), in ``like``'s dtype, device and
    layout."""
    size = (n,) + tuple(like.shape[1:] if shape is None else shape)
    fmt = memory_format(like) if len(size) == like.dim() else torch.contiguous_format
    return torch.empty(size, dtype=like.dtype, device=like.device, memory_format=fmt).zero_()


def memory_format_for(network: "Network", channels_last: bool) -> torch.memory_format:
    """The layout ``network`` trains in: channels-last for [C, H, W] (or [C, D, H, W]) input when
    ``channels_last`` is asked for, contiguous otherwise."""
    dims = len(network.layer(network.input).shape) + 1
    return _CHANNELS_LAST.get(dims, torch.contiguous_format) if channels_last else torch.contiguous_format
