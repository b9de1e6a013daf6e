"""Loading a `.bsn` file with its imports into one program: module types and networks by name."""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from bsnc.errors import BsncError, Note, SourceError, display_path
from bsnc.files import describe
from bsnc.lang import ast
from bsnc.lang.evaluate import shown
from bsnc.lang.limits import MAX_IMPORT_DEPTH
from bsnc.lang.parser import parse, read_source
from bsnc.ops import REGISTRY, printable


@dataclass(frozen=True)
class Unit:
    """One parsed file."""

    path: Path
    shown: str  # the name errors use
    text: str
    tree: ast.File


@dataclass
class Program:
    root: Unit
    units: list[Unit] = field(default_factory=list)
    modules: dict[str, tuple[ast.ModuleDef, Unit]] = field(default_factory=dict)
    networks: dict[str, tuple[ast.NetworkDef | ast.NetworkAlias, Unit]] = field(default_factory=dict)

    @property
    def network_name(self) -> str:
        own = [i for i in self.root.tree.items if isinstance(i, (ast.NetworkDef, ast.NetworkAlias))]
        return own[0].name

    def source_hash(self) -> str:
        """SHA-256 over every file's text, root first, imports in load order."""
        digest = hashlib.sha256()
        for unit in self.units:
            digest.update(unit.text.encode("utf-8"))
            digest.update(b"\0")
        return digest.hexdigest()


def load_program(path: str | Path) -> Program:
    """Parse ``path`` and everything it imports; refuses a file without exactly one network."""
    path = Path(path)
    if not path.exists():
        raise BsncError(f"{path}: no such file")
    shown = display_path(path)
    root = _load_unit(path, shown)
    program = Program(root=root)
    _add_unit(program, root, stack=[path.resolve()])
    _check_one_network(root, shown)
    return program


def _check_one_network(root: Unit, shown: str) -> None:
    own = [i for i in root.tree.items if isinstance(i, (ast.NetworkDef, ast.NetworkAlias))]
    if not own:
        raise SourceError(f"{shown} declares no network; expected `network NAME(...) {{ ... }}` "
                          "or `network NAME = OTHER(...)`", None)
    if len(own) > 1:
        raise SourceError(
            f"a file declares one network; '{own[1].name}' is a second one",
            own[1].span,
            [Note(f"first network '{own[0].name}' here", own[0].span)],
        )


def parse_text(text: str, name: str = "<string>") -> Program:
    """A program from text with no imports (for tests and the Python API)."""
    tree = parse(text, name)
    unit = Unit(Path(name), name, text, tree)
    program = Program(root=unit)
    _add_unit(program, unit, stack=[Path(name)])
    _check_one_network(unit, name)
    return program


def _load_unit(path: Path, shown: str) -> Unit:
    text = read_source(path, shown)
    return Unit(path, shown, text, parse(text, shown))


def _add_unit(program: Program, unit: Unit, stack: list[Path]) -> None:
    program.units.append(unit)
    for item in unit.tree.items:
        if isinstance(item, ast.Import):
            _import(program, unit, item, stack)
        elif isinstance(item, ast.ModuleDef):
            typed = next((p for p in item.params if p.type is not None), None)
            if typed is not None:
                raise SourceError(f"module parameters are untyped: write '{typed.name}', not "
                                  f"'{typed.name}: {typed.type}' (arguments are checked where they are used)",
                                  typed.span)
            if item.name in REGISTRY:
                raise SourceError(f"module '{item.name}' would hide the primitive of that name; choose another name", item.span)
            _define(program.modules, item, unit, "module type")
        elif isinstance(item, (ast.NetworkDef, ast.NetworkAlias)):
            _define(program.networks, item, unit, "network")


def _define(table: dict, item, unit: Unit, what: str) -> None:
    if item.name in table:
        first, _ = table[item.name]
        raise SourceError(f"{what} '{item.name}' is defined twice", item.span, [Note("first defined here", first.span)])
    table[item.name] = (item, unit)


def _import(program: Program, unit: Unit, item: ast.Import, stack: list[Path]) -> None:
    named = printable(shown(item.path))
    try:
        target = (unit.path.parent / item.path).resolve()
        exists = target.exists()
    except RuntimeError:  # Python 3.11's resolve() on a symbolic link that leads to itself
        raise SourceError(f"cannot import {named}: symbolic links form a loop", item.span) from None
    except (OSError, ValueError) as exc:  # a name too long, a NUL character
        raise SourceError(f"cannot import {named}: {_reason(exc)}", item.span) from None
    if target in stack:
        chain = " -> ".join(p.name for p in stack[stack.index(target):] + [target])
        raise SourceError(f"import cycle: {chain}", item.span)
    if len(stack) >= MAX_IMPORT_DEPTH:
        raise SourceError(f"imports nested more than {MAX_IMPORT_DEPTH} deep", item.span)
    if any(u.path.resolve() == target for u in program.units):
        return  # already loaded through another import
    if target.suffix != ".bsn":
        raise SourceError(f"cannot import {named}: only .bsn files can be imported", item.span)
    if not exists:
        raise SourceError(f"cannot import {named}: no file {display_path(target)}", item.span)
    path = display_path(target)
    try:
        imported = _load_unit(target, path)
    except SourceError as exc:
        # Say where, but never quote the text: an import must not disclose a file that is not .bsn.
        where = f" at line {exc.span.line}, column {exc.span.column}" if exc.span is not None else ""
        raise SourceError(f"cannot import {named}: {path} is not valid .bsn text{where}; "
                          f"`bsnc fmt {shlex.quote(path)}` shows the problem", item.span) from None
    except BsncError as exc:  # a directory, a FIFO, a device, an unreadable file: at the import line
        raise SourceError(f"cannot import {named}: {exc}", item.span) from None
    _add_unit(program, imported, stack + [target])


def _reason(exc: Exception) -> str:
    return describe(exc) if isinstance(exc, OSError) else str(exc)
