"""Edge masks on disk: JSON naming every stochastic edge of a network by its key."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from bsnc.errors import UsageError
from bsnc.files import atomic_write_text, read_regular
from bsnc.ir import Edge, Network

MAX_JSON_BYTES = 64 * 1024 * 1024


def load_mask(path: str | Path, network: Network) -> torch.Tensor:
    """An [E] proposal from ``{"edges": {"key": true|false, ...}}``: every stochastic edge must be
    named; fixed edges may be omitted (they follow connectivity) but not switched off; shared
    gates and choice groups must be set consistently (:func:`inconsistency`)."""
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
    problem = inconsistency(network, proposal)
    if problem is not None:
        raise UsageError(f"--mask {path}: {problem}")
    return proposal


def inconsistency(network: Network, proposal: torch.Tensor) -> str | None:
    """What makes ``proposal`` [E] a state that no draw of the network's decisions gives (None
    when there is nothing): a shared gate with some edges on and some off, two options of one
    choice group on (or only some edges of one option), or no option of a group without a `zero`
    option."""
    if network.plain:
        return None
    values = proposal.tolist()
    members: list[list[tuple[Edge, bool]]] = [[] for _ in network.decisions]
    for edge, value in zip(network.edges, values):
        if edge.stochastic:
            members[edge.decision].append((edge, value))
    for decision, edges in zip(network.decisions, members):
        if decision.kind == "gate":
            on = [e.key for e, value in edges if value]
            off = [e.key for e, value in edges if not value]
            if on and off:
                return (f"shared gate {decision.name!r} switches its edges together, but the mask sets "
                        f"{on[0]!r} true and {off[0]!r} false")
            continue
        chosen: dict[int, list[str]] = {}
        partial: dict[int, str] = {}
        for e, value in edges:
            if value:
                chosen.setdefault(e.option, []).append(e.key)
            else:
                partial.setdefault(e.option, e.key)
        names = decision.option_names()
        if len(chosen) > 1:
            first, second = sorted(chosen)[:2]
            return (f"choice group {decision.name!r} takes one option, but the mask turns on options "
                    f"{names[first]!r} ({chosen[first][0]!r}) and {names[second]!r} ({chosen[second][0]!r})")
        if not chosen and decision.zero is None:
            return (f"choice group {decision.name!r} has no zero option, so one of its options "
                    f"({', '.join(repr(n) for n in names)}) must be on; the mask turns on none")
        for option in chosen:
            if option in partial:
                return (f"option {names[option]!r} of choice group {decision.name!r} switches its edges "
                        f"together, but the mask sets {chosen[option][0]!r} true and {partial[option]!r} false")
    return None


def mask_json(network: Network, proposal: torch.Tensor) -> str:
    """The mask file of a proposal [E]: every stochastic edge by key, true when proposed (for a
    choice group, the members of its chosen option)."""
    values = proposal.tolist()
    edges = {e.key: bool(values[i]) for i, e in enumerate(network.edges) if e.stochastic}
    return json.dumps({"network": network.name, "edges": edges}, indent=2) + "\n"


def save_mask(path: str | Path, network: Network, proposal: torch.Tensor) -> None:
    atomic_write_text(path, mask_json(network, proposal))
