"""Costs of architectures: one value per row of a batch of *active* edge masks [B, E].

Additive costs (flops, params, latency) are a per-edge vector dotted with the mask; the sum
aggregation's additions and the distributed step count are computed for the whole batch at once.
Definitions and counting conventions: DESIGN.md §5.
"""

from __future__ import annotations

import math
import re
from typing import Callable

import numpy as np
import torch

from bsnc.errors import UsageError
from bsnc.ir import Network
from bsnc.summary import human

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
        """The per-edge vector of an additive cost (None otherwise)."""
        return None

    def format(self, value: float) -> str:
        return human(value, self.unit)

    def parse_budget(self, text: str) -> float:
        """A budget in this cost's unit: '40.9M', '0.27M', '1.5e6'."""
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([kKMGT]?)\s*", text)
        if not match:
            raise UsageError(
                f"--budget {text}: the {self.name} cost is a count; expected a number with an optional "
                "k, M, G or T suffix, e.g. 40.9M"
            )
        return float(match.group(1)) * _SI[match.group(2)]


def _masks(active: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(active).to(torch.float64)


class _Additive(Cost):
    additive = True

    def __init__(self, network: Network, vector: list[float]):
        super().__init__(network)
        self.vector = torch.tensor(vector, dtype=torch.float64)

    def per_edge(self) -> torch.Tensor:
        return self.vector

    def __call__(self, active: torch.Tensor) -> torch.Tensor:
        return _masks(active) @ self.vector


class FlopsCost(Cost):
    """Multiply-accumulates of conv and linear modules, plus one addition per element for each
    extra input of a `sum` (or `mean`) aggregation."""

    name = "flops"
    unit = ""

    def __init__(self, network: Network):
        super().__init__(network)
        self.edge_macs = torch.tensor([float(e.macs()) for e in network.edges], dtype=torch.float64)
        dst = torch.tensor([network.layer_index[e.dst] for e in network.edges], dtype=torch.long)
        self.incidence = torch.zeros((len(network.edges), len(network.layers)), dtype=torch.float64)
        self.incidence[torch.arange(len(network.edges)), dst] = 1.0
        self.layer_numel = torch.tensor([float(math.prod(layer.shape)) for layer in network.layers], dtype=torch.float64)
        self.incidence32 = self.incidence.to(torch.float32)
        self.edge_weight = self.edge_macs + self.incidence @ self.layer_numel

    def __call__(self, active: torch.Tensor) -> torch.Tensor:
        # sum over layers of numel * max(0, inputs - 1) = a @ (macs + numel of dst) - present @ numel
        a = torch.as_tensor(active).to(torch.float32)
        present = (a @ self.incidence32) > 0
        return a.to(torch.float64) @ self.edge_weight - present.to(torch.float64) @ self.layer_numel

    def per_edge(self) -> torch.Tensor:
        return self.edge_macs

    def additions_per_layer(self, active: torch.Tensor) -> torch.Tensor:
        inputs = _masks(active) @ self.incidence
        return (inputs - 1).clamp(min=0) * self.layer_numel


class ParamsCost(_Additive):
    """Parameters of the active edges' modules: what the pruned model holds."""

    name = "params"
    unit = ""

    def __init__(self, network: Network):
        super().__init__(network, [float(e.param_count()) for e in network.edges])


MEMO_LIMIT = 1 << 16  # distinct masks remembered by a distributed cost


class DistributedCost(Cost):
    """Steps to run the active modules on K parallel workers: greedy list scheduling in
    topological order; each step runs up to K modules whose inputs are ready; parameter-free
    edges take no step. Memoised by mask; the batch's distinct masks are simulated together."""

    unit = "steps"

    def __init__(self, network: Network, workers: int):
        super().__init__(network)
        self.workers = workers
        self.name = f"distributed:n={workers}"
        self.src = torch.tensor([network.layer_index[e.src] for e in network.edges], dtype=torch.long)
        self.dst = torch.tensor([network.layer_index[e.dst] for e in network.edges], dtype=torch.long)
        self.free = torch.tensor([e.param_count() == 0 for e in network.edges], dtype=torch.bool)
        self.input_index = network.layer_index[network.input]
        self.memo: dict[bytes, float] = {}

    def format(self, value: float) -> str:
        return f"{value:g} steps"

    def parse_budget(self, text: str) -> float:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(steps?)?\s*", text)
        if not match:
            raise UsageError(f"--budget {text}: the {self.name} cost counts steps; expected a number such as 6 or 6steps")
        return float(match.group(1))

    def __call__(self, active: torch.Tensor) -> torch.Tensor:
        masks = torch.as_tensor(active).bool().cpu().numpy()
        packed = _pack_rows(masks)
        todo: dict[bytes, int] = {}
        for row, key in enumerate(packed):
            if key not in self.memo and key not in todo:
                todo[key] = row
        found = {key: self.memo[key] for key in packed if key in self.memo}
        if todo:
            steps = self._simulate(masks[list(todo.values())])
            found.update(zip(todo, steps.tolist()))
            if len(self.memo) + len(todo) > MEMO_LIMIT:
                self.memo.clear()  # early in a search masks rarely repeat; keep memory bounded
            self.memo.update(zip(todo, steps.tolist()))
        return torch.tensor([found[key] for key in packed], dtype=torch.float64)

    def _simulate(self, active: np.ndarray) -> np.ndarray:
        """Steps of every row of ``active`` [R, E], all rows advancing together.

        Edges are in canonical order, grouped by destination, so "some incoming edge of layer l
        is still pending" is one segmented OR (reduceat) over the pending mask."""
        dst = self.dst.numpy()
        free = self.free.numpy()
        # segments of edges per destination layer; layer_of_src[e] indexes those segments
        fed = np.unique(dst)
        starts = np.searchsorted(dst, fed)
        segment = np.full(len(self.network.layers), -1)
        segment[fed] = np.arange(len(fed))
        src_segment = segment[self.src.numpy()]
        from_input = src_segment < 0  # the input has no incoming edge: always ready
        src_segment = np.where(from_input, 0, src_segment)

        steps = np.zeros(active.shape[0], dtype=np.int64)
        rows = np.arange(active.shape[0])
        pending = active.copy()
        any_free = bool(free.any())
        while rows.size:
            unfinished = pending.any(axis=1)
            if not unfinished.all():
                rows, pending = rows[unfinished], pending[unfinished]
                if not rows.size:
                    break
            ready = pending & (~np.logical_or.reduceat(pending, starts, axis=1)[:, src_segment] | from_input)
            if any_free and (ready & free).any():
                pending = pending & ~(ready & free)  # parameter-free edges take no step
                continue
            # the first K ready edges in canonical (topological) order run in this step
            chosen = ready & (np.cumsum(ready, axis=1, dtype=np.int32) <= self.workers)
            pending &= ~chosen
            steps[rows] += 1
        return steps.astype(np.float64)


def _pack_rows(mask: torch.Tensor | np.ndarray) -> list[bytes]:
    array = mask.numpy() if isinstance(mask, torch.Tensor) else mask
    packed = np.packbits(array.astype(np.uint8), axis=1)
    return [row.tobytes() for row in packed]


CostFactory = Callable[[Network], Cost]


def parse_cost(spec: str, network: Network) -> Cost:
    """A cost from its command-line name: flops, params, latency:TABLE.json, distributed:n=K,
    package.module:function, or the name of an entry point in the group `bsnc.costs`."""
    from bsnc import custom_costs, latency

    text = spec.strip()
    if text == "flops":
        return FlopsCost(network)
    if text == "params":
        return ParamsCost(network)
    if text == "distributed" or text.startswith("distributed:"):
        return DistributedCost(network, _parse_workers(text))
    if text == "latency" or text.startswith("latency:"):
        path = text.partition(":")[2]
        if not path:
            raise UsageError(f"--cost {spec}: give the latency table, e.g. --cost latency:table.json "
                             "(make one with `bsnc latency-table FILE -o table.json`)")
        return latency.LatencyCost(network, path)
    custom = custom_costs.lookup(text, network)
    if custom is not None:
        return custom
    raise UsageError(
        f"--cost {spec}: unknown cost; expected flops, params, latency:TABLE.json, distributed:n=K, "
        f"package.module:function, or an entry point of group 'bsnc.costs'{custom_costs.installed_hint()}"
    )


def _parse_workers(text: str) -> int:
    _, _, rest = text.partition(":")
    match = re.fullmatch(r"n=(.*)", rest.strip())
    if not match:
        raise UsageError(f"--cost {text}: expected distributed:n=K with K the number of workers, e.g. distributed:n=4")
    value = match.group(1).strip()
    try:
        workers = int(value)
    except ValueError:
        raise UsageError(f"--cost {text}: n must be a whole number of workers, got {value!r}") from None
    if workers <= 0:
        raise UsageError(f"--cost {text}: n must be at least 1, got {workers}")
    return workers

