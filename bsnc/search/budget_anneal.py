"""The budget the reward sees during the search: lowered from the largest architecture's cost
to ``--budget``.

With the final budget from the first search epoch, every sample of a super network far over
budget is penalised, and the one switch that brings most samples within budget wins the race:
an edge on which a large part of the network depends (in a CNF, the last edge into the output
layer) is cut within an epoch or two, the part behind it goes idle, and the search never
returns, whatever budget is left (the digits CNF of ``examples/budget_sweep.py`` ended at 56% of
a 30% budget this way). While the budget is close to the sampled costs, instead, any expensive
edge fixes an over-budget sample, so the edges share the pressure and the architecture shrinks a
step at a time.

The reward's budget at search epoch k (1 at the first) therefore falls geometrically, over
``span`` epochs, from the largest architecture's cost F (costs/largest.py: the full super
network's when it has no choice groups) to the budget B,

    B · (F / B) ** (1 − k / span),

and is B from epoch ``span`` on. By default (:func:`anneal_span`) it falls by at most
:data:`MAX_STEP` per epoch, the rate at which Γ, moving at most ``--path-lr / 2`` logits an epoch
(search/gates.py), follows it: on the digits CNF at 30%, a budget falling 1.19× an epoch was
used to 80% (also at 1.22× and 1.27×), one falling 1.49× an epoch was not (56%), and at 1.35×
one seed of two was not. Annealing takes at most :data:`MAX_SHARE` of the search epochs, so that
the rest can settle at B; a run too short to anneal slower than :data:`WARN_STEP` an epoch says
so before training (:func:`anneal_warning`).

The schedule depends on the epoch alone, so a resumed run anneals as an uninterrupted one; the
trainer resolves ``span`` once and keeps it in its checkpoints, so that ``--resume --epochs N``
does not raise a budget already reached.
Warnings, model selection and the exit status use B itself (search/warnings.py,
search/selection.py).
"""

from __future__ import annotations

import math

MAX_STEP = 1.2  # the reward's budget falls by at most this factor per epoch (by default)
MAX_SHARE = 0.7  # of the search epochs, at most, spent annealing (by default)
WARN_STEP = 1.3  # faster than this an epoch, a run is warned about (1.35 already failed, see above)


def needed_span(budget: float, full_cost: float) -> int:
    """Search epochs for the budget to fall from ``full_cost`` to ``budget`` at :data:`MAX_STEP`."""
    if not 0 < budget < full_cost:
        return 0
    return math.ceil(math.log(full_cost / budget) / math.log(MAX_STEP) - 1e-9)


def anneal_span(budget: float, full_cost: float, search_epochs: int, requested: int | None = None) -> int:
    """How many search epochs the reward's budget takes to reach ``budget``: ``requested``
    (``--budget-anneal``) when given, else :func:`needed_span` capped at :data:`MAX_SHARE` of
    ``search_epochs``. A span of at most 1 does not anneal."""
    if requested is not None:
        return requested
    return min(needed_span(budget, full_cost), math.floor(MAX_SHARE * max(search_epochs, 0) + 1e-9))


def search_budget(budget: float, full_cost: float, search_epoch: int, span: int) -> float:
    """The budget of the reward at the 1-based ``search_epoch`` of a ``span``-epoch annealing:
    it falls by (F / B) ** (1 / span) an epoch, and reaches B at epoch ``span``."""
    if span <= 1 or search_epoch >= span or not 0 < budget < full_cost:
        return budget
    return budget * (full_cost / budget) ** (1 - max(search_epoch, 1) / span)


def anneal_warning(budget: float, full_cost: float, span: int, reference: str = "the full cost") -> str | None:
    """A sentence when the default ``span`` makes the reward's budget fall faster than
    :data:`WARN_STEP` an epoch: the search epochs are too few (``--budget-anneal N`` is the user's
    own choice, and is not warned about). ``reference`` names what ``full_cost`` is."""
    needed = needed_span(budget, full_cost)
    if span >= needed or (full_cost / budget) ** (1 / max(span, 1)) <= WARN_STEP:
        return None
    epochs = math.ceil(needed / MAX_SHARE - 1e-9)
    how = (f"over {span} it falls {(full_cost / budget) ** (1 / span):.2f}x an epoch" if span > 1
           else "it falls to the budget at once")
    return (f"the budget is {full_cost / budget:.1f}x below {reference}: lowering the reward's budget "
            f"{MAX_STEP}x an epoch needs {needed} search epochs, and {how}; the search may cut the network "
            f"early and leave budget unused (about {epochs} search epochs give it time: see --epochs, "
            "--budget-anneal and docs/search.md)")
