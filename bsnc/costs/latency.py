"""Latency: per-edge times measured on a device, kept in a lookup table keyed by device, torch
version and the edge's signature (op chain + input shape), so fabrics that share edges share
timings. An architecture's latency is the sum over its active edges."""

from __future__ import annotations

import json
import math
import platform
import shlex
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from bsnc.costs.base import Additive
from bsnc.errors import BsncError, UsageError
from bsnc.files import atomic_write_text, read_regular
from bsnc.ir import Edge, Network

FORMAT = "bsnc-latency-table/1"
LAYOUTS = {"contiguous": torch.contiguous_format, "channels-last": torch.channels_last}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "mps: Apple GPU"
    return f"cpu: {platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: no CUDA device is available on this machine")
        index = int(name.partition(":")[2] or 0)
        count = torch.cuda.device_count()
        if index >= count:
            raise UsageError(f"--device {name}: this machine has {count} CUDA device{'s' if count != 1 else ''} "
                             f"(cuda:0{f' to cuda:{count - 1}' if count > 1 else ''})")
    if name == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise UsageError("--device mps: no MPS device is available on this machine")
    return torch.device(name)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def time_callable(fn: Callable[[], object], device: torch.device, warmup: int = 3, repeats: int = 15) -> float:
    """Median wall time of ``fn`` in milliseconds, after warm-up."""
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        _sync(device)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            _sync(device)
            times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def edge_module(edge: Edge) -> nn.Module:
    return nn.Sequential(*(spec.build() for spec in edge.module_specs()))


@dataclass
class LatencyTable:
    device: str  # "cpu", "cuda" or "mps"
    device_name: str
    torch_version: str
    batch_size: int
    entries: dict[str, float]  # signature -> milliseconds
    layout: str = "contiguous"  # of the image maps timed (LAYOUTS); tables from before it: contiguous

    def to_json(self) -> str:
        data = {
            "format": FORMAT,
            "device": self.device,
            "device_name": self.device_name,
            "torch": self.torch_version,
            "batch_size": self.batch_size,
            "layout": self.layout,
            "entries": dict(sorted(self.entries.items())),
        }
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        path = Path(path)
        if not path.exists():
            raise UsageError(f"latency table {path}: no such file; make one with "
                             f"`bsnc latency-table FILE -o {shlex.quote(str(path))}`")
        try:
            data = json.loads(read_regular(path, 64 * 1024 * 1024, f"latency table {path}").decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise UsageError(f"latency table {path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise UsageError(f"latency table {path}: not a bsnc latency table (expected \"format\": \"{FORMAT}\")")
        layout = data.get("layout", "contiguous")
        if not isinstance(layout, str) or layout not in LAYOUTS:
            raise UsageError(f"latency table {path}: \"layout\": {json.dumps(layout)}; expected one of "
                             f"{', '.join(map(json.dumps, LAYOUTS))}")
        try:
            table = cls(str(data["device"]), str(data["device_name"]), str(data["torch"]),
                        int(data["batch_size"]), {str(k): _time(v) for k, v in data["entries"].items()}, layout)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise UsageError(f"latency table {path}: malformed ({exc})") from None
        bad = next((k for k, v in table.entries.items() if not (math.isfinite(v) and v >= 0)), None)
        if bad is not None:
            raise UsageError(f"latency table {path}: the entry for {bad[:200]!r} is {table.entries[bad]}; expected a "
                             "time in milliseconds, a finite number >= 0")
        return table


def _time(value: Any) -> float:
    """A table entry as a float (TypeError for a bool or a non-number: JSON's true is no time)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"an entry is {json.dumps(value)[:40]}, not a number")
    return float(value)


def in_layout(module: nn.Module, x: torch.Tensor, layout: str) -> tuple[nn.Module, torch.Tensor]:
    """``module`` and its input ``x`` in ``layout`` when ``x`` is a batch of image maps."""
    if x.dim() != 4:
        return module, x
    fmt = LAYOUTS[layout]
    return module.to(memory_format=fmt), x.contiguous(memory_format=fmt)


def measure_table(network: Network, device: torch.device, batch_size: int, existing: LatencyTable | None,
                  progress: bool = True, repeats: int = 15, layout: str = "contiguous") -> tuple[LatencyTable, int]:
    """Time every edge signature not yet in ``existing`` (whose layout is ``layout``), image maps
    laid out in ``layout``; returns the table and how many were new."""
    from tqdm import tqdm

    if existing is not None and existing.layout != layout:
        raise ValueError(f"the table holds {existing.layout} timings; {layout} ones cannot extend it")
    table = existing or LatencyTable(device.type, device_name(device), torch.__version__, batch_size, {}, layout)
    todo: dict[str, Edge] = {}
    for edge in network.edges:
        signature = edge.signature()
        if signature not in table.entries and signature not in todo:
            todo[signature] = edge
    for signature, edge in tqdm(todo.items(), desc="timing edges", unit="edge", disable=not progress):
        module, x = in_layout(edge_module(edge).to(device).eval(),
                              torch.randn((batch_size,) + tuple(edge.shapes[0]), device=device), table.layout)
        table.entries[signature] = time_callable(lambda m=module, v=x: m(v), device, repeats=repeats)
    return table, len(todo)


def check_table(table: LatencyTable, path: str | Path, device: str | None = None) -> None:
    if device is not None and table.device != device:
        raise UsageError(f"latency table {path} holds {table.device} timings ({table.device_name}); "
                         f"this needs {device} timings: run `bsnc latency-table FILE --device {device}`")
    if table.torch_version != torch.__version__:
        raise UsageError(f"latency table {path} was measured with torch {table.torch_version}; this is torch "
                         f"{torch.__version__}: measure again with `bsnc latency-table`")


class LatencyCost(Additive):
    """Sum of the measured times of the active edges, in milliseconds.

    Shared gates and choice groups need nothing here (a cost sees the active edges only). An
    edge out of a `concat` layer is timed on the layer's full input: when a slot is absent, its
    exported (sliced) module is at most that slow, so the cost stays additive and is an upper
    bound there."""

    name = "latency"
    unit = "ms"

    def __init__(self, network: Network, spec: str):
        path, _, device = spec.partition("@")
        table = LatencyTable.load(path)
        check_table(table, path, device or None)
        missing = [e for e in network.edges if e.signature() not in table.entries]
        if missing:
            raise UsageError(
                f"latency table {path} has no timing for {len(missing)} of the {len(network.edges)} edges of "
                f"{network.name} (e.g. {missing[0].signature()}): it was made for another fabric or another "
                f"version of it; run `bsnc latency-table {shlex.quote(network.source or 'FILE')} -o {shlex.quote(path)}` "
                "to add them"
            )
        super().__init__(network, [table.entries[e.signature()] for e in network.edges])
        self.name = f"latency:{spec}"
        self.table = table

    def format(self, value: float) -> str:
        return f"{value:.3f} ms"

    def parse_budget(self, text: str) -> float:
        import re

        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s|us|µs)\s*", text)
        if not match:
            raise UsageError(f"--budget {text}: the latency cost is a time; expected a number with a unit "
                             "ms, s or us, e.g. 12ms")
        scale = {"ms": 1.0, "s": 1000.0, "us": 1e-3, "µs": 1e-3}[match.group(2)]
        return float(match.group(1)) * scale


@dataclass
class Agreement:
    samples: int
    spearman: float
    mean_relative_error: float
    predicted: list[float]
    measured: list[float]


def check_agreement(network: Network, table: LatencyTable, device: torch.device, samples: int = 12,
                    seed: int = 0, progress: bool = True) -> Agreement:
    """How well the table predicts measured end-to-end latency of random architectures, each
    compiled as the static network a user would deploy."""
    from tqdm import tqdm

    from bsnc.codegen.architecture import active_edges, prune
    from bsnc.codegen.loader import compile_network

    generator = torch.Generator().manual_seed(seed)
    vector = torch.tensor([table.entries[e.signature()] for e in network.edges], dtype=torch.float64)
    predicted, measured = [], []
    attempts = 0
    bar = tqdm(total=samples, desc="checking the table", unit="arch", disable=not progress)
    while len(predicted) < samples and attempts < samples * 20:
        attempts += 1
        keep = float(torch.rand((), generator=generator)) * 0.6 + 0.4
        proposal = torch.rand(len(network.edges), generator=generator) < keep
        try:
            active = active_edges(network, proposal)
            static = prune(network, proposal)
        except BsncError:
            continue  # inconsistent, or a concat slot no static network can fill: nothing to time
        module, x = in_layout(compile_network(static)().to(device).eval(),
                              torch.randn((table.batch_size,) + tuple(network.layer(network.input).shape),
                                          device=device), table.layout)
        measured.append(time_callable(lambda m=module, v=x: m(v), device))
        predicted.append(float(active.to(torch.float64) @ vector))
        bar.update(1)
    bar.close()
    if len(predicted) < 2:
        raise BsncError("could not sample two consistent architectures to check the table")
    return Agreement(len(predicted), spearman(predicted, measured),
                     statistics.fmean(abs(p - m) / m for p, m in zip(predicted, measured)), predicted, measured)


def spearman(a: list[float], b: list[float]) -> float:
    def ranks(values: list[float]) -> list[float]:
        order = sorted(range(len(values)), key=values.__getitem__)
        result = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                result[order[k]] = (i + j) / 2.0
            i = j + 1
        return result

    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return cov / var if var else 0.0


def write_table(table: LatencyTable, path: str | Path) -> None:
    atomic_write_text(path, table.to_json())
