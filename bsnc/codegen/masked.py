"""The dense-masked strategy: an edge module on every row of its source, with batch norms whose
statistics cover exactly the rows where the edge is active.

Training-mode batch norm is the one common operation that mixes rows, so running a module on
rows where its edge is off changes the active rows' output unless each batch norm takes its
statistics (and updates its running statistics) over the active rows alone, as it would on the
gathered rows. Everything else an edge module may hold must be row-wise: :func:`eligible`
accepts only modules built from the types listed here (torch's, and bsnc's own primitives,
which generated code embeds by source), so a user's primitive always runs on gathered rows.
"""

from __future__ import annotations

import weakref

import torch
from torch import nn

from bsnc import nn as bsnc_nn

_ROW_WISE = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear,
    nn.Identity, nn.Flatten, nn.Upsample, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid,
    nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d,
    nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.LayerNorm, nn.GroupNorm,
)


def _code(function) -> tuple | None:
    code = getattr(function, "__code__", None)
    return None if code is None else (code.co_code, code.co_consts, code.co_names)


# bsnc's primitives reach generated code as copies of their source: known by name and code
_OWN = {cls.__name__: _code(cls.forward) for cls in (
    bsnc_nn.GlobalAvgPool, bsnc_nn.GlobalMaxPool, bsnc_nn.PadChannels, bsnc_nn.Zero, bsnc_nn.ChannelLayerNorm,
    bsnc_nn.SqueezeExcite)}

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)

_ELIGIBLE: "weakref.WeakKeyDictionary[nn.Module, bool]" = weakref.WeakKeyDictionary()


def _row_wise(module: nn.Module) -> bool:
    kind = type(module)
    if module._forward_hooks or module._forward_pre_hooks:
        return False
    if kind in _ROW_WISE or kind in _NORMS:
        return True
    if kind is nn.Sequential:
        return all(_row_wise(child) for child in module)
    own = _OWN.get(kind.__name__)
    if own is not None and _code(kind.forward) == own:
        return all(_row_wise(child) for child in module.children())
    return False


def eligible(module: nn.Module) -> bool:
    """Whether :func:`masked_forward` runs ``module`` exactly as on gathered rows (cached)."""
    found = _ELIGIBLE.get(module)
    if found is None:
        found = _row_wise(module)
        _ELIGIBLE[module] = found
    return found


def masked_forward(module: nn.Module, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``module`` on every row of ``x``; each training-mode batch norm normalises with, and updates
    its running statistics from, the rows where ``rows`` (a [N] bool mask on ``x``'s device) is
    true. Those rows of the result equal ``module(x[rows])``; the others are to be discarded."""
    if type(module) is nn.Sequential:
        for child in module:
            x = masked_forward(child, x, rows)
        return x
    if type(module) in _NORMS and (module.training or module.running_mean is None):
        return masked_batch_norm(module, x, rows)
    return module(x)


def masked_batch_norm(norm: nn.modules.batchnorm._BatchNorm, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``norm`` in training mode with batch statistics over the rows ``rows`` of ``x`` only, as
    torch's batch norm computes them on ``x[rows]``: biased variance to normalise, unbiased
    into the running variance, ``momentum=None`` as a cumulative average. With one value per
    channel or none (one row of a vector, or no row), there are no batch statistics: the running
    ones are used and left as they are, as the executor does for a single row. The choice is
    made on the device: no host round trip."""
    if norm.weight is not None:  # under autocast, x may be float16: normalise in the weights' precision
        x = x.to(torch.promote_types(x.dtype, norm.weight.dtype))
    tracked = norm.track_running_stats and norm.running_mean is not None
    y, mean, var, count = _MaskedBatchNorm.apply(x, rows, norm.weight, norm.bias,
                                                 norm.running_mean if tracked else None,
                                                 norm.running_var if tracked else None, norm.eps)
    if norm.training and tracked:
        with torch.no_grad():
            batch = (count > 1).to(x.dtype)
            norm.num_batches_tracked.add_(batch.to(norm.num_batches_tracked.dtype))
            # Python scalars, not new tensors: copying a number to a GPU would synchronise
            factor = batch * (norm.momentum if norm.momentum is not None
                              else 1.0 / norm.num_batches_tracked.clamp(min=1).to(x.dtype))
            unbiased = var * count / (count - 1).clamp(min=1)
            norm.running_mean.mul_(1 - factor).add_(mean.to(norm.running_mean.dtype) * factor)
            norm.running_var.mul_(1 - factor).add_(unbiased.to(norm.running_var.dtype) * factor)
    return y


class _MaskedBatchNorm(torch.autograd.Function):
    """Batch norm over the masked rows, in one node that saves what torch's own saves (the input
    and the per-channel statistics), not every intermediate of the formula. Returns the output
    and, without gradients, the batch mean, biased variance and number of values."""

    @staticmethod
    def forward(ctx, x, rows, weight, bias, running_mean, running_var, eps):
        shape = (1, -1) + (1,) * (x.dim() - 2)
        dims = [0] + list(range(2, x.dim()))
        mask = rows.to(x.dtype).view((-1,) + (1,) * (x.dim() - 1))
        count = rows.sum().to(x.dtype) * x[0, 0].numel()
        n = count.clamp(min=1)
        mean = (x * mask).sum(dims) / n
        var = ((x - mean.view(shape)).square() * mask).sum(dims) / n
        invstd = torch.rsqrt(var + eps)
        batch = torch.ones((), dtype=x.dtype, device=x.device)
        if running_mean is not None:  # one value per channel or none: the running statistics
            batch = (count > 1).to(x.dtype)
            mean_used = torch.where(batch > 0, mean, running_mean.to(x.dtype))
            invstd = torch.where(batch > 0, invstd, torch.rsqrt(running_var.to(x.dtype) + eps))
        else:
            mean_used = mean
        y = (x - mean_used.view(shape)) * invstd.view(shape)
        if weight is not None:
            y = y * weight.view(shape) + bias.view(shape)
        ctx.save_for_backward(x, mask, weight, mean_used, invstd, batch, n)
        ctx.mark_non_differentiable(mean, var, count)
        return y, mean, var, count

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy, _mean, _var, _count):
        x, mask, weight, mean, invstd, batch, n = ctx.saved_tensors
        shape = (1, -1) + (1,) * (x.dim() - 2)
        dims = [0] + list(range(2, x.dim()))
        xhat = (x - mean.view(shape)) * invstd.view(shape)
        g = dy if weight is None else dy * weight.view(shape)
        # x's own term, then the statistics' (which only the masked rows feed)
        coupling = (g.sum(dims).view(shape) + xhat * (g * xhat).sum(dims).view(shape)) * (invstd * batch / n).view(shape)
        dx = g * invstd.view(shape) - mask * coupling
        dweight = (dy * xhat).sum(dims) if weight is not None and ctx.needs_input_grad[2] else None
        dbias = dy.sum(dims) if weight is not None and ctx.needs_input_grad[3] else None
        return dx, None, dweight, dbias, None, None, None
