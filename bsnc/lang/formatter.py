"""Canonical `.bsn` text of a syntax tree: four-space indentation, minimal parentheses, comments
and blank-line groups kept. ``parse(format_file(tree)) == tree`` for every parsed tree."""

from __future__ import annotations

from bsnc.lang import ast
from bsnc.ops import quote

INDENT = "    "

# Binding strength of each operator; higher binds tighter (mirrors grammars/bsn.lark).
_PRECEDENCE = {
    "or": 1,
    "and": 2,
    "not": 3,
    "==": 4, "!=": 4, "<": 4, "<=": 4, ">": 4, ">=": 4,
    "<<": 5, ">>": 5,
    "+": 6, "-": 6,
    "*": 7, "/": 7, "//": 7, "%": 7,
    "unary": 8,
    "**": 9,
}
_ATOM = 10
_COMPARISONS = {"==", "!=", "<", "<=", ">", ">="}


def format_file(tree: ast.File) -> str:
    lines: list[str] = []
    for item in tree.items:
        _stmt(item, 0, lines)
    text = "\n".join(lines).rstrip("\n")
    return text + "\n" if text else ""


def format_expr(expr: ast.Expr) -> str:
    return _expr(expr)


def format_modexpr(mod: ast.ModExpr) -> str:
    return " >> ".join(_modcall(c) for c in mod.calls)


# --- expressions -------------------------------------------------------------------------


def _prec(expr: ast.Expr) -> int:
    if isinstance(expr, ast.Cond):
        return 0
    if isinstance(expr, ast.BinOp):
        return _PRECEDENCE[expr.op]
    if isinstance(expr, ast.UnaryOp):
        return _PRECEDENCE["not"] if expr.op == "not" else _PRECEDENCE["unary"]
    return _ATOM


def _wrap(expr: ast.Expr, needs_parens: bool) -> str:
    text = _expr(expr)
    return f"({text})" if needs_parens else text


def _expr(expr: ast.Expr) -> str:
    if isinstance(expr, ast.BoolLit):
        return "true" if expr.value else "false"
    if isinstance(expr, ast.IntLit):
        return str(expr.value)
    if isinstance(expr, ast.FloatLit):
        return repr(expr.value)
    if isinstance(expr, ast.StrLit):
        return quote(expr.value)
    if isinstance(expr, ast.Var):
        return expr.name
    if isinstance(expr, ast.Paren):
        return f"({_expr(expr.expr)})"
    if isinstance(expr, ast.Call):
        return f"{expr.func}({_args(expr.args)})"
    if isinstance(expr, ast.Cond):
        return f"if {_expr(expr.cond)} then {_expr(expr.then)} else {_expr(expr.orelse)}"
    if isinstance(expr, ast.ListLit):
        return "[" + ", ".join(_expr(e) for e in expr.items) + "]"
    if isinstance(expr, ast.TupleLit):
        inner = ", ".join(_expr(e) for e in expr.items)
        return f"({inner},)" if len(expr.items) == 1 else f"({inner})"
    if isinstance(expr, ast.UnaryOp):
        if expr.op == "not":
            return "not " + _wrap(expr.operand, _prec(expr.operand) < _PRECEDENCE["not"])
        return expr.op + _wrap(expr.operand, _prec(expr.operand) < _PRECEDENCE["unary"])
    if isinstance(expr, ast.BinOp):
        p = _PRECEDENCE[expr.op]
        if expr.op == "**":
            left = _wrap(expr.left, _prec(expr.left) < _ATOM)
            right = _wrap(expr.right, _prec(expr.right) < _PRECEDENCE["unary"])
        elif expr.op in _COMPARISONS:
            left = _wrap(expr.left, _prec(expr.left) <= p)
            right = _wrap(expr.right, _prec(expr.right) <= p)
        else:
            left = _wrap(expr.left, _prec(expr.left) < p)
            right = _wrap(expr.right, _prec(expr.right) <= p)
        return f"{left} {expr.op} {right}"
    raise TypeError(f"not an expression: {expr!r}")


def _args(args: tuple[ast.Arg, ...]) -> str:
    return ", ".join(_expr(a.value) if a.name is None else f"{a.name}={_expr(a.value)}" for a in args)


def _modcall(call: ast.ModCall) -> str:
    return f"{call.name}({_args(call.args)})" if call.args else call.name


# --- statements --------------------------------------------------------------------------


def _params(params: tuple[ast.Param, ...]) -> str:
    parts = []
    for p in params:
        if p.type is not None:
            text = f"{p.name}: {p.type}" + (f" = {_expr(p.default)}" if p.default is not None else "")
        else:
            text = p.name + (f"={_expr(p.default)}" if p.default is not None else "")
        parts.append(text)
    return ", ".join(parts)


def layer_name(name: ast.LayerName) -> str:
    return name.base + "".join(f"[{_expr(i)}]" for i in name.indices)


def _with_comment(text: str, stmt: ast.Stmt) -> str:
    return f"{text}  {stmt.comment}" if stmt.comment else text


MAX_LINE = 100
_SIMPLE = (ast.Let, ast.LayerDecl, ast.EdgeStmt)


def _one_line(head: str, body: tuple[ast.Stmt, ...], depth: int) -> str | None:
    """``head { stmt }`` on one line, for a block of one short statement without comments."""
    if len(body) != 1 or not isinstance(body[0], _SIMPLE) or body[0].comment:
        return None
    inner: list[str] = []
    _stmt(body[0], 0, inner)
    text = f"{INDENT * depth}{head} {{ {inner[0]} }}"
    return text if len(text) <= MAX_LINE else None


def _block(head: str, body: tuple[ast.Stmt, ...], depth: int, lines: list[str], stmt: ast.Stmt) -> None:
    pad = INDENT * depth
    short = _one_line(head, body, depth) if not isinstance(stmt, ast.NetworkDef) else None
    if short is not None:
        lines.append(_with_comment(short, stmt))
        return
    lines.append(_with_comment(f"{pad}{head} {{", stmt))
    for inner in body:
        _stmt(inner, depth + 1, lines)
    lines.append(f"{pad}}}")


def _stmt(stmt: ast.Stmt, depth: int, lines: list[str]) -> None:
    pad = INDENT * depth
    if isinstance(stmt, ast.Blank):
        lines.append("")
    elif isinstance(stmt, ast.Comment):
        lines.append(pad + stmt.text)
    elif isinstance(stmt, ast.Import):
        lines.append(_with_comment(f"{pad}import {quote(stmt.path)}", stmt))
    elif isinstance(stmt, ast.ModuleDef):
        text = f"{pad}module {stmt.name}({_params(stmt.params)}) = {format_modexpr(stmt.body)}"
        if stmt.cost is not None:
            text += f" cost {_expr(stmt.cost)}"
        lines.append(_with_comment(text, stmt))
    elif isinstance(stmt, ast.NetworkAlias):
        text = f"{pad}network {stmt.name} = {stmt.target}({_args(stmt.args)})"
        lines.append(_with_comment(text, stmt))
    elif isinstance(stmt, ast.NetworkDef):
        _block(f"network {stmt.name}({_params(stmt.params)})", stmt.body, depth, lines, stmt)
    elif isinstance(stmt, ast.Let):
        lines.append(_with_comment(f"{pad}let {stmt.name} = {_expr(stmt.value)}", stmt))
    elif isinstance(stmt, ast.LayerDecl):
        lines.append(_with_comment(pad + format_layer(stmt), stmt))
    elif isinstance(stmt, ast.EdgeStmt):
        lines.append(_with_comment(pad + format_edge(stmt), stmt))
    elif isinstance(stmt, ast.For):
        target = f"({', '.join(stmt.targets)})" if stmt.unpack else stmt.targets[0]
        source = _expr(stmt.start) if stmt.stop is None else f"{_expr(stmt.start)}..{_expr(stmt.stop)}"
        head = f"for {target} in {source}"
        _block(head, stmt.body, depth, lines, stmt)
    elif isinstance(stmt, ast.If):
        _if(stmt, depth, lines, prefix="")
    else:
        raise TypeError(f"not a statement: {stmt!r}")


def _if(stmt: ast.If, depth: int, lines: list[str], prefix: str) -> None:
    pad = INDENT * depth
    if stmt.orelse is None and not prefix:
        short = _one_line(f"if {_expr(stmt.cond)}", stmt.then, depth)
        if short is not None:
            lines.append(_with_comment(short, stmt))
            return
    lines.append(_with_comment(f"{pad}{prefix}if {_expr(stmt.cond)} {{", stmt))
    for inner in stmt.then:
        _stmt(inner, depth + 1, lines)
    orelse = stmt.orelse
    if orelse is None:
        lines.append(f"{pad}}}")
    elif len(orelse) == 1 and isinstance(orelse[0], ast.If):
        lines.append(f"{pad}}}")
        # `} else if` shares the closing line: splice it onto the `}` just written
        closing = lines.pop()
        nested: list[str] = []
        _if(orelse[0], depth, nested, prefix="else ")
        nested[0] = closing + " " + nested[0].lstrip()
        lines.extend(nested)
    else:
        lines.append(f"{pad}}} else {{")
        for inner in orelse:
            _stmt(inner, depth + 1, lines)
        lines.append(f"{pad}}}")


def format_layer(decl: ast.LayerDecl) -> str:
    text = f"{decl.kind} {layer_name(decl.name)} : [{', '.join(_expr(e) for e in decl.shape)}]"
    if decl.aggregate is not None:
        text += f" aggregate {decl.aggregate}"
    if decl.post is not None:
        text += f" post {format_modexpr(decl.post)}"
    if decl.at is not None:
        text += f" at ({_expr(decl.at[0])}, {_expr(decl.at[1])})"
    return text


def format_edge(edge: ast.EdgeStmt) -> str:
    text = "fixed " if edge.fixed else ""
    text += f"{layer_name(edge.src)} -> {layer_name(edge.dst)}"
    if edge.name is not None:
        text += f" as {layer_name(edge.name)}"
    text += f" : {format_modexpr(edge.module)}"
    if edge.prob is not None:
        text += f" prob {_expr(edge.prob)}"
    if edge.decision is not None:
        text += f" {edge.decision.kind} {layer_name(edge.decision.name)}"
    return text
