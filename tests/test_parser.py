"""Parser units: literals, precedence, keywords, declarations, comments, blank lines, spans."""

from __future__ import annotations

import pytest

from bsnc.errors import SourceError, Span
from bsnc.lang import ast
from bsnc.lang.formatter import format_file
from bsnc.lang.parser import parse

# --- helpers -----------------------------------------------------------------------------


def body(src: str) -> tuple[ast.Stmt, ...]:
    """The statements of a one-network file whose body is ``src``."""
    tree = parse("network n() {\n" + src + "\n}\n")
    (net,) = tree.items
    assert isinstance(net, ast.NetworkDef)
    return net.body


def expr(src: str) -> ast.Expr:
    (stmt,) = body(f"let v = {src}")
    assert isinstance(stmt, ast.Let)
    return stmt.value


def V(name: str) -> ast.Var:
    return ast.Var(name)


def Int(value: int) -> ast.IntLit:
    return ast.IntLit(value)


def B(op: str, left: ast.Expr, right: ast.Expr) -> ast.BinOp:
    return ast.BinOp(op, left, right)


def U(op: str, operand: ast.Expr) -> ast.UnaryOp:
    return ast.UnaryOp(op, operand)


def LN(base: str, *indices: ast.Expr) -> ast.LayerName:
    return ast.LayerName(base, tuple(indices))


def MC(name: str, *args: ast.Arg) -> ast.ModCall:
    return ast.ModCall(name, tuple(args))


def ME(*calls: ast.ModCall) -> ast.ModExpr:
    return ast.ModExpr(tuple(calls))


def A(value: ast.Expr, name: str | None = None) -> ast.Arg:
    return ast.Arg(name, value)


# --- literals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "src, expected",
    [
        ("0", ast.IntLit(0)),
        ("42", ast.IntLit(42)),
        ("007", ast.IntLit(7)),
        ("1.5", ast.FloatLit(1.5)),
        ("2e3", ast.FloatLit(2000.0)),
        ("1.5e-3", ast.FloatLit(0.0015)),
        ("3E+2", ast.FloatLit(300.0)),
        ('"hello"', ast.StrLit("hello")),
        ('""', ast.StrLit("")),
        ("true", ast.BoolLit(True)),
        ("false", ast.BoolLit(False)),
        ("x", ast.Var("x")),
        ("_a1", ast.Var("_a1")),
    ],
)
def test_literals(src, expected):
    value = expr(src)
    assert value == expected
    assert type(value) is type(expected)
    if not isinstance(expected, ast.Var):
        assert type(value.value) is type(expected.value)


def test_int_and_float_are_distinct_nodes():
    assert expr("2") != expr("2.0")
    assert isinstance(expr("2.0"), ast.FloatLit)
    assert isinstance(expr("2"), ast.IntLit)


def test_negative_number_is_a_unary_operation():
    assert expr("-3") == U("-", Int(3))
    assert expr("+3") == U("+", Int(3))
    assert expr("--3") == U("-", U("-", Int(3)))


@pytest.mark.parametrize(
    "src, value",
    [
        (r'"a\"b"', 'a"b'),
        (r'"back\\slash"', "back\\slash"),
        (r'"line\nbreak"', "line\nbreak"),
        (r'"tab\there"', "tab\there"),
        (r'"\\n"', "\\n"),
        ('"# not a comment"', "# not a comment"),
        (r'"\"#\""', '"#"'),
    ],
)
def test_string_escapes(src, value):
    assert expr(src) == ast.StrLit(value)


def test_hash_inside_string_is_not_a_comment():
    (stmt,) = body('let s = "a # b"  # real comment')
    assert stmt.value == ast.StrLit("a # b")
    assert stmt.comment == "# real comment"


def test_escaped_quote_then_hash_is_not_a_comment():
    (stmt,) = body(r'let s = "q\"#x"')
    assert stmt.value == ast.StrLit('q"#x')
    assert stmt.comment is None


def test_unterminated_string_is_a_located_error():
    with pytest.raises(SourceError) as info:
        parse('network n() {\n    let s = "abc\n}\n')
    assert "unterminated string" in info.value.message
    assert (info.value.span.line, info.value.span.column) == (2, 13)


def test_unknown_escape_is_reported_as_such():
    with pytest.raises(SourceError) as info:
        parse(r'network n() { let s = "a\qb" }')
    assert "unterminated" not in info.value.message
    assert "escape" in info.value.message


# --- precedence and associativity --------------------------------------------------------


@pytest.mark.parametrize(
    "src, expected",
    [
        # unary minus binds looser than **
        ("-3 ** 2", U("-", B("**", Int(3), Int(2)))),
        # ** is right-associative
        ("2 ** 3 ** 2", B("**", Int(2), B("**", Int(3), Int(2)))),
        # ** takes a signed right operand
        ("2 ** -1", B("**", Int(2), U("-", Int(1)))),
        # the others are left-associative
        ("a - b - c", B("-", B("-", V("a"), V("b")), V("c"))),
        ("a / b * c", B("*", B("/", V("a"), V("b")), V("c"))),
        ("a // b % c", B("%", B("//", V("a"), V("b")), V("c"))),
        ("a << b >> c", B(">>", B("<<", V("a"), V("b")), V("c"))),
        ("a or b or c", B("or", B("or", V("a"), V("b")), V("c"))),
        ("a and b and c", B("and", B("and", V("a"), V("b")), V("c"))),
        # * over +
        ("a + b * c", B("+", V("a"), B("*", V("b"), V("c")))),
        ("a * b + c", B("+", B("*", V("a"), V("b")), V("c"))),
        ("a * -b", B("*", V("a"), U("-", V("b")))),
        # shifts bind looser than arithmetic, tighter than comparison
        ("1 << 2 + 3", B("<<", Int(1), B("+", Int(2), Int(3)))),
        ("a * 2 >> 1", B(">>", B("*", V("a"), Int(2)), Int(1))),
        ("size >> s - 1", B(">>", V("size"), B("-", V("s"), Int(1)))),
        ("a + 1 < b << 2", B("<", B("+", V("a"), Int(1)), B("<<", V("b"), Int(2)))),
        # not / and / or
        ("not a and b", B("and", U("not", V("a")), V("b"))),
        ("a or b and c", B("or", V("a"), B("and", V("b"), V("c")))),
        ("not a and b or c", B("or", B("and", U("not", V("a")), V("b")), V("c"))),
        ("not a == b", U("not", B("==", V("a"), V("b")))),
        ("not not a", U("not", U("not", V("a")))),
        ("a == 1 and b != 2", B("and", B("==", V("a"), Int(1)), B("!=", V("b"), Int(2)))),
        ("a <= b or a >= c", B("or", B("<=", V("a"), V("b")), B(">=", V("a"), V("c")))),
        # calls
        (
            "min(a, 2) + max(1)",
            B("+", ast.Call("min", (A(V("a")), A(Int(2)))), ast.Call("max", (A(Int(1)),))),
        ),
        ("log2(size) + 1", B("+", ast.Call("log2", (A(V("size")),)), Int(1))),
    ],
)
def test_precedence(src, expected):
    assert expr(src) == expected


def test_parentheses_are_kept():
    assert expr("(a - b) - c") == B("-", ast.Paren(B("-", V("a"), V("b"))), V("c"))
    assert expr("a - (b - c)") == B("-", V("a"), ast.Paren(B("-", V("b"), V("c"))))
    assert expr("(-3) ** 2") == B("**", ast.Paren(U("-", Int(3))), Int(2))
    assert expr("((x))") == ast.Paren(ast.Paren(V("x")))
    # a redundant pair is still a Paren: the tree says what the text says
    assert expr("(a * b) + c") != expr("a * b + c")


def test_comparison_does_not_chain():
    with pytest.raises(SourceError) as info:
        parse("network n() { let x = a < b < c }")
    assert info.value.span.column == 29
    assert "unexpected '<'" in info.value.message


def test_call_with_named_argument():
    assert expr("max(1, b=2)") == ast.Call("max", (A(Int(1)), A(Int(2), "b")))


# --- keywords and names ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["format", "fortune", "forx", "iff", "nota", "truex", "inputs", "layers", "network_w"]
)
def test_keyword_prefixes_are_names(name):
    (stmt,) = body(f"let {name} = {name}")
    assert stmt == ast.Let(name, ast.Var(name))


def test_format_is_a_name_everywhere():
    tree = parse("network format(format: int = 1) {\n    input format : [format]\n}\n")
    (net,) = tree.items
    assert net.name == "format"
    assert net.params == (ast.Param("format", "int", Int(1)),)
    assert net.body[0].name == LN("format")


def test_for_is_a_keyword_in_statements():
    (stmt,) = body("for i in 0..3 {\n}")
    assert stmt == ast.For(("i",), Int(0), Int(3), ())


def test_for_cannot_start_an_edge():
    with pytest.raises(SourceError):
        body("for -> y : relu")


@pytest.mark.parametrize("src", ["let for = 1", "layer if : [1]", "let true = 1"])
def test_keywords_are_not_names(src):
    with pytest.raises(SourceError):
        body(src)


def test_true_is_a_literal_not_a_name():
    assert expr("true") == ast.BoolLit(True)
    assert expr("trueish") == ast.Var("trueish")


# --- declarations ------------------------------------------------------------------------


def test_input_output_and_layer_declarations():
    stmts = body(
        "input x : [3, 32, 32] at (-1, 0)\n"
        "layer n[l][s + 1] : [C, size >> s, size >> s]\n"
        "    aggregate mean post relu >> dropout(0.1) at (l, s)\n"
        "layer plain : [4]\n"
        "output y : [10,] aggregate sum"
    )
    assert stmts[0] == ast.LayerDecl(
        "input", LN("x"), (Int(3), Int(32), Int(32)), None, None, (U("-", Int(1)), Int(0))
    )
    assert stmts[1] == ast.LayerDecl(
        "layer",
        LN("n", V("l"), B("+", V("s"), Int(1))),
        (V("C"), B(">>", V("size"), V("s")), B(">>", V("size"), V("s"))),
        "mean",
        ME(MC("relu"), MC("dropout", A(ast.FloatLit(0.1)))),
        (V("l"), V("s")),
    )
    assert stmts[2] == ast.LayerDecl("layer", LN("plain"), (Int(4),), None, None, None)
    assert stmts[3] == ast.LayerDecl("output", LN("y"), (Int(10),), "sum", None, None)


def test_input_takes_no_aggregate():
    with pytest.raises(SourceError):
        body("input x : [3] aggregate mean")


def test_edges():
    stmts = body(
        "a -> b : relu\n"
        "fixed a[0] -> b[i + 1] as skip : identity\n"
        "a -> b as conv : conv(8, k=1, stride=2) >> bn prob 0.3\n"
        "x -> y : global_avgpool >> linear(classes) prob p / 2"
    )
    assert stmts[0] == ast.EdgeStmt(False, LN("a"), LN("b"), None, ME(MC("relu")), None)
    assert stmts[1] == ast.EdgeStmt(
        True, LN("a", Int(0)), LN("b", B("+", V("i"), Int(1))), LN("skip"), ME(MC("identity")), None
    )
    assert stmts[2] == ast.EdgeStmt(
        False,
        LN("a"),
        LN("b"),
        LN("conv"),
        ME(MC("conv", A(Int(8)), A(Int(1), "k"), A(Int(2), "stride")), MC("bn")),
        ast.FloatLit(0.3),
    )
    assert stmts[3].prob == B("/", V("p"), Int(2))
    assert stmts[3].module == ME(MC("global_avgpool"), MC("linear", A(V("classes"))))


def test_modcall_parentheses_do_not_change_the_tree():
    a, b = body("a -> b : bn()\na -> b : bn")
    assert a.module == b.module
    assert a.module.calls[0].has_parens is True
    assert b.module.calls[0].has_parens is False


def test_module_definitions_with_defaults():
    tree = parse(
        "module basic(c, stride=1, bias: bool = false) = conv(c, stride=stride, bias=bias) >> bn\n"
        "module nothing() = identity\n"
    )
    m, nothing = tree.items
    assert m == ast.ModuleDef(
        "basic",
        (
            ast.Param("c", None, None),
            ast.Param("stride", None, Int(1)),
            ast.Param("bias", "bool", ast.BoolLit(False)),
        ),
        ME(MC("conv", A(V("c")), A(V("stride"), "stride"), A(V("bias"), "bias")), MC("bn")),
    )
    assert nothing == ast.ModuleDef("nothing", (), ME(MC("identity")))


def test_network_definition_with_typed_params_and_trailing_comma():
    tree = parse('network cnf(W: int = 8, r: float, name: str = "x", seg: bool = false,) {\n}\n')
    (net,) = tree.items
    assert net == ast.NetworkDef(
        "cnf",
        (
            ast.Param("W", "int", Int(8)),
            ast.Param("r", "float", None),
            ast.Param("name", "str", ast.StrLit("x")),
            ast.Param("seg", "bool", ast.BoolLit(False)),
        ),
        (),
    )


def test_network_alias_and_import():
    tree = parse(
        'import "cnf.bsn"\nimport "../lib/x.bsn"\n'
        "network cnf_w8 = cnf(W=8, 64)\nnetwork plain = cnf()\n"
    )
    assert tree.items == (
        ast.Import("cnf.bsn"),
        ast.Import("../lib/x.bsn"),
        ast.NetworkAlias("cnf_w8", "cnf", (A(Int(8), "W"), A(Int(64)))),
        ast.NetworkAlias("plain", "cnf", ()),
    )


def test_statements_outside_a_network_are_syntax_errors():
    with pytest.raises(SourceError):
        parse("let x = 1\n")
    with pytest.raises(SourceError):
        parse("layer x : [1]\n")


def test_nested_for_if_else_if_else():
    stmts = body(
        "for l in 0..W - 1 {\n"
        "    for s in 0..H - 1 {\n"
        "        if s > 0 {\n"
        "            let a = 1\n"
        "        } else if s == 0 {\n"
        "            let b = 2\n"
        "        } else if false {\n"
        "        } else {\n"
        "            let c = 3\n"
        "        }\n"
        "    }\n"
        "}"
    )
    inner_if = ast.If(
        B(">", V("s"), Int(0)),
        (ast.Let("a", Int(1)),),
        (
            ast.If(
                B("==", V("s"), Int(0)),
                (ast.Let("b", Int(2)),),
                (ast.If(ast.BoolLit(False), (), (ast.Let("c", Int(3)),)),),
            ),
        ),
    )
    assert stmts == (
        ast.For(
            ("l",),
            Int(0),
            B("-", V("W"), Int(1)),
            (ast.For(("s",), Int(0), B("-", V("H"), Int(1)), (inner_if,)),),
        ),
    )


def test_if_without_else_has_no_orelse():
    (stmt,) = body("if a {\n    let x = 1\n}")
    assert stmt.orelse is None
    (stmt,) = body("if a {\n} else {\n    let y = 2\n}")
    assert stmt.then == ()
    assert stmt.orelse == (ast.Let("y", Int(2)),)


def test_empty_else_block():
    (stmt,) = body("if a {\n    let x = 1\n} else {\n}")
    assert stmt.orelse == ()


# --- comments ----------------------------------------------------------------------------


def test_trailing_and_standalone_comments():
    tree = parse(
        "# file header\n"
        'import "a.bsn"  # why\n'
        "network n() {  # the head\n"
        "    # before x\n"
        "    input x : [1]  # trailing x\n"
        "    for i in 0..1 {  # loop head\n"
        "        # in loop\n"
        "        let k = i  # trailing let\n"
        "        # last in loop\n"
        "    }\n"
        "    # end of body\n"
        "}\n"
        "# file footer\n"
    )
    header, imp, net, footer = tree.items
    assert header == ast.Comment("# file header")
    assert imp.comment == "# why"
    assert net.comment == "# the head"
    assert footer == ast.Comment("# file footer")
    before, x, loop, end = net.body
    assert before == ast.Comment("# before x")
    assert x.comment == "# trailing x"
    assert end == ast.Comment("# end of body")
    assert loop.comment == "# loop head"
    assert loop.body == (
        ast.Comment("# in loop"),
        ast.Let("k", V("i"), comment="# trailing let"),
        ast.Comment("# last in loop"),
    )


def test_comments_count_in_equality():
    assert parse('import "a"  # x\n') != parse('import "a"\n')
    assert parse('# c\nimport "a"\n') != parse('import "a"\n')


def test_comment_trailing_whitespace_is_stripped():
    (stmt,) = body("let a = 1  # spaced   ")
    assert stmt.comment == "# spaced"


def test_comments_in_if_branches():
    (stmt,) = body(
        "if a {  # then head\n"
        "    # in then\n"
        "    let x = 1\n"
        "} else if b {  # elif head\n"
        "    let y = 2  # in elif\n"
        "} else {\n"
        "    # in else\n"
        "    let z = 3\n"
        "}"
    )
    assert stmt.comment == "# then head"
    assert stmt.then == (ast.Comment("# in then"), ast.Let("x", Int(1)))
    (elif_,) = stmt.orelse
    assert elif_.comment == "# elif head"
    assert elif_.then == (ast.Let("y", Int(2), comment="# in elif"),)
    assert elif_.orelse == (ast.Comment("# in else"), ast.Let("z", Int(3)))


def test_comment_on_else_line_goes_into_the_else_block():
    (stmt,) = body("if a {\n    let x = 1\n} else {  # else\n    let z = 3\n}")
    assert stmt.orelse == (ast.Comment("# else"), ast.Let("z", Int(3)))


def test_comment_inside_multiline_statement_trails_it():
    tree = parse("module m(c) = conv(c,  # channels\n    k=3)  # tail\n")
    (m,) = tree.items
    assert m.comment == "# channels # tail"
    assert m.body == ME(MC("conv", A(V("c")), A(Int(3), "k")))


@pytest.mark.parametrize(
    "src",
    [
        "network n() {\n    for i in 0..1 {\n    }  # end for\n}\n",
        "network n() {\n    if true {\n    }  # end if\n}\n",
        "network n() {\n    if true {\n    } else {\n        let a = 1\n    }  # end else\n}\n",
        "network n() {\n}  # end network\n",
    ],
)
def test_comment_on_closing_brace_is_kept(src):
    assert "# end" in format_file(parse(src))


# --- blank lines -------------------------------------------------------------------------


def test_blank_lines_are_kept_as_one_blank():
    tree = parse('import "a"\n\n\n\nimport "b"\nimport "c"\n')
    assert tree.items == (ast.Import("a"), ast.Blank(), ast.Import("b"), ast.Import("c"))


def test_blank_lines_at_block_edges_are_dropped():
    stmts = body("\n\n    let a = 1\n\n    # note\n\n\n    let b = 2\n\n")
    assert stmts == (
        ast.Let("a", Int(1)),
        ast.Blank(),
        ast.Comment("# note"),
        ast.Blank(),
        ast.Let("b", Int(2)),
    )


def test_blank_lines_at_file_edges_are_dropped():
    tree = parse('\n\n# a\n\nimport "x"\n\n\n')
    assert tree.items == (ast.Comment("# a"), ast.Blank(), ast.Import("x"))


def test_blank_after_multiline_statement():
    stmts = body("let a = (1 +\n    2)\n\nlet b = 3\nlet c = 4")
    assert [type(s) for s in stmts] == [ast.Let, ast.Blank, ast.Let, ast.Let]


# --- spans -------------------------------------------------------------------------------


def test_expression_spans():
    tree = parse("network n() {\n    let x = foo + 12 * (b)\n}\n", "f.bsn")
    let = tree.items[0].body[0]
    assert let.span == Span("f.bsn", 2, 5, 2, 27)
    plus = let.value
    assert plus.span == Span("f.bsn", 2, 13, 2, 27)
    assert plus.left.span == Span("f.bsn", 2, 13, 2, 16)
    times = plus.right
    assert times.span == Span("f.bsn", 2, 19, 2, 27)
    assert times.left.span == Span("f.bsn", 2, 19, 2, 21)
    assert times.right.span == Span("f.bsn", 2, 24, 2, 27)
    assert times.right.expr.span == Span("f.bsn", 2, 25, 2, 26)


def test_statement_spans():
    src = (
        "module m(c) = conv(c) >> bn\n"
        "network net() {\n"
        "    input x : [1]\n"
        "    fixed x -> y[2] as e : m(1)\n"
        "    for i in 0..1 {\n"
        "        let q = i\n"
        "    }\n"
        "}\n"
    )
    tree = parse(src, "s.bsn")
    m, net = tree.items
    assert m.span == Span("s.bsn", 1, 1, 1, 28)
    assert m.body.calls[1].span == Span("s.bsn", 1, 26, 1, 28)
    assert net.span == Span("s.bsn", 2, 1, 8, 2)
    decl, edge, loop = net.body
    assert decl.span == Span("s.bsn", 3, 5, 3, 18)
    assert decl.name.span == Span("s.bsn", 3, 11, 3, 12)
    assert edge.span == Span("s.bsn", 4, 5, 4, 32)
    assert edge.src.span == Span("s.bsn", 4, 11, 4, 12)
    assert edge.dst.span == Span("s.bsn", 4, 16, 4, 20)
    assert edge.module.calls[0].span == Span("s.bsn", 4, 28, 4, 32)
    assert loop.span == Span("s.bsn", 5, 5, 7, 6)
    assert loop.body[0].span == Span("s.bsn", 6, 9, 6, 18)


def test_comment_span():
    tree = parse('import "a"\n  # hello\n', "c.bsn")
    assert tree.items[1] == ast.Comment("# hello")
    assert tree.items[1].span == Span("c.bsn", 2, 3, 2, 10)


def test_spans_do_not_take_part_in_equality():
    assert parse("network n() { let x = 1 }") == parse("\n\nnetwork   n( ) {\n        let x=1\n}")


def test_syntax_error_location_and_expectation():
    with pytest.raises(SourceError) as info:
        parse("network n() {\n    layer x : 1\n}\n", "e.bsn")
    err = info.value
    assert (err.span.file, err.span.line, err.span.column) == ("e.bsn", 2, 15)
    assert err.message == "unexpected '1'; expected '['"
    assert "e.bsn:2:15" in err.render()



_ORDER = "an edge reads `[fixed] SRC -> DST [as NAME] : MODULE [prob P] [gate G | choose G]`"


@pytest.mark.parametrize("edge, column, message", [
    ("x -> y as a : linear(4) gate g prob 0.6", 36, "`prob P` goes before `gate G`"),
    ("x -> y as a : linear(4) choose c prob 0.5", 38, "`prob P` goes before `choose G`"),
    ("x -> y as a : linear(4) gate g prob 0.6 }", 36, "`prob P` goes before `gate G`"),
    ("x -> y as a : linear(4) gate g choose c", 36, "an edge takes `gate G` or `choose G`, not both"),
    ("x -> y as a : linear(4) prob 0.5 prob 0.6", 38, "`prob P` is given twice"),
    ("x -> y : linear(4) prob 0.5 as a", 33, "`as NAME` goes before the module (`: MODULE`)"),
    ("x -> y as a gate g : linear(4)", 17, "`gate G` goes after the module (`: MODULE`)"),
    ("x -> y prob 0.5 : linear(4)", 12, "`prob P` goes after the module (`: MODULE`)"),
    ("x -> y gate g as a : linear(4)", 12, "`gate G` goes after the module (`: MODULE`)"),
    ("x -> y : prob 0.5 linear(4)", 14, "the module goes between ':' and `prob P`"),
])
def test_edge_clauses_out_of_order_name_the_order(edge, column, message):
    """The parser read `prob` after `gate g` as a layer starting a new edge, and complained of
    the number after it; the message names the clause out of place, and the order."""
    text = f"network n() {{\n    input x : [4]\n    output y : [4]\n    {edge}\n    x -> y as b : identity\n}}\n"
    with pytest.raises(SourceError) as info:
        parse(text, "e.bsn")
    err = info.value
    assert err.message == f"{message}: {_ORDER}"
    assert (err.span.line, err.span.column) == (4, column)
    keyword = edge[column - 5 :].split()[0]
    assert err.span.end_column - err.span.column == len(keyword)


@pytest.mark.parametrize("text, message", [
    ("x -> y : linear(4) prob 0.5 gate g z w", "unexpected 'w'; expected '->'"),
    # the `:` belongs to the next edge, not to the one before it
    ("x -> y as a : linear(4)\n    z : [0] -> y : identity", "unexpected ':'; expected '->'"),
    # a keyword inside brackets is no clause
    ("x -> y as a : linear(4)\n    z[0 + as 1] -> y : identity", "unexpected '1'"),
    # the clauses of the edges inside a block are not those of the statement around it
    ("if c { x -> y as a : linear(4) x -> y as b : identity } else [", "unexpected '['; expected one of 'if', '{'"),
])
def test_clauses_in_order_keep_the_plain_syntax_error(text, message):
    with pytest.raises(SourceError) as info:
        parse(f"network n() {{\n    {text}\n}}\n")
    assert info.value.message.startswith(message) and "an edge reads" not in info.value.message
@pytest.mark.parametrize("end, message", [
    ("prob", "`prob` ends line 4 without its value, as in `prob 0.5`"),
    ("prob 0.5 gate", "`gate` ends line 4 without the gate's name, as in `gate g`"),
    ("choose", "`choose` ends line 4 without the group's name, as in `choose op`"),
    (">>", "`>>` ends line 4 without the next module"),
])
def test_a_line_ending_in_a_word_that_needs_more_is_named(end, message):
    """The parser took the next edge's source for the missing value and failed later in that
    line ("unexpected '>'"); the message names the word at the end of the line."""
    text = (f"network n() {{\n    input x : [4]\n    output y : [4]\n    x -> y as a : linear(4) {end}\n"
            "    x -> y as b : identity\n}\n")
    with pytest.raises(SourceError) as info:
        parse(text, "e.bsn")
    err = info.value
    assert err.message == f"{message}; line 5 starts a new statement"
    word = end.split()[-1]
    assert (err.span.line, err.span.column, err.span.end_column) == (4, 29 + len(end) - len(word),
                                                                     29 + len(end))


@pytest.mark.parametrize("text", [
    "x -> y as a : linear(4) prob\n        0.5 gate g",  # the value on the next line is fine
    "x -> y as a : linear(4) >>\n        identity",
])
def test_a_clause_continued_on_the_next_line_parses(text):
    network = parse(f"network n() {{\n    input x : [4]\n    output y : [4]\n    {text}\n}}\n")
    assert network.items


def test_a_line_ending_in_a_word_that_needs_more_before_other_text_keeps_the_plain_error():
    """`prob` then a number on the next line is a value given there; the error after it is another."""
    with pytest.raises(SourceError) as info:
        parse("network n() {\n    input x : [4]\n    output y : [4]\n    x -> y as a : linear(4) prob\n"
              "    0.5 oops\n}\n")
    assert "ends line" not in info.value.message


def test_unexpected_end_of_file():
    with pytest.raises(SourceError) as info:
        parse("network n() {\n    let x = 1\n")
    assert "end of file" in info.value.message


def test_comment_on_a_shared_line_is_not_duplicated():
    out = format_file(parse("network n() {\n    let a = 1 let b = 2  # c\n}\n"))
    assert out.count("# c") == 1
