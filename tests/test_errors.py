"""Golden tests of user-facing error messages: each tests/data/errors/NAME.bsn must make
`bsnc check` exit 1 and print exactly NAME.expected on stderr.

After a deliberate change of a message, run `python tests/regen_error_goldens.py` and review the
diff of the `.expected` files.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.regen_error_goldens import ERRORS, ROOT, cases, run_check, shown

CASES = cases()


@pytest.fixture
def in_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_error_message(case: Path, in_root: None) -> None:
    result = run_check(case)
    crash = result.exception if not isinstance(result.exception, SystemExit) else None
    assert crash is None, f"bsnc crashed: {crash!r}"
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "Traceback" not in result.output
    expected = case.with_suffix(".expected").read_bytes().decode("utf-8")
    assert result.stderr == expected


def test_corpus_is_not_empty() -> None:
    assert len(CASES) >= 40


def test_every_case_has_a_golden_and_every_golden_a_case() -> None:
    bsn = {p.stem for p in ERRORS.glob("*.bsn")}
    expected = {p.stem for p in ERRORS.glob("*.expected")}
    assert sorted(bsn - expected) == [], "cases without .expected: run tests/regen_error_goldens.py"
    assert sorted(expected - bsn) == [], ".expected files without a .bsn case"


def test_non_utf8_error_names_line_and_column_of_the_bad_byte(in_root: None) -> None:
    case = ERRORS / "encoding_not_utf8.bsn"
    data = case.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = exc.start
    else:
        pytest.fail(f"{case.name} is valid UTF-8; it must hold an invalid byte")
    before = data[:bad].decode("utf-8")
    line = before.count("\n") + 1
    column = len(before) - (before.rfind("\n") + 1) + 1
    assert line in (2, 3) and column > 1, "the bad byte belongs in the middle of line 2 or 3"

    result = run_check(case)
    assert result.exit_code == 1
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{shown(case)}:{line}:{column}: error: ")
    assert f"0x{data[bad]:02x}" in first
    caret = result.stderr.splitlines()[2]
    assert caret.index("^") - caret.index("|") - 2 == column - 1


_IMPORTER = """import "{name}"
network t() {{
    input x : [4]
    output y : [4]
    x -> y : identity
}}
"""


@pytest.mark.parametrize(("kind", "message"), [
    ("symlink loop", 'cannot import "lib.bsn": symbolic links form a loop'),
    ("directory", 'cannot import "lib.bsn": lib.bsn: not a regular file (a directory); expected a file'),
    ("fifo", 'cannot import "lib.bsn": lib.bsn: not a regular file (a FIFO); expected a file'),
])
def test_import_of_what_is_not_a_file_is_located(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  kind: str, message: str) -> None:
    """A symlink loop raised RuntimeError from Path.resolve(); a directory or FIFO was refused
    without the location of the import line."""
    import os

    from click.testing import CliRunner

    from bsnc.cli import main

    monkeypatch.chdir(tmp_path)
    if kind == "symlink loop":
        os.symlink("other.bsn", "lib.bsn")
        os.symlink("lib.bsn", "other.bsn")
    elif kind == "directory":
        os.mkdir("lib.bsn")
    else:
        os.mkfifo("lib.bsn")
    Path("main.bsn").write_text(_IMPORTER.format(name="lib.bsn"))
    result = CliRunner().invoke(main, ["check", "main.bsn"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert lines[0] == f"main.bsn:1:1: error: {message}"
    assert lines[1] == '   1 | import "lib.bsn"'
