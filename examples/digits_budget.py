"""Evidence for budgeted training: cnf.bsn with a small C on the embedded digits, a FLOPs budget
at 30% of the full network, against the full network trained for the same epochs.

    python examples/digits_budget.py [--epochs 30] [--out runs/digits-budget]

A few minutes on 2 CPU cores. Prints the budgeted run's deterministic cost against the budget,
the mean entropy of Γ, and both test accuracies."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bsnc.codegen.architecture import prune  # noqa: E402
from bsnc.costs.analytic import FlopsCost  # noqa: E402
from bsnc.export.exporter import pruned_source  # noqa: E402
from bsnc.lang.frontend import network_from_program  # noqa: E402
from bsnc.lang.program import load_program  # noqa: E402
from bsnc.search.train import TrainConfig, train  # noqa: E402

DEFINES = {"W": "4", "C": "16", "size": "8", "in_channels": "1"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--fraction", type=float, default=0.3, help="budget as a fraction of the full FLOPs")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "digits-budget")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)

    program = load_program(ROOT / "fabrics" / "cnf.bsn")
    network = network_from_program(program, DEFINES)
    full = FlopsCost(network).full()
    budget = args.fraction * full

    # the full network as a static .bsn: every edge fixed
    static = prune(network, torch.ones(len(network.edges), dtype=torch.bool))
    static_path = args.out / "cnf_full.bsn"
    static_path.write_text(pruned_source(network, static, program, ["cnf with every edge kept"]))

    common = dict(data="digits", cost="flops", epochs=args.epochs, seed=args.seed, device="cpu", progress=False)
    budgeted = train(TrainConfig(file=str(ROOT / "fabrics" / "cnf.bsn"), defines=DEFINES, budget=f"{budget:.0f}",
                                 warmup_epochs=3, run_dir=str(args.out / "budgeted"), **common))
    baseline = train(TrainConfig(file=str(static_path), run_dir=str(args.out / "full"), **common))

    final = budgeted.history[-1]
    report = {
        "full_flops": full,
        "budget_flops": budget,
        "deterministic_flops": final.deterministic_cost,
        "cost_over_budget": final.deterministic_cost / budget,
        "entropy_bits": final.entropy,
        "edges_kept": final.edges_kept,
        "test_acc_budgeted": budgeted.test_acc,
        "test_acc_full": baseline.test_acc,
        "epochs": args.epochs,
    }
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(f"full network         {full:,.0f} MACs, test accuracy {baseline.test_acc * 100:.2f}%")
    print(f"budget (30%)         {budget:,.0f} MACs")
    print(f"budgeted, final      {final.deterministic_cost:,.0f} MACs = {report['cost_over_budget']:.2f} x budget, "
          f"test accuracy {budgeted.test_acc * 100:.2f}%")
    print(f"mean entropy of Γ    {final.entropy:.3f} bits ({final.edges_kept} edges kept)")
    print(f"wrote {args.out / 'report.json'}")


if __name__ == "__main__":
    main()
