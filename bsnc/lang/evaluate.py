"""Evaluation of `.bsn` expressions: int, float, bool, str, list and tuple values, with located
type errors and bounds on the size of every value."""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from bsnc.errors import SourceError, did_you_mean
from bsnc.lang import ast
from bsnc.lang.limits import MAX_INT, MAX_LIST_DEPTH, MAX_LIST_SIZE, MAX_STRING
from bsnc.ops import bsn_repr, quote, type_name

Value = int | float | bool | str | list | tuple  # a list or tuple holds values

SHOWN_CHARS = 80  # characters of a value quoted in a message, before an ellipsis


class ListValue(list):
    """A list value of the language that knows its size and depth without walking its items:
    a list can hold another one several times, so its size as written out can double with each
    `let` while its memory does not."""

    size = 0
    depth = 1

    def __reduce__(self):  # copies and pickles are plain lists
        return list, (list(self),)


class TupleValue(tuple):
    """A tuple value of the language; see ListValue."""

    size = 0
    depth = 1

    def __reduce__(self):
        return tuple, (tuple(self),)


# messages name them by the language's type names (bsnc.ops.type_name reads __name__)
ListValue.__name__ = "list"
TupleValue.__name__ = "tuple"


def value_size(value: Value) -> int:
    """1 for a number or bool, the characters of a string, and for a list or tuple the sizes of
    its items, each at least 1 (nested ones counted each time they appear)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (ListValue, TupleValue)):
        return value.size
    if isinstance(value, (list, tuple)):  # not made by evaluate (a copy): walk it, as far as the limit
        total = 0
        for item in value:
            total += max(1, value_size(item))
            if total > MAX_LIST_SIZE:
                break
        return total
    return 1


def _depth(value: Value) -> int:
    if isinstance(value, (ListValue, TupleValue)):
        return value.depth
    if isinstance(value, (list, tuple)):
        return 1 + max((_depth(v) for v in value), default=0) if len(value) else 1
    return 0


def _sequence(items: list[Value], node: ast.Node, tuple_: bool) -> Value:
    """A list or tuple value, refused when it is too large or too deep."""
    size = sum(max(1, value_size(v)) for v in items)
    depth = 1 + max((_depth(v) for v in items), default=0)
    what = "tuple" if tuple_ else "list"
    if size > MAX_LIST_SIZE:
        raise SourceError(f"{what} holds more than {MAX_LIST_SIZE:,} values (nested lists and the characters of "
                          f"strings counted each time they appear); the limit is {MAX_LIST_SIZE:,}", node.span)
    if depth > MAX_LIST_DEPTH:
        raise SourceError(f"lists and tuples nested more than {MAX_LIST_DEPTH} deep in one value", node.span)
    value: ListValue | TupleValue = TupleValue(items) if tuple_ else ListValue(items)
    value.size = size
    value.depth = depth
    return value


def shown(value: Value, limit: int = SHOWN_CHARS) -> str:
    """``value`` as `.bsn` writes it, cut to about ``limit`` characters with an ellipsis, for a
    message: a long string or list is not quoted in full (nor written out in full first)."""
    out: list[str] = []
    length = 0
    for piece in _pieces(value, limit):
        out.append(piece)
        length += len(piece)
        if length > limit:
            text = "".join(out)[:limit] + "…"
            if isinstance(value, str):
                text += f" ({len(value):,} characters)"
            return text
    return "".join(out)


def _pieces(value: Value, limit: int):
    if isinstance(value, str):
        yield quote(value[: limit + 1]) if len(value) > limit else quote(value)
    elif isinstance(value, (list, tuple)):
        yield "[" if isinstance(value, list) else "("
        for i, item in enumerate(value):
            if i:
                yield ", "
            yield from _pieces(item, limit)
        yield "]" if isinstance(value, list) else (",)" if len(value) == 1 else ")")
    else:
        yield bsn_repr(value)


def capped(message: str, values) -> str:
    """``message`` (written by code that quotes values whole, such as a primitive's checks) with
    each long string or list of ``values`` quoted as `shown` quotes it."""
    for value in values:
        if isinstance(value, (str, list, tuple)) and value_size(value) > SHOWN_CHARS // 4:
            short = shown(value)
            for full in {bsn_repr(value), repr(value)}:
                if len(full) > len(short):
                    message = message.replace(full, short)
    return message


@dataclass(frozen=True)
class Unavailable:
    """A name that exists but has no value here (e.g. ``in_channels`` when the input's shape is
    not known); using it is an error that says why."""

    reason: str


class Scope:
    """Names visible at a point of a file: a chain of dictionaries, innermost first."""

    def __init__(self, values: Mapping[str, Value] | None = None, parent: Scope | None = None):
        self.values: dict[str, Value] = dict(values or {})
        self.parent = parent

    def lookup(self, name: str) -> Value | None:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.values:
                return scope.values[name]
            scope = scope.parent
        return None

    def names(self) -> set[str]:
        found: set[str] = set()
        scope: Scope | None = self
        while scope is not None:
            found.update(scope.values)
            scope = scope.parent
        return found

    def child(self, values: Mapping[str, Value] | None = None) -> Scope:
        return Scope(values, self)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _checked(value: Value, node: ast.Node) -> Value:
    if isinstance(value, str) and len(value) > MAX_STRING:
        raise SourceError(f"string of {len(value):,} characters; the limit is {MAX_STRING:,}", node.span)
    if _is_int(value) and abs(value) > MAX_INT:
        raise SourceError(f"integer out of range: the limit is ±(2**63 - 1), this is {_magnitude(value)}", node.span)
    if isinstance(value, float) and not math.isfinite(value):
        raise SourceError(f"arithmetic gives {value}; expected a finite number", node.span)
    return value


def _magnitude(value: int) -> str:
    digits = len(str(abs(value)))
    return f"about 10**{digits - 1}"


def _log2(x: Value, node: ast.Node) -> Value:
    if not _is_number(x) or x <= 0:
        raise SourceError(f"log2 needs a positive number, got {shown(x)}", node.span)
    if _is_int(x) and x & (x - 1) == 0:
        return x.bit_length() - 1
    return math.log2(x)


def _to_int(x: Value, node: ast.Node) -> Value:
    if isinstance(x, float):
        return int(x)
    if _is_int(x):
        return x
    raise SourceError(f"int() needs a number, got {type_name(x)} {shown(x)}", node.span)


def _to_float(x: Value, node: ast.Node) -> Value:
    if _is_number(x):
        return float(x)
    raise SourceError(f"float() needs a number, got {type_name(x)} {shown(x)}", node.span)


def _len(x: Value, node: ast.Node) -> Value:
    if isinstance(x, (list, tuple, str)):
        return len(x)
    raise SourceError(f"len() needs a list, a tuple or a string, got {type_name(x)} {shown(x)}", node.span)


def _abs(x: Value, node: ast.Node) -> Value:
    if _is_number(x):
        return abs(x)
    raise SourceError(f"abs() needs a number, got {type_name(x)} {shown(x)}", node.span)


def _minmax(pick: Callable[..., Any]) -> Callable[..., Value]:
    def run(*args: Value, node: ast.Node) -> Value:
        if not args:
            raise SourceError(f"{pick.__name__}() needs at least one argument", node.span)
        for a in args:
            if not _is_number(a):
                raise SourceError(f"{pick.__name__}() needs numbers, got {type_name(a)} {shown(a)}", node.span)
        return pick(args)

    return run


FUNCTIONS: dict[str, tuple[int | None, Callable[..., Value]]] = {
    "min": (None, _minmax(min)),
    "max": (None, _minmax(max)),
    "log2": (1, lambda x, node: _log2(x, node)),
    "int": (1, lambda x, node: _to_int(x, node)),
    "float": (1, lambda x, node: _to_float(x, node)),
    "abs": (1, lambda x, node: _abs(x, node)),
    "len": (1, lambda x, node: _len(x, node)),
}

_ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
}
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt,
    "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


def evaluate(expr: ast.Expr, scope: Scope) -> Value:
    if isinstance(expr, (ast.IntLit, ast.FloatLit, ast.StrLit, ast.BoolLit)):
        return _checked(expr.value, expr)
    if isinstance(expr, ast.Var):
        value = scope.lookup(expr.name)
        if value is None:
            raise SourceError(f"undefined name '{expr.name}'{did_you_mean(expr.name, scope.names())}", expr.span)
        if isinstance(value, Unavailable):
            raise SourceError(f"'{expr.name}' is not known here: {value.reason}", expr.span)
        return value
    if isinstance(expr, ast.Paren):
        return evaluate(expr.expr, scope)
    if isinstance(expr, ast.Call):
        return _call(expr, scope)
    if isinstance(expr, ast.UnaryOp):
        v = evaluate(expr.operand, scope)
        if expr.op == "not":
            return not _need_bool(v, expr.operand, "not")
        if not _is_number(v):
            raise SourceError(f"unary '{expr.op}' needs a number, got {type_name(v)} {shown(v)}", expr.operand.span)
        return -v if expr.op == "-" else v
    if isinstance(expr, ast.BinOp):
        return _binop(expr, scope)
    if isinstance(expr, ast.Cond):
        cond = evaluate(expr.cond, scope)
        if not isinstance(cond, bool):
            raise SourceError(f"the condition of `if ... then ... else` must be true or false, "
                              f"got {type_name(cond)} {shown(cond)}", expr.cond.span)
        return evaluate(expr.then if cond else expr.orelse, scope)
    if isinstance(expr, ast.ListLit):
        return _sequence([evaluate(e, scope) for e in expr.items], expr, tuple_=False)
    if isinstance(expr, ast.TupleLit):
        return _sequence([evaluate(e, scope) for e in expr.items], expr, tuple_=True)
    raise TypeError(f"not an expression: {expr!r}")


def _need_bool(v: Value, node: ast.Node, op: str) -> bool:
    if not isinstance(v, bool):
        raise SourceError(f"'{op}' needs true or false, got {type_name(v)} {shown(v)}", node.span)
    return v


def _binop(expr: ast.BinOp, scope: Scope) -> Value:
    op = expr.op
    if op in ("and", "or"):
        left = _need_bool(evaluate(expr.left, scope), expr.left, op)
        if (op == "and" and not left) or (op == "or" and left):
            return left
        return _need_bool(evaluate(expr.right, scope), expr.right, op)
    a = evaluate(expr.left, scope)
    b = evaluate(expr.right, scope)
    if op in _COMPARE:
        comparable = (_is_number(a) and _is_number(b)) or type(a) is type(b)
        if not comparable or (isinstance(a, (bool, list, tuple)) and op not in ("==", "!=")):
            raise SourceError(f"cannot compare {type_name(a)} {shown(a)} with {type_name(b)} {shown(b)} using '{op}'", expr.span)
        return _COMPARE[op](a, b)
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        if len(a) + len(b) > MAX_STRING:  # refused before it is made
            raise SourceError(f"'+' makes a string of {len(a) + len(b):,} characters; the limit is {MAX_STRING:,}",
                              expr.span)
        return a + b
    for side, v in ((expr.left, a), (expr.right, b)):
        if not _is_number(v):
            raise SourceError(f"'{op}' needs numbers, got {type_name(v)} {shown(v)}", side.span)
    if op in ("<<", ">>"):
        if not (_is_int(a) and _is_int(b)):
            raise SourceError(f"'{op}' needs integers, got {shown(a)} and {shown(b)}", expr.span)
        if b < 0:
            raise SourceError(f"negative shift count {b}", expr.right.span)
        if op == "<<" and (b > 63 or a.bit_length() + b > 64):
            raise SourceError(f"integer out of range: {a} << {b} exceeds 2**63 - 1", expr.span)
        return _checked(a << b if op == "<<" else a >> b, expr)
    if op in ("/", "//", "%") and b == 0:
        raise SourceError(f"division by zero in '{op}'", expr.right.span)
    if op == "**":
        return _power(a, b, expr)
    return _checked(_ARITH[op](a, b), expr)


def _power(a: Value, b: Value, expr: ast.BinOp) -> Value:
    if _is_int(a) and _is_int(b) and b >= 0:
        # |a| >= 2**(bit_length - 1): refuse without computing what is surely too large; the
        # rest is at most 2**126 and is checked exactly
        if abs(a) > 1 and (abs(a).bit_length() - 1) * b > 63:
            raise SourceError(f"integer out of range: {a} ** {b} exceeds 2**63 - 1", expr.span)
        return _checked(a**b, expr)
    if a == 0 and b < 0:
        raise SourceError("division by zero in '**'", expr.span)
    try:
        result = float(a) ** float(b)
    except OverflowError:
        raise SourceError(f"{a} ** {b} is too large", expr.span) from None
    if isinstance(result, complex):
        raise SourceError(f"({a}) ** {b} is not a real number", expr.span)
    return _checked(result, expr)


def _call(expr: ast.Call, scope: Scope) -> Value:
    entry = FUNCTIONS.get(expr.func)
    if entry is None:
        hint = did_you_mean(expr.func, set(FUNCTIONS)) or did_you_mean(expr.func + "2", set(FUNCTIONS))
        raise SourceError(
            f"unknown function '{expr.func}'; expected one of {', '.join(sorted(FUNCTIONS))}{hint}", expr.span
        )
    arity, fn = entry
    for a in expr.args:
        if a.name is not None:
            raise SourceError(f"{expr.func}() takes no named arguments", a.span)
    if arity is not None and len(expr.args) != arity:
        raise SourceError(f"{expr.func}() takes {arity} argument, got {len(expr.args)}", expr.span)
    values = [evaluate(a.value, scope) for a in expr.args]
    return _checked(fn(*values, node=expr), expr)
