"""Python identifiers for names that come from `.bsn` text: sanitised, never a keyword, builtin,
dunder or attribute of torch's module classes, and unique within one namespace."""

from __future__ import annotations

import builtins
import keyword
import re

from torch import nn

from bsnc import nn as helpers

MAX_IDENTIFIER = 80

# Never handed out: Python's own names, attributes of torch's module classes (a ModuleDict key
# becomes an attribute), and the names generated code itself uses.
RESERVED = frozenset(
    set(keyword.kwlist)
    | set(getattr(keyword, "softkwlist", []))
    | set(dir(builtins))
    | set(dir(nn.ModuleDict))
    | set(dir(nn.Module))
    | set(vars(nn.ModuleDict()))  # instance attributes too: `training`, `_modules`, ...
    | {"self", "torch", "nn", "runtime", "plan", "edges", "post"}
    | {name for name, obj in vars(helpers).items() if isinstance(obj, type)}  # classes generated code embeds
)


class Namespace:
    """Hands out unique identifiers: ``create('n[0][1]') -> 'n_0_1'``."""

    def __init__(self, reserved: frozenset[str] = RESERVED):
        self._used: set[str] = set(reserved)
        self._by_name: dict[str, str] = {}

    def create(self, name: str, candidate: str | None = None) -> str:
        """The identifier of ``name`` (the same on every call), derived from ``candidate``."""
        if name in self._by_name:
            return self._by_name[name]
        base = sanitise(candidate if candidate is not None else name)
        if base in self._used and f"v_{base}" not in self._used:
            base = f"v_{base}"
        candidate, n = base, 1
        while candidate in self._used:
            candidate = f"{base}_{n}"
            n += 1
        self._used.add(candidate)
        self._by_name[name] = candidate
        return candidate


def sanitise(name: str) -> str:
    text = re.sub(r"[^0-9A-Za-z_]+", "_", name.encode("ascii", "replace").decode("ascii"))
    text = re.sub(r"_{3,}", "__", text).strip("_")
    if not text:
        text = "v"
    if text[0].isdigit():
        text = "v" + text
    text = text[:MAX_IDENTIFIER]
    return text
