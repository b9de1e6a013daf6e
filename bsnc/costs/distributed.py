"""The distributed cost: steps to run an architecture on K parallel workers."""

from __future__ import annotations

import re

import numpy as np
import torch

from bsnc.costs.base import Cost, pack_rows
from bsnc.errors import UsageError
from bsnc.ir import Network

MEMO_LIMIT = 1 << 16  # distinct masks remembered by a distributed cost


class DistributedCost(Cost):
    """Steps to run the active modules on K parallel workers: greedy list scheduling in
    topological order; each step runs up to K modules whose inputs are ready; parameter-free
    edges take no step. Memoised by mask; the batch's distinct masks are simulated together.
    A `concat` layer is ready, as a `sum` one, once all its active inputs have run; shared
    gates and choice groups only decide which edges are active."""

    unit = "steps"

    def __init__(self, network: Network, workers: int):
        super().__init__(network)
        self.workers = workers
        self.name = f"distributed:n={workers}"
        self.src = torch.tensor([network.layer_index[e.src] for e in network.edges], dtype=torch.long)
        self.dst = torch.tensor([network.layer_index[e.dst] for e in network.edges], dtype=torch.long)
        self.free = torch.tensor([e.param_count() == 0 and e.extra_macs == 0 for e in network.edges], dtype=torch.bool)
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
        packed = pack_rows(masks)
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


def parse_workers(text: str) -> int:
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
