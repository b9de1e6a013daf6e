"""A search step against the paper's strategy and the static network: `make bench` runs it.

Three contenders train CNF W=8 (batch 64, 32x32, two threads) one step at a time:

* ``bsnc``: the generated stochastic module with its REINFORCE term;
* ``paper``: the strategy of the paper's own code, written here: every edge module runs on every
  row of its source and its output is multiplied by the sampled mask; gates are drawn edge by
  edge in topological order and the rows each layer reaches are tracked in Python;
* ``static``: the pruned static network of the converged architecture, the limit;
* ``sync-free`` (with ``--sync-free``, and always on CUDA): bsnc with ``dense_threshold =
  "always"``, the executor that reads nothing back to the host (every edge dense-masked).

Every contender runs in ``--layout`` (channels-last by default, as ``bsnc train`` does), so that
ratios compare like with like; with channels-last, ``paper-contiguous`` also runs the paper's
strategy in the layout its code used (PyTorch's default), for the record.

Scenarios: ``gamma95`` (γ = 0.95 on every edge, each example its own architecture),
``independent25`` (the uniform γ at which sampled architectures hold ~25% of the MACs) and
``converged25`` (Γ saturated on one architecture holding ~25% of the MACs).

Each measurement runs in its own process, since contenders in one process share oneDNN's
primitive cache; rounds interleave the contenders in time and ratios are paired per round,
then the median is reported. Peak memory is the growth of one step after three warm-up steps,
in a run of its own: on CUDA the allocator's peak; on the CPU the resident set's (Linux VmHWM)
with glibc's mmap threshold fixed (``MALLOC_MMAP_THRESHOLD_``): by default glibc raises that threshold as
blocks are freed, so whether a large block comes back from the heap or from the kernel depends
on what happened before, and the same step's peak varied by ±8% between processes (with the
threshold fixed, to within 0.2 MB). Warm-up keeps one-time allocations (imports, caches) out
of the step's peak. A separate profiling run counts oneDNN's primitive-cache
misses per step; timing and misses come after ``--warmup`` steps, the steady state of a
training run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bsnc.api import compile_network  # noqa: E402
from bsnc.codegen.architecture import prune  # noqa: E402
from bsnc.codegen.runtime import sample_architecture  # noqa: E402
from bsnc.costs.analytic import FlopsCost  # noqa: E402
from bsnc.lang.frontend import load_network  # noqa: E402

CNF_W8 = ROOT / "fabrics" / "cnf_w8.bsn"
BATCH = 64
SCENARIOS = ("gamma95", "independent25", "converged25")
MARK = "== bsnc bench: measured steps =="


# --- the paper's strategy ------------------------------------------------------------------------


class PaperStrategy(nn.Module):
    """The paper's code's forward pass over bsnc's edge modules: dense, masked, Python paths."""

    def __init__(self, core: nn.Module):
        super().__init__()
        self.core = core
        self.log_prob: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        core, structure = self.core, self.core.structure
        batch = x.shape[0]
        n_layers = len(core.LAYER_NAMES)
        values: list[torch.Tensor | None] = [None] * n_layers
        reached = [torch.zeros(batch, dtype=torch.bool, device=x.device) for _ in range(n_layers)]
        values[core.INPUT_INDEX], reached[core.INPUT_INDEX] = x, torch.ones(batch, dtype=torch.bool, device=x.device)
        probs = torch.sigmoid(core.gate_logits)
        log_prob = x.new_zeros(batch)
        gate = 0
        modules = list(core.edges.values())
        posts = dict(zip(core.POST_LAYERS, core.post.values())) if hasattr(core, "post") else {}
        incoming_done = [0] * n_layers
        n_incoming = [0] * n_layers
        for dst in structure.edge_dst.tolist():
            n_incoming[dst] += 1
        for edge, (src, dst) in enumerate(zip(structure.edge_src.tolist(), structure.edge_dst.tolist())):
            if core.STOCHASTIC[edge]:
                p = probs[gate].expand(batch)
                on = torch.bernoulli(p.detach()).bool()
                offered = reached[src]
                log_prob = log_prob + torch.where(offered, torch.where(on, p, 1 - p).log(), torch.zeros_like(p))
                gate += 1
            else:
                on = torch.ones(batch, dtype=torch.bool, device=x.device)
            active = on & reached[src]
            out = modules[edge](values[src])
            out = out * active.to(out.dtype).view((-1,) + (1,) * (out.dim() - 1))
            values[dst] = out if values[dst] is None else values[dst] + out
            reached[dst] = reached[dst] | active
            incoming_done[dst] += 1
            if incoming_done[dst] == n_incoming[dst] and core.LAYER_NAMES[dst] in posts:
                values[dst] = posts[core.LAYER_NAMES[dst]](values[dst])
        self.log_prob = log_prob
        return values[core.OUTPUT_INDEX]


# --- one contender in one process ----------------------------------------------------------------


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return float("nan")


LAYOUTS = {"channels-last": torch.channels_last, "contiguous": torch.contiguous_format}


def _setup(contender: str, channels: int, scenario: str, gamma: float, mask: list[bool], device: torch.device,
           layout: str = "channels-last"):
    torch.manual_seed(0)
    network = load_network(CNF_W8, {"C": channels})
    fmt = LAYOUTS["contiguous" if contender == "paper-contiguous" else layout]
    x, y = torch.randn(BATCH, 3, 32, 32, device=device), torch.randint(0, 10, (BATCH,), device=device)
    x = x.contiguous(memory_format=fmt)
    if contender == "static":
        model = compile_network(prune(network, torch.tensor(mask)))().train().to(device, memory_format=fmt)
        zero_grad = _zero_grad(model)

        def step() -> None:
            torch.nn.functional.cross_entropy(model(x), y).backward()
            zero_grad()
        return step
    core = compile_network(network)().train().to(device, memory_format=fmt)
    core.set_mode("sample")
    with torch.no_grad():
        if scenario == "converged25":
            core.gate_logits.copy_(torch.tensor([20.0 if on else -20.0 for on, e in zip(mask, network.edges)
                                                 if e.stochastic], device=device))
        else:
            core.reset_gates(torch.logit(torch.tensor(gamma)).item())
    if contender == "sync-free":
        core.dense_threshold = "always"
    paper = contender.startswith("paper")
    model = PaperStrategy(core) if paper else core
    zero_grad = _zero_grad(core)

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y, reduction="none")
        log_prob = model.log_prob if paper else core.last.log_prob
        reinforce = ((loss.detach() - loss.detach().mean()) * log_prob).mean()
        (loss.mean() + reinforce).backward()
        zero_grad()
    return step


def _zero_grad(model: nn.Module):
    """Clears gradients as a training loop does, through its optimizer's parameter list
    (``Module.zero_grad`` walks every submodule: 1 ms a step for the super network)."""
    return torch.optim.SGD(model.parameters(), lr=0.0).zero_grad


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step_peak_mb(step, device: torch.device) -> float:
    """Peak memory growth of a step (Linux VmHWM on the CPU, reset just before the step). With
    glibc's moving mmap threshold the allocator keeps what a step frees, so only the process's
    first step shows growth; with the threshold fixed, large blocks go back to the kernel when
    freed and every step shows its own."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    before = _status_mb("VmRSS:")
    step()
    return _status_mb("VmHWM:") - before


def child(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    spec = json.loads(Path(args.spec).read_text())
    step = _setup(args.child, args.channels, args.scenario, spec["gamma"], spec["mask"], device, args.layout)
    if args.memory:  # a step after warm-up: one-time allocations (imports, caches) are not the step's
        for _ in range(args.warmup):
            step()
        print(json.dumps({"peak_mb": _step_peak_mb(step, device)}))
        return
    peak = _step_peak_mb(step, device)
    for _ in range(args.warmup - 1):
        step()
    if args.count_misses:
        print(MARK, flush=True)
        for _ in range(args.steps):
            step()
        return
    times = []
    for _ in range(args.steps):
        _synchronize(device)
        start = time.perf_counter()
        step()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    print(json.dumps({"s": statistics.median(times), "peak_mb": peak}))


# --- the parent: rounds of interleaved processes -------------------------------------------------


def _gamma_for_fraction(network, target: float, samples: int = 2048) -> float:
    """The uniform γ at which sampled architectures hold ``target`` of the MACs on average."""
    structure = compile_network(network)().structure
    flops = FlopsCost(network)
    full = flops.full()
    n_gates = len(network.stochastic_edges)
    lo, hi = 0.0, 1.0
    for _ in range(25):
        mid = (lo + hi) / 2
        torch.manual_seed(1)
        arch = sample_architecture(structure, torch.full((n_gates,), torch.logit(torch.tensor(mid)).item()),
                                   samples, "sample")
        lo, hi = (mid, hi) if float(flops(arch.active).mean()) / full < target else (lo, mid)
    return (lo + hi) / 2


def _one_architecture(network, gamma: float, target: float) -> tuple[list[bool], float]:
    """A consistent architecture sampled at ``gamma`` whose MACs are nearest ``target``."""
    structure = compile_network(network)().structure
    flops = FlopsCost(network)
    n_gates = len(network.stochastic_edges)
    torch.manual_seed(2)
    arch = sample_architecture(structure, torch.full((n_gates,), torch.logit(torch.tensor(gamma)).item()),
                               512, "sample")
    fraction = flops(arch.active).double() / flops.full()
    fraction[arch.inconsistent] = float("inf")
    row = int((fraction - target).abs().argmin())
    return arch.active[row].tolist(), float(fraction[row])


# glibc's own starting value; set explicitly, it no longer moves (mallopt(M_MMAP_THRESHOLD))
FIXED_MMAP_THRESHOLD = str(128 * 1024)


def _run_child(contender: str, scenario: str, channels: int, spec: Path, args, profile: bool = False,
               memory: bool = False):
    steps, warmup = (1, 3) if memory else (args.steps, args.warmup)
    command = [sys.executable, __file__, "--child", contender, "--scenario", scenario, "--channels", str(channels),
               "--spec", str(spec), "--threads", str(args.threads), "--steps", str(steps),
               "--warmup", str(warmup), "--device", args.device, "--layout", args.layout]
    command += ["--count-misses"] if profile else []
    command += ["--memory"] if memory else []
    env = dict(os.environ)
    if profile:
        env["ONEDNN_VERBOSE"] = "profile_create"
    if memory and args.device == "cpu":
        env["MALLOC_MMAP_THRESHOLD_"] = FIXED_MMAP_THRESHOLD
    out = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"benchmark child failed: {' '.join(command)}\n{out.stderr}")
    if profile:
        measured = out.stdout.split(MARK, 1)[1]
        return sum("create:cache_miss" in line for line in measured.splitlines()) / args.steps
    return json.loads(out.stdout.strip().splitlines()[-1])


def _contenders(scenario: str, sync_free: bool = False, layout: str = "channels-last") -> list[str]:
    return (["bsnc", "paper"] + (["static"] if scenario == "converged25" else [])
            + (["paper-contiguous"] if layout != "contiguous" and scenario != "converged25" else [])
            + (["sync-free"] if sync_free else []))


def parent(args: argparse.Namespace) -> dict:
    results: dict = {"device": args.device, "layout": args.layout, "threads": args.threads, "batch": BATCH, "rounds": args.repeats, "steps": args.steps,
                     "onednn_primitive_cache_capacity": os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "bsnc's"),
                     "warmup": args.warmup,
                     "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        specs = {}
        for channels in args.channels:
            network = load_network(CNF_W8, {"C": channels})
            gamma = _gamma_for_fraction(network, 0.25)
            mask, fraction = _one_architecture(network, gamma, 0.25)
            for scenario in SCENARIOS:
                spec = Path(tmp) / f"{scenario}_{channels}.json"
                spec.write_text(json.dumps({"gamma": 0.95 if scenario == "gamma95" else gamma, "mask": mask}))
                specs[scenario, channels] = spec
                results["cases"][f"{scenario}/C={channels}"] = {
                    "gamma": 0.95 if scenario == "gamma95" else gamma,
                    "converged_macs_fraction": fraction if scenario == "converged25" else None,
                    "runs": {c: [] for c in _contenders(scenario, args.sync_free, args.layout)}}
        for round_ in range(args.repeats):
            for (scenario, channels), spec in specs.items():
                order = _contenders(scenario, args.sync_free, args.layout)
                order = order[round_ % len(order):] + order[:round_ % len(order)]  # rotate who goes first
                case = results["cases"][f"{scenario}/C={channels}"]
                for contender in order:
                    case["runs"][contender].append(_run_child(contender, scenario, channels, spec, args))
                print(f"round {round_ + 1}/{args.repeats} {scenario} C={channels}: " + ", ".join(
                    f"{c} {case['runs'][c][-1]['s'] * 1e3:.0f} ms" for c in case["runs"]), flush=True)
        # one run each, after warm-up: the peak repeats (CUDA's allocator; on the CPU with the threshold fixed)
        for (scenario, channels), spec in specs.items():
            case = results["cases"][f"{scenario}/C={channels}"]
            case["peak_mb"] = {c: _run_child(c, scenario, channels, spec, args, memory=True)["peak_mb"]
                               for c in _contenders(scenario, args.sync_free, args.layout)}
        if args.profile and args.device == "cpu":  # oneDNN is the CPU's convolution library
            for (scenario, channels), spec in specs.items():
                case = results["cases"][f"{scenario}/C={channels}"]
                case["cache_misses_per_step"] = {c: _run_child(c, scenario, channels, spec, args, profile=True)
                                                 for c in _contenders(scenario, args.sync_free, args.layout)}
    for case in results["cases"].values():
        runs = case["runs"]
        case["median_ms"] = {c: statistics.median(r["s"] for r in v) * 1e3 for c, v in runs.items()}
        # the timed runs' first steps, one-time allocations included (on the CPU with glibc's moving
        # threshold), for the record
        case["timed_runs_peak_mb"] = {c: statistics.median(r["peak_mb"] for r in v) for c, v in runs.items()}
        peak = case["peak_mb"]
        for other in [c for c in runs if c != "bsnc"]:
            case[f"bsnc/{other}"] = statistics.median(a["s"] / b["s"] for a, b in zip(runs["bsnc"], runs[other]))
            case[f"memory bsnc/{other}"] = peak["bsnc"] / peak[other] if peak[other] > 0 else float("nan")
    return results


TARGETS = {("gamma95", "paper"): 0.75, ("independent25", "paper"): 0.5, ("converged25", "static"): 1.05}
MEMORY_TARGETS = {("gamma95", "paper"): 1.0, ("converged25", "static"): 1.05}


def print_table(results: dict) -> None:
    print(f"\nsearch step on {results['device']}, CNF W=8, batch {BATCH}, {results['threads']} threads, "
          f"{results['layout']}, {results['rounds']} rounds of {results['steps']} steps after {results['warmup']} "
          "warm-up steps "
          f"(oneDNN primitive cache: {results['onednn_primitive_cache_capacity']})")
    print(f"{'case':<24} {'bsnc ms':>8} {'paper ms':>9} {'static ms':>10} {'ratio':>14} {'target':>7} "
          f"{'peak MB bsnc/other':>22} {'target':>7} {'misses/step':>16}")
    for name, case in results["cases"].items():
        scenario = name.split("/")[0]
        other = "static" if scenario == "converged25" else "paper"
        ms = case["median_ms"]
        peak = case["peak_mb"]
        misses = case.get("cache_misses_per_step")
        print(f"{name:<24} {ms['bsnc']:>8.0f} {ms['paper']:>9.0f} {ms.get('static', float('nan')):>10.0f} "
              f"{'/' + other + ' ' + format(case['bsnc/' + other], '.2f'):>14} "
              f"{TARGETS.get((scenario, other), float('nan')):>7.2f} "
              f"{format(peak['bsnc'], '.0f') + '/' + format(peak[other], '.0f') + ' = ' + format(case['memory bsnc/' + other], '.2f'):>22} "
              f"{MEMORY_TARGETS.get((scenario, other), float('nan')):>7.2f} "
              f"{'' if misses is None else '/'.join(format(v, '.0f') for v in misses.values()):>16}")
        if scenario == "converged25":
            print(f"{'':<24} (bsnc/paper {case['bsnc/paper']:.2f}; architecture at "
                  f"{case['converged_macs_fraction'] * 100:.0f}% of the MACs)")
        if "paper-contiguous" in ms:
            print(f"{'':<24} (the paper's strategy in its code's contiguous layout {ms['paper-contiguous']:.0f} ms, "
                  f"{peak['paper-contiguous']:.0f} MB; bsnc/paper-contiguous {case['bsnc/paper-contiguous']:.2f})")
        if "sync-free" in ms:
            print(f"{'':<24} (sync-free executor {ms['sync-free']:.0f} ms, {peak['sync-free']:.0f} MB; "
                  f"bsnc/sync-free {case['bsnc/sync-free']:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="rounds of interleaved processes")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per process (their median is taken)")
    parser.add_argument("--warmup", type=int, default=20,
                        help="untimed steps first (at least 1: the memory step); oneDNN's primitive cache fills over "
                             "the first steps, and a training run spends nearly all of its steps in that steady state")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda[:N] (peak memory from CUDA's allocator)")
    parser.add_argument("--channels", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--no-profile", dest="profile", action="store_false",
                        help="skip counting oneDNN primitive-cache misses")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "benchmarks" / "results" / "search.json")
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default="channels-last",
                        help="memory layout of every contender (bsnc train's default: channels-last)")
    parser.add_argument("--sync-free", action="store_true",
                        help="also time the executor that reads nothing back to the host (always on CUDA)")
    parser.add_argument("--child", choices=["bsnc", "paper", "paper-contiguous", "static", "sync-free"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--scenario", choices=SCENARIOS, help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--count-misses", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.warmup = max(1, args.warmup)
    try:
        device = torch.device(args.device)
    except RuntimeError:
        parser.error(f"--device {args.device}: expected cpu or cuda[:N]")
    if device.type not in ("cpu", "cuda"):
        parser.error(f"--device {args.device}: expected cpu or cuda[:N]")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device is available on this machine")
    args.sync_free = args.sync_free or device.type == "cuda"
    if args.child:
        args.channels = args.channels[0]
        child(args)
        return
    results = parent(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
