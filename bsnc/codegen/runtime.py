"""What generated stochastic super networks run on: architecture sampling in topological order,
connectivity and activity masks, log-probabilities, and cost-proportional edge execution.

Semantics (DESIGN §4), per example b and edge e = (k -> i) in canonical order:
a fixed edge follows connectivity, h[b,e] = connected[b,k]; a stochastic edge is drawn only when
its source is connected, and only then adds to log P(H|Gamma)[b]. An edge is *active* when drawn
and its destination reaches the output through active edges; only active edges run, and only on
the rows where they are active.
"""

from __future__ import annotations

import math
import os
import weakref
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bsnc.codegen.connectivity import connectivity
from bsnc.codegen.gather import add_rows, run_on_rows
from bsnc.codegen.layout import take_rows, zeros_rows
from bsnc.codegen.masked import eligible, masked_forward
from bsnc.errors import UsageError

# oneDNN, behind CPU convolutions, compiles a primitive per shape and keeps 1,024 by default; an
# edge's row count changes every step, and the misses cost more than the convolutions at small
# widths. Read when oneDNN creates its first primitive: a user's own value is kept.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16384")

MODES = ("sample", "full", "deterministic", "mask")
# Per device type, the share of its source's rows from which an edge runs dense-masked rather than
# on gathered rows; None: never. Measured by benchmarks/bench_strategies.py (docs/gpu.md):
# on this project's CPU (2 cores, oneDNN) dense-masked was slower at every share below 1, so
# partial edges gather. No GPU was measured; BSNC_DENSE_THRESHOLD (a share, or "never") or a
# model's ``dense_threshold`` attribute sets it.
DENSE_THRESHOLD: dict[str, float | str | None] = {"cpu": None}
DEFAULT_LOGIT = 3.0  # sigmoid(3) ~ 0.95, the paper's initialisation


@dataclass
class Architecture:
    """One forward pass's architectures, one row per example."""

    drawn: torch.Tensor  # [B, E] bool: h after the connectivity rule
    active: torch.Tensor  # [B, E] bool: drawn and on an input-to-output path
    connected: torch.Tensor  # [B, L] bool: layer reached from the input through drawn edges
    log_prob: torch.Tensor  # [B] float: log P(H | Gamma), differentiable w.r.t. the gate logits
    inconsistent: torch.Tensor  # [B] bool: the output is not reached
    _active_cpu: torch.Tensor | None = None

    def active_cpu(self) -> torch.Tensor:
        """``active`` on the CPU (copied once per pass, shared with the executor)."""
        if self._active_cpu is None:
            self._active_cpu = self.active.cpu()
        return self._active_cpu


class Structure:
    """Static tables of a network, as integer index tensors: what sampling needs.

    ``decisions`` lists each learned choice as ``(kind, first logit, width)``: a ``"gate"`` (one
    logit, on with probability sigmoid) or a ``"choice"`` (``width`` logits, softmax; its values
    are the options in order). ``edge_decision[e]`` is the decision of stochastic edge ``e`` and
    ``edge_option[e]`` the value that switches it on (1 for a gate). Without them every
    stochastic edge has a gate of its own, in edge order (the paper's super networks).
    """

    def __init__(self, n_layers: int, input_index: int, output_index: int,
                 edge_src: Sequence[int], edge_dst: Sequence[int], stochastic: Sequence[bool],
                 decisions: Sequence[tuple[str, int, int]] | None = None,
                 edge_decision: Sequence[int] | None = None, edge_option: Sequence[int] | None = None):
        self.n_layers = n_layers
        self.input_index = input_index
        self.output_index = output_index
        self.edge_src = torch.tensor(list(edge_src), dtype=torch.long)
        self.edge_dst = torch.tensor(list(edge_dst), dtype=torch.long)
        self.src_list, self.dst_list = [int(v) for v in edge_src], [int(v) for v in edge_dst]
        if any(s >= d for s, d in zip(self.src_list, self.dst_list)):
            # connectivity (and the executor) rely on it; generated code numbers layers so
            raise ValueError("layers must be numbered in topological order: every edge from a lower index to a higher")
        self.stochastic = torch.tensor(list(stochastic), dtype=torch.bool)
        self.stochastic_index = torch.nonzero(self.stochastic).flatten()
        # layers in topological order = index order (the generator numbers them so)
        self.order = list(range(n_layers))
        # a layer's level: the longest path to it. Every edge goes to a higher level, so the
        # layers of one level are independent: connectivity runs level by level, not layer by layer
        level = [0] * n_layers
        for e in sorted(range(len(self.dst_list)), key=lambda e: self.dst_list[e]):
            level[self.dst_list[e]] = max(level[self.dst_list[e]], level[self.src_list[e]] + 1)
        # edges by the level of their destination (into) and of their source (out of), in one pass:
        # a scan of every edge per level was quadratic in a deep network's depth
        into: list[list[int]] = [[] for _ in range(max(level) + 1)]
        out_of: list[list[int]] = [[] for _ in range(max(level) + 1)]
        for e, (s, d) in enumerate(zip(self.src_list, self.dst_list)):
            into[level[d]].append(e)
            out_of[level[s]].append(e)
        # per level with edges: those edges, the distinct layers they end at (destinations: into;
        # sources: out of) and each edge's position among those layers, for an any-over-edges
        # per layer in one index_add (a dense [edges, layers] incidence took memory quadratic in depth)
        self.levels_in = [self._group(edges, self.dst_list) for edges in into if edges]
        self.levels_out = [self._group(edges, self.src_list) for edges in out_of if edges]
        # (edge, source, destination) in order of destination, and of source: bsnc.codegen.connectivity
        ends = list(zip(range(len(self.src_list)), self.src_list, self.dst_list))
        self.edges_by_dst = sorted(ends, key=lambda end: end[2])
        self.edges_by_src = sorted(ends, key=lambda end: end[1])
        self.plain = decisions is None
        if decisions is None:
            n = int(self.stochastic_index.numel())
            decisions = [("gate", i, 1) for i in range(n)]
            edge_decision = [-1] * len(stochastic)
            for i, e in enumerate(self.stochastic_index.tolist()):
                edge_decision[e] = i
            edge_option = [1] * len(stochastic)
        self.decisions = [tuple(d) for d in decisions]
        self.n_logits = sum(width for _, _, width in self.decisions)
        self.edge_decision = torch.tensor(list(edge_decision), dtype=torch.long)
        self.edge_option = torch.tensor(list(edge_option), dtype=torch.long)
        gates = [i for i, (kind, _, _) in enumerate(self.decisions) if kind == "gate"]
        choices = [i for i, (kind, _, _) in enumerate(self.decisions) if kind == "choice"]
        self.gate_index = torch.tensor(gates, dtype=torch.long)
        self.gate_logit = torch.tensor([self.decisions[i][1] for i in gates], dtype=torch.long)
        # a gate draws with the uniform of its first edge, so a plain network samples as it always did
        first = {d: e for e, d in reversed(list(enumerate(self.edge_decision.tolist()))) if d >= 0}
        self.gate_first_edge = torch.tensor([first.get(i, 0) for i in gates], dtype=torch.long)
        self.choice_index = torch.tensor(choices, dtype=torch.long)
        widest = max((self.decisions[i][2] for i in choices), default=1)
        # [choices, widest] indices into the logits followed by one -inf: padding past a group's width
        pad = self.n_logits
        self.choice_logit = torch.tensor(
            [[self.decisions[i][1] + j if j < self.decisions[i][2] else pad for j in range(widest)] for i in choices],
            dtype=torch.long).reshape(len(choices), widest)
        # [E, D]: stochastic edge e belongs to decision d (what "offered" sums over)
        self.membership = torch.zeros((len(stochastic), len(self.decisions)))
        for e, d in enumerate(self.edge_decision.tolist()):
            if d >= 0:
                self.membership[e, d] = 1.0
        self._on: dict[torch.device, _DeviceTables] = {}

    def _group(self, edges: list[int], ends: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        layers, position = torch.unique(torch.tensor([ends[e] for e in edges], dtype=torch.long), return_inverse=True)
        return torch.tensor(edges, dtype=torch.long), layers, position

    @property
    def n_edges(self) -> int:
        return int(self.edge_src.numel())

    @property
    def n_decisions(self) -> int:
        return len(self.decisions)

    def on(self, device: torch.device) -> _DeviceTables:
        """The index tables on ``device``, copied there once and then reused."""
        tables = self._on.get(device)
        if tables is None:
            def move(t: torch.Tensor) -> torch.Tensor:
                return t.to(device)

            tables = _DeviceTables(
                move(self.edge_src), move(self.edge_dst), move(self.stochastic), move(self.stochastic_index),
                [tuple(move(t) for t in group) for group in self.levels_in],
                [tuple(move(t) for t in group) for group in self.levels_out],
                move(self.edge_decision.clamp(min=0)), move(self.edge_option), move(self.gate_index),
                move(self.gate_logit), move(self.gate_first_edge), move(self.choice_index), move(self.choice_logit),
                move(self.membership),
            )
            self._on[device] = tables
        return tables


@dataclass
class _DeviceTables:
    edge_src: torch.Tensor
    edge_dst: torch.Tensor
    stochastic: torch.Tensor
    stochastic_index: torch.Tensor
    levels_in: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # see Structure.levels_in
    levels_out: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    edge_decision: torch.Tensor  # fixed edges point at decision 0; ``stochastic`` masks them out
    edge_option: torch.Tensor
    gate_index: torch.Tensor
    gate_logit: torch.Tensor
    gate_first_edge: torch.Tensor
    choice_index: torch.Tensor
    choice_logit: torch.Tensor
    membership: torch.Tensor


def choice_logits(structure: Structure, gate_logits: torch.Tensor) -> torch.Tensor:
    """[choices, widest] logits of the choice groups, -inf past each group's width."""
    tables = structure.on(gate_logits.device)
    padded = torch.cat([gate_logits, gate_logits.new_full((1,), float("-inf"))])
    return padded[tables.choice_logit]


def decision_log_probs(structure: Structure, gate_logits: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """[B, D] log-probability of each decision's value (gates: 1 on, 0 off; choices: the option)."""
    tables = structure.on(gate_logits.device)
    out = gate_logits.new_zeros(values.shape)
    if tables.gate_index.numel():
        theta = gate_logits[tables.gate_logit]
        on = values[:, tables.gate_index] == 1
        out[:, tables.gate_index] = torch.where(on, F.logsigmoid(theta), F.logsigmoid(-theta))
    if tables.choice_index.numel():
        log_p = torch.log_softmax(choice_logits(structure, gate_logits), dim=1)  # [C, W]
        picked = values[:, tables.choice_index]  # [B, C]
        out[:, tables.choice_index] = log_p.gather(1, picked.t()).t()
    return out


def _decision_values(structure: Structure, gate_logits: torch.Tensor, batch: int, mode: str,
                     uniform: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor:
    """[B, D] one value per example and decision: drawn (``sample``) or the most probable."""
    tables = structure.on(gate_logits.device)
    theta = gate_logits.detach()
    values = torch.zeros((batch, structure.n_decisions), dtype=torch.long, device=theta.device)
    if tables.gate_index.numel():
        gate_theta = theta[tables.gate_logit]
        if mode == "sample":
            on = uniform[:, tables.gate_first_edge] < torch.sigmoid(gate_theta)
        else:
            on = (gate_theta > 0).expand(batch, -1)
        values[:, tables.gate_index] = on.long()
    if tables.choice_index.numel():
        logits = choice_logits(structure, theta)
        if mode == "sample":  # Gumbel-max: one categorical draw per example and group
            u = torch.rand((batch,) + tuple(logits.shape), device=theta.device, generator=generator)
            picked = (logits - torch.log(-torch.log(u))).argmax(dim=2)
        else:
            picked = logits.argmax(dim=1).expand(batch, -1)
        values[:, tables.choice_index] = picked
    return values


def sample_architecture(structure: Structure, gate_logits: torch.Tensor, batch: int, mode: str,
                        mask: torch.Tensor | None = None, generator: torch.Generator | None = None) -> Architecture:
    """Draw (or set) one architecture per example and derive connectivity and activity."""
    device = gate_logits.device
    tables = structure.on(device)
    n_edges = structure.n_edges
    stochastic = tables.stochastic
    values = None

    edge_logits = None
    if structure.plain:  # [E] each edge's gate logit (0 for fixed edges)
        edge_logits = gate_logits.new_zeros(n_edges).index_put((tables.stochastic_index,), gate_logits)
    if mode in ("sample", "deterministic") and structure.plain:
        logits = edge_logits.detach()
        if mode == "sample":
            uniform = torch.rand((batch, n_edges), device=device, generator=generator)
            proposal = uniform < torch.sigmoid(logits)
        else:
            proposal = (logits > 0).expand(batch, n_edges)  # gamma > 0.5
    elif mode in ("sample", "deterministic"):
        uniform = torch.rand((batch, n_edges), device=device, generator=generator) if mode == "sample" else None
        values = _decision_values(structure, gate_logits, batch, mode, uniform, generator)
        proposal = values[:, tables.edge_decision] == tables.edge_option
    elif mode == "full":
        proposal = torch.ones((batch, n_edges), dtype=torch.bool, device=device)
    elif mode == "mask":
        if mask is None:
            raise ValueError("mode 'mask' needs a mask of shape [E] or [B, E]")
        proposal = _as_batch_mask(mask, batch, n_edges, device)
    else:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    proposal = proposal | ~stochastic  # fixed edges are proposed always; connectivity decides

    drawn, connected, active = connectivity(structure, proposal)
    src = tables.edge_src
    src_connected = connected[:, src] & stochastic  # [B, E]: the edges that were offered at all
    if edge_logits is not None:
        step = torch.where(drawn, F.logsigmoid(edge_logits), F.logsigmoid(-edge_logits))
        log_prob = torch.where(src_connected, step, torch.zeros_like(step)).sum(dim=1)
    else:
        if values is None:  # full and mask modes: read each decision's value off the proposal
            values = _values_of(structure, proposal)
        # a decision counts once, when at least one of its edges was offered
        offered = (src_connected.to(tables.membership.dtype) @ tables.membership) > 0
        terms = decision_log_probs(structure, gate_logits, values)
        log_prob = torch.where(offered, terms, torch.zeros_like(terms)).sum(dim=1)
    return Architecture(drawn, active, connected, log_prob, ~connected[:, structure.output_index])


def _values_of(structure: Structure, proposal: torch.Tensor) -> torch.Tensor:
    """[B, D] decision values that a proposal states: a gate is on when any of its edges is;
    a choice takes the option of its first proposed member (its zero option when none is)."""
    tables = structure.on(proposal.device)
    batch = proposal.shape[0]
    values = torch.zeros((batch, structure.n_decisions), dtype=torch.long, device=proposal.device)
    for d, (kind, _, width) in enumerate(structure.decisions):
        edges = torch.nonzero(tables.membership[:, d]).flatten()
        on = proposal[:, edges]
        if kind == "gate":
            values[:, d] = on.any(dim=1).long()
        else:
            options = tables.edge_option[edges]
            first = torch.where(on, torch.arange(edges.numel(), device=on.device), edges.numel()).min(dim=1).values
            values[:, d] = torch.where(first < edges.numel(), options[first.clamp(max=max(edges.numel() - 1, 0))],
                                       width - 1)
    return values


def edge_probabilities(structure: Structure, gate_logits: torch.Tensor) -> torch.Tensor:
    """[S] each stochastic edge's probability of being proposed (its gate's γ, or its option's
    softmax probability), in stochastic edge order."""
    if structure.plain:
        return torch.sigmoid(gate_logits)
    tables = structure.on(gate_logits.device)
    table = gate_logits.new_zeros((structure.n_decisions, 2 if not tables.choice_index.numel()
                                   else max(2, tables.choice_logit.shape[1])))
    if tables.gate_index.numel():
        table[tables.gate_index, 1] = torch.sigmoid(gate_logits[tables.gate_logit])
    if tables.choice_index.numel():
        probs = torch.softmax(choice_logits(structure, gate_logits), dim=1)
        table[tables.choice_index, :probs.shape[1]] = probs
    index = tables.stochastic_index
    return table[tables.edge_decision[index], tables.edge_option[index]]


def decision_entropy(structure: Structure, gate_logits: torch.Tensor) -> torch.Tensor:
    """Σ over decisions of their entropy in nats (Bernoulli or categorical), differentiable."""
    tables = structure.on(gate_logits.device)
    total = gate_logits.new_zeros(())
    if tables.gate_index.numel():
        theta = gate_logits[tables.gate_logit]
        p = torch.sigmoid(theta)
        total = total - (p * F.logsigmoid(theta) + (1 - p) * F.logsigmoid(-theta)).sum()
    if tables.choice_index.numel():
        logits = choice_logits(structure, gate_logits)
        # a narrower group's padding (-inf) is replaced before the product, not after: its
        # 0 * -inf would be a NaN in the gradient even where the value is masked out
        log_p = torch.where(torch.isfinite(logits), torch.log_softmax(logits, dim=1), 0.0)
        total = total - (log_p.exp() * log_p).sum()
    return total


def _as_batch_mask(mask: torch.Tensor, batch: int, n_edges: int, device: torch.device) -> torch.Tensor:
    mask = torch.as_tensor(mask, device=device).bool()
    if mask.dim() == 1:
        mask = mask.expand(batch, -1)
    if tuple(mask.shape) != (batch, n_edges):
        raise ValueError(f"mask has shape {tuple(mask.shape)}; expected [{n_edges}] or [{batch}, {n_edges}]")
    return mask


def dense_threshold(device: torch.device) -> float | str | None:
    """The share of a source's rows from which edges run dense-masked on ``device``; None: never;
    ``"always"``: every edge, with no host synchronisation (:class:`DenseExecutor`)."""
    value = os.environ.get("BSNC_DENSE_THRESHOLD")
    if value is None:
        return DENSE_THRESHOLD.get(device.type)
    if value in ("never", "always"):
        return None if value == "never" else value
    try:
        share = float(value)
    except ValueError:
        share = math.nan
    if not 0 <= share <= 1:
        raise UsageError(f"environment variable BSNC_DENSE_THRESHOLD={value!r}: expected a share from 0 to 1, "
                         "never or always")
    return share


class Executor:
    """Runs edge modules on the rows where they are active.

    Layers are kept compact: a layer's tensor holds only its *present* rows (those with an
    active incoming edge; every row for the input). Each edge and step takes one of three
    strategies, from its number of active rows (:attr:`strategy` records which):

    * ``all``: the edge is active on every row of its source: the module runs on the source as it is;
    * ``dense``: on at least ``dense_threshold`` of them (and its module is
      :func:`~bsnc.codegen.masked.eligible`): the module runs on every row, its batch norms over
      the active rows only, and the active rows of the result are kept;
    * ``gather``: otherwise, the module runs on the gathered active rows.

    The output is scatter-added into the destination only when the edge's rows are fewer than
    the destination's, so work and memory follow the sampled architectures.
    """

    def __init__(self, arch: Architecture, batch: int, structure: Structure, dense: float | None = None,
                 layout: torch.memory_format | None = None):
        self.batch = batch
        self.layout = layout
        self.device = arch.active.device
        self.structure = structure
        active = arch.active_cpu()  # one device sync for the whole pass
        self._active = active
        self.counts: list[int] = active.sum(dim=0).tolist()
        present = _entered(structure, active)
        present[:, structure.input_index] = True
        self._sizes: list[int] = present.sum(dim=0).tolist()
        # row indices are worked out in numpy: a tensor operation costs ~5 us whatever its size,
        # several per edge and step; numpy's take a fraction of that
        self._present = present.numpy()
        self._active_by_edge = np.ascontiguousarray(active.numpy().T)  # [E, B]
        self._slot = self._present.cumsum(axis=0, dtype=np.int64) - 1  # [B, L]: a present row's place in its layer's tensor
        self._rows_of_layer: dict[int, torch.Tensor] = {}
        self._positions: dict[tuple[int, int], torch.Tensor | None] = {}
        self._src = structure.src_list
        self._dst = structure.dst_list
        self.dense = dense
        self.strategy: dict[int, str] = {}
        # the last sum this executor allocated, and for which layer: an identity edge hands its
        # source's value on as is, so a tensor is only ever added to in place for its own layer
        self._owned: tuple[int, torch.Tensor] | None = None

    def _layer_rows(self, layer: int) -> torch.Tensor:
        """The batch rows present in ``layer`` (on the CPU)."""
        rows = self._rows_of_layer.get(layer)
        if rows is None:
            rows = torch.from_numpy(np.flatnonzero(self._present[:, layer]))
            self._rows_of_layer[layer] = rows
        return rows

    def _position(self, edge: int, layer: int) -> torch.Tensor | None:
        """Where the edge's rows sit in ``layer``'s compact tensor (None: they are all of it)."""
        key = (edge, layer)
        if key in self._positions:
            return self._positions[key]
        if self.counts[edge] == self._sizes[layer]:
            found = None
        else:
            slots = self._slot[np.flatnonzero(self._active_by_edge[edge]), layer]
            found = torch.from_numpy(slots).to(self.device, non_blocking=True)
        self._positions[key] = found
        return found

    def _apply(self, edge: int, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The edge's module on its active rows of ``x`` (its source's present rows)."""
        take = self._position(edge, self._src[edge])
        n = self.counts[edge]
        if n == 1 and module.training:
            self.strategy[edge] = "all" if take is None else "gather"
            return _single_row(module, x if take is None else take_rows(x, take))
        if take is None:
            self.strategy[edge] = "all"
            return module(x)
        if self.dense is not None and n >= self.dense * x.shape[0] and eligible(module):
            self.strategy[edge] = "dense"
            rows = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device).index_fill_(0, take, True)
            return take_rows(masked_forward(module, x, rows), take)
        self.strategy[edge] = "gather"
        return run_on_rows(module, x, take)

    def run(self, edge: int, module: nn.Module, x: torch.Tensor | None, acc: torch.Tensor | None) -> torch.Tensor | None:
        """``acc`` (the destination's present rows) plus the edge's output on its active rows."""
        n = self.counts[edge]
        if n == 0 or x is None:
            return acc
        y = self._apply(edge, module, x)
        acc, y = _same_precision(acc, y)
        put = self._position(edge, self._dst[edge])
        # a sum this executor allocated is added to in place; a module's output never is (its
        # module may have saved it for backward, and an in-place change would corrupt that)
        dst = self._dst[edge]
        owned = acc is not None and self._owned is not None and self._owned[0] == dst and acc is self._owned[1]
        if put is None:
            if acc is None:
                return y
            total = acc.add_(y) if owned else acc + y
        else:
            if acc is None:
                acc, owned = zeros_rows(y, self._sizes[self._dst[edge]], layout=self.layout), True
            total = add_rows(acc, put, y, inplace=owned)
        self._owned = (dst, total)
        return total

    def mean(self, acc: torch.Tensor | None, incoming: Sequence[int]) -> torch.Tensor | None:
        """Mean aggregation: divide each row by its number of active incoming edges."""
        if acc is None:
            return None
        layer = self._dst[incoming[0]]
        rows = self._layer_rows(layer)
        # the layer's edges first: indexing every edge's column by rows copied [rows, edges] per layer
        count = self._active[:, list(incoming)][rows].sum(dim=1).clamp(min=1).to(acc.device, acc.dtype)
        return acc / count.view((-1,) + (1,) * (acc.dim() - 1))

    def place(self, edge: int, module: nn.Module, x: torch.Tensor | None, acc: torch.Tensor | None,
              offset: int, shape: Sequence[int]) -> torch.Tensor | None:
        """Concatenation: ``acc`` (the destination's present rows, of ``shape``) with the edge's
        output written into its channels from ``offset`` on its active rows; zeros elsewhere."""
        n = self.counts[edge]
        if n == 0 or x is None:
            return acc
        y = self._apply(edge, module, x)
        acc, y = _same_precision(acc, y)
        if acc is None:
            acc = zeros_rows(y, self._sizes[self._dst[edge]], tuple(shape), self.layout)
        # the slot's rows are still zeros (each edge has its own channels): adding is writing,
        # and add_rows keeps only the indices for backward where index_copy_ would keep y, and
        # hands y its gradient in acc's layout where narrow().copy_() would make it contiguous
        return add_rows(acc, self._position(edge, self._dst[edge]), y, inplace=True, channels=offset)

    @staticmethod
    def post(module: nn.Module, acc: torch.Tensor | None) -> torch.Tensor | None:
        return None if acc is None else module(acc)

    def output(self, acc: torch.Tensor | None, shape: Sequence[int], like: torch.Tensor) -> torch.Tensor:
        """The output for every row: zeros for the inconsistent examples."""
        if acc is None:
            return zeros_rows(like, self.batch, tuple(shape), self.layout)
        out_layer = self.structure.output_index
        if self._sizes[out_layer] == self.batch:
            return acc
        rows = self._layer_rows(out_layer).to(acc.device, non_blocking=True)
        return add_rows(zeros_rows(acc, self.batch), rows, acc, inplace=True)


class DenseExecutor:
    """Runs every edge dense-masked on every row of the batch, with no host synchronisation.

    Layers hold every row; an edge's module runs on all of them, its batch norms over the edge's
    active rows only (:func:`~bsnc.codegen.masked.masked_forward`), and the rows where it is off
    are set to zero. No shape depends on the sampled architectures, so nothing is read back to
    the host: this is the executor for ``dense_threshold = "always"`` (a GPU that should not
    wait for the host). It costs the full super network's arithmetic, like the paper's
    strategy. A module that :func:`~bsnc.codegen.masked.eligible` does not accept (a user's
    primitive, dropout) runs on its gathered rows, which needs one synchronisation for it.
    """

    def __init__(self, arch: Architecture, batch: int, structure: Structure,
                 layout: torch.memory_format | None = None):
        self.batch = batch
        self.layout = layout
        self.structure = structure
        self._active = arch.active
        self._present = _entered(structure, arch.active)
        self._reached = ~arch.inconsistent
        self._src = structure.src_list
        self._dst = structure.dst_list
        self._layer: int | None = None  # the destination of the edges last run, for ``post``
        self.strategy: dict[int, str] = {}

    def _keep(self, rows: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``y`` on ``rows`` ([B] bool), zeros elsewhere (``where``: garbage rows may be anything)."""
        return torch.where(rows.view((-1,) + (1,) * (y.dim() - 1)), y, torch.zeros((), dtype=y.dtype, device=y.device))

    def _apply(self, edge: int, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        rows = self._active[:, edge]
        if eligible(module):
            self.strategy[edge] = "dense"
            return self._keep(rows, masked_forward(module, x, rows))
        self.strategy[edge] = "gather"
        take = torch.nonzero(rows).flatten()
        if take.numel() == 0:
            return None
        y = _single_row(module, take_rows(x, take)) if take.numel() == 1 and module.training \
            else run_on_rows(module, x, take)
        return add_rows(zeros_rows(y, self.batch), take, y, inplace=True)

    def _output(self, edge: int, module: nn.Module, x: torch.Tensor | None) -> torch.Tensor | None:
        self._layer = self._dst[edge]
        return None if x is None else self._apply(edge, module, x)

    def run(self, edge: int, module: nn.Module, x: torch.Tensor | None, acc: torch.Tensor | None) -> torch.Tensor | None:
        """``acc`` plus the edge's output on its active rows."""
        y = self._output(edge, module, x)
        if y is None:
            return acc
        acc, y = _same_precision(acc, y)
        return y if acc is None else acc + y

    def mean(self, acc: torch.Tensor | None, incoming: Sequence[int]) -> torch.Tensor | None:
        """Mean aggregation: divide each row by its number of active incoming edges."""
        if acc is None:
            return None
        count = self._active[:, list(incoming)].sum(dim=1).clamp(min=1).to(acc.dtype)
        return acc / count.view((-1,) + (1,) * (acc.dim() - 1))

    def place(self, edge: int, module: nn.Module, x: torch.Tensor | None, acc: torch.Tensor | None,
              offset: int, shape: Sequence[int]) -> torch.Tensor | None:
        """Concatenation: the edge's output in its channels from ``offset``; zeros elsewhere."""
        y = self._output(edge, module, x)
        if y is None:
            return acc
        acc, y = _same_precision(acc, y)
        if acc is None:
            acc = zeros_rows(y, self.batch, tuple(shape), self.layout)
        return add_rows(acc, None, y, inplace=True, channels=offset)

    def post(self, module: nn.Module, acc: torch.Tensor | None) -> torch.Tensor | None:
        """The layer's post-operation, batch norms over the layer's present rows. Its other rows
        are left as they come out (every reader keeps only its own active rows, which are
        present here): zeroing them would keep a second copy of the layer for backward."""
        if acc is None:
            return None
        rows = self._present[:, self._layer]
        if eligible(module):
            return masked_forward(module, acc, rows)
        take = torch.nonzero(rows).flatten()  # one synchronisation, as for an edge's module
        return add_rows(torch.zeros_like(acc), take, module(take_rows(acc, take)), inplace=True)

    def output(self, acc: torch.Tensor | None, shape: Sequence[int], like: torch.Tensor) -> torch.Tensor:
        """The output for every row: zeros for the inconsistent examples."""
        if acc is None:
            return zeros_rows(like, self.batch, tuple(shape), self.layout)
        return self._keep(self._reached, acc)


def _same_precision(acc: torch.Tensor | None, y: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Under autocast, edges may differ in precision: a sum is taken in the wider one."""
    if acc is None or acc.dtype == y.dtype:
        return acc, y
    dtype = torch.promote_types(acc.dtype, y.dtype)
    return acc.to(dtype), y.to(dtype)


def _entered(structure: Structure, active: torch.Tensor) -> torch.Tensor:
    """[B, L] bool: whether an active edge of ``active`` [B, E] enters each layer (a sum over each
    layer's edges by index_add: a dense [E, L] incidence grew with the square of a deep network)."""
    dst = structure.on(active.device).edge_dst
    counts = torch.zeros((active.shape[0], structure.n_layers), dtype=torch.float32, device=active.device)
    return counts.index_add_(1, dst, active.to(torch.float32)) > 0


_BATCH_NORMS: "weakref.WeakKeyDictionary[nn.Module, list[nn.Module]]" = weakref.WeakKeyDictionary()


def _single_row(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run ``module`` on one example in training. A batch norm that sees a single value per
    channel (one row of a vector or of a 1x1 map) has no batch statistics to take, so it uses,
    and leaves unchanged, its running statistics; one that sees more takes batch statistics, as
    the dense-masked strategy does (a module bsnc cannot prove row-wise: all its batch norms,
    once one of them has none)."""
    if eligible(module):
        return masked_forward(module, x, torch.ones(1, dtype=torch.bool, device=x.device))
    try:
        return module(x)
    except ValueError as exc:
        if "more than 1 value per channel" not in str(exc):
            raise
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
    ``EDGE_DST``, ``INPUT_INDEX``, ``OUTPUT_INDEX``, ``INITIAL_LOGITS`` and ``forward``; a network
    with shared gates or choice groups also ``DECISIONS``, ``EDGE_DECISION`` and ``EDGE_OPTION``
    (:class:`Structure`), and then ``gate_logits`` holds one logit per gate and per option.
    """

    EDGE_KEYS: tuple[str, ...] = ()
    STOCHASTIC: tuple[bool, ...] = ()
    LAYER_NAMES: tuple[str, ...] = ()
    EDGE_SRC: tuple[int, ...] = ()
    EDGE_DST: tuple[int, ...] = ()
    INPUT_INDEX: int = 0
    OUTPUT_INDEX: int = 0
    INITIAL_LOGITS: tuple[float, ...] = ()
    DECISIONS: tuple[tuple[str, int, int], ...] | None = None
    EDGE_DECISION: tuple[int, ...] | None = None
    EDGE_OPTION: tuple[int, ...] | None = None

    def __init__(self) -> None:
        super().__init__()
        self.structure = Structure(len(self.LAYER_NAMES), self.INPUT_INDEX, self.OUTPUT_INDEX,
                                   self.EDGE_SRC, self.EDGE_DST, self.STOCHASTIC,
                                   self.DECISIONS, self.EDGE_DECISION, self.EDGE_OPTION)
        self.gate_logits = nn.Parameter(torch.tensor(self.INITIAL_LOGITS, dtype=torch.float32))
        self.mode: str | None = None  # None: "sample" in training, "deterministic" in evaluation
        self.mask: torch.Tensor | None = None
        self.generator: torch.Generator | None = None
        self.last: Architecture | None = None
        # "device": dense_threshold(the input's device); a share, None (never) or "always"
        self.dense_threshold: float | str | None = "device"
        # the layout of the network's maps (torch.channels_last after .to(memory_format=...)):
        # buffers the executor makes take it; None: each follows the tensor it is made like
        self.memory_format: torch.memory_format | None = None
        self.last_strategy: dict[int, str] = {}

    @property
    def stochastic_keys(self) -> tuple[str, ...]:
        return tuple(k for k, s in zip(self.EDGE_KEYS, self.STOCHASTIC) if s)

    def gamma(self) -> torch.Tensor:
        """Edge probabilities of the stochastic edges, in ``stochastic_keys`` order (an option of
        a choice group: its softmax probability)."""
        return edge_probabilities(self.structure, self.gate_logits)

    def entropy(self) -> torch.Tensor:
        """H(Γ): the summed entropy of every gate and choice group, in nats."""
        return decision_entropy(self.structure, self.gate_logits)

    def reset_gates(self, value: float | None = None) -> None:
        """Set every gate logit to ``value``, or back to its initial value (from `prob`, else 3)."""
        with torch.no_grad():
            if value is None:
                self.gate_logits.copy_(torch.tensor(self.INITIAL_LOGITS, dtype=self.gate_logits.dtype))
            else:
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
        dense = dense_threshold(x.device) if self.dense_threshold == "device" else self.dense_threshold
        executor = (DenseExecutor(arch, batch, self.structure, self.memory_format) if dense == "always"
                    else Executor(arch, batch, self.structure, dense, self.memory_format))
        self.last_strategy = executor.strategy  # filled as the pass runs: edge index -> strategy
        return executor

    def edge_mask(self, mode: str = "deterministic") -> torch.Tensor:
        """The [E] mask of one architecture (deterministic: gamma > 0.5), connectivity applied."""
        with torch.no_grad():
            arch = sample_architecture(self.structure, self.gate_logits.detach(), 1, mode, self.mask)
        return arch.active[0]
