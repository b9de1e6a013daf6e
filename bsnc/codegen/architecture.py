"""One architecture of a super network as a network of its own: only the active edges, all
fixed, and only the layers they touch."""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import networkx as nx
import torch

from bsnc.codegen.runtime import Structure, edge_probabilities, sample_architecture
from bsnc.errors import BsncError
from bsnc.ir import ZERO_KEEPING, Edge, Layer, Network, OpCall, ResolvedCall
from bsnc.lang.checks import build_network
from bsnc.lang.expand import Flat


def active_edges(network: Network, proposal: Sequence[bool] | torch.Tensor, what: str = "the mask") -> torch.Tensor:
    """The [E] active mask of a proposed mask, with the connectivity rule applied; BsncError,
    saying ``what`` proposed it, when no path reaches the output."""
    structure = structure_of(network)
    logits = torch.zeros(network.n_logits)
    proposal = torch.as_tensor(proposal, dtype=torch.bool)
    arch = sample_architecture(structure, logits, 1, "mask", proposal)
    if bool(arch.inconsistent[0]):
        cut = _cut_layers(network, arch.connected[0])
        raise BsncError(
            f"{what} leaves the output '{network.output}' unreachable; no active edge reaches "
            f"{', '.join(repr(c) for c in cut[:8])}{' ...' if len(cut) > 8 else ''}"
        )
    return arch.active[0]


def kept_proposal(network: Network, gate_logits: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """The [E] proposal of the kept edges: every fixed edge, each edge whose gate's γ is above
    ``threshold`` (compared on logits, as deterministic evaluation does: γ > 0.5 is logit > 0), and
    the members of each choice group's most probable option (none when it is the `zero` one)."""
    cut = math.log(threshold / (1 - threshold))
    logits = torch.as_tensor(gate_logits).detach().float().cpu().tolist()
    chosen = [logits[d.offset] > cut if d.kind == "gate"
              else max(range(d.width), key=lambda i: (logits[d.offset + i], -i)) for d in network.decisions]
    return torch.tensor([True if e.fixed else chosen[e.decision] == e.option for e in network.edges],
                        dtype=torch.bool)


def edge_gammas(network: Network, gate_logits: torch.Tensor) -> dict[str, float]:
    """Each stochastic edge's probability of being proposed, by key: its gate's γ, or its
    option's softmax probability in its choice group."""
    logits = torch.as_tensor(gate_logits).detach().float().cpu()
    return dict(zip((e.key for e in network.stochastic_edges), edge_probabilities(structure_of(network), logits).tolist()))


def kept_edges(network: Network, gate_logits: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """The one definition of the *kept* edges, which train reports, `draw --probs` draws solid and
    export keeps: the edges of :func:`kept_proposal` that are active, i.e. on a path from the input
    to the output through kept edges (all False when none reaches the output)."""
    arch = sample_architecture(structure_of(network), torch.zeros(network.n_logits), 1, "mask",
                               kept_proposal(network, gate_logits, threshold))
    return arch.active[0]


def structure_of(network: Network) -> Structure:
    """The runtime's index tables of ``network``."""
    return Structure(
        len(network.layers),
        network.layer_index[network.input],
        network.layer_index[network.output],
        [network.layer_index[e.src] for e in network.edges],
        [network.layer_index[e.dst] for e in network.edges],
        [e.stochastic for e in network.edges],
        None if network.plain else [(d.kind, d.offset, d.width) for d in network.decisions],
        None if network.plain else [e.decision for e in network.edges],
        None if network.plain else [e.option if e.stochastic else 0 for e in network.edges],
    )


def _cut_layers(network: Network, connected: torch.Tensor) -> list[str]:
    """Layers on the way to the output that the mask disconnects (nearest the output first)."""
    cut = [layer.name for layer, on in zip(network.layers, connected.tolist()) if not on]
    return list(reversed(cut))


def full_network(network: Network) -> Network:
    """The super network with every edge on and fixed: a static network, nothing to search (what
    `bsnc train --full-network` trains, the baseline of a sweep)."""
    return prune(network, torch.ones(len(network.edges), dtype=torch.bool))


def prune(network: Network, proposal: Sequence[bool] | torch.Tensor) -> Network:
    """The static network of one architecture: the active edges, all fixed and in no gate or
    choice group, and their layers.

    A `concat` layer with inactive slots keeps only its active ones when every edge out of it
    reads them through its :meth:`~bsnc.ir.Edge.head` (after zero-keeping post-ops; never the
    output, whose shape is the network's): those edges' heads then see fewer input channels
    (:func:`concat_channels` says which). Otherwise the layer keeps its channels and each inactive
    slot is filled by a `zero` edge (see :func:`_zero_edge`); BsncError when none fits."""
    active = active_edges(network, proposal).tolist()
    kept = [dataclasses.replace(e, fixed=True, init_prob=None, group=None, decision=-1, option=1, group_span=None)
            for e, on in zip(network.edges, active) if on]
    touched = {network.input, network.output} | {e.src for e in kept} | {e.dst for e in kept}
    layers = {layer.name: layer for layer in network.layers if layer.name in touched}
    for name, layer in layers.items():
        absent = [e for e in network.in_edges(name) if not active[network.edge_index[e.key]]]
        if layer.aggregate != "concat" or not absent:
            continue
        readers = [e for e in network.out_edges(name) if active[network.edge_index[e.key]]]
        why = _why_zeros(layer, readers)
        if why is None:
            channels = layer.shape[0] - sum(e.shapes[-1][0] for e in absent)
            layers[name] = dataclasses.replace(layer, shape=(channels,) + layer.shape[1:])
            continue
        keys = {e.key for e in kept}
        for edge in absent:
            zero = _zero_edge(network, layers, edge, keys, why)
            keys.add(zero.key)
            kept.append(zero)
    rank = network.layer_index
    # a concat layer's slots follow the order of its edges: keep the slot order of the super network
    kept.sort(key=lambda e: (rank[e.dst], e.slot if e.slot is not None else 0))
    flat = Flat(
        name=network.name,
        params=dict(network.params),
        layers=[layers[layer.name] for layer in network.layers if layer.name in layers],
        edges=kept,
        modules_used=list(network.modules_used),
    )
    return build_network(flat, source=network.source, source_hash=network.source_hash)


def concat_channels(network: Network, pruned: Network) -> dict[str, list[int]]:
    """The `concat` layers that :func:`prune` narrowed to their active slots, each with the
    channels of the super network's layer it keeps (in order)."""
    narrowed: dict[str, list[int]] = {}
    for layer in pruned.layers:
        if layer.aggregate != "concat" or layer.shape[0] == network.layer(layer.name).shape[0]:
            continue
        channels: list[int] = []
        for edge in pruned.in_edges(layer.name):
            if edge.key not in network.edge_index:
                continue
            original = network.edge(edge.key)
            channels.extend(range(original.slot, original.slot + original.shapes[-1][0]))
        narrowed[layer.name] = sorted(channels)
    return narrowed


def _why_zeros(layer: Layer, readers: list[Edge]) -> str | None:
    """Why a `concat` layer must keep its inactive slots as zeros (None: it need not), given the
    active edges out of it."""
    if layer.kind == "output":
        return "it is the output, whose shape is the network's"
    changing = next((op.prim for op in layer.post if op.prim not in ZERO_KEEPING), None)
    if changing is not None:
        return f"its post-op {changing} may turn zeros into other values"
    reader = next((e for e in readers if e.head() is None), None)
    if reader is not None:
        return (f"edge '{reader.key}' out of it reads every channel (it does not start with a conv or a linear "
                "layer after only per-channel operations that keep zeros)")
    return None


def _zero_edge(network: Network, layers: dict[str, Layer], absent: Edge, keys: set[str], why: str) -> Edge:
    """A fixed edge that fills the slot of ``absent`` with zeros: `zero`, with a stride, channels
    and an `upsample` when needed, from the slot's own source when it is in the pruned network, else
    from the first layer of the pruned network (in canonical order) that precedes the slot's layer;
    named ``absent[FIRST_CHANNEL]``. BsncError, saying ``why`` the slot is kept, when none fits."""
    slot = (absent.shapes[-1][0],) + layers[absent.dst].shape[1:]
    before = nx.ancestors(network.graph, absent.dst)
    sources = [absent.src] + [name for name in layers if name in before and name != absent.src]
    for source in sources:
        stages = _zeros_of(layers[source].shape, slot) if source in layers else None
        if stages is None:
            continue
        name = f"absent[{absent.slot}]"
        while f"{source}->{absent.dst}:{name}" in keys:
            name += "[0]"
        return Edge(key=f"{source}->{absent.dst}:{name}", src=source, dst=absent.dst, name=name, fixed=True,
                    ops=tuple(op for op, _ in stages), calls=tuple(call for _, call in stages), init_prob=None,
                    slot=absent.slot)
    where = "is not in it" if absent.src not in layers else f"is {list(layers[absent.src].shape)}"
    raise BsncError(
        f"cannot export layer '{absent.dst}': its edge '{absent.key}' (channels {absent.slot}-"
        f"{absent.slot + slot[0] - 1}) is not in the architecture, and the slot must stay as zeros because {why}; "
        f"but no layer of the exported network before '{absent.dst}' has a shape that `zero` (and `upsample`) "
        f"can turn into {list(slot)} (the edge's source '{absent.src}' {where})")


def _zeros_of(shape: tuple[int, ...], target: tuple[int, ...]) -> list[tuple[OpCall, ResolvedCall]] | None:
    """The primitives, resolved and as written, that turn an input of ``shape`` into zeros of
    ``target`` (None: they cannot): `zero`, with the stride and the channels that differ, then
    `upsample` when the map must grow (a slot larger than the map it is made from), or
    `global_avgpool` when a map must become a vector."""
    if len(target) == 3 and len(shape) != 3:
        return None
    stride, scale = 1, 1
    if len(target) == 3:
        found = next(((s, k) for s in range(1, max(shape[1:]) + 1)
                      for k in [_scale(-(-shape[1] // s), target[1], -(-shape[2] // s), target[2])]
                      if k is not None), None)
        if found is None:
            return None
        stride, scale = found
    channels = target[0] if shape[0] != target[0] else None
    resolved = (("stride", stride),) if stride > 1 else ()
    resolved += (("c", channels),) if channels is not None else ()
    stages = [(OpCall("zero", (("stride", stride), ("c", channels))), ResolvedCall("zero", resolved))]
    if scale > 1:  # zeros of a smaller map, up-sampled to the slot's size (still zeros, no cost)
        stages.append((OpCall("upsample", (("scale", scale), ("mode", "nearest"))),
                       ResolvedCall("upsample", ((None, scale),))))
    if len(shape) != len(target):  # a map's zeros, pooled into a vector's
        stages.append((OpCall("global_avgpool", ()), ResolvedCall("global_avgpool", ())))
    return stages


def _scale(height: int, target_height: int, width: int, target_width: int) -> int | None:
    """The one integer factor that up-samples a ``height`` x ``width`` map to the target's size
    (1 when it is that size already); None when there is none."""
    if target_height % height or target_width % width or target_height // height != target_width // width:
        return None
    return target_height // height
