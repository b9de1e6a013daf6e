"""Costs of architectures: one value per row of a batch of *active* edge masks [B, E].

Additive costs (flops, params, latency) are a per-edge vector dotted with the mask; the sum
aggregation's additions and the distributed step count are computed for the whole batch at once.
Definitions and counting conventions: DESIGN.md §5.
"""

from __future__ import annotations

import math
import re
from typing import Callable

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

    def __call__(self, active: torch.Tensor) -> torch.Tensor:
        a = _masks(active)
        inputs = a @ self.incidence  # [B, L]: active inputs per layer
        additions = (inputs - 1).clamp(min=0) @ self.layer_numel
        return a @ self.edge_macs + additions

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
        active = torch.as_tensor(active).bool().cpu()
        packed = _pack_rows(active)
        result = torch.empty(active.shape[0], dtype=torch.float64)
        todo_rows: list[int] = []
        todo_keys: dict[bytes, int] = {}
        for row, key in enumerate(packed):
            if key in self.memo:
                result[row] = self.memo[key]
            elif key not in todo_keys:
                todo_keys[key] = row
                todo_rows.append(row)
        if todo_rows:
            steps = self._simulate(active[todo_rows])
            for key, value in zip(todo_keys, steps.tolist()):
                self.memo[key] = value
        for row, key in enumerate(packed):
            result[row] = self.memo[key]
        return result

    def _simulate(self, active: torch.Tensor) -> torch.Tensor:
        batch, n_edges = active.shape
        n_layers = len(self.network.layers)
        done = ~active  # inactive edges never run
        steps = torch.zeros(batch, dtype=torch.float64)
        for _ in range(n_edges + 1):
            done = self._propagate_free(active, done)
            pending = active & ~done
            if not pending.any():
                break
            ready = pending & self._layers_ready(done, n_layers)[:, self.src] & ~self.free
            # the first K ready edges in canonical (topological) order
            chosen = ready & (torch.cumsum(ready.to(torch.int32), dim=1) <= self.workers)
            busy = chosen.any(dim=1)
            steps += busy.to(torch.float64)
            done = done | chosen
        return steps

    def _layers_ready(self, done: torch.Tensor, n_layers: int) -> torch.Tensor:
        """[B, L]: every active incoming edge of the layer has run."""
        waiting = torch.zeros((done.shape[0], n_layers), dtype=torch.int32)
        waiting.index_add_(1, self.dst, (~done).to(torch.int32))
        ready = waiting == 0
        ready[:, self.input_index] = True
        return ready

    def _propagate_free(self, active: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
        n_layers = len(self.network.layers)
        while True:
            ready = self._layers_ready(done, n_layers)[:, self.src]
            newly = active & ~done & self.free & ready
            if not newly.any():
                return done
            done = done | newly


def _pack_rows(mask: torch.Tensor) -> list[bytes]:
    import numpy as np

    packed = np.packbits(mask.numpy().astype(np.uint8), axis=1)
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

