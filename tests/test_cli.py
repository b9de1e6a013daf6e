"""The `bsnc` command through click's test runner: help, check, -D, fmt."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from bsnc.cli import main
from tests.conftest import FABRICS

CNF_W8 = str(FABRICS / "cnf_w8.bsn")


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def assert_clean_failure(result, code: int) -> None:
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output


def test_main_help():
    result = run("--help")
    assert result.exit_code == 0
    assert "Example" in result.output
    assert "check" in result.output and "fmt" in result.output


@pytest.mark.parametrize("command", sorted(main.commands))
def test_command_help(command):
    result = run(command, "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
    assert f"bsnc {command}" in result.output


def test_check_prints_the_summary():
    result = run("check", CNF_W8)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "network cnf_w8 is valid" in out
    assert "layers      50" in out
    assert "edges       124 (122 stochastic, 2 fixed)" in out
    assert "18,041,610" in out
    assert "x [3, 32, 32]" in out and "y [10]" in out
    assert "W=8, C=128" in out


def test_check_with_defines():
    result = run("check", CNF_W8, "-D", "W=2", "-D", "C=16")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "W=2, C=16" in out
    assert "layers      14" in out
    assert "edges       28 (26 stochastic, 2 fixed)" in out
    assert "61,802" in out
    assert "18,041,610" not in out


def test_check_long_define_option():
    result = run("check", str(FABRICS / "resnet.bsn"), "--define", "n=5")
    assert result.exit_code == 0, result.output
    assert "466,906" in result.output


def test_define_without_equals():
    result = run("check", CNF_W8, "-D", "W")
    assert_clean_failure(result, 2)
    assert "-D" in result.output and "'W'" in result.output
    assert "NAME=VALUE" in result.output


def test_define_unknown_name():
    result = run("check", CNF_W8, "-D", "Q=1")
    assert_clean_failure(result, 1)
    assert "-D Q=1" in result.output
    assert "no parameter 'Q'" in result.output


def test_define_wrong_type():
    result = run("check", CNF_W8, "-D", "W=two")
    assert_clean_failure(result, 1)
    assert "-D W=two" in result.output
    assert "int" in result.output


def test_check_reports_a_located_error(tmp_path):
    bad = tmp_path / "bad.bsn"
    bad.write_text("network n() {\n    input x : [4]\n    output y : [4]\n    x -> y : rleu\n}\n")
    result = run("check", str(bad))
    assert_clean_failure(result, 1)
    assert "bad.bsn:4:14: error: unknown primitive or module 'rleu'" in result.output
    assert "^^^^" in result.output


def test_check_missing_file():
    result = run("check", "does/not/exist.bsn")
    assert_clean_failure(result, 2)
    assert "'does/not/exist.bsn': no such file, and no shipped fabric has that name (shipped: cnf," in result.output


@pytest.mark.parametrize("command", ["check", "fmt", "compile"])
def test_empty_file_name(command):
    """Path("") is the working directory: the message said "'' is a directory"."""
    result = run(command, "")
    assert_clean_failure(result, 2)
    assert "the file name is empty; expected a .bsn file" in result.output
    assert "directory" not in result.output


def test_fmt_missing_file():
    result = run("fmt", "does/not/exist.bsn")
    assert_clean_failure(result, 2)
    assert "'does/not/exist.bsn': no such file" in result.output


def test_fmt_prints_canonical_text(tmp_path):
    messy = tmp_path / "m.bsn"
    messy.write_text("network   n( ){input x:[4]\n\n\n   output y:[4]   # out\nx->y:relu}")
    result = run("fmt", str(messy))
    assert result.exit_code == 0, result.output
    assert (
        result.output
        == "network n() {\n    input x : [4]\n\n    output y : [4]  # out\n    x -> y : relu\n}\n"
    )


def test_fmt_prints_a_fabric_unchanged():
    path = FABRICS / "cnf.bsn"
    result = run("fmt", str(path))
    assert result.exit_code == 0
    assert result.output == path.read_text(encoding="utf-8")


def test_fmt_check():
    canonical = run("fmt", "--check", str(FABRICS / "cnf.bsn"), str(FABRICS / "resnet.bsn"))
    assert canonical.exit_code == 0, canonical.output
    assert "canonical" in canonical.output


def test_fmt_check_non_canonical(tmp_path):
    messy = tmp_path / "m.bsn"
    messy.write_text('import   "x.bsn"\n')
    result = run("fmt", "--check", str(messy))
    assert result.exit_code == 1
    assert "not in canonical form" in result.output
    assert messy.read_text() == 'import   "x.bsn"\n'  # --check never writes


def test_fmt_write(tmp_path):
    folder = tmp_path / "work"
    folder.mkdir()
    copy = folder / "resnet.bsn"
    original = (FABRICS / "resnet.bsn").read_text(encoding="utf-8")
    copy.write_text(original.replace("    ", "  ").replace(" : ", ":"))
    result = run("fmt", "-w", str(copy))
    assert result.exit_code == 0, result.output
    assert "reformatted" in result.output
    assert copy.read_text(encoding="utf-8") == original
    assert sorted(p.name for p in folder.iterdir()) == ["resnet.bsn"]
    # a second run leaves it alone
    again = run("fmt", "--write", str(copy))
    assert again.exit_code == 0
    assert "already canonical" in again.output
    assert sorted(p.name for p in folder.iterdir()) == ["resnet.bsn"]


def test_fmt_write_keeps_other_files(tmp_path):
    shutil.copy(FABRICS / "cnf.bsn", tmp_path / "cnf.bsn")
    (tmp_path / "note.txt").write_text("x")
    result = run("fmt", "-w", str(tmp_path / "cnf.bsn"))
    assert result.exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cnf.bsn", "note.txt"]


def test_fmt_syntax_error_is_reported(tmp_path):
    bad = tmp_path / "bad.bsn"
    bad.write_text("network n( {\n}\n")
    result = run("fmt", "-w", str(bad))
    assert_clean_failure(result, 1)
    assert "bad.bsn:1:12: error: unexpected '{'" in result.output
    assert bad.read_text() == "network n( {\n}\n"


def test_fmt_check_and_write_exclude_each_other():
    result = run("fmt", "--check", "-w", str(FABRICS / "cnf.bsn"))
    assert_clean_failure(result, 2)


def test_fmt_several_files_need_a_mode():
    result = run("fmt", str(FABRICS / "cnf.bsn"), str(FABRICS / "resnet.bsn"))
    assert_clean_failure(result, 2)
