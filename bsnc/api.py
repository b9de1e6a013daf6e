"""The public Python API (docs/api.md): load a `.bsn` network as a module, train it under a
budget, export what it chose, and the built-in data sets. The `bsnc` command is a thin layer
over these functions.

    >>> import bsnc
    >>> model = bsnc.load("cnf_w8", C=16)                # a shipped fabric by name, or a path
    >>> run = bsnc.train("cnf_w8", "digits", defines={"C": 8, "size": 8, "in_channels": 1},
    ...                  budget="1M", epochs=2)         # the CLI's options, as keywords
    >>> bsnc.export(run, "shipped/")                     # pruned .bsn, weights, .py, diagram
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bsnc.codegen.generate import generate
from bsnc.codegen.loader import compile_network
from bsnc.costs.memory import check_fits
from bsnc.errors import UsageError
from bsnc.lang.frontend import load_network as _load_network
from bsnc.lang.shipped import resolve_bsn, shipped_names
from bsnc.search.data import DATASETS, DataInfo, Splits, load_data
from bsnc.search.train import TrainConfig, TrainResult
from bsnc.search.train import train as _train


def load_network(path: str | Path, overrides: Mapping[str, Any] | None = None):  # -> bsnc.ir.Network
    """The checked network of ``path`` (a `.bsn` file, or a shipped fabric's name) with -D values."""
    return _load_network(resolve_bsn(path), overrides)


def compile_source(path: str | Path, **params: Any) -> str:
    """The generated Python source for the network in ``path`` with parameter overrides."""
    return generate(load_network(path, params))


def load(path: str | Path, **params: Any) -> nn.Module:
    """An instance of the network in ``path``: ``bsnc.load("fabrics/cnf.bsn", W=4, C=16)`` or
    ``bsnc.load("cnf_w8")``. The instance remembers its file and overrides, for `export`."""
    file = resolve_bsn(path)
    network = _load_network(file, params)
    check_fits(network, torch.device("cpu"))  # a clear error rather than the allocator's
    model = compile_network(network)()
    model.bsnc_file = str(file.resolve())
    model.bsnc_defines = dict(params)
    return model


# --- data ---------------------------------------------------------------------------------------


def datasets() -> dict[str, str]:
    """The built-in data sets' names and one-line descriptions."""
    return {name: entry.description for name, entry in DATASETS.items()}


def dataset(name: str, data_dir: str | Path | None = None, seed: int = 0, *,
            input_shape: tuple[int, ...] | None = None, num_classes: int | None = None,
            augment: bool = True) -> Splits:
    """The train/val/test splits of a data set as `--data NAME` gives them (``.train``, ``.val``,
    ``.test`` are torch Datasets, ``.info`` their shapes and classes). ``input_shape`` and
    ``num_classes`` size the generated sets and images of ``imagefolder``."""
    return load_data(name, Path(data_dir) if data_dir is not None else None, seed, input_shape, num_classes, augment)


# --- training -----------------------------------------------------------------------------------

_OPTIONS = {f.name for f in dataclasses.fields(TrainConfig)} - {"file", "defines", "data", "run_dir"}


def train(network: str | Path | nn.Module, data: Any = "digits", *, defines: Mapping[str, Any] | None = None,
          run_dir: str | Path | None = None, progress: bool = False, quiet: bool = True,
          **options: Any) -> TrainResult:
    """Train ``network`` (a `.bsn` path, a shipped fabric's name, or a module from `load`, whose
    file, overrides and current weights it starts from) on ``data``: a data set name (as
    ``--data``) or your own ``(train, val, test)`` torch Datasets of ``(x, y)`` pairs.

    ``options`` are `bsnc train`'s long options with underscores (``budget="400k"``,
    ``epochs=2``, ``cost="params"``, ``lam=2.0``, ``optimizer="sgd"``, ``device="cuda:1"``, ...)
    with the same defaults. ``run_dir`` defaults to a new ``runs/NAME/N`` as on the command line.
    Returns the run: ``.run_dir``, ``.model`` (the trained super network), ``.history``
    (per-epoch metrics), ``.test_acc``."""
    from bsnc.output import choose_run_dir, discard_run_dir, missing_dirs

    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise UsageError(f"bsnc.train: unknown option {unknown[0]!r}; expected one of {', '.join(sorted(_OPTIONS))}")
    initial = None
    if isinstance(network, nn.Module):
        if getattr(network, "bsnc_file", None) is None:
            raise UsageError("bsnc.train: this module does not come from bsnc.load; give its .bsn file instead")
        defines = {**network.bsnc_defines, **(defines or {})}
        initial = {k: v.detach().cpu() for k, v in network.state_dict().items()}
        network = network.bsnc_file
    file = resolve_bsn(network)
    if not file.is_file():
        raise UsageError(f"bsnc.train: {network}: no such file, and no shipped fabric has that name "
                         f"(shipped: {', '.join(shipped_names())})")
    given = None
    name = data
    if not isinstance(data, str):
        given, name = data, getattr(data, "name", "custom")
    if isinstance(options.get("milestones"), list):
        options["milestones"] = tuple(options["milestones"])
    base = Path("runs") / file.stem
    created = missing_dirs(base)
    chosen = choose_run_dir(Path(run_dir) if run_dir is not None else None, base, bool(options.get("resume")))
    data_dir = options.pop("data_dir", None)
    config = TrainConfig(file=str(file.resolve()), defines={k: str(v) for k, v in (defines or {}).items()},
                         data=str(name), data_dir=str(data_dir) if data_dir else None, run_dir=str(chosen),
                         progress=progress, quiet=quiet, **options)
    try:
        return _train(config, given, initial)
    except BaseException:
        if run_dir is None and not config.resume:
            discard_run_dir(chosen, created)  # a run that stopped before its first checkpoint leaves no trace
        raise


def run_summary(result: TrainResult) -> dict[str, Any]:
    """What `bsnc train --json` prints: where the run is and how it ended."""
    last = result.history[-1] if result.history else None
    return {
        "run_dir": str(result.run_dir), "network": result.network.name, "test_acc": result.test_acc,
        "deterministic_cost": result.deterministic_cost, "budget": result.budget,
        "within_budget": bool(last.within_budget) if last else None, "epochs": len(result.history),
        "best": str(Path(result.run_dir) / "best.pt") if (Path(result.run_dir) / "best.pt").is_file() else None,
        "last": dataclasses.asdict(last) if last else None,
    }


# --- export -------------------------------------------------------------------------------------


def export(source: Any, out_dir: str | Path | None = None, *, network: str | Path | None = None,
           defines: Mapping[str, Any] | None = None, mask: str | Path | None = None, keep_threshold: float = 0.5,
           draw: bool = True, pick: str | None = None,
           allow_over_budget: bool = False):  # -> bsnc.export.exporter.ExportResult
    """Export the architecture a trained super network chose: NAME_pruned.bsn, NAME_pruned.pt,
    NAME_pruned.py and a diagram in ``out_dir``.

    ``source`` is a run directory or checkpoint (as `bsnc export`), the result of `train`, a
    model from `load` trained in your own loop, or a state dict of such a model (then give the
    ``network`` file and its ``defines``). ``out_dir`` defaults to RUN_DIR/export for runs. For a
    run, ``pick`` chooses the point of its Pareto front (``"best"``, ``"cheapest"`` or a cost such
    as ``"200k"``), and an architecture over the run's budget is refused unless
    ``allow_over_budget``."""
    import torch

    from bsnc.export.exporter import export as export_network
    from bsnc.export.exporter import export_run
    from bsnc.lang.program import load_program

    out = Path(out_dir) if out_dir is not None else None
    if isinstance(source, TrainResult):
        source = source.run_dir
    if isinstance(source, (str, Path)) and network is None:
        return export_run(Path(source), out, Path(mask) if mask is not None else None, keep_threshold, draw,
                          pick=pick, allow_over_budget=allow_over_budget)
    if isinstance(source, nn.Module):
        if network is None and getattr(source, "bsnc_file", None) is None:
            raise UsageError("bsnc.export: this module does not come from bsnc.load; give network=FILE.bsn")
        network = network or source.bsnc_file
        defines = defines if defines is not None else getattr(source, "bsnc_defines", {})
        state = source.state_dict()
    elif isinstance(source, (str, Path)):
        from bsnc.export.statedict import read_state_dict

        state = read_state_dict(Path(source))
    elif isinstance(source, Mapping):
        state = dict(source)
    else:
        raise UsageError(f"bsnc.export: cannot export a {type(source).__name__}; expected a run directory, a "
                         "checkpoint, a TrainResult, a module from bsnc.load or its state dict")
    if network is None:
        raise UsageError("bsnc.export: a state dict needs network=FILE.bsn (and its defines)")
    if out is None:
        raise UsageError("bsnc.export: give out_dir for a model or a state dict")
    file = resolve_bsn(network)
    program = load_program(file)
    from bsnc.lang.frontend import network_from_program

    net = network_from_program(program, dict(defines or {}))
    state = {k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v) for k, v in state.items()}
    from bsnc.export.statedict import check_state_dict

    check_state_dict(state, net)
    proposal = None
    meta: dict[str, Any] = {}
    if mask is not None:
        from bsnc.codegen.masks import load_mask

        proposal = load_mask(Path(mask), net)
        meta["mask"] = str(mask)  # the header says the mask chose the edges
    return export_network(net, program, state, out, proposal, keep_threshold, meta, draw)


__all__ = ["DataInfo", "Splits", "TrainResult", "compile_network", "compile_source", "dataset", "datasets",
           "export", "load", "load_network", "run_summary", "train"]
