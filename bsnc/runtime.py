"""What generated stochastic super networks run on: architecture sampling in topological order,
connectivity and activity masks, log-probabilities, and cost-proportional edge execution.

Semantics (DESIGN §4), per example b and edge e = (k -> i) in canonical order:
a fixed edge follows connectivity, h[b,e] = connected[b,k]; a stochastic edge is drawn only when
its source is connected, and only then adds to log P(H|Gamma)[b]. An edge is *active* when drawn
and its destination reaches the output through active edges; only active edges run, and only on
the rows where they are active.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

MODES = ("sample", "full", "deterministic", "mask")
DEFAULT_LOGIT = 3.0  # sigmoid(3) ~ 0.95, the paper's initialisation


@dataclass
class Architecture:
    """One forward pass's architectures, one row per example."""

    drawn: torch.Tensor  # [B, E] bool: h after the connectivity rule
    active: torch.Tensor  # [B, E] bool: drawn and on an input-to-output path
    connected: torch.Tensor  # [B, L] bool: layer reached from the input through drawn edges
    log_prob: torch.Tensor  # [B] float: log P(H | Gamma), differentiable w.r.t. the gate logits
    inconsistent: torch.Tensor  # [B] bool: the output is not reached


class Structure:
    """Static tables of a network, as integer index tensors: what sampling needs."""

    def __init__(self, n_layers: int, input_index: int, output_index: int,
                 edge_src: Sequence[int], edge_dst: Sequence[int], stochastic: Sequence[bool]):
        self.n_layers = n_layers
        self.input_index = input_index
        self.output_index = output_index
        self.edge_src = torch.tensor(list(edge_src), dtype=torch.long)
        self.edge_dst = torch.tensor(list(edge_dst), dtype=torch.long)
        self.stochastic = torch.tensor(list(stochastic), dtype=torch.bool)
        self.stochastic_index = torch.nonzero(self.stochastic).flatten()
        # edges grouped by destination layer (canonical order is by destination already)
        self.in_edges: list[torch.Tensor] = [torch.empty(0, dtype=torch.long) for _ in range(n_layers)]
        self.out_edges: list[torch.Tensor] = [torch.empty(0, dtype=torch.long) for _ in range(n_layers)]
        for layer in range(n_layers):
            self.in_edges[layer] = torch.nonzero(self.edge_dst == layer).flatten()
            self.out_edges[layer] = torch.nonzero(self.edge_src == layer).flatten()
        # layers in topological order = index order (the generator numbers them so)
        self.order = list(range(n_layers))

    @property
    def n_edges(self) -> int:
        return int(self.edge_src.numel())


def sample_architecture(structure: Structure, gate_logits: torch.Tensor, batch: int, mode: str,
                        mask: torch.Tensor | None = None, generator: torch.Generator | None = None) -> Architecture:
    """Draw (or set) one architecture per example and derive connectivity and activity."""
    device = gate_logits.device
    n_edges = structure.n_edges
    logits = torch.zeros(n_edges, device=device, dtype=gate_logits.dtype)
    logits = logits.index_put((structure.stochastic_index.to(device),), gate_logits)
    stochastic = structure.stochastic.to(device)

    if mode == "sample":
        gamma = torch.sigmoid(logits.detach())
        uniform = torch.rand((batch, n_edges), device=device, generator=generator)
        proposal = uniform < gamma
    elif mode == "full":
        proposal = torch.ones((batch, n_edges), dtype=torch.bool, device=device)
    elif mode == "deterministic":
        proposal = (logits.detach() > 0).expand(batch, n_edges)  # gamma > 0.5
    elif mode == "mask":
        if mask is None:
            raise ValueError("mode 'mask' needs a mask of shape [E] or [B, E]")
        proposal = _as_batch_mask(mask, batch, n_edges, device)
    else:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    proposal = proposal | ~stochastic  # fixed edges are proposed always; connectivity decides

    src = structure.edge_src.to(device)
    connected = torch.zeros((batch, structure.n_layers), dtype=torch.bool, device=device)
    connected[:, structure.input_index] = True
    drawn = torch.zeros((batch, n_edges), dtype=torch.bool, device=device)
    for layer in structure.order:
        incoming = structure.in_edges[layer]
        if incoming.numel() == 0:
            continue
        incoming = incoming.to(device)
        h = proposal[:, incoming] & connected[:, src[incoming]]
        drawn[:, incoming] = h
        connected[:, layer] = h.any(dim=1)

    dst = structure.edge_dst.to(device)
    reaches = torch.zeros((batch, structure.n_layers), dtype=torch.bool, device=device)
    reaches[:, structure.output_index] = connected[:, structure.output_index]
    active = torch.zeros_like(drawn)
    for layer in reversed(structure.order):
        outgoing = structure.out_edges[layer]
        if outgoing.numel() == 0:
            continue
        outgoing = outgoing.to(device)
        a = drawn[:, outgoing] & reaches[:, dst[outgoing]]
        active[:, outgoing] = a
        reaches[:, layer] = a.any(dim=1)

    src_connected = connected[:, src] & stochastic  # [B, E]: the edges that were drawn at all
    step = torch.where(drawn, F.logsigmoid(logits), F.logsigmoid(-logits))
    log_prob = torch.where(src_connected, step, torch.zeros_like(step)).sum(dim=1)
    return Architecture(drawn, active, connected, log_prob, ~connected[:, structure.output_index])


def _as_batch_mask(mask: torch.Tensor, batch: int, n_edges: int, device: torch.device) -> torch.Tensor:
    mask = torch.as_tensor(mask, device=device).bool()
    if mask.dim() == 1:
        mask = mask.expand(batch, -1)
    if tuple(mask.shape) != (batch, n_edges):
        raise ValueError(f"mask has shape {tuple(mask.shape)}; expected [{n_edges}] or [{batch}, {n_edges}]")
    return mask


class Executor:
    """Runs edge modules on the rows where they are active (gather, run, scatter-add)."""

    def __init__(self, arch: Architecture, batch: int):
        self.batch = batch
        self.device = arch.active.device
        active_cpu = arch.active.cpu()  # one device sync for the whole pass
        self.counts: list[int] = active_cpu.sum(dim=0).tolist()
        self._active_cpu = active_cpu
        self._rows: dict[int, torch.Tensor] = {}

    def rows(self, edge: int) -> torch.Tensor:
        rows = self._rows.get(edge)
        if rows is None:
            rows = torch.nonzero(self._active_cpu[:, edge]).flatten().to(self.device, non_blocking=True)
            self._rows[edge] = rows
        return rows

    def run(self, edge: int, module: nn.Module, x: torch.Tensor | None, acc: torch.Tensor | None) -> torch.Tensor | None:
        """``acc`` plus the edge's output on its active rows (zeros elsewhere)."""
        n = self.counts[edge]
        if n == 0 or x is None:
            return acc
        if n == self.batch:
            y = module(x)
            return y if acc is None else acc + y
        rows = self.rows(edge)
        if n == 1 and module.training:
            y = _single_row(module, x.index_select(0, rows))
        else:
            y = module(x.index_select(0, rows))
        if acc is None:
            acc = y.new_zeros((self.batch,) + tuple(y.shape[1:]))
        return acc.index_add(0, rows, y)

    def mean(self, acc: torch.Tensor | None, incoming: Sequence[int]) -> torch.Tensor | None:
        """Mean aggregation: divide each row by its number of active incoming edges."""
        if acc is None:
            return None
        count = self._active_cpu[:, list(incoming)].sum(dim=1).clamp(min=1).to(acc.device, acc.dtype)
        return acc / count.view((-1,) + (1,) * (acc.dim() - 1))

    @staticmethod
    def post(module: nn.Module, acc: torch.Tensor | None) -> torch.Tensor | None:
        return None if acc is None else module(acc)

    def output(self, acc: torch.Tensor | None, shape: Sequence[int], like: torch.Tensor) -> torch.Tensor:
        if acc is None:
            return like.new_zeros((self.batch,) + tuple(shape))
        return acc


_BATCH_NORMS: "weakref.WeakKeyDictionary[nn.Module, list[nn.Module]]" = weakref.WeakKeyDictionary()


def _single_row(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run ``module`` on one example in training: batch norms have no batch statistics to take
    from a single row, so they use (and leave unchanged) their running statistics."""
    norms = _BATCH_NORMS.get(module)
    if norms is None:
        norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        _BATCH_NORMS[module] = norms
    if not norms:
        return module(x)
    for norm in norms:
        norm.train(False)
    try:
        return module(x)
    finally:
        for norm in norms:
            norm.train(True)


def logit(p: float) -> float:
    import math

    return math.log(p / (1.0 - p))


class StochasticSuperNetwork(nn.Module):
    """Base of generated stochastic networks: gate logits, modes, the last pass's architecture.

    Subclasses (generated) define ``EDGE_KEYS``, ``STOCHASTIC``, ``LAYER_NAMES``, ``EDGE_SRC``,
    ``EDGE_DST``, ``INPUT_INDEX``, ``OUTPUT_INDEX``, ``INITIAL_LOGITS`` and ``forward``.
    """

    EDGE_KEYS: tuple[str, ...] = ()
    STOCHASTIC: tuple[bool, ...] = ()
    LAYER_NAMES: tuple[str, ...] = ()
    EDGE_SRC: tuple[int, ...] = ()
    EDGE_DST: tuple[int, ...] = ()
    INPUT_INDEX: int = 0
    OUTPUT_INDEX: int = 0
    INITIAL_LOGITS: tuple[float, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.structure = Structure(len(self.LAYER_NAMES), self.INPUT_INDEX, self.OUTPUT_INDEX,
                                   self.EDGE_SRC, self.EDGE_DST, self.STOCHASTIC)
        self.gate_logits = nn.Parameter(torch.tensor(self.INITIAL_LOGITS, dtype=torch.float32))
        self.mode: str | None = None  # None: "sample" in training, "deterministic" in evaluation
        self.mask: torch.Tensor | None = None
        self.generator: torch.Generator | None = None
        self.last: Architecture | None = None

    @property
    def stochastic_keys(self) -> tuple[str, ...]:
        return tuple(k for k, s in zip(self.EDGE_KEYS, self.STOCHASTIC) if s)

    def gamma(self) -> torch.Tensor:
        """Edge probabilities of the stochastic edges, in ``stochastic_keys`` order."""
        return torch.sigmoid(self.gate_logits)

    def reset_gates(self, value: float = DEFAULT_LOGIT) -> None:
        with torch.no_grad():
            self.gate_logits.fill_(value)

    def set_mode(self, mode: str | None, mask: torch.Tensor | None = None) -> None:
        if mode is not None and mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        self.mode, self.mask = mode, mask

    def current_mode(self) -> str:
        if self.mode is not None:
            return self.mode
        return "sample" if self.training else "deterministic"

    def plan(self, x: torch.Tensor) -> Executor:
        batch = x.shape[0]
        arch = sample_architecture(self.structure, self.gate_logits, batch, self.current_mode(),
                                   self.mask, self.generator)
        self.last = arch
        return Executor(arch, batch)

    def edge_mask(self, mode: str = "deterministic") -> torch.Tensor:
        """The [E] mask of one architecture (deterministic: gamma > 0.5), connectivity applied."""
        with torch.no_grad():
            arch = sample_architecture(self.structure, self.gate_logits.detach(), 1, mode, self.mask)
        return arch.active[0]
