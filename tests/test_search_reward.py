"""The reward, its advantage and the Γ step: an inconsistent sample is always worse than every
consistent one, and the step of a gate logit per epoch is bounded whatever the reward's scale."""

from __future__ import annotations

import math

import pytest
import torch

from bsnc.search import reward as rewards
from bsnc.search.gates import gate_optimizer


def _batch_mean(v: torch.Tensor) -> torch.Tensor:
    return v.mean()


def test_an_inconsistent_sample_is_worse_than_every_consistent_one_whatever_lambda_budget_and_cost():
    gen = torch.Generator().manual_seed(0)
    for trial in range(500):
        batch = int(torch.randint(2, 40, (1,), generator=gen))
        classes = int(torch.randint(2, 1000, (1,), generator=gen))
        lam = float(torch.rand(1, generator=gen)) * 10 ** float(torch.randint(-3, 4, (1,), generator=gen))
        full = float(torch.rand(1, generator=gen) * 1e9 + 1)
        budget = full * float(torch.rand(1, generator=gen) * 2 + 1e-4)  # below and above the full cost
        kind = ["hinge", "abs"][trial % 2]
        # costs anywhere up to twice the full cost (a non-monotone cost may exceed it)
        cost = torch.rand(batch, generator=gen, dtype=torch.float64) * full * 2
        delta = torch.rand(batch, generator=gen) * 50  # losses far above ln K too
        inconsistent = torch.rand(batch, generator=gen) < 0.3
        inconsistent[0], inconsistent[1] = True, False
        cost[inconsistent] = 0.0
        idle = torch.randint(0, 30, (batch,), generator=gen)
        extra = float(torch.rand(1, generator=gen)) * (trial % 3)
        r = rewards.reward(delta, cost / budget, inconsistent, lam=lam, kind=kind,
                           empty=rewards.empty_loss(classes), full_ratio=full / budget, extra=extra,
                           idle=idle, idle_weight=0.01 * (trial % 4), max_idle=30,
                           use_weight=float(torch.rand(1, generator=gen)) * (trial % 5))
        assert r[inconsistent].min() > r[~inconsistent].max(), (trial, lam, budget, full, kind)
        a = rewards.advantage(r, _batch_mean)
        assert a[inconsistent].min() > a[~inconsistent].max(), "the advantage keeps the order"


def test_the_inconsistent_penalty_option_raises_the_floor():
    delta = torch.tensor([0.1, 0.2])
    inconsistent = torch.tensor([True, False])
    ratio = torch.tensor([0.0, 1.5])
    low, high = (rewards.reward(delta, ratio, inconsistent, lam=2.0, kind="hinge", empty=math.log(10),
                                full_ratio=3.0, extra=x) for x in (0.0, 5.0))
    assert float(high[0]) == pytest.approx(float(low[0]) + 5.0) and high[1] == low[1]
    assert float(low[0]) == pytest.approx(math.log(10) + 2.0 * 2.0 + rewards.MARGIN)  # E + λ·penalty(full) + margin


def test_the_floor_takes_the_largest_bound_of_every_process():
    """Under torchrun the advantage compares every process's samples: a process whose own batch
    holds only cheap samples still floors its inconsistent ones above another's costliest."""
    delta, inconsistent = torch.tensor([0.1, 0.2]), torch.tensor([True, False])
    here = rewards.reward(delta, torch.tensor([0.0, 0.5]), inconsistent, lam=2.0, kind="hinge",
                          empty=math.log(10), full_ratio=3.0)
    elsewhere_costliest = 9.0  # another process sampled a (non-monotone) cost at 9x the budget
    merged = rewards.reward(delta, torch.tensor([0.0, 0.5]), inconsistent, lam=2.0, kind="hinge",
                            empty=math.log(10), full_ratio=3.0,
                            global_max=lambda bound: max(bound, elsewhere_costliest - 1))
    assert float(here[0]) == pytest.approx(math.log(10) + 2.0 * 2.0 + rewards.MARGIN)
    assert float(merged[0]) == pytest.approx(math.log(10) + 2.0 * 8.0 + rewards.MARGIN)
    assert merged[1] == here[1]


def test_the_empty_prediction_has_the_loss_of_ln_k():
    out = torch.zeros(4, 7)
    loss = torch.nn.functional.cross_entropy(out, torch.tensor([0, 1, 2, 6]), reduction="none")
    assert torch.allclose(loss, torch.full((4,), rewards.empty_loss(7)))


def test_a_gate_logit_moves_at_most_half_the_path_lr_per_epoch_whatever_the_reward_scale():
    gen = torch.Generator().manual_seed(1)
    for steps, scale in [(3, 1e-3), (20, 1.0), (700, 1e4)]:
        logits = torch.nn.Parameter(torch.full((5,), 3.0))
        opt = gate_optimizer(logits, path_lr=2.0, steps_per_epoch=steps)
        start = logits.detach().clone()
        for _ in range(steps):
            gamma = torch.sigmoid(logits)
            h = (torch.rand(64, 5, generator=gen) < gamma.detach()).float()
            log_prob = (h * torch.nn.functional.logsigmoid(logits) + (1 - h) * torch.nn.functional.logsigmoid(-logits)).sum(1)
            # the worst case: a reward perfectly aligned with the first gate
            r = scale * h[:, 0] + torch.rand(64, generator=gen) * 1e-9
            loss = (rewards.advantage(r, _batch_mean).detach() * log_prob).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        moved = (logits.detach() - start).abs()
        assert moved.max() <= 1.0 + 1e-4, (steps, scale, moved)
        assert moved[0] > 0.1, "a clear signal does move its gate"


def test_using_the_budget_helps_only_within_it():
    ratio = torch.tensor([0.2, 0.9, 1.0, 1.0001, 3.0])
    use = rewards.budget_use(ratio, 0.1)
    assert use[0] > use[1] > use[2], "within budget, using more of it is better"
    assert (use[3:] == 0).all() and use[:3].max() <= 0, "over budget, never better than within"
    total = rewards.reward(torch.zeros(5), ratio, torch.zeros(5, dtype=torch.bool), lam=2.0, kind="hinge",
                           empty=math.log(10), full_ratio=3.0, use_weight=0.1)
    assert total[:3].max() < total[3:].min(), "with the hinge, every architecture within budget beats every one over"


def test_epoch_warnings_name_an_inconsistent_or_over_budget_architecture():
    from bsnc.costs.analytic import FlopsCost
    from bsnc.lang.frontend import load_network
    from bsnc.search.warnings import epoch_warnings
    from tests.helpers import FABRICS

    cost = FlopsCost(load_network(FABRICS / "cnf.bsn", {"W": "2", "C": "2", "size": "4", "in_channels": "1"}))
    assert [*epoch_warnings(cost, 3, False, 0.0, 100.0)] == [
        "epoch 3: the deterministic architecture (γ > 0.5) does not reach the output; it is no model"]
    assert [*epoch_warnings(cost, 4, True, 150.0, 100.0)] == [
        "epoch 4: the deterministic architecture costs 150, over the budget 100"]
    assert [*epoch_warnings(cost, 5, True, 90.0, 100.0)] == []
    # two costs that the usual three digits show alike are shown with the digits that tell them apart
    assert [*epoch_warnings(cost, 6, True, 1932.0, 1927.2)] == [
        "epoch 6: the deterministic architecture costs 1,932, over the budget 1,927"]
    assert cost.format_apart(1932.0, 1932.0) == ("1.93 k", "1.93 k")
