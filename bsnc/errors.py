"""One error hierarchy. Every error about `.bsn` input carries a source span and renders as
``file:line:col: message``, the quoted line and a caret under the span."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Span:
    """A region of a source file: 1-based line and column, end inclusive of the last line."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int  # exclusive

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


# Source texts seen so far, keyed by the file name a Span carries, so that errors can quote them.
_SOURCES: dict[str, str] = {}


def register_source(name: str, text: str) -> None:
    _SOURCES[name] = text


def source_line(name: str, line: int) -> str | None:
    text = _SOURCES.get(name)
    if text is None:
        return None
    lines = text.split("\n")  # as the lexer counts lines: a form feed or CR is not a line break
    if 1 <= line <= len(lines):
        return lines[line - 1]
    return "" if line == len(lines) + 1 else None


class BsncError(Exception):
    """Base of every error bsnc reports to a user. The CLI turns it into a message and exit 1."""

    def render(self) -> str:
        return f"error: {self}"


@dataclass
class Note:
    message: str
    span: Span | None = None


class SourceError(BsncError):
    """An error located in a `.bsn` file."""

    def __init__(self, message: str, span: Span | None, notes: list[Note] | None = None):
        super().__init__(message)
        self.message = message
        self.span = span
        self.notes: list[Note] = list(notes or [])

    def render(self) -> str:
        parts = [_render_located("error", self.message, self.span)]
        for note in self.notes:
            parts.append(_render_located("note", note.message, note.span))
        return "\n".join(parts)

    def __str__(self) -> str:
        return self.render()


def _render_located(kind: str, message: str, span: Span | None) -> str:
    if span is None:
        return f"{kind}: {message}"
    file = "".join(c if c.isprintable() else repr(c)[1:-1] for c in span.file)
    head = f"{file}:{span.line}:{span.column}: {kind}: {message}"
    line = source_line(span.file, span.line)
    if line is None:
        return head
    gutter = f"{span.line:>4} | "
    width = span.end_column - span.column if span.end_line == span.line else len(line) - span.column + 1
    # one '?' per control character: the caret stays aligned, and a quoted line cannot send
    # escape sequences to the terminal
    shown = "".join(c if c.isprintable() or c == "\t" else "?" for c in line.rstrip("\r")).expandtabs(1)
    start = span.column - 1
    if len(shown) > MAX_QUOTED:  # a window around the column, not a megabyte line
        first = max(0, min(start - MAX_QUOTED // 3, len(shown) - MAX_QUOTED))
        last = first + MAX_QUOTED
        width = min(width, last - start)
        shown = ("…" if first else "") + shown[first:last] + ("…" if last < len(shown) else "")
        start = start - first + (1 if first else 0)
    caret = " " * (len(gutter) - 2) + "| " + " " * start + "^" * max(1, width)
    return f"{head}\n{gutter}{shown}\n{caret}"


MAX_QUOTED = 200  # characters of a source line shown under an error


class UsageError(BsncError):
    """A wrong command-line option or value: names the option and the value."""


def did_you_mean(name: str, candidates: set[str]) -> str:
    """'; did you mean 'x'?' for the closest candidate, or '' when none is close."""
    import difflib

    close = difflib.get_close_matches(name, sorted(candidates), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def brief(value: object, limit: int = 60) -> str:
    """``repr(value)`` for a message, cut to ``limit`` characters (a value read from a damaged
    file or returned by a user's function can be of any size; an int too long for repr() is
    named by its size)."""
    try:
        text = repr(value)
    except ValueError:  # Python refuses to print an int of more than 4,300 digits
        return f"an integer of {value.bit_length():,} bits" if isinstance(value, int) else "a value"
    return text if len(text) <= limit else text[:limit] + "..."


def display_path(path: Path) -> str:
    """The path as a user would type it: relative to the working directory when below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


class NoArchitectureError(BsncError):
    """A budgeted search ended without an architecture that reaches the output within the budget:
    its result is no usable model. Exit status 3."""

    exit_code = 3


class Terminated(KeyboardInterrupt):
    """SIGTERM, how a scheduler (SLURM, Kubernetes, `docker stop`) asks a job to stop: raised
    where Ctrl-C's KeyboardInterrupt would be, for the same clean stop."""


class Interrupted(BsncError):
    """The user pressed Ctrl-C (exit status 130, 128 + SIGINT, as shells expect), or the process
    was sent SIGTERM (143)."""

    exit_code = 130

    @classmethod
    def of(cls, signal: KeyboardInterrupt, detail: str = "") -> Interrupted:
        """The error for a KeyboardInterrupt (or :class:`Terminated`), with ``detail`` after it."""
        terminated = isinstance(signal, Terminated)
        error = cls(("terminated" if terminated else "interrupted") + (f"; {detail}" if detail else ""))
        if terminated:
            error.exit_code = 143
        return error
