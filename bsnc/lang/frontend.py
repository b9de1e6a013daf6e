"""The front end in one call: text or file to a checked Network."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from bsnc import primitives
from bsnc.errors import Note, SourceError, Span, brief
from bsnc.ir import Network
from bsnc.lang import ast
from bsnc.lang.checks import build_network
from bsnc.lang.expand import expand
from bsnc.lang.program import Program, load_program, parse_text


def network_from_program(program: Program, overrides: Mapping[str, Any] | None = None) -> Network:
    primitives.load()  # installed packages' primitives (entry points of group bsnc.primitives)
    item = program.networks[program.network_name][0]
    try:
        flat = expand(program, overrides)
        return build_network(
            flat,
            source=program.root.shown,
            source_hash=program.source_hash(),
            file_span=item.span or Span(program.root.shown, 1, 1, 1, 2),
        )
    except SourceError as exc:
        exc.notes.extend(_given_values(item, program.network_name, overrides or {}, exc.span))
        raise


def _given_values(item: ast.NetworkDef | ast.NetworkAlias, name: str, overrides: Mapping[str, Any],
                  where: Span | None) -> list[Note]:
    """Where the parameters' values that an error (at ``where``) may come from were set: an
    alias's arguments (`network small = cnf(C=0)`) and -D overrides, which the error's own
    location does not show."""
    notes = []
    if isinstance(item, ast.NetworkAlias) and item.args and not _within(where, item.span):
        notes.append(Note(f"network '{name}' is {item.target} with the arguments given here", item.span))
    if overrides:
        shown = " ".join(f"-D {key}={_shown(value)}" for key, value in overrides.items())
        notes.append(Note(f"network '{name}' was given {shown}"))
    return notes


def _within(span: Span | None, outer: Span | None) -> bool:
    return (span is not None and outer is not None and span.file == outer.file
            and outer.line <= span.line <= outer.end_line)


def _shown(value: Any) -> str:
    """A -D value as typed when it is short and printable text, else cut through repr()."""
    return value if isinstance(value, str) and value.isprintable() and len(value) <= 40 else brief(value, 40)


def load_network(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Network:
    """Parse, expand and check a `.bsn` file; ``overrides`` are -D values (strings or Python)."""
    return network_from_program(load_program(path), overrides)


def network_from_text(text: str, overrides: Mapping[str, Any] | None = None, name: str = "<string>") -> Network:
    return network_from_program(parse_text(text, name), overrides)
