"""Text to syntax tree: one cached Lark LALR parser, its errors wrapped into located ones.

The tree is built while parsing (Lark's inline transformer), so no recursion depends on how
deeply a file nests; nesting limits are checked here instead, with located errors.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Sequence

import lark
from lark import Lark, Token, Transformer, v_args

from bsnc.errors import Note, SourceError, Span, register_source
from bsnc.files import FileTooLarge, read_regular
from bsnc.lang import ast, limits
from bsnc.lang.limits import MAX_BLOCK_DEPTH, MAX_EXPR_DEPTH, MAX_SOURCE_BYTES

_TERMINAL_NAMES = {
    "NAME": "a name",
    "INT": "an integer",
    "FLOAT": "a number",
    "STRING": 'a string "..."',
    "COMP_OP": "a comparison",
    "ADD_OP": "'+', '-'",
    "MUL_OP": "'*', '/', '//', '%'",
    "$END": "end of file",
}


@functools.lru_cache(maxsize=1)
def _lark() -> Lark:
    grammar = resources.files("bsnc.grammars").joinpath("bsn.lark").read_text(encoding="utf-8")
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=True)


def read_source(path: Path, shown_as: str) -> str:
    """The file's text, refusing what is not UTF-8 with the position of the first bad byte, and
    what is not a regular file or is over the size limit without reading it."""
    try:
        data = read_regular(path, MAX_SOURCE_BYTES, shown_as)
    except FileTooLarge as exc:
        raise SourceError(f"file is {exc.size:,} bytes or more; the limit is {MAX_SOURCE_BYTES:,}",
                          Span(shown_as, 1, 1, 1, 2)) from None
    return decode_source(data, shown_as)


def decode_source(data: bytes, shown_as: str) -> str:
    """``data`` (a file's or stdin's bytes) as text; see `read_source`."""
    if len(data) > MAX_SOURCE_BYTES:
        raise SourceError(
            f"file is {len(data):,} bytes; the limit is {MAX_SOURCE_BYTES:,}",
            Span(shown_as, 1, 1, 1, 2),
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        good = data[: exc.start].decode("utf-8")
        line = good.count("\n") + 1
        column = len(good) - (good.rfind("\n") + 1) + 1
        register_source(shown_as, good + "\ufffd" + data[exc.end :].decode("utf-8", "replace"))
        raise SourceError(
            f"file is not valid UTF-8: byte 0x{data[exc.start]:02x} cannot start a character here",
            Span(shown_as, line, column, line, column + 1),
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return text


def parse(text: str, file: str = "<string>") -> ast.File:
    """Parse `.bsn` text into a File node; ``file`` is the name spans and errors show."""
    register_source(file, text)
    limits.scan(text, file)
    builder = _TreeBuilder(file)
    try:
        tree = _lark().parse(text)
        items = builder.transform(tree)
    except lark.exceptions.VisitError as exc:
        if isinstance(exc.orig_exc, SourceError):
            raise exc.orig_exc from None
        meta = getattr(exc.obj, "meta", None)
        span = builder._span(meta) if meta is not None else None
        raise SourceError(f"cannot read this {exc.rule}: {exc.orig_exc}", span) from None
    except lark.exceptions.UnexpectedInput as exc:
        raise _syntax_error(exc, text, file) from None
    comments = _scan_comments(text)
    return ast.File(path=file, items=_attach_comments(items, comments, file), span=None)


def _scan_comments(text: str) -> list[Token]:
    """Comments outside string literals, as tokens with line and column (Lark drops ignored
    tokens, and the text is already known to lex, so a plain scan finds them)."""
    found: list[Token] = []
    line, col, i, n = 1, 1, 0, len(text)
    in_string = False
    while i < n:
        ch = text[i]
        if in_string:
            if ch == "\\" and i + 1 < n:
                i += 2
                col += 2
                continue
            if ch == '"' or ch == "\n":
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == "#":
            end = text.find("\n", i)
            end = n if end < 0 else end
            tok = Token("COMMENT", text[i:end].rstrip())
            tok.line, tok.column = line, col
            found.append(tok)
            col += end - i
            i = end
            continue
        if ch == "\n":
            line, col = line + 1, 1
        else:
            col += 1
        i += 1
    return found


# --- syntax errors -----------------------------------------------------------------------


def _describe_terminal(name: str) -> str:
    if name in _TERMINAL_NAMES:
        return _TERMINAL_NAMES[name]
    try:
        pattern = _lark().get_terminal(name).pattern
    except KeyError:
        return name.lower()
    if isinstance(pattern, lark.lexer.PatternStr):
        return f"'{pattern.value}'"
    return name.lower()


def _syntax_error(exc: lark.exceptions.UnexpectedInput, text: str, file: str) -> SourceError:
    line = getattr(exc, "line", 1) or 1
    column = getattr(exc, "column", 1) or 1
    if isinstance(exc, lark.exceptions.UnexpectedCharacters):
        char = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        if char == '"':
            escape = _bad_escape(text, exc.pos_in_stream)
            if escape is not None:
                offset, sequence = escape
                return SourceError(
                    f"unknown escape {sequence!r} in a string; use \\\\, \\\", \\n or \\t",
                    Span(file, line, column + offset, line, column + offset + 2),
                )
            message = "unterminated string: a string must end with '\"' on the same line"
        else:
            message = f"unexpected character {char!r}"
        return SourceError(message, Span(file, line, column, line, column + 1))
    if isinstance(exc, lark.exceptions.UnexpectedToken):
        token = exc.token
        expected = sorted({_describe_terminal(t) for t in (getattr(exc, "accepts", None) or exc.expected)})
        if token.type == "$END":
            line, column = _end_position(text)
            got, width = "end of file", 1
            brace = _unclosed_brace(text)
            if brace is not None:
                return SourceError(
                    "unexpected end of file: a '{' is never closed",
                    Span(file, line, column, line, column + 1),
                    [Note("this '{' is still open", Span(file, brace[0], brace[1], brace[0], brace[1] + 1))],
                )
        else:
            got, width = f"'{token.value}'", max(1, len(str(token.value)))
        misplaced = _misplaced_clause(exc, text) or _dangling_line_end(token, text)
        if misplaced is not None:
            message, where = misplaced
            return SourceError(message, Span(file, where.line, where.column, where.end_line, where.end_column))
        want = expected[0] if len(expected) == 1 else "one of " + ", ".join(expected)
        hint = ""
        if token.type == "COMMA" and expected == ["']'"]:
            hint = "; did you forget ':' before a shape, as in `layer a : [16, 8, 8]`?"
        return SourceError(f"unexpected {got}; expected {want}{hint}", Span(file, line, column, line, column + width))
    line, column = _end_position(text)
    return SourceError("unexpected end of file", Span(file, line, column, line, column + 1))


# An edge's clauses after its arrow, by their rank in the order the grammar takes them.
_CLAUSE_RANK = {"AS": 0, "COLON": 1, "PROB": 2, "GATE": 3, "CHOOSE": 3}
_CLAUSE_SHOWN = {"AS": "`as NAME`", "COLON": "the module (`: MODULE`)", "PROB": "`prob P`", "GATE": "`gate G`",
                 "CHOOSE": "`choose G`"}
_CLAUSE_WORD = re.compile(r"(as|prob|gate|choose)\b|:")
_EDGE_FORM = "an edge reads `[fixed] SRC -> DST [as NAME] : MODULE [prob P] [gate G | choose G]`"
# Tokens that only start a statement or a block: an edge's clauses never reach past one.
_STATEMENT_STARTS = frozenset("{ } fixed input output layer let for network module import".split())


def _misplaced_clause(exc: lark.exceptions.UnexpectedToken, text: str) -> tuple[str, Token] | None:
    """The message and token of an edge clause written out of order (`gate g prob 0.5`) in the
    edge where the parser stopped, or None."""
    at = len(text) if exc.token.type == "$END" or exc.token.start_pos is None else exc.token.start_pos
    start = _edge_start(exc, text, at)
    if start is None:
        return None
    tokens = _tokens_from(text, start, at)
    here = next((i for i, t in enumerate(tokens) if t.start_pos >= at), len(tokens))
    clauses: list[tuple[int, Token]] = []  # (index in tokens, token), outside brackets, after the arrow
    depth, arrow = 0, False
    for i, tok in enumerate(tokens):
        depth += (tok in ("(", "[", "{")) - (tok in (")", "]", "}"))
        arrow = arrow or (depth == 0 and tok == "->")
        if arrow and depth == 0 and tok.type in _CLAUSE_RANK:
            clauses.append((i, tok))
    return _out_of_order(clauses, tokens, here)


def _edge_start(exc: lark.exceptions.UnexpectedToken, text: str, at: int) -> int | None:
    """Where the statement the parser stopped in starts, read from its stack; or where the edge
    before it starts when that statement starts with a clause's keyword: the parser reads a
    keyword it does not take after an edge as a name that starts a new edge."""
    state = getattr(getattr(exc, "interactive_parser", None), "parser_state", None)
    stack = list(getattr(state, "value_stack", None) or ())
    # the block's '{', or its statements so far: what follows is the statement being read
    block = max((i for i, v in enumerate(stack) if _is_block_start(v)), default=None)
    if block is None:
        return None
    current = next((pos for v in stack[block + 1 :] if (pos := _start_pos(v)) is not None), at)
    previous = stack[block].children[-1] if isinstance(stack[block], lark.Tree) else None
    if _CLAUSE_WORD.match(text, current) and isinstance(previous, lark.Tree) and previous.data == "edge_stmt":
        return previous.meta.start_pos
    return current


def _out_of_order(clauses: list[tuple[int, Token]], tokens: list[Token], here: int) -> tuple[str, Token] | None:
    """The first clause up to the error (token ``here``) that breaks the order, and why."""
    for n, (i, clause) in enumerate(clauses):
        if i > here:
            break
        rank, shown = _CLAUSE_RANK[clause.type], _CLAUSE_SHOWN[clause.type]
        for _, before in clauses[:n]:
            if before.type == clause.type:
                return f"{shown} is given twice: {_EDGE_FORM}", clause
            if _CLAUSE_RANK[before.type] == rank:
                return f"an edge takes `gate G` or `choose G`, not both: {_EDGE_FORM}", clause
            if _CLAUSE_RANK[before.type] > rank:
                return f"{shown} goes before {_CLAUSE_SHOWN[before.type]}: {_EDGE_FORM}", clause
        after = tokens[i + 1] if i < here and i + 1 < len(tokens) else None
        if clause.type == "COLON" and after is not None and after.type in _CLAUSE_RANK and after.type != "COLON":
            return f"the module goes between ':' and {_CLAUSE_SHOWN[after.type]}: {_EDGE_FORM}", after
        if i == here:  # the parser stopped at this clause: clauses that belong before it follow it
            due_before = [t for _, t in clauses[n + 1 :] if _CLAUSE_RANK[t.type] < rank]
            if due_before:
                last = max(due_before, key=lambda t: _CLAUSE_RANK[t.type])
                return f"{shown} goes after {_CLAUSE_SHOWN[last.type]}: {_EDGE_FORM}", clause
    return None


# What a token that cannot end a statement still needs after it.
_NEEDS = {"prob": "its value, as in `prob 0.5`", "gate": "the gate's name, as in `gate g`",
          "choose": "the group's name, as in `choose op`", "as": "the edge's name, as in `as skip`",
          "->": "the destination layer", ":": "what follows ':' (a module or a shape)", ">>": "the next module",
          "=": "a value", ",": "the next value or a closing bracket",
          **{op: "an operand" for op in ("+", "-", "*", "/", "//", "%", "**")}}


def _dangling_line_end(token: Token, text: str) -> tuple[str, Token] | None:
    """The message and token when the line before the error ends with a word that needs more
    (`prob`, `gate`, `>>`, ...) and the error's line starts a statement of its own: the parser
    took that statement's first word for what was missing, and failed later in the line."""
    if token.type == "$END" or token.line is None or token.line < 2:
        return None
    last: Token | None = None  # the last token before the error's line
    line: list[Token] = []  # the error's line up to the error
    try:
        for tok in _lark().lex(text):
            if tok.line < token.line:
                last = tok
            elif tok.line == token.line and tok.start_pos <= token.start_pos:
                line.append(tok)
            else:
                break
    except lark.exceptions.LarkError:
        return None
    if last is None or str(last) not in _NEEDS or not line:
        return None
    starts = line[0] in _STATEMENT_STARTS or (line[0].type == "NAME" and "->" in line[1:])
    if not starts:
        return None
    return f"`{last}` ends line {last.line} without {_NEEDS[str(last)]}; line {token.line} starts a new statement", last


def _is_block_start(value: Any) -> bool:
    """A '{' on the parser's stack, or the statements of a block after it."""
    if isinstance(value, lark.Tree):
        return value.data.startswith("__block_star")
    return isinstance(value, Token) and value.type == "LBRACE"


def _start_pos(value: Any) -> int | None:
    if isinstance(value, Token):
        return value.start_pos
    if isinstance(value, lark.Tree) and not getattr(value.meta, "empty", True):
        return value.meta.start_pos
    return None


def _tokens_from(text: str, start: int, at: int) -> list[Token]:
    """The tokens from offset ``start`` through the error at offset ``at`` and up to the next
    statement, lexed without the parser's context (so each keyword as itself)."""
    tokens: list[Token] = []
    try:
        for tok in _lark().lex(text):  # lazy: stops at the first statement after the error
            if tok.start_pos >= at and (tok == "->" or tok in _STATEMENT_STARTS):
                break
            if tok.start_pos >= start:
                tokens.append(tok)
    except lark.exceptions.LarkError:
        pass  # the tokens before a character that does not lex are kept
    return tokens


def _unclosed_brace(text: str) -> tuple[int, int] | None:
    """(line, column) of the innermost '{' left open at the end, ignoring strings and comments."""
    stack: list[tuple[int, int]] = []
    line, col, i = 1, 1, 0
    in_string = in_comment = False
    while i < len(text):
        ch = text[i]
        if ch == "\n":
            line, col, in_string, in_comment = line + 1, 0, False, False
        elif in_comment:
            pass
        elif in_string:
            if ch == "\\":
                i, col = i + 1, col + 1
            elif ch == '"':
                in_string = False
        elif ch == "#":
            in_comment = True
        elif ch == '"':
            in_string = True
        elif ch == "{":
            stack.append((line, col))
        elif ch == "}" and stack:
            stack.pop()
        i, col = i + 1, col + 1
    return stack[-1] if stack else None


def _bad_escape(text: str, start: int) -> tuple[int, str] | None:
    """The first unknown escape in the string starting at ``start``: (offset, sequence)."""
    i = start + 1
    while i < len(text) and text[i] not in '"\n':
        if text[i] == "\\":
            if i + 1 < len(text) and text[i + 1] not in '"\\nt':
                return i - start, text[i : i + 2]
            i += 2
            continue
        i += 1
    return None


def _end_position(text: str) -> tuple[int, int]:
    stripped = text.rstrip()
    line = stripped.count("\n") + 1
    column = len(stripped) - (stripped.rfind("\n") + 1) + 1
    return line, column


# --- tree to AST -------------------------------------------------------------------------


def _fold(items: Sequence[Any], make: Callable[[str, Any, Any], Any]) -> Any:
    result = items[0]
    for i in range(1, len(items), 2):
        result = make(str(items[i]), result, items[i + 1])
    return result


class _TreeBuilder(Transformer):
    """Turns the Lark tree into ast nodes with spans.

    Lark's Transformer recurses over the tree, so ``transform`` first measures the tree's depth
    with an explicit stack and refuses deep nesting with a located error.
    """

    def __init__(self, file: str):
        super().__init__(visit_tokens=True)
        self.file = file
        self.depth: dict[int, int] = {}

    def transform(self, tree: lark.Tree) -> Any:
        # Lark's Transformer.transform recurses through the tree; bound the tree's depth first.
        self._check_tree_depth(tree)
        return super().transform(tree)

    def _check_tree_depth(self, tree: lark.Tree) -> None:
        stack: list[tuple[Any, int, int]] = [(tree, 0, 0)]
        while stack:
            node, expr_depth, block_depth = stack.pop()
            if not isinstance(node, lark.Tree):
                continue
            kind = node.data
            if kind in ("block",):
                block_depth += 1
                if block_depth > MAX_BLOCK_DEPTH:
                    raise SourceError(
                        f"blocks nested more than {MAX_BLOCK_DEPTH} deep",
                        self._span(node.meta),
                    )
            if kind in _EXPR_RULES:
                # a chain `a + b + c` folds into nested operations: count each operator
                expr_depth += max(1, (len(node.children) - 1) // 2)
                if expr_depth > MAX_EXPR_DEPTH:
                    raise SourceError(
                        f"expression too long or too deeply nested (more than {MAX_EXPR_DEPTH} operators)",
                        self._span(node.meta),
                    )
            else:
                expr_depth = 0
            for child in node.children:
                stack.append((child, expr_depth, block_depth))

    def _span(self, meta: Any) -> Span | None:
        if getattr(meta, "empty", True):
            return None
        return Span(self.file, meta.line, meta.column, meta.end_line, meta.end_column)

    def _tok_span(self, tok: Token) -> Span:
        return Span(self.file, tok.line, tok.column, tok.end_line, tok.end_column)

    # terminals
    def NAME(self, tok: Token) -> Token:
        if str(tok) in KEYWORDS:
            raise SourceError(f"'{tok}' is a keyword; it cannot be used as a name", self._tok_span(tok))
        return tok

    # expressions
    @v_args(meta=True)
    def int_lit(self, meta, children):
        if len(children[0]) > 19:  # beyond 2**63: refuse before Python parses a huge number
            raise SourceError("integer out of range: the limit is ±(2**63 - 1)", self._span(meta))
        return ast.IntLit(int(children[0]), span=self._span(meta))

    @v_args(meta=True)
    def float_lit(self, meta, children):
        value = float(children[0])
        if not math.isfinite(value):
            raise SourceError(f"number {children[0]} is too large for a float", self._span(meta))
        return ast.FloatLit(value, span=self._span(meta))

    @v_args(meta=True)
    def str_lit(self, meta, children):
        return ast.StrLit(_unquote(str(children[0])), span=self._span(meta))

    @v_args(meta=True)
    def true_lit(self, meta, children):
        return ast.BoolLit(True, span=self._span(meta))

    @v_args(meta=True)
    def false_lit(self, meta, children):
        return ast.BoolLit(False, span=self._span(meta))

    @v_args(meta=True)
    def var(self, meta, children):
        return ast.Var(str(children[0]), span=self._span(meta))

    @v_args(meta=True)
    def paren(self, meta, children):
        return ast.Paren(children[0], span=self._span(meta))

    @v_args(meta=True)
    def cond_expr(self, meta, children):
        return ast.Cond(children[0], children[1], children[2], span=self._span(meta))

    @v_args(meta=True)
    def tuple_lit(self, meta, children):
        return ast.TupleLit(tuple(c for c in children if c is not None), span=self._span(meta))

    @v_args(meta=True)
    def list_lit(self, meta, children):
        return ast.ListLit(tuple(c for c in children if c is not None), span=self._span(meta))

    @v_args(meta=True)
    def call(self, meta, children):
        name, args = children
        return ast.Call(str(name), tuple(args or ()), span=self._span(meta))

    def _binop(self, children):
        def make(op, left, right):
            span = Span(self.file, left.span.line, left.span.column, right.span.end_line, right.span.end_column)
            return ast.BinOp(op, left, right, span=span)

        return _fold(children, make)

    or_expr = and_expr = shift_expr = arith = term = comparison = _binop

    @v_args(meta=True)
    def power(self, meta, children):
        return ast.BinOp("**", children[0], children[2], span=self._span(meta))

    @v_args(meta=True)
    def unary(self, meta, children):
        return ast.UnaryOp(str(children[0]), children[1], span=self._span(meta))

    @v_args(meta=True)
    def not_op(self, meta, children):
        return ast.UnaryOp("not", children[0], span=self._span(meta))

    @v_args(meta=True)
    def kwarg(self, meta, children):
        return ast.Arg(str(children[0]), children[1], span=self._span(meta))

    def args(self, children):
        return tuple(c if isinstance(c, ast.Arg) else ast.Arg(None, c, span=c.span) for c in children)

    # module expressions
    @v_args(meta=True)
    def modcall(self, meta, children):
        name, args = children
        text_has_parens = meta.end_column - meta.column > len(name) or meta.end_line != meta.line
        return ast.ModCall(str(name), tuple(args or ()), has_parens=text_has_parens, span=self._span(meta))

    @v_args(meta=True)
    def modexpr(self, meta, children):
        calls = tuple(c for c in children if isinstance(c, ast.ModCall))
        return ast.ModExpr(calls, span=self._span(meta))

    # declarations
    @v_args(meta=True)
    def param(self, meta, children):
        name, type_, default = children
        return ast.Param(str(name), str(type_) if type_ is not None else None, default, span=self._span(meta))

    def params(self, children):
        return tuple(children)

    @v_args(meta=True)
    def import_stmt(self, meta, children):
        return ast.Import(_unquote(str(children[0])), span=self._span(meta))

    @v_args(meta=True)
    def module_def(self, meta, children):
        name, params, body, cost = children
        return ast.ModuleDef(str(name), tuple(params or ()), body, cost, span=self._span(meta))

    @v_args(meta=True)
    def network_def(self, meta, children):
        name, params, body = children
        return ast.NetworkDef(str(name), tuple(params or ()), body, span=self._span(meta))

    @v_args(meta=True)
    def network_alias(self, meta, children):
        name, target, args = children
        return ast.NetworkAlias(str(name), str(target), tuple(args or ()), span=self._span(meta))

    def block(self, children):
        return tuple(children)

    @v_args(meta=True)
    def let_stmt(self, meta, children):
        return ast.Let(str(children[0]), children[1], span=self._span(meta))

    def index(self, children):
        return children[0]

    @v_args(meta=True)
    def layer_name(self, meta, children):
        return ast.LayerName(str(children[0]), tuple(children[1:]), span=self._span(meta))

    def shape(self, children):
        return tuple(children)

    def aggregate(self, children):
        return children[0]

    def post(self, children):
        return children[0]

    def at(self, children):
        return (children[0], children[1])

    def _layer(self, kind, meta, name, shape, aggregate=None, post=None, at=None):
        agg = str(aggregate) if aggregate is not None else None
        return ast.LayerDecl(kind, name, shape, agg, post, at, span=self._span(meta))

    @v_args(meta=True)
    def input_decl(self, meta, children):
        return self._layer("input", meta, children[0], children[1], at=children[2])

    @v_args(meta=True)
    def output_decl(self, meta, children):
        return self._layer("output", meta, *children)

    @v_args(meta=True)
    def layer_decl(self, meta, children):
        return self._layer("layer", meta, *children)

    @v_args(meta=True)
    def edge_stmt(self, meta, children):
        fixed, src, dst, name, module, prob, decision = children
        return ast.EdgeStmt(fixed is not None, src, dst, name, module, prob, decision, span=self._span(meta))

    @v_args(meta=True)
    def decision(self, meta, children):
        kind, name = children
        return ast.DecisionRef(str(kind), name, span=self._span(meta))

    @v_args(meta=True)
    def for_stmt(self, meta, children):
        (targets, unpack), start, stop, body = children
        return ast.For(targets, start, stop, body, unpack, span=self._span(meta))

    def for_target(self, children):
        seen: set[str] = set()
        for tok in children:
            if str(tok) in seen:
                raise SourceError(f"'{tok}' is unpacked twice in this loop; give each value its own name",
                                  self._tok_span(tok))
            seen.add(str(tok))
        return tuple(str(c) for c in children), len(children) > 1

    @v_args(meta=True)
    def if_stmt(self, meta, children):
        cond, then, orelse = children
        body, else_line = orelse if orelse is not None else (None, None)
        return ast.If(cond, then, body, else_line=else_line, span=self._span(meta))

    @v_args(meta=True)
    def else_clause(self, meta, children):
        (body,) = children
        return ((body,) if isinstance(body, ast.If) else body), meta.line

    def start(self, children):
        return list(children)


KEYWORDS = frozenset(
    "import module network let input output layer aggregate post at fixed as prob for in if else "
    "and or not true false then cost gate choose".split()
)

_EXPR_RULES = frozenset(
    "or_expr and_expr not_op comparison shift_expr arith term unary power call paren cond_expr tuple_lit "
    "list_lit".split()
)


def _unquote(text: str) -> str:
    body = text[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1]
            out.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


# --- comments and blank lines ------------------------------------------------------------


def _attach_comments(items: list[ast.Stmt], comments: list[Token], file: str) -> tuple[ast.Stmt, ...]:
    """Put each comment where the formatter can print it again: as a trailing comment of the
    statement on its line, or as a Comment statement in the innermost block around it."""
    pending = sorted(comments, key=lambda t: (t.line, t.column))
    return _place(items, pending, 0, 10**9, file)


def _place(stmts: Sequence[ast.Stmt], comments: list[Token], first: int, last: int, file: str) -> tuple[ast.Stmt, ...]:
    # comments are sorted by line: each range below is found by bisection, so a block of n
    # statements and m comments costs O((n + m) log m), not O(n * m)
    lines = [c.line for c in comments]
    mine = comments[bisect.bisect_left(lines, first) : bisect.bisect_right(lines, last)]
    lines = [c.line for c in mine]

    def after(line: int | None) -> int:
        return 0 if line is None else bisect.bisect_right(lines, line)

    out: list[ast.Stmt] = []
    prev_end: int | None = None
    for index, stmt in enumerate(stmts):
        span = stmt.span
        assert span is not None
        next_line = stmts[index + 1].span.line if index + 1 < len(stmts) and stmts[index + 1].span else None
        before = mine[after(prev_end) : max(after(prev_end), bisect.bisect_left(lines, span.line))]
        for c in before:
            _add_gap(out, prev_end, c.line)
            out.append(ast.Comment(str(c), span=Span(file, c.line, c.column, c.line, c.column + len(c))))
            prev_end = c.line
        _add_gap(out, prev_end, span.line)
        # a comment on a line shared with the next statement belongs to that one
        stop = bisect.bisect_right(lines, span.end_line)
        if next_line is not None:
            stop = min(stop, bisect.bisect_left(lines, next_line))
        inside = mine[bisect.bisect_left(lines, span.line) : stop]
        out.append(_with_comments(stmt, inside, file))
        prev_end = span.end_line if next_line is None or next_line > span.end_line else span.end_line - 1
    trailing = mine[after(prev_end) :]
    for c in trailing:
        _add_gap(out, prev_end, c.line)
        out.append(ast.Comment(str(c), span=Span(file, c.line, c.column, c.line, c.column + len(c))))
        prev_end = c.line
    return tuple(out)


def _add_gap(out: list[ast.Stmt], prev_end: int | None, line: int) -> None:
    if prev_end is not None and line > prev_end + 1 and out and not isinstance(out[-1], ast.Blank):
        out.append(ast.Blank())


def _with_comments(stmt: ast.Stmt, comments: list[Token], file: str) -> ast.Stmt:
    """Comments within a statement's lines: block bodies get theirs placed inside; a comment on
    the statement's first line (before its block opens) becomes its trailing comment."""
    span = stmt.span
    assert span is not None
    if isinstance(stmt, (ast.NetworkDef, ast.For)):
        head = [c for c in comments if c.line == span.line]
        # comments up to the closing brace's line stay inside the block
        body = _place(stmt.body, [c for c in comments if span.line < c.line <= span.end_line], span.line + 1, span.end_line, file)
        return dataclasses.replace(stmt, body=body, comment=_join(head))
    if isinstance(stmt, ast.If):
        head = [c for c in comments if c.line == span.line]
        has_else = stmt.else_line is not None
        else_line = stmt.else_line if has_else else span.end_line + 1
        then = _place(stmt.then, [c for c in comments if span.line < c.line < else_line], span.line + 1, else_line - 1, file)
        orelse = stmt.orelse
        if orelse is not None:
            rest = [c for c in comments if else_line <= c.line <= span.end_line]
            nested = orelse[0] if orelse else None
            if len(orelse) == 1 and isinstance(nested, ast.If) and nested.span is not None and nested.span.line == else_line:
                orelse = (_with_comments(nested, rest, file),)
            else:
                orelse = _place(orelse, rest, else_line, span.end_line, file)
        return dataclasses.replace(stmt, then=then, orelse=orelse, comment=_join(head))
    return dataclasses.replace(stmt, comment=_join(comments)) if comments else stmt


def _join(comments: list[Token]) -> str | None:
    if not comments:
        return None
    return " ".join(str(c) for c in comments)
