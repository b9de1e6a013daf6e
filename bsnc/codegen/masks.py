"""Edge masks on disk: JSON naming every stochastic edge of a network by its key."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from bsnc.errors import UsageError
from bsnc.files import atomic_write_text, read_regular
from bsnc.ir import Network

MAX_JSON_BYTES = 64 * 1024 * 1024


def load_mask(path: str | Path, network: Network) -> torch.Tensor:
    """An [E] proposal from ``{"edges": {"key": true|false, ...}}``: every stochastic edge must be
    named; fixed edges may be omitted (they follow connectivity) but not switched off."""
    path = Path(path)
    try:
        data = json.loads(read_regular(path, MAX_JSON_BYTES, f"--mask {path}").decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise UsageError(f"--mask {path}: not valid JSON ({exc})") from None
    edges = data.get("edges") if isinstance(data, dict) else None
    if not isinstance(edges, dict):
        raise UsageError(f'--mask {path}: expected an object {{"edges": {{"EDGE KEY": true or false, ...}}}}')
    unknown = sorted(set(edges) - set(network.edge_index))
    if unknown:
        raise UsageError(f"--mask {path}: network {network.name} has no edge {unknown[0]!r}"
                         + (f" (and {len(unknown) - 1} more unknown)" if len(unknown) > 1 else ""))
    missing = [e.key for e in network.stochastic_edges if e.key not in edges]
    if missing:
        raise UsageError(f"--mask {path}: no value for {len(missing)} stochastic edge(s) of {network.name}, "
                         f"e.g. {missing[0]!r}; every stochastic edge must be named")
    proposal = torch.ones(len(network.edges), dtype=torch.bool)
    for key, value in edges.items():
        if value not in (True, False, 0, 1) or isinstance(value, float):
            raise UsageError(f"--mask {path}: edge {key!r} has value {value!r}; expected true or false")
        edge = network.edge(key)
        if edge.fixed and not value:
            raise UsageError(f"--mask {path}: edge {key!r} is fixed; it cannot be switched off")
        proposal[network.edge_index[key]] = bool(value)
    return proposal


def mask_json(network: Network, proposal: torch.Tensor) -> str:
    values = proposal.tolist()
    edges = {e.key: bool(values[i]) for i, e in enumerate(network.edges) if e.stochastic}
    return json.dumps({"network": network.name, "edges": edges}, indent=2) + "\n"


def save_mask(path: str | Path, network: Network, proposal: torch.Tensor) -> None:
    atomic_write_text(path, mask_json(network, proposal))
