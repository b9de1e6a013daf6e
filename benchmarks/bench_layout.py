"""Channels-last against contiguous maps: the measurement behind `bsnc train`'s default layout.

    python benchmarks/bench_layout.py [--device cuda] [--rounds 3] [--fabrics cnf_w8 unet ...]

For each shipped fabric (at the small sizes below), it times a training step of the stochastic
module (cross-entropy plus the REINFORCE term, batch 64) with every gate at γ = 0.95 and at
γ = 0.5, once with contiguous maps and once channels-last. Each measurement runs in its own
process (processes share oneDNN's primitive cache otherwise), the two layouts alternate, and
the median over ``--rounds`` of the paired ratio channels-last / contiguous is printed: below 1,
channels-last is faster.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BATCH = 64
# fabric: -D overrides that keep a step under a second on two CPU cores
FABRICS = {
    "cnf_w8": {"C": 16},
    "resnet_fabric": {"n": 1, "width": 16},
    "densenet": {"L": 4, "growth": 12},
    "unet": {"depth": 3, "C": 16, "size": 64},
    "darts": {"cells": 3, "C": 16},
    "proxyless": {"n": 1},
}
GAMMAS = (0.95, 0.5)
LAYOUTS = {"contiguous": torch.contiguous_format, "channels-last": torch.channels_last}


def child(args: argparse.Namespace) -> None:
    from bsnc.api import compile_network
    from bsnc.lang.frontend import load_network

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    network = load_network(ROOT / "fabrics" / f"{args.fabric}.bsn", FABRICS[args.fabric])
    torch.manual_seed(0)
    fmt = LAYOUTS[args.layout]
    core = compile_network(network)().train().to(device, memory_format=fmt)
    core.memory_format = fmt
    core.set_mode("sample")
    core.reset_gates(torch.logit(torch.tensor(args.gamma)).item())
    x = torch.randn(BATCH, *network.layer(network.input).shape, device=device).contiguous(memory_format=fmt)
    out_shape = network.layer(network.output).shape
    y = torch.randint(0, out_shape[0], (BATCH, *out_shape[1:]), device=device)

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(core(x), y, reduction="none")
        loss = loss.flatten(1).mean(1) if loss.dim() > 1 else loss
        (loss.mean() + ((loss.detach() - loss.detach().mean()) * core.last.log_prob).mean()).backward()
        core.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    print(json.dumps({"s": statistics.median(times)}))


def _run(fabric: str, gamma: float, layout: str, args: argparse.Namespace) -> float:
    command = [sys.executable, __file__, "--child", "--fabric", fabric, "--gamma", str(gamma), "--layout", layout,
               "--device", args.device, "--threads", str(args.threads), "--steps", str(args.steps),
               "--warmup", str(args.warmup)]
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"benchmark child failed: {' '.join(command)}\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])["s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fabrics", nargs="+", choices=sorted(FABRICS), default=list(FABRICS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per process (their median is taken)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--fabric", help=argparse.SUPPRESS)
    parser.add_argument("--gamma", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--layout", choices=sorted(LAYOUTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available here")
    print(f"training step, batch {BATCH}, {args.device}, {args.threads} threads; median of {args.rounds} rounds "
          "(channels-last / contiguous below 1: channels-last is faster)")
    print("| fabric | -D | γ | contiguous ms | channels-last ms | channels-last / contiguous |")
    print("|---|---|---|---|---|---|")
    for fabric in args.fabrics:
        for gamma in GAMMAS:
            runs = {name: [] for name in LAYOUTS}
            for round_ in range(args.rounds):
                order = list(LAYOUTS) if round_ % 2 == 0 else list(reversed(LAYOUTS))
                for layout in order:
                    runs[layout].append(_run(fabric, gamma, layout, args))
            ratio = statistics.median(a / b for a, b in zip(runs["channels-last"], runs["contiguous"]))
            overrides = " ".join(f"{k}={v}" for k, v in FABRICS[fabric].items())
            print(f"| {fabric} | {overrides} | {gamma} | {statistics.median(runs['contiguous']) * 1e3:.0f} | "
                  f"{statistics.median(runs['channels-last']) * 1e3:.0f} | {ratio:.2f} |", flush=True)


if __name__ == "__main__":
    main()
