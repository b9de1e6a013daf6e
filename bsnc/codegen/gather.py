"""Running an edge module on some rows of its source without keeping a copy of those rows.

``module(x.index_select(0, rows))`` keeps the gathered rows alive until backward whenever the
module starts with a convolution, which saves its input: one copy per edge, where a dense
implementation keeps the source once for all its edges. :class:`GatheredConv` gathers in forward,
saves the source and the row indices instead, and gathers again in backward (a gather is cheap
next to the convolution, which is not recomputed).

Saving the source is free when it is kept anyway (a layer whose post-op is a ReLU saves its
output; the input is the caller's), and costs at most twice the copy otherwise, since the gathered
convolution is used only for at least half of the source's rows.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


class GatheredConv(torch.autograd.Function):
    """``conv(x[rows])`` that saves ``x`` and ``rows``, not ``x[rows]``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                conv: nn.Module) -> torch.Tensor:
        ctx.conv = conv
        ctx.save_for_backward(x, rows, weight)
        ctx.has_bias = bias is not None
        dims = weight.dim() - 2
        return _CONV[dims](x.index_select(0, rows), weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, rows, weight = ctx.saved_tensors
        conv = ctx.conv
        want_x, _, want_w, want_b, _ = ctx.needs_input_grad
        dims = weight.dim() - 2
        grad_rows, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad.contiguous(), x.index_select(0, rows), weight, [weight.shape[0]] if ctx.has_bias else None,
            list(conv.stride), list(conv.padding), list(conv.dilation), False, [0] * dims, conv.groups,
            [want_x, want_w, want_b and ctx.has_bias])
        grad_x = x.new_zeros(x.shape).index_add_(0, rows, grad_rows) if want_x else None
        return grad_x, None, grad_w, grad_b if want_b else None, None


# modules that compute each row from that row alone, whatever the rest of the batch holds
ROW_WISE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.Identity, nn.Flatten, nn.Upsample, nn.ReLU, nn.ReLU6,
            nn.GELU, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
            nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


@dataclass(frozen=True)
class _Split:
    """An edge module as: its leading row-wise modules, the same without a leading convolution
    (when there is one, for :class:`GatheredConv`), and the rest."""

    rowwise: nn.Module
    conv: nn.Module | None
    after_conv: nn.Module
    rest: nn.Module


_SPLITS: "weakref.WeakKeyDictionary[nn.Module, _Split | None]" = weakref.WeakKeyDictionary()


def _hooked(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks)


def _split(module: nn.Module) -> _Split | None:
    if module in _SPLITS:
        return _SPLITS[module]
    found = None
    if isinstance(module, nn.Sequential) and not _hooked(module):
        lead = 0
        while lead < len(module) and type(module[lead]) in ROW_WISE and not _hooked(module[lead]):
            lead += 1
        if lead:
            first = module[0]
            conv = first if (isinstance(first, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and not isinstance(first.padding, str)
                             and first.padding_mode == "zeros") else None
            found = _Split(module[:lead], conv, module[1:lead], module[lead:])
    _SPLITS[module] = found
    return found


def bucket(rows: int) -> int:
    """``rows`` rounded up to one of at most four sizes per octave (multiples of 8 up to 64, then
    of a quarter of the octave's power of two): row counts change every step, and a kernel library
    that compiles per shape (oneDNN on the CPU) then sees few shapes."""
    step = max(8, 1 << max(0, rows.bit_length() - 3))
    return -(-rows // step) * step


def run_on_rows(module: nn.Module, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``module(x[rows])``, computed as:

    * its leading row-wise modules (convolutions, activations, pooling, ...) on ``rows`` padded
      to :func:`bucket` rows (the padding repeats a row and is dropped before the first module
      that mixes rows, such as a batch norm, so results and gradients are those of ``rows``);
    * a leading convolution, when gradients are recorded and ``rows`` holds at least half of
      ``x``'s rows, through :class:`GatheredConv`, which keeps no gathered copy for backward
      (not under autocast: the convolution's precision is then autocast's to choose).
    """
    split = _split(module)
    if split is None:
        return module(x.index_select(0, rows))
    n = rows.numel()
    size = bucket(n)
    padded = rows if size == n else torch.cat([rows, rows[:1].expand(size - n)])
    if (split.conv is not None and 2 * n >= x.shape[0] and torch.is_grad_enabled()
            and not torch.is_autocast_enabled(x.device.type)):
        conv = split.conv
        y = split.after_conv(GatheredConv.apply(x, padded, conv.weight, conv.bias, conv))
    else:
        y = split.rowwise(x.index_select(0, padded))
    return split.rest(y if size == n else y.narrow(0, 0, n))
