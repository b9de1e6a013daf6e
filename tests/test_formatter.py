"""The formatter: parse(format_file(tree)) == tree, idempotence, the canonical form itself."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from bsnc.errors import SourceError
from bsnc.lang import ast
from bsnc.lang.formatter import format_expr, format_file
from bsnc.lang.parser import parse, read_source
from tests.conftest import DATA, FABRICS

FABRIC_FILES = sorted(FABRICS.glob("*.bsn"))


def _parseable(path: Path) -> bool:
    try:
        parse(read_source(path, str(path)), str(path))
    except SourceError:
        return False  # an error-corpus file that is a syntax error on purpose
    except Exception:
        return True  # a crash in the parser: the test below shows it
    return True


DATA_FILES = [p for p in sorted(DATA.glob("**/*.bsn")) if _parseable(p)] if DATA.is_dir() else []


def _id(path: Path) -> str:
    return str(path.relative_to(FABRICS.parent))


def test_there_are_fabrics():
    assert len(FABRIC_FILES) >= 18


@pytest.mark.parametrize("path", FABRIC_FILES + DATA_FILES, ids=_id)
def test_round_trip_and_idempotence(path):
    text = read_source(path, str(path))
    tree = parse(text, str(path))
    once = format_file(tree)
    assert parse(once, str(path)) == tree
    assert format_file(parse(once)) == once


@pytest.mark.parametrize("path", FABRIC_FILES, ids=_id)
def test_fabrics_are_canonical(path):
    text = path.read_text(encoding="utf-8")
    assert format_file(parse(text, str(path))) == text


MESSY = r"""

#   header comment
import   "lib.bsn"   # trailing import



module   blk( c ,stride = 1 ,) =conv( c,k = 3,stride= stride )>>bn() >>   relu
network   alias_w2=base( W =2 , 3 )
network demo( W : int=2,p:float = 0.5 ,name: str="a\"b" ,  ) {   # head


        # standalone, odd indent
  input   x:[ 3,8 , 8 ]at( -1,0 )
    let H=log2( 8 )+1   # scales
   for  l  in 0..W-1{
      layer n[ l ] : [4,8>>1,8>> 1,] aggregate   mean post relu at(l,(0))


      # loop comment


      if l>0{fixed n[l-1]->n[l] as   skip:identity}else    if  l==0  {
          x->n[ l ]:blk(4,stride=2)prob p*(1-0.5)   # stem
      }else{
      # never
   let unused=1.50
      }
   }
 output y:[4,4,4]
    n[ W-1 ] -> y : identity
}
# footer


"""

CANONICAL = r"""#   header comment
import "lib.bsn"  # trailing import

module blk(c, stride=1) = conv(c, k=3, stride=stride) >> bn >> relu
network alias_w2 = base(W=2, 3)
network demo(W: int = 2, p: float = 0.5, name: str = "a\"b") {  # head
    # standalone, odd indent
    input x : [3, 8, 8] at (-1, 0)
    let H = log2(8) + 1  # scales
    for l in 0..W - 1 {
        layer n[l] : [4, 8 >> 1, 8 >> 1] aggregate mean post relu at (l, (0))

        # loop comment

        if l > 0 {
            fixed n[l - 1] -> n[l] as skip : identity
        } else if l == 0 {
            x -> n[l] : blk(4, stride=2) prob p * (1 - 0.5)  # stem
        } else {
            # never
            let unused = 1.5
        }
    }
    output y : [4, 4, 4]
    n[W - 1] -> y : identity
}
# footer
"""


def test_messy_input_canonical_form():
    tree = parse(MESSY)
    assert format_file(tree) == CANONICAL
    assert parse(CANONICAL) == tree
    assert format_file(parse(CANONICAL)) == CANONICAL


@pytest.mark.parametrize(
    "src",
    [
        'network n() {\n    let s = "q\\"\\\\\\n\\t#"\n}\n',
        "network n() {\n    let f = 1e-07 + 2.5 + 100000.0 + 1e+20\n}\n",
        "network n() {\n    let a = --1 + -(-2) ** -3 ** 2\n}\n",
        "network n() {\n    let b = not not (a or b) and not c == d\n}\n",
        "network n() {\n    let c = ((1)) << 2 + 3 >> (4 < 5)\n}\n",
        "network n() {\n    if a {\n        let x = 1\n    } else if b {  # why\n"
        "        let y = 2\n    } else if c {\n        let z = 3\n"
        "    } else {\n        let w = 4\n    }\n}\n",
        "# only a comment\n",
        'import "a.bsn"\n\n# gap\n\nimport "b.bsn"\n',
        "network n() {  # a\n    # b\n\n    # c\n    input x : [1]  # d\n}\n",
    ],
)
def test_tricky_texts_are_canonical_and_round_trip(src):
    tree = parse(src)
    assert format_file(tree) == src
    assert parse(format_file(tree)) == tree


def test_float_literals_keep_their_value():
    tree = parse("network n() {\n    let f = 0.1 + 1.5e-7 + 2E3\n}\n")
    out = format_file(tree)
    assert out == "network n() {\n    let f = 0.1 + 1.5e-07 + 2000.0\n}\n"
    assert parse(out) == tree


def test_overflowing_float_literal_is_a_located_error():
    with pytest.raises(SourceError) as info:
        parse("network n() {\n    let f = 1e400\n}\n")
    assert "too large" in info.value.message and info.value.span.line == 2


def test_empty_file_formats_to_nothing():
    assert format_file(parse("")) == ""
    assert format_file(parse("\n\n\n")) == ""


def test_statements_sharing_a_line_are_split():
    out = format_file(parse("network n() { input x : [1] output y : [1] x -> y : relu }"))
    assert out == "network n() {\n    input x : [1]\n    output y : [1]\n    x -> y : relu\n}\n"


# --- minimal parentheses for trees built by hand ----------------------------------------

V, Int = ast.Var, ast.IntLit


def B(op, left, right):
    return ast.BinOp(op, left, right)


def U(op, operand):
    return ast.UnaryOp(op, operand)


@pytest.mark.parametrize(
    "tree, text",
    [
        (B("-", V("a"), B("-", V("b"), V("c"))), "a - (b - c)"),
        (B("-", B("-", V("a"), V("b")), V("c")), "a - b - c"),
        (B("*", B("+", V("a"), V("b")), V("c")), "(a + b) * c"),
        (B("**", U("-", Int(2)), Int(2)), "(-2) ** 2"),
        (U("-", B("**", Int(2), Int(2))), "-2 ** 2"),
        (B("**", B("**", Int(2), Int(3)), Int(2)), "(2 ** 3) ** 2"),
        (B("**", Int(2), B("**", Int(3), Int(2))), "2 ** 3 ** 2"),
        (B("**", Int(2), U("-", Int(1))), "2 ** -1"),
        (U("not", B("and", V("a"), V("b"))), "not (a and b)"),
        (U("not", B("==", V("a"), V("b"))), "not a == b"),
        (B("==", B("<", V("a"), V("b")), V("c")), "(a < b) == c"),
        (B("<<", Int(1), B("+", Int(2), Int(3))), "1 << 2 + 3"),
        (B("+", B("<<", Int(1), Int(2)), Int(3)), "(1 << 2) + 3"),
        (B("and", B("or", V("a"), V("b")), V("c")), "(a or b) and c"),
        (U("-", U("not", V("a"))), "-(not a)"),
        (ast.Call("min", (ast.Arg(None, V("a")), ast.Arg("k", Int(2)))), "min(a, k=2)"),
    ],
)
def test_minimal_parentheses(tree, text):
    assert format_expr(tree) == text


def _strip_parens(node):
    if isinstance(node, ast.Paren):
        return _strip_parens(node.expr)
    if isinstance(node, ast.BinOp):
        return ast.BinOp(node.op, _strip_parens(node.left), _strip_parens(node.right))
    if isinstance(node, ast.UnaryOp):
        return ast.UnaryOp(node.op, _strip_parens(node.operand))
    if isinstance(node, ast.Call):
        return dataclasses.replace(
            node, args=tuple(ast.Arg(a.name, _strip_parens(a.value)) for a in node.args)
        )
    return node


_OPS = [
    "or",
    "and",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "<<",
    ">>",
    "+",
    "-",
    "*",
    "/",
    "//",
    "%",
    "**",
]


def _random_expr(rng: random.Random, depth: int) -> ast.Expr:
    if depth == 0 or rng.random() < 0.2:
        return rng.choice([V("a"), V("b"), Int(1), Int(2), ast.FloatLit(0.5), ast.BoolLit(True)])
    kind = rng.random()
    if kind < 0.65:
        return B(rng.choice(_OPS), _random_expr(rng, depth - 1), _random_expr(rng, depth - 1))
    if kind < 0.9:
        return U(rng.choice(["-", "+", "not"]), _random_expr(rng, depth - 1))
    return ast.Call("max", (ast.Arg(None, _random_expr(rng, depth - 1)),))


def test_minimal_parentheses_preserve_structure_on_random_trees():
    """format_expr adds exactly the parentheses the grammar needs: re-parsing the text and
    dropping the Paren nodes gives the original tree back."""
    rng = random.Random(20180101)
    for _ in range(400):
        tree = _random_expr(rng, 5)
        text = format_expr(tree)
        (stmt,) = parse(f"network n() {{\n    let v = {text}\n}}\n").items[0].body
        assert _strip_parens(stmt.value) == tree, text
