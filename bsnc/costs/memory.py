"""Will a network fit in memory? A lower bound of what building or training it takes, compared
with what the device has free, so that a network too large fails with a clear message before
the allocator fails with a traceback (or the kernel kills the process)."""

from __future__ import annotations

import math
import os

import torch

from bsnc.errors import BsncError
from bsnc.ir import Network

BYTES = 4  # float32


def parameter_bytes(network: Network) -> int:
    return network.param_count() * BYTES


def activation_bytes(network: Network, batch_size: int) -> int:
    """A lower bound: every layer's tensor once per example (edges keep more for backward)."""
    return sum(math.prod(layer.shape) for layer in network.layers) * batch_size * BYTES


def available_bytes(device: torch.device) -> int | None:
    """Free memory of ``device``, or None when it cannot be told."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "cpu":
        try:
            with open("/proc/meminfo", encoding="ascii") as meminfo:
                for line in meminfo:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return None


def check_fits(network: Network, device: torch.device, batch_size: int = 0, training: bool = False) -> None:
    """Refuse a network whose parameters (with their gradients and momentum when ``training``) and
    activations at ``batch_size`` surely exceed the free memory of ``device``."""
    free = available_bytes(device)
    if free is None:
        return
    params = parameter_bytes(network) * (3 if training else 1)
    activations = activation_bytes(network, batch_size) * (2 if training else 1)
    if params + activations <= free:
        return
    what = "parameters, gradients and momentum" if training else "parameters"
    raise BsncError(
        f"network {network.name} does not fit in the memory of {device.type}: it needs at least "
        f"{_size(params + activations)} ({what} {_size(params)}, activations at batch size {batch_size} "
        f"{_size(activations)}) and {_size(free)} are free; make it smaller (its -D parameters) or lower "
        "--batch-size")


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"
