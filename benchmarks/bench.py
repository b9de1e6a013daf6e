"""bsnc benchmarks: measurements, not tests. Run with `make bench`.

Each comparison runs both sides in the same process, interleaved and repeated; medians are
reported. Prints a table and writes benchmarks/results/bench.json."""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bsnc.api import compile_network  # noqa: E402
from bsnc.codegen.generate import generate  # noqa: E402
from bsnc.codegen.reference import ReferenceInterpreter  # noqa: E402
from bsnc.costs.analytic import FlopsCost  # noqa: E402
from bsnc.costs.distributed import DistributedCost  # noqa: E402
from bsnc.lang.frontend import load_network  # noqa: E402

CNF = ROOT / "fabrics" / "cnf.bsn"
CNF_W8 = ROOT / "fabrics" / "cnf_w8.bsn"


def interleaved(sides: dict[str, callable], repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds of each side, run alternately."""
    for fn in sides.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, fn in sides.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(v) for name, v in times.items()}


def _training_step(model, x, y, core):
    out = model(x)
    loss = torch.nn.functional.cross_entropy(out, y, reduction="none")
    reinforce = ((loss.detach() - loss.detach().mean()) * core.last.log_prob).mean()
    (loss.mean() + reinforce).backward()
    core.zero_grad(set_to_none=True)


def _setup_cnf(batch: int):
    torch.manual_seed(0)
    network = load_network(CNF_W8, {"C": 16})
    core = compile_network(network)().train()
    core.set_mode("sample")
    ref = ReferenceInterpreter(network, core)
    x = torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, 10, (batch,))
    return network, core, ref, x, y


def gamma_for_fraction(network, target: float, samples: int = 2048) -> float:
    """The uniform edge probability at which the sampled architectures' expected MACs are
    ``target`` of the super network's (bisection on sampled masks)."""
    from bsnc.codegen.runtime import sample_architecture

    core = compile_network(network)()
    flops = FlopsCost(network)
    full = flops.full()
    lo, hi = 0.0, 10.0
    for _ in range(30):
        mid = (lo + hi) / 2
        logit = torch.logit(torch.tensor(min(max(mid / 10, 1e-4), 1 - 1e-4))).item()
        core.reset_gates(logit)
        torch.manual_seed(1)
        arch = sample_architecture(core.structure, core.gate_logits.detach(), samples, "sample")
        fraction = float(flops(arch.active).mean()) / full
        lo, hi = (mid, hi) if fraction < target else (lo, mid)
    return (lo + hi) / 20


def bench_training_step(repeats: int) -> dict:
    network, core, ref, x, y = _setup_cnf(64)
    core.reset_gates(torch.logit(torch.tensor(0.95)).item())
    t = interleaved({"generated": lambda: _training_step(core, x, y, core),
                     "reference": lambda: _training_step(ref, x, y, core)}, repeats)
    return {"generated_s": t["generated"], "reference_s": t["reference"], "ratio": t["generated"] / t["reference"],
            "target": 0.8}


def bench_cost_proportional(repeats: int) -> dict:
    network, core, _, x, y = _setup_cnf(64)
    gamma = gamma_for_fraction(network, 0.25)
    high = torch.logit(torch.tensor(0.95)).item()
    low = torch.logit(torch.tensor(gamma)).item()

    def step(logit):
        core.reset_gates(logit)
        _training_step(core, x, y, core)

    t = interleaved({"gamma_25pct": lambda: step(low), "gamma_0.95": lambda: step(high)}, repeats)
    return {"gamma": gamma, "quarter_s": t["gamma_25pct"], "full_s": t["gamma_0.95"],
            "ratio": t["gamma_25pct"] / t["gamma_0.95"], "target": 0.4}


def bench_resnet20_inference(repeats: int) -> dict:
    sys.path.insert(0, str(Path(__file__).parent))
    from resnet20_handwritten import ResNet20

    torch.manual_seed(0)
    generated = compile_network(load_network(ROOT / "fabrics" / "resnet20.bsn"))().eval()
    hand = ResNet20().eval()
    result = {}
    for batch in (1, 128):
        x = torch.randn(batch, 3, 32, 32)
        with torch.inference_mode():
            t = interleaved({"generated": lambda x=x: generated(x), "handwritten": lambda x=x: hand(x)},
                            repeats * (10 if batch == 1 else 1))
        result[f"batch{batch}"] = {"generated_ms": t["generated"] * 1e3, "handwritten_ms": t["handwritten"] * 1e3,
                                   "ratio": t["generated"] / t["handwritten"], "target": 1.05}
    return result


def _compile_time(path: Path, overrides: dict) -> dict:
    start = time.perf_counter()
    network = load_network(path, overrides)
    checked = time.perf_counter()
    source = generate(network)
    generated = time.perf_counter()
    compile_network(network)
    imported = time.perf_counter()
    return {"edges": len(network.edges), "check_s": checked - start, "generate_s": generated - checked,
            "import_s": imported - generated - (generated - checked), "total_s": imported - start,
            "source_lines": source.count("\n")}


def bench_compile_time() -> dict:
    result = {"cnf_w8": _compile_time(CNF_W8, {})}
    result["cnf_w8"]["target_s"] = 0.5
    for label, width in (("1k", 63), ("5k", 313), ("20k", 1250)):
        result[f"edges_{label}"] = _compile_time(CNF, {"W": width, "C": 2})
    small, large = result["edges_5k"], result["edges_20k"]
    result["growth_20k_over_5k"] = (large["total_s"] / small["total_s"]) / (large["edges"] / small["edges"])
    return result


def bench_costs(repeats: int) -> dict:
    network = load_network(CNF_W8)
    core = compile_network(network)()
    from bsnc.codegen.runtime import sample_architecture

    torch.manual_seed(0)
    arch = sample_architecture(core.structure, core.gate_logits.detach(), 4096, "sample")
    active = arch.active
    flops = FlopsCost(network)

    def distributed_cold():
        DistributedCost(network, 4)(active)

    t = interleaved({"flops": lambda: flops(active), "distributed_n4": distributed_cold}, repeats)
    unique = len({bytes(r.numpy().tobytes()) for r in active})
    # later in training the probabilities are near 0 or 1 and masks repeat
    with torch.no_grad():
        core.gate_logits.copy_(torch.where(torch.rand_like(core.gate_logits) < 0.5, -6.0, 6.0))
    converged = sample_architecture(core.structure, core.gate_logits.detach(), 4096, "sample").active
    warm = DistributedCost(network, 4)
    warm(converged)
    c = interleaved({"cold": lambda: DistributedCost(network, 4)(converged), "memoised": lambda: warm(converged)},
                    repeats)
    return {"flops_ms": t["flops"] * 1e3, "distributed_n4_ms": t["distributed_n4"] * 1e3, "distinct_masks": unique,
            "converged_distinct_masks": len({bytes(r.numpy().tobytes()) for r in converged}),
            "converged_cold_ms": c["cold"] * 1e3, "converged_memoised_ms": c["memoised"] * 1e3,
            "targets_ms": {"flops": 5, "distributed_n4": 50}}


MEMORY_CHILD = r"""
import sys, torch
sys.path.insert(0, sys.argv[2])
from benchmarks.bench import _setup_cnf, _training_step
torch.set_num_threads(2)

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024  # MB

network, core, ref, x, y = _setup_cnf(64)
core.reset_gates(torch.logit(torch.tensor(0.95)).item())
model = core if sys.argv[1] == "generated" else ref
with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current RSS
    f.write("5")
before = status("VmRSS:")
_training_step(model, x, y, core)
print(status("VmHWM:") - before)
"""


def bench_memory(repeats: int) -> dict:
    """Peak resident memory growth of one training step (Linux VmHWM, reset just before the
    step), each side in a fresh process, alternating sides; medians."""
    runs: dict[str, list[float]] = {"generated": [], "reference": []}
    for _ in range(max(1, repeats // 2)):
        for side in runs:
            out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, side, str(ROOT)], capture_output=True,
                                 text=True, check=True, cwd=ROOT)
            runs[side].append(float(out.stdout.strip().splitlines()[-1]))
    gen, ref = statistics.median(runs["generated"]), statistics.median(runs["reference"])
    return {"generated_mb": gen, "reference_mb": ref, "ratio": gen / ref if ref else float("nan"), "target": 1.0}


STARTUP_COMMANDS = {
    "bsnc --help": ["--help"],
    "bsnc fmt fabrics/cnf.bsn": ["fmt", str(ROOT / "fabrics" / "cnf.bsn")],
    "completion of 'bsnc tr'": [],
}


def _bsnc_process(args: list[str]) -> tuple[list[str], dict]:
    import os

    env = dict(os.environ)
    if not args:  # click's bash completion protocol
        env.update(_BSNC_COMPLETE="bash_complete", COMP_WORDS="bsnc tr", COMP_CWORD="1")
    script = Path(sys.executable).parent / "bsnc"  # the installed entry point, as a user runs it
    return [str(script), *args], env


def bench_startup(repeats: int) -> dict:
    """Wall time of commands that need no network (each a fresh process) against a fresh
    `python -c "import torch"`; medians, alternating."""
    sides = {"import torch": ([sys.executable, "-c", "import torch"], None)}
    sides.update({name: _bsnc_process(args) for name, args in STARTUP_COMMANDS.items()})
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeats + 1):
        for name, (cmd, env) in sides.items():
            start = time.perf_counter()
            subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, check=True)
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(v[1:]) for name, v in times.items()}  # the first run warms caches
    torch_s = medians.pop("import torch")
    return {"import_torch_s": torch_s, "commands": {name: {"s": t, "ratio": t / torch_s} for name, t in medians.items()},
            "target": 0.3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="run only these: training cost_proportional resnet20 "
                        "compile costs memory startup")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "benchmarks" / "results" / "bench.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    benches = {
        "training": lambda: bench_training_step(args.repeats),
        "cost_proportional": lambda: bench_cost_proportional(args.repeats),
        "resnet20": lambda: bench_resnet20_inference(args.repeats),
        "compile": bench_compile_time,
        "costs": lambda: bench_costs(args.repeats * 3),
        "memory": lambda: bench_memory(args.repeats),
        "startup": lambda: bench_startup(args.repeats),
    }
    results = {"machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": args.threads}}
    for name, fn in benches.items():
        if args.only and name not in args.only:
            continue
        print(f"running {name} ...", flush=True)
        results[name] = fn()
        print(json.dumps(results[name], indent=2), flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"wrote {args.output}")


def print_table(r: dict) -> None:
    rows = []
    if "training" in r:
        t = r["training"]
        rows.append(("1 training step, generated / reference (γ=0.95)", f"{t['generated_s']*1e3:.0f} / "
                     f"{t['reference_s']*1e3:.0f} ms", f"{t['ratio']:.2f}", "≤ 0.8"))
    if "cost_proportional" in r:
        t = r["cost_proportional"]
        rows.append((f"2 step at ~25% MACs (γ={t['gamma']:.2f}) / γ=0.95", f"{t['quarter_s']*1e3:.0f} / "
                     f"{t['full_s']*1e3:.0f} ms", f"{t['ratio']:.2f}", "≤ 0.4"))
    if "resnet20" in r:
        for b in ("batch1", "batch128"):
            t = r["resnet20"][b]
            rows.append((f"3 ResNet-20 inference {b}, generated / hand-written",
                         f"{t['generated_ms']:.2f} / {t['handwritten_ms']:.2f} ms", f"{t['ratio']:.2f}", "≤ 1.05"))
    if "compile" in r:
        for k, v in r["compile"].items():
            if isinstance(v, dict):
                rows.append((f"4 compile {k} ({v['edges']} edges)", f"{v['total_s']:.2f} s", "",
                             "≤ 0.5 s" if k == "cnf_w8" else ("≤ 20 s" if k == "edges_20k" else "")))
        rows.append(("4 growth 20k vs 5k, per edge", "", f"{r['compile']['growth_20k_over_5k']:.2f}", "≈ 1"))
    if "costs" in r:
        t = r["costs"]
        rows.append(("5 cost of 4,096 masks: flops", f"{t['flops_ms']:.2f} ms", "", "≤ 5 ms"))
        rows.append((f"5 cost of 4,096 masks: distributed:n=4 ({t['distinct_masks']} distinct)",
                     f"{t['distributed_n4_ms']:.1f} ms", "", "≤ 50 ms"))
        rows.append((f"5   same, converged Γ ({t['converged_distinct_masks']} distinct), cold / memoised",
                     f"{t['converged_cold_ms']:.1f} / {t['converged_memoised_ms']:.1f} ms", "", "≤ 50 ms"))
    if "memory" in r:
        t = r["memory"]
        rows.append(("6 peak memory of a step, generated / reference", f"{t['generated_mb']:.0f} / "
                     f"{t['reference_mb']:.0f} MB", f"{t['ratio']:.2f}", "≤ 1.0"))
    if "startup" in r:
        t = r["startup"]
        for name, v in t["commands"].items():
            rows.append((f"7 {name} / python -c 'import torch'",
                         f"{v['s'] * 1e3:.0f} / {t['import_torch_s'] * 1e3:.0f} ms", f"{v['ratio']:.2f}", "≤ 0.3"))
    width = max(len(row[0]) for row in rows) if rows else 10
    print()
    print(f"{'benchmark'.ljust(width)}  {'measured':>22}  {'ratio':>6}  target")
    for name, measured, ratio, target in rows:
        print(f"{name.ljust(width)}  {measured:>22}  {ratio:>6}  {target}")


if __name__ == "__main__":
    main()
