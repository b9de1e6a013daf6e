"""The typed syntax tree of a `.bsn` file: frozen dataclasses carrying source spans.

Spans and depth bookkeeping never take part in equality, so ``parse(format(tree)) == tree``
compares what a file says, not where it says it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from bsnc.errors import Span


@dataclass(frozen=True)
class Node:
    span: Span | None = field(default=None, compare=False, repr=False, kw_only=True)


# --- expressions -------------------------------------------------------------------------


@dataclass(frozen=True)
class IntLit(Node):
    value: int


@dataclass(frozen=True)
class FloatLit(Node):
    value: float


@dataclass(frozen=True)
class StrLit(Node):
    value: str


@dataclass(frozen=True)
class BoolLit(Node):
    value: bool


@dataclass(frozen=True)
class Var(Node):
    name: str


@dataclass(frozen=True)
class Arg(Node):
    """A call argument: positional when ``name`` is None."""

    name: str | None
    value: Expr


@dataclass(frozen=True)
class Call(Node):
    """A built-in function call in an expression: ``min``, ``max``, ``log2``."""

    func: str
    args: tuple[Arg, ...]


@dataclass(frozen=True)
class BinOp(Node):
    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class UnaryOp(Node):
    op: str  # "-", "+" or "not"
    operand: Expr


@dataclass(frozen=True)
class Paren(Node):
    """Parentheses as written: kept so that `bsnc fmt` never drops a clarifying pair."""

    expr: Expr


@dataclass(frozen=True)
class Cond(Node):
    """``if cond then a else b``: only the chosen branch is evaluated."""

    cond: Expr
    then: Expr
    orelse: Expr


@dataclass(frozen=True)
class ListLit(Node):
    """``[a, b, c]``: what a `for` loop can run over."""

    items: tuple[Expr, ...]


@dataclass(frozen=True)
class TupleLit(Node):
    """``(a, b)``: a group of values, unpacked by ``for (x, y) in ...``."""

    items: tuple[Expr, ...]


Expr = Union[IntLit, FloatLit, StrLit, BoolLit, Var, Call, BinOp, UnaryOp, Paren, Cond, ListLit, TupleLit]


# --- module expressions ------------------------------------------------------------------


@dataclass(frozen=True)
class ModCall(Node):
    """One stage of a module chain: a primitive or a user `module` type, with arguments."""

    name: str
    args: tuple[Arg, ...]
    has_parens: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class ModExpr(Node):
    """Module calls chained with ``>>``."""

    calls: tuple[ModCall, ...]


# --- statements --------------------------------------------------------------------------


@dataclass(frozen=True)
class Stmt(Node):
    comment: str | None = field(default=None, kw_only=True)  # trailing `# ...` on its line


@dataclass(frozen=True)
class Comment(Stmt):
    text: str  # including the leading '#'


@dataclass(frozen=True)
class Blank(Stmt):
    """One or more empty lines between statements, kept so that `bsnc fmt` keeps the grouping."""


@dataclass(frozen=True)
class Let(Stmt):
    name: str
    value: Expr


@dataclass(frozen=True)
class LayerName(Node):
    base: str
    indices: tuple[Expr, ...]


@dataclass(frozen=True)
class LayerDecl(Stmt):
    kind: str  # "input", "output" or "layer"
    name: LayerName
    shape: tuple[Expr, ...]
    aggregate: str | None
    post: ModExpr | None
    at: tuple[Expr, Expr] | None


@dataclass(frozen=True)
class DecisionRef(Node):
    """``gate NAME`` (a shared on/off draw) or ``choose NAME`` (an option of a choice group)."""

    kind: str  # "gate" or "choose"
    name: LayerName


@dataclass(frozen=True)
class EdgeStmt(Stmt):
    fixed: bool
    src: LayerName
    dst: LayerName
    name: LayerName | None  # `as op` or a computed `as op[k]`
    module: ModExpr
    prob: Expr | None
    decision: DecisionRef | None = None  # `gate G` or `choose G`


@dataclass(frozen=True)
class For(Stmt):
    """``for i in a..b`` (``stop`` set: inclusive integers) or ``for x in LIST`` (``stop`` None:
    ``start`` is the list); ``unpack`` for ``for (x, y) in ...``, which binds every name of
    ``targets`` from one tuple."""

    targets: tuple[str, ...]
    start: Expr
    stop: Expr | None
    body: tuple[Stmt, ...]
    unpack: bool = False

    @property
    def var(self) -> str:
        return ", ".join(self.targets)


@dataclass(frozen=True)
class If(Stmt):
    cond: Expr
    then: tuple[Stmt, ...]
    orelse: tuple[Stmt, ...] | None
    else_line: int | None = field(default=None, compare=False, repr=False, kw_only=True)


# --- top level ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Param(Node):
    name: str
    type: str | None
    default: Expr | None


@dataclass(frozen=True)
class Import(Stmt):
    path: str


@dataclass(frozen=True)
class ModuleDef(Stmt):
    name: str
    params: tuple[Param, ...]
    body: ModExpr
    cost: Expr | None = None  # `cost N`: multiply-accumulates charged to each use


@dataclass(frozen=True)
class NetworkDef(Stmt):
    name: str
    params: tuple[Param, ...]
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class NetworkAlias(Stmt):
    """``network cnf_w8 = cnf(W=8)``: an imported network with new defaults."""

    name: str
    target: str
    args: tuple[Arg, ...]


@dataclass(frozen=True)
class File(Node):
    path: str = field(compare=False)
    items: tuple[Stmt, ...]
