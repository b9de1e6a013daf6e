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

from bsnc import numeric, primitives
from bsnc.codegen.architecture import (
    active_edges,
    concat_channels,
    edge_gammas,
    full_network,
    kept_edges,
    kept_proposal,
    prune,
)
from bsnc.codegen.generate import generate
from bsnc.codegen.loader import compile_network
from bsnc.costs.memory import check_fits
from bsnc.costs.registry import parse_cost
from bsnc.errors import BsncError, SourceError, UsageError, display_path
from bsnc.files import LEDGER, OutputError, remove_staging, replace_directory, staging_directory
from bsnc.ir import Edge, Layer, Network, OpCall, ResolvedCall
from bsnc.lang import ast
from bsnc.lang.formatter import format_file
from bsnc.lang.frontend import network_from_program, network_from_text
from bsnc.lang.program import Program, load_program
from bsnc.ops import REGISTRY, REQUIRED, printable
from bsnc.search.checkpoint import find_checkpoint, follow_latest, load_checkpoint, load_weights


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


def _edge_name(name: str | None) -> ast.LayerName | None:
    """``op[3]`` back to syntax: a base name and integer indices."""
    if name is None:
        return None
    base, *indices = name.replace("]", "").split("[")
    return ast.LayerName(base, tuple(ast.IntLit(int(i)) for i in indices))


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


def pruned_source(network: Network, pruned: Network, program: Program, header: list[str],
                  inline: frozenset[str] = frozenset()) -> str:
    """Canonical `.bsn` text of the pruned network: every edge fixed, parameters resolved,
    used module types copied in, so the file stands on its own. A `concat` layer's edges are
    written in slot order (the order that defines the slots). The edges of ``inline`` are written
    as their primitives (a module type after a narrowed `concat` layer may read its input's
    channels), through a module type of their own when they carry a `cost`."""
    rank = pruned.layer_index
    edges = sorted(pruned.edges, key=lambda e: (rank[e.dst], e.slot if e.slot is not None else 0))
    called = sorted({c.name for e in edges if e.key not in inline for c in e.calls if c.name not in REGISTRY})
    items: list[ast.Stmt] = [ast.Comment(f"# {printable(line)}".rstrip()) for line in header]
    definitions = _used_modules(program, called)
    taken = set(REGISTRY) | set(program.modules)
    costed: dict[str, str] = {}  # an inlined edge with a cost: the module type written for it
    for edge in edges:
        if edge.key in inline and edge.extra_macs:
            costed[edge.key] = fresh_name("inlined", taken)
            body_ops = ast.ModExpr(tuple(_op_call(op) for op in edge.ops))
            definitions.append(ast.ModuleDef(costed[edge.key], (), body_ops, literal(edge.extra_macs)))
    if definitions:
        items.append(ast.Blank())
        items.extend(ast.ModuleDef(d.name, d.params, d.body, d.cost) for d in definitions)
    body: list[ast.Stmt] = [_layer_decl(layer) for layer in pruned.layers]
    body.append(ast.Blank())
    for edge in edges:
        src = _layer_name(pruned.layer(edge.src))
        dst = _layer_name(pruned.layer(edge.dst))
        if edge.key in costed:
            calls: tuple[ast.ModCall, ...] = (ast.ModCall(costed[edge.key], ()),)
        elif edge.key in inline:
            calls = tuple(_op_call(op) for op in edge.ops)
        else:
            calls = tuple(_resolved_call(c) for c in edge.calls)
        body.append(ast.EdgeStmt(True, src, dst, _edge_name(edge.name), ast.ModExpr(calls), None, None))
    items.append(ast.Blank())
    items.append(ast.NetworkDef(f"{network.name}_pruned", (), tuple(body)))
    return format_file(ast.File(path="", items=tuple(items)))


def fresh_name(base: str, taken: set[str], separator: str = "", first: int = 1) -> str:
    """``base``, or ``base`` with the first free number (from ``first``) after ``separator``;
    added to ``taken``."""
    name, index = base, first
    while name in taken:
        name = f"{base}{separator}{index}"
        index += 1
    taken.add(name)
    return name


def _differing(pruned: Network, reloaded: Network) -> frozenset[str]:
    """Keys of the edges whose written form does not give back the pruned network's edge."""
    return frozenset(e.key for e in pruned.edges
                     if e.key not in reloaded.edge_index
                     or (reloaded.edge(e.key).ops, reloaded.edge(e.key).extra_macs) != (e.ops, e.extra_macs))


def _written(network: Network, pruned: Network, program: Program, header: list[str],
             name: str) -> tuple[str, Network]:
    """The pruned network's `.bsn` text and that text loaded back, checked to be the pruned
    network. An edge out of a narrowed `concat` layer that calls a module type is written as its
    primitives when the module type, seeing fewer input channels, would expand otherwise."""
    narrowed = set(concat_channels(network, pruned))
    readers = frozenset(e.key for e in pruned.edges
                        if e.src in narrowed and any(c.name not in REGISTRY for c in e.calls))
    inline: frozenset[str] = frozenset()
    differing: frozenset[str] = frozenset()
    for _ in range(3):
        text = pruned_source(network, pruned, program, header, inline)
        try:
            reloaded = network_from_text(text, name=name)
        except SourceError:
            if readers <= inline:
                raise
            inline |= readers  # a module type that reads its input's channels no longer fits
            continue
        differing = _differing(pruned, reloaded)
        if not differing:
            return text, reloaded
        if differing <= inline:
            break
        inline |= differing
    raise BsncError(f"export could not write the architecture as .bsn: edge {sorted(differing or inline)[0]!r} does not "
                    "read back as it is in the super network")


# --- the export ------------------------------------------------------------------------------


def _copy_weights(super_module: torch.nn.Module, pruned_module: torch.nn.Module, network: Network,
                  pruned: Network) -> None:
    """Each pruned edge's weights from the super network's edge of the same key; the head of an
    edge out of a narrowed `concat` layer keeps the input weights of the channels that remain.
    The `zero` edges of absent slots have none."""
    source = dict(zip(type(super_module).EDGE_KEYS, super_module.edges.values()))
    narrowed = concat_channels(network, pruned)
    for key, target in zip(type(pruned_module).EDGE_KEYS, pruned_module.edges.values()):
        if key not in source:
            continue
        state = source[key].state_dict()
        edge = network.edge(key)
        if edge.src in narrowed:
            state = _sliced_head(edge, state, narrowed[edge.src], network.layer(edge.src).shape[0])
        target.load_state_dict(state)


def _sliced_head(edge: Edge, state: dict[str, torch.Tensor], channels: list[int],
                 width: int) -> dict[str, torch.Tensor]:
    """``state`` of ``edge`` with its head's input weights only for ``channels`` of the ``width``
    channels of its source: a conv's input channels, or a linear layer's features, each channel a
    block of consecutive ones (its H·W values when a flatten comes before)."""
    head = edge.head()
    assert head is not None, "prune narrows a concat layer only when every edge out of it has a head"
    block = math.prod(edge.shapes[head]) // width if edge.ops[head].prim == "linear" else 1
    index = torch.tensor([c * block + j for c in channels for j in range(block)], dtype=torch.long)
    state = dict(state)
    state[f"{head}.weight"] = state[f"{head}.weight"].index_select(1, index).clone()
    return state


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
    if network.stochastic_edges:
        gammas = edge_gammas(network, super_module.gate_logits)
    what = _proposed_by(meta, threshold, given=proposal is not None)
    if proposal is None:
        proposal = kept_proposal(network, super_module.gate_logits.detach(), threshold) \
            if network.stochastic_edges else torch.ones(len(network.edges), dtype=torch.bool)
    active = active_edges(network, proposal, what)
    pruned = prune(network, proposal)

    name = network.name
    header = [
        f"{name}_pruned: the architecture bsnc export chose from {network.source or name}.",
        f"source sha256 {network.source_hash}",
        f"parameters {', '.join(f'{k}={v!r}' for k, v in network.params.items()) or '(none)'}",
        f"kept {int(active.sum())} of {len(network.edges)} edges ({_rule(network, threshold, meta)})",
    ]
    decided = _decided(network, proposal)
    if decided:
        header.append(f"decisions {decided}")
    if meta.get("cost"):
        header.append(f"cost {meta['cost']}, {_budget_words(meta)}")
    for cost_name in ("flops", "params"):
        value = parse_cost(cost_name, pruned).full()
        header.append(f"{cost_name} {value:,.0f} (super network {parse_cost(cost_name, network).full():,.0f})")
    for key in ("val_acc", "test_acc"):
        if meta.get(key) is not None:
            header.append(f"{key.replace('_acc', ' accuracy')} {meta[key] * 100:.2f}%")
    if meta.get("not_evaluated"):
        header.append("accuracy not measured: the run evaluated another architecture (its gates at gamma > 0.5)")
    used = primitives.origins(sorted(pruned.primitives_used()))
    if used:
        header.append(f"user primitives {', '.join(f'{k} ({v})' for k, v in used.items())}")

    _check_own_directory(out_dir, name)
    remove_staging(out_dir)  # what an interrupted export of this directory left
    staging = staging_directory(out_dir)
    result = ExportResult(out_dir=out_dir, active=active, pruned=pruned)
    try:
        bsn_name = f"{name}_pruned.bsn"
        # named by its final file name, so that the .py never names the staging directory and two
        # exports of one run are byte-identical wherever they are written
        text, reloaded = _written(network, pruned, program, header, bsn_name)
        (staging / bsn_name).write_text(text, encoding="utf-8")
        pruned_module = compile_network(reloaded)()
        _copy_weights(super_module, pruned_module, network, reloaded)
        buffer = io.BytesIO()
        torch.save(pruned_module.state_dict(), buffer)
        (staging / f"{name}_pruned.pt").write_bytes(buffer.getvalue())
        (staging / f"{name}_pruned.py").write_text(generate(reloaded), encoding="utf-8")
        if draw_diagram:
            from bsnc.export.draw import draw

            title = f"{name}: kept {int(active.sum())}/{len(network.edges)} edges"
            if meta.get("cost"):
                title += f", {meta['cost']} {_budget_words(meta)}"
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


def _decided(network: Network, proposal: torch.Tensor) -> str:
    """The values the architecture gives the shared gates and the choice groups, e.g.
    ``g on, pick op[1]`` (an option: the first whose members are proposed, else `zero`'s)."""
    on = proposal.tolist()
    shown = []
    for index, decision in enumerate(network.decisions):
        if not decision.shared:
            continue
        members = [e for e in network.decision_edges(index) if on[network.edge_index[e.key]]]
        if decision.kind == "gate":
            shown.append(f"{decision.name} {'on' if members else 'off'}")
        else:
            chosen = members[0].name if members else decision.zero or "none"
            shown.append(f"{decision.name} {chosen}")
    return ", ".join(shown)


def _proposed_by(meta: dict[str, Any], threshold: float, given: bool = False) -> str:
    """What proposed the exported architecture (``given``: the caller's mask), for messages."""
    if "mask" in meta:
        return f"the mask {meta['mask']}"
    return "the mask" if given else f"the edges kept at --keep-threshold {threshold}"


def _budget_words(meta: dict[str, Any]) -> str:
    """The run's budget for the header and the diagram's title ("no budget" for a run without
    one, such as a `--full-network` baseline)."""
    budget = meta.get("budget_text", meta.get("budget"))
    return "no budget" if budget is None else f"budget {budget}"


def _rule(network: Network, threshold: float, meta: dict[str, Any]) -> str:
    """How the exported edges were chosen, for the header."""
    if "mask" in meta:
        return f"mask {meta['mask']}"
    if meta.get("full_network"):
        return "every edge: the run trained the full network (--full-network)"
    if not network.stochastic_edges:
        return "every edge: the network has no stochastic edge"
    if any(d.kind == "choice" for d in network.decisions):
        return f"gates with gamma > {threshold}; each choice group its most probable option"
    return f"gamma > {threshold}"


def _check_own_directory(out_dir: Path, name: str) -> None:
    """Export replaces its directory as a whole; refuse one that holds anything but the files an
    export of network ``name`` writes (so no file of the user's is ever swapped away)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: not a directory; export writes a directory of files")
    if not out_dir.is_dir():
        return
    own = {f"{name}_pruned{suffix}" for suffix in (".bsn", ".pt", ".py")}
    own |= {f"{name}{suffix}" for suffix in (".dot", ".svg", ".png")} | {LEDGER}
    foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in own or not p.is_file())
    if foreign:
        raise OutputError(f"{out_dir} holds files that export did not write (e.g. {foreign[0]!r}); export "
                          "replaces its output directory as a whole: choose a new or empty directory")


def export_run(path: Path, out_dir: Path | None, mask: Path | None, threshold: float,
               draw_diagram: bool = True, pick: str | None = None, allow_over_budget: bool = False) -> ExportResult:
    """Export from a run directory (the point ``pick`` of its Pareto front: ``best``, the
    default, whose copy best.pt is; ``cheapest``; or a cost) or from a checkpoint file. An architecture over
    the run's budget is refused unless ``allow_over_budget``."""
    from bsnc.codegen.masks import load_mask

    numeric.real("--keep-threshold", threshold, 0, 1, min_open=True, max_open=True)  # before it proposes edges
    checkpoint = _choose_checkpoint(Path(path), pick, allow_over_budget)
    state = load_checkpoint(checkpoint)
    config = state.get("config", {})
    file, program = recorded_program(state, checkpoint)
    network = _trained_network(program, state)
    proposal = load_mask(mask, network) if mask is not None else None
    if proposal is None and network.stochastic_edges:
        logits = state["model"].get("gate_logits")
        wanted = (network.n_logits,)
        if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != wanted:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise BsncError(f"{display_path(checkpoint)}: its weights do not fit network {network.name}: "
                            f"gate_logits is {shape}, expected {wanted} (one per gate and per option)")
        proposal = kept_proposal(network, logits, threshold)
    what = _proposed_by({"mask": str(mask)} if mask is not None else {}, threshold)
    if not allow_over_budget and proposal is not None:
        _check_budget(network, state, proposal, checkpoint, what)
    history = state.get("history") or []
    last = history[-1] if history else {}
    meta: dict[str, Any] = {
        "cost": state.get("cost"),
        "budget_text": config.get("budget"),
        "val_acc": _fraction(last.get("val_acc")),
        "test_acc": _fraction(last.get("test_acc")),
    }
    if proposal is not None and not _evaluated(network, state["model"].get("gate_logits"), proposal, what):
        # the accuracies recorded are of the architecture the run evaluated, not of this one
        meta.update(val_acc=None, test_acc=None, not_evaluated=True)
    if mask is not None:
        meta["mask"] = str(mask)
    if config.get("full_network"):
        meta["full_network"] = True
    meta["checkpoint"] = display_path(checkpoint)
    target = out_dir if out_dir is not None else Path(checkpoint).parent / "export"
    if target == checkpoint.parent / "export" and checkpoint.parent.name == "pareto":
        target = checkpoint.parent.parent / "export"
    return export(network, program, state["model"], target, proposal, threshold, meta, draw_diagram)


def recorded_program(state: dict[str, Any], checkpoint: Path) -> tuple[Path, Program]:
    """The .bsn program a checkpoint was trained from (its config's file, with its primitives),
    checked against the source hash it records. A file that does not parse is not that network:
    it is refused without quoting it (a damaged checkpoint may name any file, /etc/passwd)."""
    config = state.get("config", {})
    file = Path(config.get("file", ""))
    shown = display_path(checkpoint)
    if not file.is_file():
        raise BsncError(f"{shown} was trained from {file}, which is not there any more")
    primitives.load(config.get("primitives", []))
    try:
        program = load_program(file)
    except SourceError:
        raise BsncError(f"{shown} records {file} as the source it was trained from, but that file is not a "
                        ".bsn network (it does not parse): not the network of this checkpoint, or it was "
                        "changed since training") from None
    if program.source_hash() != state.get("source_hash"):
        raise BsncError(f"{shown} does not match {file}: the .bsn source changed since training "
                        f"(sha256 {state.get('source_hash', '?')[:12]}… then, {program.source_hash()[:12]}… now)")
    return file, program


def _choose_checkpoint(path: Path, pick: str | None, allow_over_budget: bool) -> Path:
    """The checkpoint to export: a file as given, or a run directory's chosen Pareto point."""
    from bsnc.search.selection import ParetoFront

    if not path.is_dir():
        if pick is not None:
            raise UsageError(f"--pick {pick}: give a run directory, not the checkpoint {display_path(path)}")
        return find_checkpoint(path)
    path = follow_latest(path)  # runs/NAME: its newest numbered run, as find_checkpoint does
    pick = pick or "best"
    if pick == "best" and (path / "best.pt").is_file() and not (path / "ckpt.pt").is_file():
        return path / "best.pt"
    # the front that ckpt.pt records chooses, "best" too: best.pt is a copy of its best point,
    # which a crash between the two writes of an epoch can leave one epoch ahead of it
    last = find_checkpoint(path, "ckpt.pt")
    state = load_checkpoint(last)
    front = ParetoFront.from_json(state.get("pareto", []), display_path(last))
    if pick == "best" and front.best() is None:
        if allow_over_budget:
            return last
        raise BsncError(f"{display_path(path)}: no architecture of this run reaches the output within its budget "
                        f"{state.get('config', {}).get('budget')} (Pareto front: {front.describe()}); "
                        "export --pick cheapest or --pick COST with --allow-over-budget, or train again "
                        "(a larger budget, more epochs)")
    network_cost = _run_cost(state)
    point = front.pick(pick, network_cost.parse_budget if network_cost is not None else _plain_number)
    target = path / point.file
    if not target.is_file():
        raise BsncError(f"{display_path(target)}: the checkpoint of the Pareto point of epoch {point.epoch} is missing")
    return target


def _plain_number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"--pick {text}: not a number") from None


def _trained_network(program: Program, state: dict[str, Any]) -> Network:
    """The network a run trained: its file with its -D values, every edge on for a
    `--full-network` baseline."""
    network = network_from_program(program, state.get("defines", {}))
    return full_network(network) if state.get("config", {}).get("full_network") else network


def _run_cost(state: dict[str, Any]):
    """The run's cost measure, or None when it cannot be rebuilt (a table that moved)."""
    config = state.get("config", {})
    try:
        primitives.load(config.get("primitives", []))
        program = load_program(config.get("file", ""))
        if program.source_hash() != state.get("source_hash"):
            return None
        return parse_cost(config.get("cost", "flops"), _trained_network(program, state))
    except (BsncError, OSError):
        return None


def _evaluated(network: Network, logits: Any, proposal: torch.Tensor, what: str) -> bool:
    """Whether ``proposal`` is the architecture the run evaluated (gates at γ > 0.5, each choice
    group its most probable option): the one its recorded accuracies are of."""
    if not network.stochastic_edges:
        return True
    if not isinstance(logits, torch.Tensor):
        return False
    return torch.equal(active_edges(network, proposal, what), kept_edges(network, logits))


def _check_budget(network: Network, state: dict[str, Any], proposal: torch.Tensor, checkpoint: Path,
                  what: str) -> None:
    budget = state.get("budget")
    if budget is None:
        return
    cost = _run_cost(state)
    active = active_edges(network, proposal, what)
    if cost is not None:
        value = float(cost(active.unsqueeze(0))[0])
        over = value > budget
        shown = "{}, over the run's budget {}".format(*cost.format_apart(value, budget))
    else:
        history = state.get("history") or [{}]
        over = not history[-1].get("within_budget", True)
        shown = "over the run's budget"
    if over:
        raise BsncError(f"{display_path(checkpoint)}: the architecture to export costs {shown}; "
                        "pass --allow-over-budget to export it anyway, or export a point within budget "
                        "(--pick best)")


def _fraction(value: Any) -> float | None:
    """An accuracy recorded in a checkpoint, or None when it is missing or not a number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
