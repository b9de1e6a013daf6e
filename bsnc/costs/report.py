"""The text and JSON reports of `bsnc cost`."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from bsnc.codegen.architecture import active_edges
from bsnc.codegen.masks import load_mask
from bsnc.costs.analytic import FlopsCost
from bsnc.costs.largest import largest_architecture
from bsnc.costs.registry import parse_cost
from bsnc.ir import Network


def cost_report(network: Network, specs: list[str], mask_path: Path | None, by_edge: bool, as_json: bool) -> str:
    costs = [parse_cost(spec, network) for spec in specs]
    if mask_path is not None:
        active = active_edges(network, load_mask(mask_path, network))
        subject = f"architecture {mask_path}"
    else:
        active = torch.ones(len(network.edges), dtype=torch.bool)
        subject = "full super network"
    values = [float(c(active.unsqueeze(0))[0]) for c in costs]
    # with choice groups, every option on at once is no architecture: what percentages measure
    # against is the largest one
    largest = ([largest_architecture(network, c) for c in costs]
               if mask_path is None and any(d.kind == "choice" for d in network.decisions) else None)
    # each edge's charge in this architecture (a conv or linear out of a `concat` layer pays only
    # for the slots that are present)
    additive = [(c, row[0]) for c in costs if (row := c.charged(active.unsqueeze(0))) is not None]
    if as_json:
        data: dict = {
            "network": network.name,
            "source": network.source,
            "mask": str(mask_path) if mask_path else None,
            "active_edges": int(active.sum()),
            "costs": {c.name: v for c, v in zip(costs, values)},
        }
        if largest is not None:
            data["largest_architecture"] = {c.name: v.cost for c, v in zip(costs, largest)}
            data["largest_architecture_exact"] = all(v.exact for v in largest)
        if by_edge:
            data["edges"] = [
                {"key": e.key, "active": bool(active[i]), **{c.name: float(row[i]) for c, row in additive}}
                for i, e in enumerate(network.edges)
            ]
            flops = next((c for c in costs if isinstance(c, FlopsCost)), None)
            if flops is not None:
                adds = flops.additions_per_layer(active.unsqueeze(0))[0]
                data["layer_additions"] = {layer.name: float(adds[i]) for i, layer in enumerate(network.layers)}
        return json.dumps(data, indent=2) + "\n"
    lines = [f"{network.source}: network {network.name}, {subject} "
             f"({int(active.sum())} of {len(network.edges)} edges active)"]
    width = max(len(c.name) for c in costs)
    for c, v in zip(costs, values):
        lines.append(f"  {c.name.ljust(width)}  {c.format(v)}")
    if largest is not None:
        lines.append("largest architecture (every gate on, each choice group on its costliest option; "
                     "what --budget N% measures against):")
        for c, v in zip(costs, largest):
            lines.append(f"  {c.name.ljust(width)}  {c.format(v.cost)}" + ("" if v.exact else "  (an estimate)"))
    if by_edge and additive:
        lines.append("")
        key_width = max(len(e.key) for e in network.edges)
        header = "  " + "edge".ljust(key_width) + "".join(f"  {c.name:>14}" for c, _ in additive)
        lines.append(header)
        for i, e in enumerate(network.edges):
            if not active[i]:
                continue
            cells = "".join(f"  {c.format(float(row[i])):>14}" for c, row in additive)
            lines.append("  " + e.key.ljust(key_width) + cells)
        flops = next((c for c in costs if isinstance(c, FlopsCost)), None)
        if flops is not None:
            adds = flops.additions_per_layer(active.unsqueeze(0))[0]
            rows = [f"  {layer.name.ljust(key_width)}  {flops.format(float(adds[i])):>14}"
                    for i, layer in enumerate(network.layers) if adds[i] > 0]
            if rows:  # no heading over an empty section (no layer adds several inputs)
                lines += ["", "  additions at sum aggregations, per layer:", *rows]
    return "\n".join(lines) + "\n"
