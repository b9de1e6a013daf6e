"""The main job, end to end: `make demo`.

Compiles fabrics/cnf_w8.bsn with overrides that fit the embedded digits, trains it under a
FLOPs budget, exports the pruned .bsn, weights, plain PyTorch file and diagram, and prints where
they are with a table: full vs pruned cost, accuracy and measured inference latency."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "demo-out"
FABRIC = "fabrics/cnf_w8.bsn"
DEFINES = ["-D", "C=16", "-D", "size=8", "-D", "in_channels=1"]
BSNC = [sys.executable, "-m", "bsnc"]


def run(args: list[str]) -> None:
    print(f"\n$ bsnc {' '.join(shlex.quote(a) for a in args)}", flush=True)
    subprocess.run(BSNC + args, cwd=ROOT, check=True)


def main() -> None:
    import torch

    sys.path.insert(0, str(ROOT))
    from bsnc.api import compile_network
    from bsnc.costs.analytic import FlopsCost, ParamsCost
    from bsnc.costs.latency import time_callable
    from bsnc.lang.frontend import load_network

    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    network = load_network(ROOT / FABRIC, {"C": 16, "size": 8, "in_channels": 1})
    full_flops = FlopsCost(network).full()
    budget = 0.3 * full_flops
    print(f"{FABRIC}: {len(network.edges)} edges, {full_flops / 1e6:.2f} M MACs; budget 30% = {budget / 1e6:.2f} M")

    run(["compile", FABRIC, *DEFINES, "-o", str(OUT / "cnf_w8.py")])
    run(["train", FABRIC, *DEFINES, "--data", "digits", "--cost", "flops", "--budget", f"{budget / 1e6:.3f}M",
         "--epochs", "24", "--warmup-epochs", "3", "--run-dir", str(OUT / "run")])
    run(["export", str(OUT / "run"), "--prune", "-o", str(OUT / "export")])

    from bsnc.search.checkpoint import find_checkpoint, load_checkpoint

    pruned = load_network(OUT / "export" / "cnf_w8_pruned.bsn")
    # the exported model is the checkpoint export chose (best.pt: best validation within budget)
    chosen = find_checkpoint(OUT / "run", "best.pt")
    final = load_checkpoint(chosen)["history"][-1]

    torch.set_num_threads(2)
    x = torch.randn(1, 1, 8, 8)
    super_net = compile_network(network)().eval()
    super_net.set_mode("full")
    static = compile_network(pruned)().eval()
    static.load_state_dict(torch.load(OUT / "export" / "cnf_w8_pruned.pt", weights_only=True))
    device = torch.device("cpu")
    full_ms = time_callable(lambda: super_net(x), device, warmup=10, repeats=50)
    pruned_ms = time_callable(lambda: static(x), device, warmup=10, repeats=50)

    rows = [
        ("", "full super network", "pruned (exported)"),
        ("edges", f"{len(network.edges)}", f"{len(pruned.edges)}"),
        ("MACs (flops cost)", f"{full_flops / 1e6:.3f} M", f"{FlopsCost(pruned).full() / 1e6:.3f} M"),
        ("parameters", f"{ParamsCost(network).full() / 1e3:.1f} k", f"{ParamsCost(pruned).full() / 1e3:.1f} k"),
        ("test accuracy", "(not trained alone)", f"{final['test_acc'] * 100:.2f}% (epoch {final['epoch']})"),
        ("latency, batch 1, CPU", f"{full_ms:.2f} ms", f"{pruned_ms:.2f} ms"),
    ]
    print("\nartefacts:")
    for path in sorted(p for p in (OUT / "export").iterdir() if not p.name.startswith(".")):  # not the ledger
        print(f"  {path.relative_to(ROOT)}")
    print(f"  {(OUT / 'run').relative_to(ROOT)}/  (config.json, metrics.jsonl, ckpt.pt, best.pt, pareto/)")
    print()
    width = max(len(r[0]) for r in rows)
    for name, a, b in rows:
        print(f"  {name.ljust(width)}  {a:>20}  {b:>20}")
    print(f"\nbudget {budget / 1e6:.3f} M MACs; mean entropy of Γ {final['entropy']:.3f} bits; "
          f"{final['edges_kept']} of {len(network.edges)} edges kept")


if __name__ == "__main__":
    main()
