"""The limits of the `.bsn` language, and the scan that enforces the textual ones before parsing.

Every limit is checked where the quantity is made, in time linear in the input, so that a hostile
or mistyped file is refused in well under a second with a located error rather than after minutes
of work or a MemoryError. The numbers are documented in docs/language.md (Limits).
"""

from __future__ import annotations

import re

from bsnc.errors import SourceError, Span

MAX_SOURCE_BYTES = 4 * 1024 * 1024  # one file
MAX_TOKENS = 100_000  # one file, comments and white space not counted
MAX_BRACKET_DEPTH = 100  # ( and [ nested
MAX_EXPR_DEPTH = 100  # operators nested in one expression
MAX_BLOCK_DEPTH = 32  # { } nested
MAX_IMPORT_DEPTH = 32
MAX_MODULE_DEPTH = 32  # module types using module types
MAX_OPS_PER_EDGE = 1_000  # primitives one edge (or one post) unrolls to
MAX_ITERATIONS = 10_000_000  # loop iterations of one network, in total
MAX_LAYERS = 100_000
MAX_EDGES = 250_000
MAX_INT = 2**63 - 1  # any integer value
MAX_STRING = 100_000  # characters of any string value
MAX_LIST_SIZE = 100_000  # values in one list or tuple value, nested ones and characters of strings counted
MAX_LIST_DEPTH = 100  # lists and tuples nested in one value
MAX_ARGUMENT = 2**31 - 1  # an integer argument of a primitive (torch's kernels take 32-bit sizes)
MAX_TENSOR_ELEMENTS = 2**31 - 1  # elements of one example's tensor at any layer or inside an edge
MAX_PARAMETERS = 2**34  # parameters of the full super network (64 GiB in float32)

# One token of the language, or something the scan skips. Strings and comments are matched
# whole so that a bracket inside them is not counted; an unterminated string is left for the
# parser to report.
_TOKEN = re.compile(
    r'(?P<skip>[ \t\r\f\v]+|\#[^\n]*)'
    r'|(?P<newline>\n)'
    r'|(?P<string>"(?:[^"\\\n]|\\.)*")'
    r'|(?P<open>[(\[{])'
    r'|(?P<close>[)\]}])'
    r'|(?P<word>[A-Za-z0-9_.]+)'
    r'|(?P<other>.)',
    re.DOTALL,
)


def scan(text: str, file: str) -> None:
    """Refuse text with too many tokens or too deep brackets or braces, before it is parsed."""
    tokens = 0
    brackets: list[int] = []  # offsets of the open ( and [
    braces = 0
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        if kind in ("skip", "newline"):
            continue
        tokens += 1
        if tokens > MAX_TOKENS:
            raise SourceError(f"file has more than {MAX_TOKENS:,} tokens; split it into files that import "
                              "each other, or use loops", _span(text, match.start(), file))
        if kind == "open":
            char = match.group()
            if char == "{":
                braces += 1
                if braces > MAX_BLOCK_DEPTH:
                    raise SourceError(f"blocks nested more than {MAX_BLOCK_DEPTH} deep",
                                      _span(text, match.start(), file))
            else:
                brackets.append(match.start())
                if len(brackets) > MAX_BRACKET_DEPTH:
                    raise SourceError(f"brackets nested more than {MAX_BRACKET_DEPTH} deep",
                                      _span(text, match.start(), file))
        elif kind == "close":
            if match.group() == "}":
                braces = max(0, braces - 1)
            elif brackets:
                brackets.pop()


def _span(text: str, offset: int, file: str) -> Span:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return Span(file, line, column, line, column + 1)
