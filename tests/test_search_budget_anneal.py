"""The reward's budget falls from the full cost to --budget over the first search epochs
(search/budget_anneal.py): the schedule, its defaults and warning, what a run records, and the
search it fixes (a CNF whose last edge was cut in the first epochs, leaving the budget unused)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from bsnc.cli import main
from bsnc.search.budget_anneal import (
    MAX_SHARE,
    MAX_STEP,
    anneal_span,
    anneal_warning,
    needed_span,
    search_budget,
)
from bsnc.search.train import TrainConfig, Trainer
from tests.helpers import FABRICS


@pytest.mark.parametrize("budget,span", [(0.1, 13), (0.3, 7), (0.5, 4), (0.01, 3)])
def test_the_budget_falls_geometrically_and_reaches_the_budget_at_the_last_annealing_epoch(budget, span):
    full = 1.0
    values = [search_budget(budget, full, k, span) for k in range(1, span + 3)]
    steps = [full / values[0]] + [values[k] / values[k + 1] for k in range(span - 1)]
    assert steps == pytest.approx([(full / budget) ** (1 / span)] * span), "one factor per epoch"
    assert values[span - 1:] == [budget] * 3, "at the budget from epoch `span` on"


@pytest.mark.parametrize("budget,full,span", [(1.0, 1.0, 5), (2.0, 1.0, 5), (0.1, 1.0, 1), (0.1, 1.0, 0)])
def test_no_annealing_without_room_or_span(budget, full, span):
    assert [search_budget(budget, full, k, span) for k in (1, 2, 9)] == [budget] * 3


def test_the_default_span_falls_at_most_max_step_an_epoch_over_at_most_max_share_of_the_search():
    for budget in (0.9, 0.5, 0.3, 0.1, 0.01):
        needed = needed_span(budget, 1.0)
        assert (1 / budget) ** (1 / needed) <= MAX_STEP + 1e-12, "no faster than MAX_STEP"
        assert needed == 1 or (1 / budget) ** (1 / (needed - 1)) > MAX_STEP, "and no slower than it needs"
        assert anneal_span(budget, 1.0, 100) == needed
        assert anneal_span(budget, 1.0, 5) == min(needed, math.floor(MAX_SHARE * 5))
    assert anneal_span(0.1, 1.0, 100, requested=3) == 3 and anneal_span(0.1, 1.0, 100, requested=0) == 0
    assert anneal_span(2.0, 1.0, 100) == 0 and needed_span(1.0, 1.0) == 0


def test_a_run_too_short_to_anneal_is_warned_about_and_a_long_enough_one_is_not():
    assert anneal_warning(0.3, 1.0, span=7) is None
    assert anneal_warning(0.3, 1.0, span=5) is None, "1.27x an epoch: slower than WARN_STEP, not warned"
    assert anneal_warning(0.8, 1.0, span=0) is None, "1.25x at once"
    short = anneal_warning(0.3, 1.0, span=3)
    assert short is not None and "3.3x below the full cost" in short and "needs 7 search epochs" in short
    assert "falls 1.49x an epoch" in short and "about 10 search epochs" in short
    assert "falls to the budget at once" in anneal_warning(0.7, 1.0, span=1)


def test_epoch_warnings_wait_for_the_end_of_the_annealing_to_call_an_architecture_over_budget():
    from bsnc.costs.analytic import FlopsCost
    from bsnc.lang.frontend import load_network
    from bsnc.search.warnings import epoch_warnings

    cost = FlopsCost(load_network(FABRICS / "cnf.bsn", {"W": "2", "C": "2", "size": "4", "in_channels": "1"}))
    assert [*epoch_warnings(cost, 4, True, 250.0, 100.0, search_budget=200.0)] == [], \
        "over budget while the search budget anneals: the plan, shown on the epoch line"
    assert [*epoch_warnings(cost, 9, True, 150.0, 100.0, search_budget=100.0)] == [
        "epoch 9: the deterministic architecture costs 150, over the budget 100"]
    assert [*epoch_warnings(cost, 4, False, 0.0, 100.0, search_budget=200.0)] == [
        "epoch 4: the deterministic architecture (γ > 0.5) does not reach the output; it is no model"]


# examples/budget_sweep.py's space; its last edge n[3][2] -> n[3][3] carries most of the cost
SWEEP = {"W": "4", "C": "16", "size": "8", "in_channels": "1"}


def _search(tmp_path: Path, name: str, anneal: int | None) -> list[dict]:
    probe = Trainer(TrainConfig(file=str(FABRICS / "cnf.bsn"), defines=SWEEP, data="digits", budget="1",
                                device="cpu", run_dir=str(tmp_path / "probe"), progress=False))
    config = TrainConfig(file=str(FABRICS / "cnf.bsn"), defines=SWEEP, data="digits", cost="flops",
                         budget=f"{0.3 * probe.full_cost:.0f}", epochs=12, warmup_epochs=2, seed=0, device="cpu",
                         run_dir=str(tmp_path / name), progress=False, quiet=True, budget_anneal=anneal)
    Trainer(config).run()
    return [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]


def test_annealing_keeps_the_search_from_cutting_the_network_and_leaving_the_budget_unused(tmp_path):
    annealed = _search(tmp_path, "annealed", None)
    budget = annealed[0]["budget"]
    search = [row["search_budget"] for row in annealed]
    assert search[:2] == [None, None], "no reward in the warm-up"
    assert all(a > b for a, b in zip(search[2:8], search[3:9])) and search[8:] == [budget] * 4, \
        "7 annealing epochs (3.3x at <= 1.2x an epoch), then the budget"
    assert search[2] > 0.8 * annealed[0]["deterministic_cost"], "it starts near the full cost"
    final = annealed[-1]
    assert final["consistent"] and final["deterministic_cost"] <= budget
    assert final["deterministic_cost"] >= 0.6 * budget, "the budget is used"

    at_once = _search(tmp_path, "at-once", 0)
    assert all(row["search_budget"] in (None, budget) for row in at_once)
    assert at_once[-1]["deterministic_cost"] < annealed[-1]["deterministic_cost"], \
        "without annealing the last edge is cut and much of the budget left"


def test_budget_anneal_on_the_command_line_and_in_config_json(tmp_path):
    bad = CliRunner().invoke(main, ["train", str(FABRICS / "cnf.bsn"), "--budget-anneal", "-1"])
    assert bad.exit_code == 2 and "--budget-anneal" in bad.output and "-1" in bad.output
    with pytest.raises(Exception, match="--budget-anneal 2.5: expected a number of epochs >= 0"):
        Trainer(TrainConfig(file=str(FABRICS / "cnf.bsn"), defines=SWEEP, budget="30%", budget_anneal=2.5,
                            device="cpu", run_dir=str(tmp_path / "x"), progress=False))
    defines = sum((["-D", f"{k}={v}"] for k, v in SWEEP.items()), [])

    def train(name: str, *options: str):
        return CliRunner().invoke(main, ["train", str(FABRICS / "cnf.bsn"), *defines, "--budget", "10%", "--epochs",
                                         "6", "--device", "cpu", "--quiet", "--run-dir", str(tmp_path / name), *options])

    auto = train("auto")
    assert auto.exit_code == 3, "too short a search for a budget at a tenth of the full cost: " + auto.output
    assert json.loads((tmp_path / "auto" / "config.json").read_text())["config"]["budget_anneal"] is None
    assert "warning: the budget is 10.0x below the full cost" in auto.output and "over 3 it falls 2.15x" \
        in auto.output
    chosen = train("chosen", "--budget-anneal", "2")
    assert json.loads((tmp_path / "chosen" / "config.json").read_text())["config"]["budget_anneal"] == 2
    assert "below the full cost" not in chosen.output, "the user's own span is not warned about"


def test_a_resumed_longer_run_keeps_its_span_and_never_raises_a_budget_it_reached(tmp_path):
    def config(epochs: int, resume: bool) -> TrainConfig:
        return TrainConfig(file=str(FABRICS / "cnf.bsn"), defines=SWEEP, data="digits", budget="30%", epochs=epochs,
                           warmup_epochs=1, device="cpu", run_dir=str(tmp_path / "run"), progress=False, quiet=True,
                           resume=resume)

    Trainer(config(5, False)).run()
    longer = Trainer(config(9, True))
    assert longer.anneal_span == 2 == min(7, int(0.7 * 4)), "the span of the 5-epoch run, not of a 9-epoch one"
    longer.run()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    budget = rows[0]["budget"]
    assert rows[1]["search_budget"] > budget and [r["search_budget"] for r in rows[2:]] == [budget] * 7


def test_a_run_from_before_annealing_resumes_with_the_final_budget(tmp_path):
    import torch

    run = tmp_path / "run"
    base = dict(file=str(FABRICS / "cnf.bsn"), defines=SWEEP, data="digits", budget="30%", warmup_epochs=1,
                device="cpu", run_dir=str(run), progress=False, quiet=True)
    Trainer(TrainConfig(epochs=2, **base)).run()
    state = torch.load(run / "ckpt.pt", weights_only=False)
    del state["anneal_span"], state["config"]["budget_anneal"]  # as written before annealing existed
    torch.save(state, run / "ckpt.pt")
    resumed = Trainer(TrainConfig(epochs=12, resume=True, **base))
    assert resumed.anneal_span == 0 and resumed.search_budget(5) == resumed.budget


def test_more_annealing_epochs_than_search_epochs_is_refused(tmp_path):
    from bsnc.errors import UsageError

    with pytest.raises(UsageError, match=r"--budget-anneal 9: the run has 7 search epochs \(--epochs 8, 1 of "
                                         r"warm-up\); the reward's budget would never reach --budget"):
        Trainer(TrainConfig(file=str(FABRICS / "cnf.bsn"), defines=SWEEP, budget="10%", epochs=8, warmup_epochs=1,
                            budget_anneal=9, device="cpu", run_dir=str(tmp_path / "x"), progress=False))
