"""Regenerate the golden error messages: tests/data/errors/NAME.expected from `bsnc check NAME.bsn`.

Run from anywhere (it works from the repository root, so paths in messages read
``tests/data/errors/NAME.bsn``)::

    python tests/regen_error_goldens.py

Only files whose content changes are written; their names are printed. Read the diff before
committing: a changed golden is a changed user-facing message.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from click.testing import CliRunner, Result

ROOT = Path(__file__).resolve().parent.parent
ERRORS = ROOT / "tests" / "data" / "errors"


def cases() -> list[Path]:
    """Every error case: the top-level `.bsn` files (files in subfolders are imported helpers)."""
    return sorted(ERRORS.glob("*.bsn"))


def shown(case: Path) -> str:
    """The case's path as given on the command line: relative to the repository root."""
    return case.relative_to(ROOT).as_posix()


def run_check(case: Path) -> Result:
    """`bsnc check CASE` in-process; the working directory must be the repository root."""
    from bsnc.cli import main

    return CliRunner().invoke(main, ["check", shown(case)])


@contextmanager
def _in_root() -> Iterator[None]:
    before = Path.cwd()
    os.chdir(ROOT)
    try:
        yield
    finally:
        os.chdir(before)


def regenerate() -> list[Path]:
    """Rewrite the `.expected` files that differ from current behaviour; return those."""
    changed: list[Path] = []
    with _in_root():
        for case in cases():
            result = run_check(case)
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                raise RuntimeError(f"{shown(case)}: bsnc crashed") from result.exception
            if result.exit_code != 1:
                print(f"warning: {shown(case)} exits {result.exit_code}, not 1", file=sys.stderr)
            golden = case.with_suffix(".expected")
            data = result.stderr.encode("utf-8")
            if not golden.exists() or golden.read_bytes() != data:
                golden.write_bytes(data)
                changed.append(golden)
    return changed


def main() -> int:
    changed = regenerate()
    for path in changed:
        print(f"updated {path.relative_to(ROOT).as_posix()}")
    if not changed:
        print(f"all {len(cases())} goldens up to date")
    stale = sorted(p for p in ERRORS.glob("*.expected") if not p.with_suffix(".bsn").exists())
    for path in stale:
        print(
            f"warning: {path.relative_to(ROOT).as_posix()} has no .bsn beside it", file=sys.stderr
        )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # bsnc from this checkout, even when not installed
    sys.exit(main())
