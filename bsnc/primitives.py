"""Primitives of your own: registered from Python, by a module named with `--primitives
package.module` or by an installed package's entry point of group `bsnc.primitives`.

A user module builds ``bsnc.ops.Primitive`` objects (name, argument schema, shape rule, MACs,
params and a ``torch`` function returning ``ModuleSpec("package.module.Class", kwargs)``) and
either calls :func:`register` or lists them in ``PRIMITIVES``. Generated code imports the class
by its module path, which is checked to be dotted identifiers here, before it can reach code.
"""

from __future__ import annotations

import importlib
import keyword
import re
import sys
from importlib import metadata
from typing import Any, Iterable

from bsnc.errors import BsncError, UsageError
from bsnc.ops import REGISTRY, Primitive

ENTRY_POINT_GROUP = "bsnc.primitives"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
BUILTIN = frozenset(REGISTRY)
_origin: dict[str, str] = {}  # user primitive -> where it came from


def is_dotted_path(text: str) -> bool:
    """``package.module.Class``: two or more identifiers joined by dots, none a Python keyword."""
    parts = text.split(".")
    return len(parts) >= 2 and all(_IDENTIFIER.fullmatch(p) and not keyword.iskeyword(p) for p in parts)


def register(prim: Primitive, origin: str = "") -> Primitive:
    """Add a user primitive to the registry (again registering the same object is a no-op)."""
    if not isinstance(prim, Primitive):
        raise BsncError(f"{origin or 'register'}: expected a bsnc.ops.Primitive, got {type(prim).__name__}")
    where = f"{origin}: " if origin else ""
    if not _IDENTIFIER.fullmatch(prim.name) or keyword.iskeyword(prim.name):
        raise BsncError(f"{where}primitive name {prim.name!r} is not a name (letters, digits and _)")
    if prim.name in BUILTIN:
        raise BsncError(f"{where}primitive '{prim.name}' is built into bsnc; choose another name")
    existing = REGISTRY.get(prim.name)
    if existing is not None and existing is not prim:
        raise BsncError(f"{where}primitive '{prim.name}' is already registered by {_origin.get(prim.name, 'another module')}")
    REGISTRY[prim.name] = prim
    _origin[prim.name] = origin or prim.name
    return prim


_scanned: set[tuple[str, ...]] = set()  # sys.path values whose entry points are loaded
_loaded: set[str] = set()  # --primitives modules already imported and registered


def load(specs: Iterable[str] = ()) -> None:
    """Import the modules named by `--primitives` and the installed entry points, registering
    what they define."""
    path = tuple(sys.path)
    if path not in _scanned:
        _scanned.add(path)
        _load_entry_points()
    for spec in specs:
        if not is_dotted_path(spec) and not _IDENTIFIER.fullmatch(spec):
            raise UsageError(f"--primitives {spec}: expected a module name such as mypackage.primitives")
        if spec in _loaded:
            _register_all(sys.modules.get(spec), f"--primitives {spec}")  # again, after a registry reset
            continue
        before = set(REGISTRY)
        try:
            module = importlib.import_module(spec)
        except Exception as exc:
            raise UsageError(f"--primitives {spec}: cannot import module '{spec}': {type(exc).__name__}: {exc}") from None
        _register_all(module, f"--primitives {spec}")
        if set(REGISTRY) == before and not getattr(module, "PRIMITIVES", None):
            raise UsageError(f"--primitives {spec}: module '{spec}' registers no primitive; list them in "
                             "PRIMITIVES or call bsnc.primitives.register")
        _loaded.add(spec)


def _load_entry_points() -> None:
    for entry in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            value = entry.load()
        except Exception as exc:  # a broken installed package: say which
            raise UsageError(f"entry point '{entry.name}' of group {ENTRY_POINT_GROUP} ({entry.value}) "
                             f"failed to load: {type(exc).__name__}: {exc}") from None
        _register_all(value, f"entry point '{entry.name}' ({entry.value})")


def _register_all(value: Any, origin: str) -> None:
    """Register a Primitive, a list of them, or a module's ``PRIMITIVES`` (a module may also have
    called :func:`register` itself when imported)."""
    if isinstance(value, Primitive):
        register(value, origin)
        return
    found = getattr(value, "PRIMITIVES", value if isinstance(value, (list, tuple)) else ())
    for prim in found:
        register(prim, origin)


def origins(names: Iterable[str]) -> dict[str, str]:
    """Where each of these user primitives came from (built-in names are left out)."""
    return {name: _origin[name] for name in names if name in _origin}
