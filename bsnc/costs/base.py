"""The cost interface: one value per row of a batch of *active* edge masks [B, E].

Additive costs (params, latency) are a per-edge vector dotted with the mask; the sum
aggregation's additions (flops), what absent `concat` slots save (flops, params) and the
distributed step count are computed for the whole batch at once.
Definitions and counting conventions: DESIGN.md §5.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from bsnc.errors import UsageError
from bsnc.ir import Network
from bsnc.lang.summary import human

_SI = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


class Cost:
    """A measurable cost. ``__call__`` takes active masks [B, E] and returns costs [B]."""

    name: str = ""
    unit: str = ""  # shown after a value
    additive: bool = False

    def __init__(self, network: Network):
        self.network = network

    def __call__(self, active: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def full(self) -> float:
        """The cost of the whole super network: every edge on."""
        ones = torch.ones((1, len(self.network.edges)), dtype=torch.bool)
        return float(self(ones)[0])

    def per_edge(self) -> torch.Tensor | None:
        """Each edge's cost on its own, for a cost counted per edge (None otherwise); the cost
        is this vector dotted with the mask exactly when ``additive``."""
        return None

    def charged(self, active: torch.Tensor) -> torch.Tensor | None:
        """[B, E] what each edge is charged in the architectures of ``active`` [B, E] (None when
        the cost is not counted per edge)."""
        vector = self.per_edge()
        return None if vector is None else vector.expand(torch.as_tensor(active).shape[0], -1)

    def format(self, value: float) -> str:
        return human(value, self.unit)

    def format_apart(self, value: float, other: float) -> tuple[str, str]:
        """Both values as :meth:`format` shows them, or, when that shows two different values
        alike ("1.93 k, over the budget 1.93 k"), with as many significant digits as tell them apart."""
        shown = self.format(value), self.format(other)
        if shown[0] != shown[1] or value == other:
            return shown
        digits = next(d for d in range(4, 18) if f"{value:.{d}g}" != f"{other:.{d}g}")
        unit = f" {self.unit}" if self.unit else ""
        return f"{value:,.{digits}g}{unit}", f"{other:,.{digits}g}{unit}"

    def parse_budget(self, text: str) -> float:
        """A budget in this cost's unit: '40.9M', '0.27M', '1.5e6'."""
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([kKMGT]?)\s*", text)
        if not match:
            raise UsageError(
                f"--budget {text}: the {self.name} cost is a count; expected a number with an optional "
                "k, M, G or T suffix, e.g. 40.9M"
            )
        return float(match.group(1)) * _SI[match.group(2)]


def as_float_masks(active: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(active).to(torch.float64)


class Additive(Cost):
    additive = True

    def __init__(self, network: Network, vector: list[float]):
        super().__init__(network)
        self.vector = torch.tensor(vector, dtype=torch.float64)

    def per_edge(self) -> torch.Tensor:
        return self.vector

    def __call__(self, active: torch.Tensor) -> torch.Tensor:
        return as_float_masks(active) @ self.vector


def pack_rows(mask: torch.Tensor | np.ndarray) -> list[bytes]:
    array = mask.numpy() if isinstance(mask, torch.Tensor) else mask
    packed = np.packbits(array.astype(np.uint8), axis=1)
    return [row.tobytes() for row in packed]
