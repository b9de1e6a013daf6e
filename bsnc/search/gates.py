"""The optimiser of the edge probabilities Γ, with a step defined per epoch.

The REINFORCE gradient of a gate logit is the batch mean of A·(h - γ), where A is the reward's
advantage normalised to zero mean and unit standard deviation over the batch
(:func:`bsnc.search.reward.advantage`) and h the sampled gate. By Cauchy-Schwarz its size is at
most sqrt(mean A²)·sqrt(mean (h - γ)²) <= 1 · 1/2, whatever λ, the loss or the costs. Plain SGD
with the step ``path_lr / steps_per_epoch`` therefore moves a logit by at most ``path_lr / 2``
in one epoch, on a data set of 1,000 examples or of 50,000, at any batch size: with the default
2, a logit that starts at 3 (γ = 0.95) needs at least 3 epochs to reach 0 (γ = 0.5), and much
longer unless every sample agrees, so the architecture cannot settle in the first search epoch.
Edges that the reward separates clearly (the expensive ones under a tight budget) move first.

Some edges the reward cannot separate: an edge whose architecture is within budget either way
and whose loss is the same either way, or an edge whose source is never reached (it is never
drawn, so REINFORCE never moves it). To let Γ converge (the paper's Figure 4: H(Γ) falls to 0),
the search loss adds β·H(Γ), the summed entropy of every gate and choice group in nats
(``StochasticSuperNetwork.entropy``), with β rising linearly from 0
at the first search epoch to ``--entropy-weight`` at the last: early in the search it does
nothing; late, it settles each undecided edge on the side it leans to.
"""

from __future__ import annotations

import torch

PATH_LR = 20.0  # a logit moves at most PATH_LR / 2 per epoch (from the reward)
ENTROPY_WEIGHT = 0.3  # β at the last epoch


def gate_optimizer(gate_logits: torch.nn.Parameter, path_lr: float, steps_per_epoch: int) -> torch.optim.Optimizer:
    """SGD over the gate logits, each step ``path_lr / steps_per_epoch``."""
    return torch.optim.SGD([gate_logits], lr=path_lr / max(steps_per_epoch, 1), momentum=0.0)
