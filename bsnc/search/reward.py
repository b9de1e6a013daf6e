"""The REINFORCE reward of one sampled architecture per example (paper eq. 4, DESIGN §6):
D = Δ + λ·penalty(C/budget), with a floor under inconsistent samples that no weight can lift.

Only the reward is shaped here; the back-propagated loss is the plain per-example loss.

**Why an inconsistent sample always loses.** Write ``E`` for the loss of an empty prediction
(an all-zero output: ln K for K classes, per example or per pixel, see :func:`empty_loss`) and
``P`` for the largest penalty any consistent sample can have (:func:`penalty_bound`: the
penalty at the full cost, or at the batch's largest sampled cost if that is larger; under
torchrun the largest over every process's batch, since the advantage compares them all). A
consistent example's reward is

    D_c = min(Δ, E) + λ·penalty(C/budget) + ε·idle ≤ E + λ·P + ε·S,

because penalty(C/budget) ≤ P by the definition of P and a sample has at most S idle edges (S
edges in all, ε the idle-edge weight, >= 0). An inconsistent example gets

    D_inc = E + λ·P + ε·S + margin + extra,     margin > 0, extra ≥ 0,

so D_c ≤ E + λ·P + ε·S < D_inc for every λ ≥ 0, budget > 0 and cost, whatever Δ is (the clip at E
is what makes an unbounded Δ harmless). ``extra`` is ``--inconsistent-penalty``: it can only
widen the gap. With rewards lower-is-better, every inconsistent sample therefore scores worse
than every consistent sample of the same batch, and REINFORCE moves Γ away from it. The
advantage (:func:`advantage`) is an increasing affine map of the reward within a batch, so it
keeps that order.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

BUDGET_USE = 0.1  # nats per unit of cost/budget within budget: a tie-break, small next to real loss gaps
IDLE_PENALTY = 0.01  # per idle edge (nats): small next to the loss differences that matter
MARGIN = 1.0  # in units of the loss (nats): an inconsistent sample is at least this much worse


def empty_loss(num_classes: int) -> float:
    """Cross-entropy of an all-zero output (a uniform prediction): ln K, per example or pixel."""
    return math.log(num_classes)


def penalty(ratio: torch.Tensor, kind: str) -> torch.Tensor:
    """The budget penalty of cost/budget ratios: ``hinge`` max(0, r - 1) or ``abs`` |r - 1|."""
    return (ratio - 1).clamp(min=0) if kind == "hinge" else (ratio - 1).abs()


def budget_use(ratio: torch.Tensor, weight: float) -> torch.Tensor:
    """-weight·r for a cost within budget (r <= 1), 0 over it: among architectures equally good
    otherwise, the one that uses more of the budget wins, and no architecture over budget gains
    from it (any one within scores at most 0, the value of every one over)."""
    return torch.where(ratio <= 1, -weight * ratio, torch.zeros_like(ratio))


def penalty_bound(full_cost: float, budget: float, kind: str, ratio: torch.Tensor | None = None) -> float:
    """An upper bound of the penalty of any consistent architecture: the penalty at the full
    cost, at no cost (for ``abs``), and at every ratio of ``ratio`` (the batch's samples, so that
    the bound holds for costs that are not monotone in the edges)."""
    candidates = [float(penalty(torch.tensor([full_cost / budget, 0.0]), kind).max())]
    if ratio is not None and ratio.numel():
        candidates.append(float(penalty(ratio.detach().double(), kind).max()))
    return max(candidates)


def reward(delta: torch.Tensor, ratio: torch.Tensor, inconsistent: torch.Tensor, *, lam: float, kind: str,
           empty: float, full_ratio: float, extra: float = 0.0, idle: torch.Tensor | None = None,
           idle_weight: float = 0.0, max_idle: int = 0, use_weight: float = 0.0,
           global_max: Callable[[float], float] | None = None) -> torch.Tensor:
    """Per-example reward (lower is better) of a batch of sampled architectures.

    ``delta`` per-example loss, ``ratio`` sampled cost / budget, ``inconsistent`` the samples
    whose output is not reached, ``empty`` :func:`empty_loss`, ``full_ratio`` full cost /
    budget, ``extra`` the user's additional inconsistency penalty (>= 0). ``idle`` counts each
    sample's idle edges (switched on, but their destination does not reach the output: they
    compute nothing the output uses); each costs ``idle_weight``, a tie-break that lets Γ decide
    edges no loss or cost can tell apart. It is part of E + λ·P in the bound above, as
    ``idle_weight * max_idle`` (``max_idle``: the number of edges). ``use_weight`` is
    :func:`budget_use`'s weight; as it is <= 0 it leaves the bound as it is. ``global_max`` takes
    a bound to the largest over the (global, under torchrun) batch: every process's floor is then
    the same, above every consistent sample of every process."""
    ratio = ratio.to(delta.dtype)
    consistent = delta.detach().clamp(max=empty) + lam * penalty(ratio, kind) + budget_use(ratio, use_weight)
    if idle is not None and idle_weight:
        consistent = consistent + idle_weight * idle.to(consistent.dtype)
    bound = penalty_bound(full_ratio, 1.0, kind, ratio[~inconsistent])
    if global_max is not None:
        bound = global_max(bound)
    floor = empty + lam * bound + idle_weight * max_idle + MARGIN + extra
    return torch.where(inconsistent, torch.full_like(consistent, floor), consistent)


def advantage(reward: torch.Tensor, mean, eps: float = 1e-6) -> torch.Tensor:
    """The reward minus the batch mean (the baseline), divided by the batch's standard deviation:
    the step of Γ then does not depend on the scale of the loss, λ or the costs (search/gates.py).
    ``mean(x)`` is the mean of a per-example tensor over the (global, under torchrun) batch."""
    centred = reward - mean(reward)
    std = mean(centred * centred).clamp(min=0).sqrt()
    return centred / (std + eps)
