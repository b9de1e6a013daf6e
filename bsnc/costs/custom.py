"""User-defined costs: `--cost package.module:function` or an entry point of group `bsnc.costs`.

The function receives a read-only view of one active architecture and returns a float. It is
imported only when named, and called once per distinct architecture (memoised by mask)."""

from __future__ import annotations

import importlib
import math
import re
from dataclasses import dataclass
from importlib import metadata
from types import MappingProxyType
from typing import Any, Callable, Mapping

import torch

from bsnc.costs.analytic import SlotDiscount, head_macs, head_weights
from bsnc.costs.base import Cost, pack_rows
from bsnc.errors import BsncError, UsageError, brief
from bsnc.ir import Network

ENTRY_POINT_GROUP = "bsnc.costs"


@dataclass(frozen=True)
class OpView:
    prim: str
    args: Mapping[str, Any]


@dataclass(frozen=True)
class EdgeView:
    """One active edge. ``flops`` and ``params`` are what it is charged in this architecture: an
    edge out of a `concat` layer pays for the channels of the active slots only."""

    key: str
    src: str
    dst: str
    ops: tuple[OpView, ...]
    shapes: tuple[tuple[int, ...], ...]
    flops: int
    params: int
    fixed: bool


@dataclass(frozen=True)
class LayerView:
    name: str
    shape: tuple[int, ...]
    aggregate: str


@dataclass(frozen=True)
class ArchitectureView:
    """The active part of one architecture: what a custom cost function sees."""

    network: str
    input: str
    output: str
    layers: tuple[LayerView, ...]
    edges: tuple[EdgeView, ...]

    @property
    def flops(self) -> int:
        return sum(e.flops for e in self.edges)

    @property
    def params(self) -> int:
        return sum(e.params for e in self.edges)


def architecture_view(network: Network, active_row: torch.Tensor,
                      discounts: tuple[SlotDiscount, SlotDiscount] | None = None) -> ArchitectureView:
    """The view of one architecture [E]; ``discounts`` (for flops, for params) are built from the
    network when not given."""
    flops_discount, params_discount = discounts or slot_discounts(network)
    row = active_row.unsqueeze(0)
    flops_off = flops_discount.per_edge(row)[0].tolist()
    params_off = params_discount.per_edge(row)[0].tolist()
    keep = [(i, e) for i, (e, on) in enumerate(zip(network.edges, active_row.tolist())) if on]
    touched = {e.src for _, e in keep} | {e.dst for _, e in keep}
    return ArchitectureView(
        network=network.name,
        input=network.input,
        output=network.output,
        layers=tuple(LayerView(layer.name, layer.shape, layer.aggregate) for layer in network.layers
                     if layer.name in touched),
        edges=tuple(
            EdgeView(e.key, e.src, e.dst,
                     tuple(OpView(op.prim, MappingProxyType(dict(op.args))) for op in e.ops),
                     e.shapes, e.macs() - _whole(flops_off[i]), e.param_count() - _whole(params_off[i]), e.fixed)
            for i, e in keep
        ),
    )


def slot_discounts(network: Network) -> tuple[SlotDiscount, SlotDiscount]:
    return SlotDiscount(network, head_macs), SlotDiscount(network, head_weights)


def _whole(value: float) -> int:
    # a slot discount is a whole number: the head's charge is a multiple of its input channels
    return int(round(value))


class CustomCost(Cost):
    unit = ""

    def __init__(self, network: Network, name: str, function: Callable[[ArchitectureView], float]):
        super().__init__(network)
        self.name = name
        self.function = function
        self.memo: dict[bytes, float] = {}
        self.discounts = slot_discounts(network)

    def __call__(self, active: torch.Tensor) -> torch.Tensor:
        active = torch.as_tensor(active).bool().cpu()
        values = []
        for row, key in zip(active, pack_rows(active)):
            if key not in self.memo:
                self.memo[key] = self._call(row)
            values.append(self.memo[key])
        return torch.tensor(values, dtype=torch.float64)

    def _call(self, row: torch.Tensor) -> float:
        try:
            value = self.function(architecture_view(self.network, row, self.discounts))
        except Exception as exc:  # the user's code: report it, whatever it raised
            raise BsncError(f"cost function {self.name} raised {type(exc).__name__}: {exc}") from None
        try:  # a huge int does not fit a float: OverflowError
            number = float(value) if not isinstance(value, bool) and isinstance(value, (int, float)) else math.nan
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise BsncError(f"cost function {self.name} returned {brief(value, 40)}; expected a finite number")
        return number


def lookup(spec: str, network: Network) -> CustomCost | None:
    """The custom cost named by ``spec``, or None when ``spec`` names none."""
    for entry in _entry_points():
        if entry.name == spec:
            try:
                function = entry.load()
            except Exception as exc:
                raise UsageError(f"--cost {spec}: entry point {entry.value} failed to load: {exc}") from None
            return CustomCost(network, spec, _callable(spec, function))
    if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", spec):
        return None
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"--cost {spec}: cannot import module '{module_name}': {exc}") from None
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise UsageError(f"--cost {spec}: module '{module_name}' has no attribute '{attr}'")
        target = getattr(target, part)
    return CustomCost(network, spec, _callable(spec, target))


def _callable(spec: str, value: Any) -> Callable[[ArchitectureView], float]:
    if not callable(value):
        raise UsageError(f"--cost {spec}: '{spec}' is not callable; expected a function f(architecture) -> float")
    return value


def _entry_points() -> list[metadata.EntryPoint]:
    return list(metadata.entry_points(group=ENTRY_POINT_GROUP))


def installed_hint() -> str:
    names = sorted(e.name for e in _entry_points())
    return f" (installed: {', '.join(names)})" if names else ""
