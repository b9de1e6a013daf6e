"""Expansion: network parameters, loops, conditions and module types turned into flat lists of
layers and edges whose values are all resolved."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from bsnc.errors import Note, SourceError, Span, UsageError, did_you_mean
from bsnc.ir import Edge, Layer, OpCall, ResolvedCall
from bsnc.lang import ast
from bsnc.lang.evaluate import SHOWN_CHARS, Scope, Unavailable, Value, capped, evaluate, shown
from bsnc.lang.limits import (
    MAX_ARGUMENT,
    MAX_EDGES,
    MAX_INT,
    MAX_ITERATIONS,
    MAX_LAYERS,
    MAX_MODULE_DEPTH,
    MAX_OPS_PER_EDGE,
    MAX_STRING,
    MAX_TENSOR_ELEMENTS,
)
from bsnc.lang.program import Program
from bsnc.ops import (
    REGISTRY,
    REQUIRED,
    Shape,
    ShapeError,
    check_value,
    format_shape,
    type_name,
)

AGGREGATIONS = ("sum", "mean", "concat")
PARAM_TYPES: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str}
SHAPE_NAMES = ("in_channels", "in_height", "in_width", "in_size")  # what a module type knows of its input


@dataclass
class Flat:
    """What a network's text says once every loop and condition is unrolled."""

    name: str
    params: dict[str, Value]
    layers: list[Layer] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    modules_used: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class NetworkParam:
    name: str
    type: type
    default: Value | None
    span: Span | None


def network_params(program: Program, name: str | None = None,
                   chain: tuple[str, ...] = ()) -> tuple[ast.NetworkDef, list[NetworkParam]]:
    """The network's definition and its parameters, alias defaults applied."""
    name = name or program.network_name
    item, _ = program.networks[name]
    if isinstance(item, ast.NetworkDef):
        return item, [_declared_param(p) for p in item.params]
    if item.target not in program.networks:
        hint = did_you_mean(item.target, set(program.networks) - {item.name})
        raise SourceError(f"undefined network '{item.target}'{hint or '; import the file that declares it'}", item.span)
    if item.target in chain + (item.name,):
        cycle = " -> ".join(chain + (item.name, item.target))
        raise SourceError(f"network aliases form a cycle: {cycle}", item.span)
    definition, params = network_params(program, item.target, chain + (item.name,))
    by_name = {p.name: p for p in params}
    seen: set[str] = set()
    named = False
    for i, arg in enumerate(item.args):
        if arg.name is None:
            if named:
                raise SourceError("a positional argument cannot follow a named one", arg.span)
            if i >= len(params):
                raise SourceError(f"network '{item.target}' takes {len(params)} parameter{'s' if len(params) != 1 else ''}, "
                                  f"got {len(item.args)}", arg.span)
            target = params[i].name
        elif arg.name not in by_name:
            named = True
            raise SourceError(
                f"network '{item.target}' has no parameter '{arg.name}'; its parameters are {_names(params)}", arg.span
            )
        else:
            named = True
            target = arg.name
        if target in seen:
            raise SourceError(f"parameter '{target}' is given twice", arg.span)
        seen.add(target)
        p = by_name[target]
        value = _coerce_param(p, evaluate(arg.value, Scope()), arg.value.span)
        by_name[target] = NetworkParam(p.name, p.type, value, p.span)
    return definition, [by_name[p.name] for p in params]


def _names(params: list[NetworkParam]) -> str:
    return ", ".join(p.name for p in params) or "(none)"


def _declared_param(p: ast.Param) -> NetworkParam:
    default = evaluate(p.default, Scope()) if p.default is not None else None
    if isinstance(default, (list, tuple)):
        raise SourceError(f"parameter '{p.name}' is a {type_name(default)}; a network parameter is "
                          "int, float, bool or str (use `let` inside the network for a list)", p.default.span)
    if p.type is None:
        if default is None:
            raise SourceError(f"parameter '{p.name}' needs a type or a default, e.g. `{p.name}: int = 1`", p.span)
        typ: type = type(default)
    elif p.type not in PARAM_TYPES:
        raise SourceError(f"unknown type '{p.type}'; expected one of int, float, bool, str", p.span)
    else:
        typ = PARAM_TYPES[p.type]
    param = NetworkParam(p.name, typ, None, p.span)
    if default is not None:
        default = _coerce_param(param, default, p.default.span if p.default else p.span)
    return NetworkParam(p.name, typ, default, p.span)


def _coerce_param(p: NetworkParam, value: Value, span: Span | None) -> Value:
    if p.type is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise SourceError(f"parameter '{p.name}' must be a finite number, got {value!r}", span)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise SourceError(f"parameter '{p.name}' is out of range: the limit is ±(2**63 - 1)", span)
    if isinstance(value, str) and len(value) > MAX_STRING:
        raise SourceError(f"parameter '{p.name}' is a string of {len(value):,} characters; the limit is "
                          f"{MAX_STRING:,}", span)
    if type(value) is not p.type:
        raise SourceError(
            f"parameter '{p.name}' is {p.type.__name__}, got {type_name(value)} {shown(value)}", span
        )
    return value


_INT_OVERRIDE = re.compile(r"[+-]?[0-9]+(?:_[0-9]+)*")  # 1_000 as in Python, not _4, 4_ or 4__0


def parse_override(param: NetworkParam, text: str) -> Value:
    """A `-D name=value` value read as the parameter's type."""
    where = f"-D {param.name}={_given(text)}"
    if param.type is bool:
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise UsageError(f"{where}: parameter '{param.name}' is bool; expected true or false")
    if param.type is int:
        literal = text.strip()
        if not _INT_OVERRIDE.fullmatch(literal):  # int() takes other scripts' digits and stray underscores
            raise UsageError(f"{where}: parameter '{param.name}' is int; expected a whole number "
                             "(ASCII digits, an optional sign, single underscores between digits)")
        digits = literal.replace("_", "")
        if len(digits.lstrip("+-")) > 19:  # refuse before Python converts a huge number
            raise UsageError(f"{where}: parameter '{param.name}' is int; the limit is ±(2**63 - 1)")
        value = int(digits, 10)
        if abs(value) > MAX_INT:
            raise UsageError(f"{where}: parameter '{param.name}' is int; the limit is ±(2**63 - 1)")
        return value
    if param.type is float:
        try:
            value = float(text) if text.isascii() else float("nan")  # float() takes other scripts' digits
        except ValueError:
            value = float("nan")
        if not math.isfinite(value):
            raise UsageError(f"{where}: parameter '{param.name}' is float; expected a finite number")
        return value
    return text


def _given(raw: Any) -> str:
    """An override as a message shows it: the text of a -D as typed, a Python value as `.bsn`
    writes it; either cut to about 80 characters."""
    if isinstance(raw, (list, tuple)):
        return shown(raw)
    if isinstance(raw, int) and raw.bit_length() > 64:  # repr() refuses an int of over 4,300 digits
        return f"<an integer of {raw.bit_length():,} bits>"
    text = raw if isinstance(raw, str) else repr(raw)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + f"… ({len(text):,} characters)"


def resolve_params(params: list[NetworkParam], overrides: Mapping[str, Any], network: str) -> dict[str, Value]:
    """Parameter values: defaults, then overrides (strings from -D, or Python values)."""
    by_name = {p.name: p for p in params}
    values: dict[str, Value] = {}
    for key in overrides:
        if key not in by_name:
            raise UsageError(
                f"-D {key}={_given(overrides[key])}: network '{network}' has no parameter '{key}'; "
                f"its parameters are {_names(params)}"
            )
    for p in params:
        if p.name in overrides:
            raw = overrides[p.name]
            if isinstance(raw, str) and p.type is not str:
                values[p.name] = parse_override(p, raw)
            else:
                try:
                    values[p.name] = _coerce_param(p, raw, None)
                except SourceError as exc:
                    raise UsageError(f"-D {p.name}={_given(raw)}: {exc.message}") from None
        elif p.default is None:
            raise UsageError(f"network '{network}' needs a value for '{p.name}': pass -D {p.name}=VALUE")
        else:
            values[p.name] = p.default
    return values


def expand(program: Program, overrides: Mapping[str, Any] | None = None) -> Flat:
    definition, params = network_params(program)
    name = program.network_name
    values = resolve_params(params, overrides or {}, name)
    flat = Flat(name=name, params=values)
    outside = Unavailable("it is the input's shape inside a module type; an edge of the network writes "
                          "its channels out, or passes them to a module type")
    _Expander(program, flat).run(definition.body, Scope({n: outside for n in SHAPE_NAMES}).child(values))
    return flat


class _Expander:
    def __init__(self, program: Program, flat: Flat):
        self.program = program
        self.flat = flat
        self.layer_spans: dict[str, Span | None] = {}
        self.layer_shapes: dict[str, Shape] = {}
        self.edge_spans: dict[str, Span | None] = {}
        self.iterations = 0
        self.modules_used: dict[str, None] = {}
        self.op_count = 0  # primitives of the module expression being expanded

    def run(self, body: tuple[ast.Stmt, ...], scope: Scope) -> None:
        self.block(body, scope.child())
        self.flat.modules_used = list(self.modules_used)

    def block(self, body: tuple[ast.Stmt, ...], scope: Scope) -> None:
        for stmt in body:
            self.stmt(stmt, scope)

    def stmt(self, stmt: ast.Stmt, scope: Scope) -> None:
        if isinstance(stmt, (ast.Comment, ast.Blank)):
            return
        if isinstance(stmt, ast.Let):
            if stmt.name in scope.values:
                raise SourceError(f"'{stmt.name}' is already defined in this block", stmt.span)
            scope.values[stmt.name] = evaluate(stmt.value, scope)
        elif isinstance(stmt, ast.LayerDecl):
            self.layer(stmt, scope)
        elif isinstance(stmt, ast.EdgeStmt):
            self.edge(stmt, scope)
        elif isinstance(stmt, ast.For):
            self.loop(stmt, scope)
        elif isinstance(stmt, ast.If):
            cond = evaluate(stmt.cond, scope)
            if not isinstance(cond, bool):
                raise SourceError(f"an if condition must be true or false, got {type_name(cond)} {shown(cond)}", stmt.cond.span)
            if cond:
                self.block(stmt.then, scope.child())
            elif stmt.orelse is not None:
                self.block(stmt.orelse, scope.child())
        else:
            raise SourceError(f"{type(stmt).__name__.lower()} is not allowed inside a network", stmt.span)

    def loop(self, stmt: ast.For, scope: Scope) -> None:
        items = self.loop_items(stmt, scope)
        # a range's length, not len(): a range of 64-bit bounds can hold more than sys.maxsize items
        count = max(0, items.stop - items.start) if isinstance(items, range) else len(items)
        if self.iterations + count > MAX_ITERATIONS:
            raise SourceError(
                f"loops unroll to more than {MAX_ITERATIONS:,} iterations (this one has {count:,})", stmt.span
            )
        direct_edges = sum(isinstance(s, ast.EdgeStmt) for s in stmt.body)
        if len(self.flat.edges) + count * direct_edges > MAX_EDGES:
            raise SourceError(
                f"network unrolls to more than {MAX_EDGES:,} edges "
                f"(this loop adds {count * direct_edges:,}); the limit is {MAX_EDGES:,}", stmt.span
            )
        self.iterations += count
        for item in items:
            values = self.loop_bindings(stmt, item)
            try:
                self.block(stmt.body, scope.child(values))
            except SourceError as exc:
                where = ", ".join(f"{k} = {shown(v)}" for k, v in values.items())
                exc.notes.append(Note(f"in the iteration with {where}", stmt.span))
                raise

    def loop_items(self, stmt: ast.For, scope: Scope) -> range | list[Value]:
        if stmt.stop is not None:
            start = self.int_value(stmt.start, scope, "a loop bound")
            stop = self.int_value(stmt.stop, scope, "a loop bound")
            return range(start, max(start, stop + 1))
        value = evaluate(stmt.start, scope)
        if not isinstance(value, (list, tuple)):
            raise SourceError(
                f"a for loop runs over a range `a..b` or a list `[x, y, ...]`, got {type_name(value)} {shown(value)}",
                stmt.start.span)
        return list(value)

    def loop_bindings(self, stmt: ast.For, item: Value) -> dict[str, Value]:
        if not stmt.unpack:
            return {stmt.targets[0]: item}
        n = len(stmt.targets)
        if not isinstance(item, (list, tuple)) or len(item) != n:
            got = f"{type_name(item)} {shown(item)}"
            raise SourceError(f"`for ({stmt.var})` unpacks {n} values from each item, got {got}", stmt.start.span)
        return dict(zip(stmt.targets, item))

    def int_value(self, expr: ast.Expr, scope: Scope, what: str) -> int:
        value = evaluate(expr, scope)
        if not isinstance(value, int) or isinstance(value, bool):
            hint = "; use // for integer division" if isinstance(value, float) and _divides(expr) else ""
            raise SourceError(f"{what} must be an integer, got {type_name(value)} {shown(value)}{hint}",
                              expr.span)
        return value

    def layer_name(self, name: ast.LayerName, scope: Scope, what: str = "a layer index") -> tuple[str, tuple[int, ...]]:
        indices = tuple(self.int_value(i, scope, what) for i in name.indices)
        for expr, value in zip(name.indices, indices):
            if value < 0:
                raise SourceError(f"{what} must be >= 0, got {value}", expr.span)
        return name.base + "".join(f"[{i}]" for i in indices), indices

    def layer(self, decl: ast.LayerDecl, scope: Scope) -> None:
        name, indices = self.layer_name(decl.name, scope)
        if name in self.layer_spans:
            raise SourceError(f"layer '{name}' is declared twice", decl.name.span,
                              [Note("first declared here", self.layer_spans[name])])
        if len(self.flat.layers) >= MAX_LAYERS:
            raise SourceError(f"network unrolls to more than {MAX_LAYERS:,} layers", decl.span)
        shape = tuple(self.int_value(d, scope, "a shape dimension") for d in decl.shape)
        for expr, dim in zip(decl.shape, shape):
            if dim < 1:
                raise SourceError(f"a shape dimension must be >= 1, got {dim}", expr.span)
        if math.prod(shape) > MAX_TENSOR_ELEMENTS:
            raise SourceError(f"layer '{name}' has {math.prod(shape):,} elements per example; the limit is "
                              f"{MAX_TENSOR_ELEMENTS:,}", decl.name.span)
        aggregate = decl.aggregate or "sum"
        if aggregate not in AGGREGATIONS:
            raise SourceError(f"unknown aggregation '{aggregate}'; expected one of {', '.join(AGGREGATIONS)}", decl.span)
        post: tuple[OpCall, ...] = ()
        if decl.post is not None:
            post, _, extra = self.ops(decl.post, scope, shape)
            if extra:
                raise SourceError("a post-op cannot use a module type with `cost`: the flops cost counts "
                                  "edges; put it on the edges instead", decl.post.span)
        position = None
        if decl.at is not None:
            position = tuple(self.number(e, scope, "a layout position") for e in decl.at)
        self.layer_spans[name] = decl.name.span
        self.layer_shapes[name] = shape
        self.flat.layers.append(
            Layer(name, decl.name.base, indices, decl.kind, shape, aggregate, post, position, span=decl.name.span)
        )

    def number(self, expr: ast.Expr, scope: Scope, what: str) -> float:
        value = evaluate(expr, scope)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise SourceError(f"{what} must be a number, got {type_name(value)} {shown(value)}", expr.span)
        return value

    def edge(self, stmt: ast.EdgeStmt, scope: Scope) -> None:
        src, _ = self.layer_name(stmt.src, scope)
        dst, _ = self.layer_name(stmt.dst, scope)
        name = self.layer_name(stmt.name, scope, "an edge name index")[0] if stmt.name is not None else None
        key = f"{src}->{dst}" + (f":{name}" if name else "")
        if key in self.edge_spans:
            hint = "" if name else "; give each a name with `as NAME` (in a loop, a computed one: `as op[k]`)"
            raise SourceError(f"edge '{key}' is declared twice{hint}", stmt.span,
                              [Note("first declared here", self.edge_spans[key])])
        if len(self.flat.edges) >= MAX_EDGES:
            raise SourceError(f"network unrolls to more than {MAX_EDGES:,} edges; the limit is {MAX_EDGES:,}", stmt.span)
        prob = None
        if stmt.prob is not None:
            if stmt.fixed:
                raise SourceError("a fixed edge is always on; remove `prob`", stmt.prob.span)
            prob = self.number(stmt.prob, scope, "an edge probability")
            if not 0 < prob < 1:
                raise SourceError(f"an edge probability must be between 0 and 1 (exclusive), got {prob}", stmt.prob.span)
        group = None
        if stmt.decision is not None:
            kind = stmt.decision.kind
            if stmt.fixed:
                raise SourceError(f"a fixed edge is always on; it cannot take part in `{kind}`", stmt.decision.span)
            if kind == "choose" and prob is not None:
                raise SourceError("the options of a choice group start equally likely; remove `prob`",
                                  stmt.prob.span)
            if kind == "choose" and name is None:
                raise SourceError("an option of a choice group needs a name, `as NAME`: the name is the option "
                                  "it stands for, the same in every place the group is used", stmt.span)
            group = (kind, self.layer_name(stmt.decision.name, scope, "a gate or group index")[0])
        shape = self.layer_shapes.get(src)
        if shape is None:
            shape = Unavailable(f"layer '{src}' is declared after this edge; declare it before the edge")
        ops, calls, extra = self.ops(stmt.module, scope, shape)
        self.edge_spans[key] = stmt.span
        self.flat.edges.append(Edge(
            key, src, dst, name, stmt.fixed, ops, calls, float(prob) if prob is not None else None,
            extra_macs=extra, group=group, span=stmt.span, src_span=stmt.src.span, dst_span=stmt.dst.span,
            group_span=stmt.decision.span if stmt.decision is not None else None,
        ))

    # --- module expressions ---------------------------------------------------------------

    def ops(self, mod: ast.ModExpr, scope: Scope,
            shape: Shape | Unavailable) -> tuple[tuple[OpCall, ...], tuple[ResolvedCall, ...], int]:
        """The primitives of a module expression applied to ``shape``, the calls as written, and
        the extra MACs charged by `cost` on the module types it uses."""
        ops: list[OpCall] = []
        calls: list[ResolvedCall] = []
        self.op_count = 0
        extra = 0
        for call in mod.calls:
            call_ops, resolved, shape, call_extra = self.call(call, scope, site=call.span, stack=(), shape=shape)
            ops.extend(call_ops)
            calls.append(resolved)
            extra += call_extra
        return tuple(ops), tuple(calls), extra

    def call(self, call: ast.ModCall, scope: Scope, site: Span | None, stack: tuple[str, ...],
             shape: Shape | Unavailable) -> tuple[list[OpCall], ResolvedCall, Shape | Unavailable, int]:
        """One stage of a chain: its primitives, the call as written, the shape after it (as far
        as it can be known before the checks, which report shape errors) and its extra MACs."""
        prim = REGISTRY.get(call.name)
        if prim is not None:
            given = self.match_args(call, [a.name for a in prim.args], prim.name, scope)
            args = self.bind_primitive(call, given)
            self.op_count += 1
            if self.op_count > MAX_OPS_PER_EDGE:
                raise SourceError(f"module expression unrolls to more than {MAX_OPS_PER_EDGE:,} primitives",
                                  site, [Note("through this module type", call.span)] if site != call.span else [])
            op = OpCall(prim.name, args, span=call.span, site=site)
            return [op], ResolvedCall(call.name, _as_written(given)), _shape_after(prim.name, args, shape), 0
        if call.name not in self.program.modules:
            known = sorted(set(REGISTRY) | set(self.program.modules))
            raise SourceError(
                f"unknown primitive or module '{call.name}'{did_you_mean(call.name, set(known))}", call.span
            )
        if call.name in stack:
            chain = " -> ".join(stack + (call.name,))
            raise SourceError(f"module type '{call.name}' uses itself: {chain}", call.span)
        if len(stack) >= MAX_MODULE_DEPTH:
            raise SourceError(f"module types nested more than {MAX_MODULE_DEPTH} deep", call.span)
        definition, _unit = self.program.modules[call.name]
        self.modules_used.setdefault(call.name)
        given = self.match_args(call, [p.name for p in definition.params], f"module '{definition.name}'", scope)
        bound = self.bind_module(definition, call, given, _shape_scope(shape))
        inner_scope = _shape_scope(shape).child(bound)
        ops: list[OpCall] = []
        extra = 0
        out = shape
        try:
            for inner in definition.body.calls:
                inner_ops, _, out, inner_extra = self.call(inner, inner_scope, site=site, stack=stack + (call.name,),
                                                           shape=out)
                ops.extend(inner_ops)
                extra += inner_extra
            if definition.cost is not None:
                extra += self.module_cost(definition, inner_scope)
        except SourceError as exc:
            if exc.span != call.span:
                exc.notes.append(Note(f"in module type '{definition.name}', used here", call.span))
            raise
        return ops, ResolvedCall(call.name, _as_written(given)), out, extra

    def module_cost(self, definition: ast.ModuleDef, scope: Scope) -> int:
        assert definition.cost is not None
        value = evaluate(definition.cost, scope)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise SourceError(f"the cost of module '{definition.name}' must be an integer >= 0 (multiply-accumulates), "
                              f"got {type_name(value)} {shown(value)}{'; use // or int()' if isinstance(value, float) else ''}",
                              definition.cost.span)
        return value

    def bind_primitive(self, call: ast.ModCall, given: dict[str, _Given]) -> tuple[tuple[str, Any], ...]:
        prim = REGISTRY[call.name]
        values: list[tuple[str, Any]] = []
        for spec in prim.args:
            if spec.name in given:
                value, span, _ = given[spec.name]
                problem = check_value(prim, spec, value)
                if problem:
                    raise SourceError(capped(problem, [value]), span)
                if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_ARGUMENT:
                    raise SourceError(f"argument '{spec.name}' of {prim.name} is {value:,}; the limit is "
                                      f"{MAX_ARGUMENT:,}", span)
                if spec.type is float and isinstance(value, int):
                    value = float(value)
            elif spec.default is REQUIRED:
                raise SourceError(f"{prim.name} needs argument '{spec.name}' ({spec.doc or spec.type_name()}), e.g. {prim.example}", call.span)
            else:
                value = spec.default
            values.append((spec.name, value))
        return tuple(values)

    def bind_module(self, definition: ast.ModuleDef, call: ast.ModCall, given: dict[str, _Given],
                    outer: Scope) -> dict[str, Value]:
        bound: dict[str, Value] = {}
        for p in definition.params:
            if p.name in given:
                bound[p.name] = given[p.name][0]
            elif p.default is not None:
                bound[p.name] = evaluate(p.default, outer.child(bound))
            else:
                raise SourceError(f"module '{definition.name}' needs argument '{p.name}'", call.span,
                                  [Note(f"'{definition.name}' is defined here", definition.span)])
        return bound

    def match_args(self, call: ast.ModCall, names: list[str], what: str, scope: Scope) -> dict[str, _Given]:
        given: dict[str, _Given] = {}
        positional = True
        for i, arg in enumerate(call.args):
            if arg.name is None:
                if not positional:
                    raise SourceError("a positional argument cannot follow a named one", arg.span)
                if i >= len(names):
                    raise SourceError(f"{what} takes {len(names)} argument{'s' if len(names) != 1 else ''}, got {len(call.args)}", arg.span)
                name = names[i]
            else:
                positional = False
                if arg.name not in names:
                    listing = ", ".join(names) if names else "none"
                    raise SourceError(f"{what} has no argument '{arg.name}'; its arguments are: {listing}", arg.span)
                name = arg.name
            if name in given:
                raise SourceError(f"argument '{name}' of {what} is given twice", arg.span)
            given[name] = (evaluate(arg.value, scope), arg.value.span, arg.name is None)
        return given


def _shape_scope(shape: Shape | Unavailable) -> Scope:
    """``in_channels``, ``in_height``, ``in_width`` and ``in_size`` (H of a square map): the
    shape a module type receives."""
    if isinstance(shape, Unavailable):
        return Scope({name: shape for name in SHAPE_NAMES})
    if len(shape) == 3:
        c, h, w = shape
        size: Value | Unavailable = h if h == w else Unavailable(
            f"the map is {h}x{w}, not square; use in_height and in_width")
        return Scope({"in_channels": c, "in_height": h, "in_width": w, "in_size": size})
    flat = Unavailable(f"the input is a vector {format_shape(shape)}, not a [C, H, W] map")
    return Scope({"in_channels": shape[0], "in_height": flat, "in_width": flat, "in_size": flat})


def _shape_after(prim: str, args: tuple[tuple[str, Any], ...], shape: Shape | Unavailable) -> Shape | Unavailable:
    if isinstance(shape, Unavailable):
        return shape
    try:
        return REGISTRY[prim].shape(shape, dict(args))
    except ShapeError as exc:
        return Unavailable(f"the shape is wrong before this point ({capped(str(exc), [v for _, v in args])})")


def _divides(expr: ast.Expr) -> bool:
    """Whether ``expr`` contains a true division `/`."""
    if isinstance(expr, ast.BinOp):
        return expr.op == "/" or _divides(expr.left) or _divides(expr.right)
    if isinstance(expr, (ast.UnaryOp, ast.Paren)):
        return _divides(expr.operand if isinstance(expr, ast.UnaryOp) else expr.expr)
    return False


_Given = tuple[Value, "Span | None", bool]  # value, where written, positional


def _as_written(given: dict[str, _Given]) -> tuple[tuple[str | None, Value], ...]:
    return tuple((None if positional else name, value) for name, (value, _, positional) in given.items())
