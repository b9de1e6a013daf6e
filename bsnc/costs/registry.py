"""Costs by their command-line name."""

from __future__ import annotations

from typing import Callable

from bsnc.costs import custom, latency
from bsnc.costs.analytic import FlopsCost, ParamsCost
from bsnc.costs.base import Cost
from bsnc.costs.distributed import DistributedCost, parse_workers
from bsnc.errors import UsageError
from bsnc.ir import Network

CostFactory = Callable[[Network], Cost]


def parse_cost(spec: str, network: Network) -> Cost:
    """A cost from its command-line name: flops, params, latency:TABLE.json, distributed:n=K,
    package.module:function, or the name of an entry point in the group `bsnc.costs`."""
    text = spec.strip()
    if text == "flops":
        return FlopsCost(network)
    if text == "params":
        return ParamsCost(network)
    if text == "distributed" or text.startswith("distributed:"):
        return DistributedCost(network, parse_workers(text))
    if text == "latency" or text.startswith("latency:"):
        path = text.partition(":")[2]
        if not path:
            raise UsageError(f"--cost {spec}: give the latency table, e.g. --cost latency:table.json "
                             "(make one with `bsnc latency-table FILE -o table.json`)")
        return latency.LatencyCost(network, path)
    user_cost = custom.lookup(text, network)
    if user_cost is not None:
        return user_cost
    raise UsageError(
        f"--cost {spec}: unknown cost; expected flops, params, latency:TABLE.json, distributed:n=K, "
        f"package.module:function, or an entry point of group 'bsnc.costs'{custom.installed_hint()}"
    )
