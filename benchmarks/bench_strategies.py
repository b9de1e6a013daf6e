"""Where dense-masked execution beats gather/scatter: the measurement behind DENSE_THRESHOLD.

    python benchmarks/bench_strategies.py [--device cuda] [--channels 16 64] [--sizes 32 16 8] [--layout contiguous]

For CNF's commonest edge (3x3 convolution, batch norm) on a source of 64 rows, it times a
training step (forward and backward) of the executor's two partial strategies at several shares
of active rows, in one process, interleaved, median of ``--repeats``:

* ``gather``: the module on the gathered active rows (bsnc/codegen/gather.py), scatter-added;
* ``dense``: the module on every row with batch norm over the active rows
  (bsnc/codegen/masked.py), its active rows kept and scatter-added.

Maps are channels-last by default, as ``bsnc train`` lays them out. It prints dense / gather per share and the *threshold*: the smallest share from which dense is
faster at every larger share measured, or ``never``. Set the result in
``bsnc.codegen.runtime.DENSE_THRESHOLD`` for the device, or in ``BSNC_DENSE_THRESHOLD``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bsnc.codegen.gather import add_rows, run_on_rows  # noqa: E402
from bsnc.codegen.layout import take_rows  # noqa: E402
from bsnc.codegen.masked import masked_forward  # noqa: E402

ROWS = 64
SHARES = (0.25, 0.5, 0.75, 0.875, 0.95)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


LAYOUTS = {"channels-last": torch.channels_last, "contiguous": torch.contiguous_format}


def _steps(channels: int, size: int, share: float, device: torch.device, layout: str = "channels-last"):
    torch.manual_seed(0)
    fmt = LAYOUTS[layout]
    module = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels))
    module = module.to(device, memory_format=fmt).train()
    x = torch.randn(ROWS, channels, size, size, device=device).contiguous(memory_format=fmt).requires_grad_()
    take = torch.randperm(ROWS, device=device)[:round(share * ROWS)].sort().values
    mask = torch.zeros(ROWS, dtype=torch.bool, device=device).index_fill_(0, take, True)

    def gather() -> None:
        y = run_on_rows(module, x, take)
        add_rows(torch.zeros_like(x), take, y).sum().backward()

    def dense() -> None:
        y = take_rows(masked_forward(module, x, mask), take)
        add_rows(torch.zeros_like(x), take, y).sum().backward()
    return {"gather": gather, "dense": dense}


def _time(step, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    step()
    _sync(device)
    return time.perf_counter() - start


def measure(channels: int, size: int, share: float, device: torch.device, repeats: int, warmup: int,
            layout: str = "channels-last") -> float:
    """Median over interleaved repeats of dense time / gather time."""
    steps = _steps(channels, size, share, device, layout)
    for _ in range(warmup):
        for step in steps.values():
            step()
    ratios = []
    for _ in range(repeats):
        times = {name: _time(step, device) for name, step in steps.items()}
        ratios.append(times["dense"] / times["gather"])
    return statistics.median(ratios)


def threshold(ratios: dict[float, float]) -> float | None:
    """The smallest share from which dense is faster (ratio < 1) at every larger share."""
    found = None
    for share in sorted(ratios, reverse=True):
        if ratios[share] >= 1:
            break
        found = share
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--channels", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 16, 8])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default="channels-last")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available here")
    torch.set_num_threads(args.threads)
    print(f"dense-masked / gather, training step of conv3x3+BN on {ROWS} source rows, {args.device}, "
          f"{args.layout}, {args.threads} threads; < 1: dense is faster")
    print("| C | size | " + " | ".join(f"{s:.0%}" for s in SHARES) + " | threshold |")
    print("|---|---|" + "---|" * (len(SHARES) + 1))
    overall: list[float | None] = []
    for channels in args.channels:
        for size in args.sizes:
            ratios = {s: measure(channels, size, s, device, args.repeats, args.warmup, args.layout) for s in SHARES}
            found = threshold(ratios)
            overall.append(found)
            print(f"| {channels} | {size} | " + " | ".join(f"{ratios[s]:.2f}" for s in SHARES)
                  + f" | {'never' if found is None else f'{found:.0%}'} |", flush=True)
    settled = None if any(t is None for t in overall) else max(overall)
    print(f"\nthreshold for {device.type}: {'never' if settled is None else settled} "
          "(the largest over the shapes measured; never if some shape had dense lose at 95%)")


if __name__ == "__main__":
    main()
