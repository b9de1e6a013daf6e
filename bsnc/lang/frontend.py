"""The front end in one call: text or file to a checked Network."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from bsnc import primitives
from bsnc.errors import Span
from bsnc.ir import Network
from bsnc.lang.checks import build_network
from bsnc.lang.expand import expand
from bsnc.lang.program import Program, load_program, parse_text


def network_from_program(program: Program, overrides: Mapping[str, Any] | None = None) -> Network:
    primitives.load()  # installed packages' primitives (entry points of group bsnc.primitives)
    flat = expand(program, overrides)
    item = program.networks[program.network_name][0]
    return build_network(
        flat,
        source=program.root.shown,
        source_hash=program.source_hash(),
        file_span=item.span or Span(program.root.shown, 1, 1, 1, 2),
    )


def load_network(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Network:
    """Parse, expand and check a `.bsn` file; ``overrides`` are -D values (strings or Python)."""
    return network_from_program(load_program(path), overrides)


def network_from_text(text: str, overrides: Mapping[str, Any] | None = None, name: str = "<string>") -> Network:
    return network_from_program(parse_text(text, name), overrides)
