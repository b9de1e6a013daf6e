"""Running an edge module on some rows of its source, and adding it into its destination's rows,
without keeping a copy of those rows for backward.

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

import torch
import torch.nn.functional as F
from torch import nn

from bsnc.codegen.layout import index_add_rows, memory_format, take_rows

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
        return _CONV[dims](take_rows(x, rows), weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, rows, weight = ctx.saved_tensors
        conv = ctx.conv
        want_x, _, want_w, want_b, _ = ctx.needs_input_grad
        dims = weight.dim() - 2
        grad_rows, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad.contiguous(memory_format=memory_format(x)), take_rows(x, rows), weight, [weight.shape[0]] if ctx.has_bias else None,
            list(conv.stride), list(conv.padding), list(conv.dilation), False, [0] * dims, conv.groups,
            [want_x, want_w, want_b and ctx.has_bias])
        grad_x = index_add_rows(torch.zeros_like(x), rows, grad_rows) if want_x else None
        return grad_x, None, grad_w, grad_b if want_b else None, None


# per module: its leading convolution and the rest, or None when it does not start with one
_HEADS: "weakref.WeakKeyDictionary[nn.Module, tuple[nn.Module, nn.Module] | None]" = weakref.WeakKeyDictionary()


def _hooked(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks)


def _head(module: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    if module in _HEADS:
        return _HEADS[module]
    found = None
    if isinstance(module, nn.Sequential) and len(module) and not _hooked(module):
        first = module[0]
        if (type(first) in (nn.Conv1d, nn.Conv2d, nn.Conv3d) and not isinstance(first.padding, str)
                and first.padding_mode == "zeros" and not _hooked(first)):
            found = (first, module[1:])
    _HEADS[module] = found
    return found


def run_on_rows(module: nn.Module, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``module(x[rows])``; through :class:`GatheredConv`, which keeps no gathered copy for
    backward, when gradients are recorded, the module starts with a convolution and ``rows``
    holds at least half of ``x``'s rows (not under autocast: the convolution's precision is then
    autocast's to choose)."""
    head = None
    if 2 * rows.numel() >= x.shape[0] and torch.is_grad_enabled() and not torch.is_autocast_enabled(x.device.type):
        head = _head(module)
    if head is None:
        return module(take_rows(x, rows))
    conv, rest = head
    return rest(GatheredConv.apply(x, rows, conv.weight, conv.bias, conv))


class RowsAdd(torch.autograd.Function):
    """``acc.index_add(0, rows, y)`` that saves ``rows`` alone for backward: torch's own
    ``index_add`` keeps ``y`` (for its shape), a copy of every partial edge's output. ``rows``
    None: every row. With ``inplace``, ``acc`` (which the caller owns: no other node saved it) is
    added to in place; with ``channels``, ``y`` goes into ``acc``'s channels from that one on.
    Gradients go back in ``acc``'s layout (one arriving in another, as a mean's expanded
    gradient does, is laid out once here rather than in every edge behind it)."""

    @staticmethod
    def forward(ctx, acc: torch.Tensor, rows: torch.Tensor | None, y: torch.Tensor, inplace: bool,
                channels: int | None) -> torch.Tensor:
        ctx.every_row = rows is None
        ctx.save_for_backward(rows)
        ctx.channels, ctx.width = channels, y.shape[1] if y.dim() > 1 else 0
        ctx.layout = memory_format(acc)
        if inplace:
            ctx.mark_dirty(acc)
        else:
            acc = acc.clone()
        _add(acc, rows, y, channels)
        return acc

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        (rows,) = ctx.saved_tensors
        want_acc, _, want_y, _, _ = ctx.needs_input_grad
        if memory_format(grad) is not ctx.layout:
            grad = grad.contiguous(memory_format=ctx.layout)
        grad_y = None
        if want_y:
            part = grad if ctx.channels is None else grad.narrow(1, ctx.channels, ctx.width)
            grad_y = part if ctx.every_row else take_rows(part, rows)
        return grad if want_acc else None, None, grad_y, None, None


def _add(acc: torch.Tensor, rows: torch.Tensor | None, y: torch.Tensor, channels: int | None) -> None:
    target = acc if channels is None else acc.narrow(1, channels, y.shape[1])
    if rows is None:
        target.add_(y)
    else:
        index_add_rows(target, rows, y)


def add_rows(acc: torch.Tensor, rows: torch.Tensor | None, y: torch.Tensor, inplace: bool = False,
             channels: int | None = None) -> torch.Tensor:
    """``acc`` plus ``y`` on its rows ``rows`` (every row when None; from channel ``channels`` on,
    when given), through :class:`RowsAdd` when gradients are recorded."""
    if not (torch.is_grad_enabled() and (acc.requires_grad or y.requires_grad)):
        acc = acc if inplace else acc.clone()
        _add(acc, rows, y, channels)
        return acc
    return RowsAdd.apply(acc, rows, y, inplace, channels)
