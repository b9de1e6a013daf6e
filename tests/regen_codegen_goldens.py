"""Regenerate the golden files of generated code: python tests/regen_codegen_goldens.py

Run from anywhere; paths in the generated headers are relative to the repository root."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "data" / "golden"


def golden_source(bsn: Path) -> str:
    from bsnc.api import compile_source

    return compile_source(bsn.relative_to(ROOT))


def main() -> int:
    os.chdir(ROOT)
    changed = 0
    for bsn in sorted(GOLDEN.glob("*.bsn")):
        target = bsn.with_suffix(".py.golden")
        text = golden_source(bsn)
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            print(f"updated {target.relative_to(ROOT)}")
            changed += 1
    print(f"{changed} golden file(s) changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
