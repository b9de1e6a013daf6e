"""`bsnc export --prune`: a trained super network's chosen architecture as artefacts that stand on
their own: a static `.bsn` file, its weights, a plain PyTorch module and a diagram."""

from __future__ import annotations

import io
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bsnc import numeric
from bsnc.codegen.architecture import active_edges, prune
from bsnc.codegen.generate import generate
from bsnc.codegen.loader import compile_network
from bsnc.costs.memory import check_fits
from bsnc.costs.registry import parse_cost
from bsnc.errors import BsncError, display_path
from bsnc.files import OutputError, remove_staging, replace_directory, staging_directory
from bsnc.ir import Layer, Network, OpCall, ResolvedCall
from bsnc.lang import ast
from bsnc.lang.formatter import format_file
from bsnc.lang.frontend import network_from_program, network_from_text
from bsnc.lang.program import Program, load_program
from bsnc.ops import REGISTRY, REQUIRED, printable
from bsnc.search.checkpoint import find_checkpoint, load_checkpoint, load_weights


@dataclass
class ExportResult:
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    dot_missing: bool = False
    active: torch.Tensor | None = None
    pruned: Network | None = None


# --- values and calls back to syntax ----------------------------------------------------------


def literal(value: Any) -> ast.Expr:
    if isinstance(value, bool):
        return ast.BoolLit(value)
    if isinstance(value, int):
        return ast.UnaryOp("-", ast.IntLit(-value)) if value < 0 else ast.IntLit(value)
    if isinstance(value, float):
        return ast.UnaryOp("-", ast.FloatLit(-value)) if value < 0 else ast.FloatLit(value)
    if isinstance(value, str):
        return ast.StrLit(value)
    raise TypeError(f"cannot write {value!r} in .bsn")


def _resolved_call(call: ResolvedCall) -> ast.ModCall:
    args = tuple(ast.Arg(name, literal(value)) for name, value in call.args)
    return ast.ModCall(call.name, args)


def _op_call(op: OpCall) -> ast.ModCall:
    """A primitive call with only its non-default arguments; required ones positional first."""
    prim = REGISTRY[op.prim]
    args: list[ast.Arg] = []
    values = op.kwargs
    positional = True
    for spec in prim.args:
        value = values[spec.name]
        if spec.default is REQUIRED and positional:
            args.append(ast.Arg(None, literal(value)))
            continue
        positional = False
        if spec.default is REQUIRED or value != spec.default or type(value) is not type(spec.default):
            args.append(ast.Arg(spec.name, literal(value)))
    return ast.ModCall(op.prim, tuple(args))


def _layer_name(layer: Layer) -> ast.LayerName:
    return ast.LayerName(layer.base, tuple(ast.IntLit(i) for i in layer.indices))


def _layer_decl(layer: Layer) -> ast.LayerDecl:
    post = ast.ModExpr(tuple(_op_call(op) for op in layer.post)) if layer.post else None
    at = (literal(layer.position[0]), literal(layer.position[1])) if layer.position is not None else None
    aggregate = layer.aggregate if layer.aggregate != "sum" else None
    shape = tuple(ast.IntLit(d) for d in layer.shape)
    return ast.LayerDecl(layer.kind, _layer_name(layer), shape, aggregate, post, at)


def _used_modules(program: Program, names: list[str]) -> list[ast.ModuleDef]:
    """Module definitions the kept edges use, with those they use in turn, in dependency order."""
    ordered: list[ast.ModuleDef] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen or name not in program.modules:
            return
        seen.add(name)
        definition = program.modules[name][0]
        for call in definition.body.calls:
            visit(call.name)
        ordered.append(definition)

    for name in names:
        visit(name)
    return ordered


def pruned_source(network: Network, pruned: Network, program: Program, header: list[str]) -> str:
    """Canonical `.bsn` text of the pruned network: every edge fixed, parameters resolved,
    used module types copied in, so the file stands on its own."""
    called = sorted({c.name for e in pruned.edges for c in e.calls if c.name not in REGISTRY})
    items: list[ast.Stmt] = [ast.Comment(f"# {printable(line)}".rstrip()) for line in header]
    definitions = _used_modules(program, called)
    if definitions:
        items.append(ast.Blank())
        items.extend(ast.ModuleDef(d.name, d.params, d.body) for d in definitions)
    body: list[ast.Stmt] = [_layer_decl(layer) for layer in pruned.layers]
    body.append(ast.Blank())
    for edge in pruned.edges:
        src = _layer_name(pruned.layer(edge.src))
        dst = _layer_name(pruned.layer(edge.dst))
        module = ast.ModExpr(tuple(_resolved_call(c) for c in edge.calls))
        body.append(ast.EdgeStmt(True, src, dst, edge.name, module, None))
    items.append(ast.Blank())
    items.append(ast.NetworkDef(f"{network.name}_pruned", (), tuple(body)))
    return format_file(ast.File(path="", items=tuple(items)))


# --- the export ------------------------------------------------------------------------------


def _copy_weights(super_module: torch.nn.Module, pruned_module: torch.nn.Module) -> None:
    source = dict(zip(type(super_module).EDGE_KEYS, super_module.edges.values()))
    for key, target in zip(type(pruned_module).EDGE_KEYS, pruned_module.edges.values()):
        target.load_state_dict(source[key].state_dict())


def export(network: Network, program: Program, state: dict[str, torch.Tensor], out_dir: Path,
           proposal: torch.Tensor | None = None, threshold: float = 0.5, meta: dict[str, Any] | None = None,
           draw_diagram: bool = True) -> ExportResult:
    """Write NAME_pruned.bsn, NAME_pruned.pt, NAME_pruned.py and the diagram into ``out_dir``."""
    numeric.real("--keep-threshold", threshold, 0, 1, min_open=True, max_open=True)
    meta = dict(meta or {})
    check_fits(network, torch.device("cpu"))
    super_module = compile_network(network)()
    load_weights(super_module, state, meta.get("checkpoint", "the checkpoint"), f"network {network.name}")
    gammas: dict[str, float] = {}
    logits: dict[str, float] = {}
    if network.stochastic_edges:
        theta = super_module.gate_logits.detach()
        gammas = dict(zip((e.key for e in network.stochastic_edges), torch.sigmoid(theta).tolist()))
        logits = dict(zip((e.key for e in network.stochastic_edges), theta.tolist()))
    if proposal is None:
        # compare logits, as deterministic evaluation does (gamma > 0.5 is logit > 0)
        cut = math.log(threshold / (1 - threshold))
        proposal = torch.tensor([e.fixed or logits[e.key] > cut for e in network.edges])
    active = active_edges(network, proposal)
    pruned = prune(network, proposal)

    name = network.name
    header = [
        f"{name}_pruned: the architecture bsnc export chose from {network.source or name}.",
        f"source sha256 {network.source_hash}",
        f"parameters {', '.join(f'{k}={v!r}' for k, v in network.params.items()) or '(none)'}",
        f"kept {int(active.sum())} of {len(network.edges)} edges"
        + (f" (gamma > {threshold})" if "mask" not in meta else f" (mask {meta['mask']})"),
    ]
    if meta.get("cost"):
        header.append(f"cost {meta['cost']}, budget {meta.get('budget_text', meta.get('budget'))}")
    for cost_name in ("flops", "params"):
        value = parse_cost(cost_name, pruned).full()
        header.append(f"{cost_name} {value:,.0f} (super network {parse_cost(cost_name, network).full():,.0f})")
    for key in ("val_acc", "test_acc"):
        if meta.get(key) is not None:
            header.append(f"{key.replace('_acc', ' accuracy')} {meta[key] * 100:.2f}%")

    _check_own_directory(out_dir)
    remove_staging(out_dir)  # what an interrupted export of this directory left
    staging = staging_directory(out_dir)
    result = ExportResult(out_dir=out_dir, active=active, pruned=pruned)
    try:
        bsn_name = f"{name}_pruned.bsn"
        text = pruned_source(network, pruned, program, header)
        (staging / bsn_name).write_text(text, encoding="utf-8")
        # named by its final file name, so that the .py never names the staging directory and two
        # exports of one run are byte-identical wherever they are written
        reloaded = network_from_text(text, name=bsn_name)
        pruned_module = compile_network(reloaded)()
        _copy_weights(super_module, pruned_module)
        buffer = io.BytesIO()
        torch.save(pruned_module.state_dict(), buffer)
        (staging / f"{name}_pruned.pt").write_bytes(buffer.getvalue())
        (staging / f"{name}_pruned.py").write_text(generate(reloaded), encoding="utf-8")
        if draw_diagram:
            from bsnc.export.draw import draw

            title = f"{name}: kept {int(active.sum())}/{len(network.edges)} edges"
            if meta.get("cost"):
                title += f", {meta['cost']} budget {meta.get('budget_text', meta.get('budget'))}"
            drawn = draw(network, staging / name, gammas=gammas or None, title=title, threshold=threshold,
                         kept=active.tolist())
            result.dot_missing = drawn.dot_missing
        names = sorted(item.name for item in staging.iterdir())
        replace_directory(staging, out_dir)
        result.files = [out_dir / n for n in names]
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot write the export ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


_OWN_SUFFIXES = (".bsn", ".pt", ".py", ".dot", ".svg", ".png")


def _check_own_directory(out_dir: Path) -> None:
    """Export replaces its directory as a whole; refuse one that holds files it did not write."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: not a directory; export writes a directory of files")
    if not out_dir.is_dir():
        return
    foreign = sorted(p.name for p in out_dir.iterdir() if p.suffix not in _OWN_SUFFIXES or p.is_dir())
    if foreign:
        raise OutputError(f"{out_dir} holds files that export did not write (e.g. {foreign[0]!r}); export "
                          "replaces its output directory as a whole: choose a new or empty directory")


def export_run(path: Path, out_dir: Path | None, mask: Path | None, threshold: float,
               draw_diagram: bool = True) -> ExportResult:
    """Export from a run directory (best.pt when there is one, else ckpt.pt) or a checkpoint."""
    from bsnc.codegen.masks import load_mask

    checkpoint = find_checkpoint(path, "best.pt")
    state = load_checkpoint(checkpoint)
    config = state.get("config", {})
    file = Path(config.get("file", ""))
    if not file.is_file():
        raise BsncError(f"{display_path(checkpoint)} was trained from {file}, which is not there any more")
    program = load_program(file)
    if program.source_hash() != state.get("source_hash"):
        raise BsncError(f"{display_path(checkpoint)} does not match {file}: the .bsn source changed since training "
                        f"(sha256 {state.get('source_hash', '?')[:12]}… then, {program.source_hash()[:12]}… now)")
    network = network_from_program(program, state.get("defines", {}))
    proposal = load_mask(mask, network) if mask is not None else None
    history = state.get("history") or []
    last = history[-1] if history else {}
    meta = {
        "cost": state.get("cost"),
        "budget_text": config.get("budget"),
        "val_acc": _fraction(last.get("val_acc")),
        "test_acc": _fraction(last.get("test_acc")),
    }
    if mask is not None:
        meta["mask"] = str(mask)
    meta["checkpoint"] = display_path(checkpoint)
    target = out_dir if out_dir is not None else Path(checkpoint).parent / "export"
    return export(network, program, state["model"], target, proposal, threshold, meta, draw_diagram)


def _fraction(value: Any) -> float | None:
    """An accuracy recorded in a checkpoint, or None when it is missing or not a number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
