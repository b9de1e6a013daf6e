"""Torch modules for primitives that torch.nn lacks. Generated code embeds their source, so each
class uses only ``torch`` and ``nn`` and stays traceable by torch.fx."""

from __future__ import annotations

import torch
from torch import nn


class GlobalAvgPool(nn.Module):
    """Mean over the spatial dimensions: [N, C, H, W] to [N, C]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class PadChannels(nn.Module):
    """ResNet option-A shortcut: spatial subsampling, then zero channels on both sides."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.stride = stride
        self.before = (out_channels - in_channels) // 2
        self.after = out_channels - in_channels - self.before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return nn.functional.pad(x, (0, 0, 0, 0, self.before, self.after))


class GlobalMaxPool(nn.Module):
    """Maximum over the spatial dimensions: [N, C, H, W] to [N, C]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=(2, 3))


class Zero(nn.Module):
    """Zeros of the input's shape, subsampled by ``stride``, with ``channels`` channels (the
    input's when None): the "none" operation of DARTS, and the filler of an absent `concat` slot."""

    def __init__(self, stride: int, channels: int | None = None):
        super().__init__()
        self.stride = stride
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.channels is not None:
            x = x[:, :1].expand(x.shape[0], self.channels, *x.shape[2:])
        return torch.zeros_like(x)


class ChannelLayerNorm(nn.Module):
    """Layer normalisation over the channels at each position ([N, C, H, W]), or over the
    features of [N, F]."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.norm(x)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: each channel scaled by a gate computed from the global mean."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.reduce = nn.Linear(channels, hidden)
        self.expand = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.expand(torch.relu(self.reduce(x.mean(dim=(2, 3))))))
        return x * gate[:, :, None, None]
