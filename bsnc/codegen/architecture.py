"""One architecture of a super network as a network of its own: only the active edges, all
fixed, and only the layers they touch."""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import torch

from bsnc.codegen.runtime import Structure, edge_probabilities, sample_architecture
from bsnc.errors import BsncError
from bsnc.ir import Network
from bsnc.lang.checks import build_network
from bsnc.lang.expand import Flat


def active_edges(network: Network, proposal: Sequence[bool] | torch.Tensor) -> torch.Tensor:
    """The [E] active mask of a proposed mask, with the connectivity rule applied."""
    structure = structure_of(network)
    logits = torch.zeros(network.n_logits)
    proposal = torch.as_tensor(proposal, dtype=torch.bool)
    arch = sample_architecture(structure, logits, 1, "mask", proposal)
    if bool(arch.inconsistent[0]):
        cut = _cut_layers(network, arch.connected[0])
        raise BsncError(
            f"the mask leaves the output '{network.output}' unreachable; no active edge reaches "
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
    """The static network of one architecture: active edges (all fixed) and their layers."""
    active = active_edges(network, proposal).tolist()
    kept = [dataclasses.replace(e, fixed=True, init_prob=None) for e, on in zip(network.edges, active) if on]
    touched = {network.input, network.output} | {e.src for e in kept} | {e.dst for e in kept}
    flat = Flat(
        name=network.name,
        params=dict(network.params),
        layers=[layer for layer in network.layers if layer.name in touched],
        edges=kept,
        modules_used=list(network.modules_used),
    )
    return build_network(flat, source=network.source, source_hash=network.source_hash)
