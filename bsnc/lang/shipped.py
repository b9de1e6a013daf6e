"""The super networks shipped inside bsnc (the repository's `fabrics/`, installed as the
package `bsnc.fabrics`), found by name: `bsnc check cnf_w8` works after `pip install`."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def fabrics_dir() -> Path:
    """The directory of the shipped `.bsn` files (inside the installed package)."""
    return Path(str(resources.files("bsnc.fabrics")))


def shipped_names() -> list[str]:
    """The shipped fabrics' names (file stems), sorted."""
    return sorted(p.stem for p in fabrics_dir().glob("*.bsn"))


def find_shipped(name: str) -> Path | None:
    """The shipped file called ``name`` or ``name.bsn`` (a bare name, no directory), or None."""
    stem = name[:-4] if name.endswith(".bsn") else name
    if not stem or "/" in stem or "\\" in stem or stem.startswith("."):
        return None
    path = fabrics_dir() / f"{stem}.bsn"
    return path if path.is_file() else None


def resolve_bsn(path: str | Path) -> Path:
    """``path`` when it exists, else the shipped fabric of that name; the path as given otherwise
    (so that loading it reports the missing file)."""
    given = Path(path).expanduser()
    if given.exists():
        return given
    return find_shipped(str(path)) or given
