"""Does the budgeted search honour its budget? cnf.bsn (W=4, C=16, 8x8, one channel) on the
embedded digits, FLOPs budgets of 10, 20, 30 and 50% of the full network, three seeds each.

    python examples/budget_sweep.py [--epochs 30] [--warmup 3] [--jobs 2] [--out runs/budget-sweep]

Checks, and prints as a Markdown table (also written to OUT/table.md, the numbers to
OUT/report.json):
(a) no run collapses: the final deterministic architecture reaches the output;
(b) its cost is within the budget in every run;
(c) where the budget binds it is used: median over seeds of final cost / budget >= 0.6;
(d) H(Γ) after the first search epoch is more than half its initial value, and below 0.1 bit
    at the end.
Exits 1 when a check fails. Each run is an ordinary `bsnc train` run directory under OUT."""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFINES = {"W": "4", "C": "16", "size": "8", "in_channels": "1"}
FRACTIONS = (0.1, 0.2, 0.3, 0.5)
SEEDS = (0, 1, 2)


def _run(job: dict) -> dict:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    from bsnc.search.train import TrainConfig, Trainer

    torch.set_num_threads(1)
    config = TrainConfig(file=str(ROOT / "fabrics" / "cnf.bsn"), defines=DEFINES, data="digits", cost="flops",
                         budget=f"{job['budget']:.0f}", epochs=job["epochs"], warmup_epochs=job["warmup"],
                         seed=job["seed"], device="cpu", progress=False, run_dir=job["run_dir"])
    trainer = Trainer(config)
    result = trainer.run()
    initial = trainer.initial_entropy
    search = [m for m in result.history if m.phase == "search"]
    final = result.history[-1]
    return {
        **job,
        "final_cost": final.deterministic_cost,
        "consistent": final.consistent,
        "inconsistent_epochs": sum(not m.consistent for m in search),
        # the deterministic architecture is not meant to settle in the first search epochs
        "first_within_epoch": next((m.epoch for m in search if m.within_budget), None),
        "cost_over_budget": final.deterministic_cost / job["budget"],
        "entropy_initial": initial,
        "entropy_first_search_epoch": search[0].entropy,
        "entropy_final": final.entropy,
        "cheapest": trainer.cheapest.cost if trainer.cheapest else None,
        "test_acc_shipped": result.test_acc,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "budget-sweep")
    args = parser.parse_args()

    from bsnc.costs.analytic import FlopsCost
    from bsnc.lang.frontend import load_network

    full = FlopsCost(load_network(ROOT / "fabrics" / "cnf.bsn", DEFINES)).full()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    jobs = [{"fraction": f, "budget": f * full, "seed": s, "epochs": args.epochs, "warmup": args.warmup,
             "run_dir": str(args.out / f"b{round(f * 100)}-s{s}")} for f in FRACTIONS for s in SEEDS]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(_run, jobs))

    lines = [f"full network {full:,.0f} MACs; {args.epochs} epochs ({args.warmup} warm-up), 3 seeds per budget", "",
             "| budget | seed | final MACs | cost/budget | consistent | H(Γ) initial | H after 1st search epoch "
             "| H final | within budget from epoch | test acc (shipped) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['fraction']:.0%} ({r['budget']:,.0f}) | {r['seed']} | {r['final_cost']:,.0f} | "
                     f"{r['cost_over_budget']:.2f} | {'yes' if r['consistent'] else 'NO'} | {r['entropy_initial']:.3f} | "
                     f"{r['entropy_first_search_epoch']:.3f} | {r['entropy_final']:.3f} | {r['first_within_epoch']} | "
                     f"{r['test_acc_shipped'] * 100:.1f}% |")
    checks = {
        "(a) no collapse": all(r["consistent"] for r in rows),
        "(b) final cost <= budget": all(r["cost_over_budget"] <= 1.0 for r in rows),
        "(c) median cost/budget >= 0.6 at each budget": all(
            statistics.median(r["cost_over_budget"] for r in rows if r["fraction"] == f) >= 0.6 for f in FRACTIONS),
        "(d) H after epoch 1 > H0/2": all(r["entropy_first_search_epoch"] > r["entropy_initial"] / 2 for r in rows),
        "(d) H final < 0.1 bit": all(r["entropy_final"] < 0.1 for r in rows),
    }
    medians = ", ".join(
        f"{f:.0%}: {statistics.median(r['cost_over_budget'] for r in rows if r['fraction'] == f):.2f}"
        for f in FRACTIONS)
    lines += ["", f"median cost/budget per budget: {medians}", ""]
    lines += [f"- {name}: {'pass' if ok else 'FAIL'}" for name, ok in checks.items()]
    table = "\n".join(lines) + "\n"
    (args.out / "table.md").write_text(table)
    (args.out / "report.json").write_text(json.dumps({"full": full, "rows": rows, "checks": checks}, indent=2,
                                                     default=lambda v: None if isinstance(v, float) and math.isnan(v) else v))
    print(table)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
