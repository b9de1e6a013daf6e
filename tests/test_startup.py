"""Commands that need no network do not import torch (it takes seconds to import): `bsnc --help`,
`bsnc fmt`, shell completion and `import bsnc`. Checked in a fresh interpreter through
`sys.modules`, not by timing (`make bench` measures the time)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, sys
sys.argv = ["bsnc", *json.loads(sys.argv[1])]
from bsnc.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print("\\n" + json.dumps({"code": code, "torch": "torch" in sys.modules}), file=sys.stderr)
"""


def run_child(args: list[str], env: dict[str, str] | None = None, stdin: str = "") -> tuple[dict, str]:
    result = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], cwd=ROOT, input=stdin,
                            capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120)
    return json.loads(result.stderr.strip().splitlines()[-1]), result.stdout


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["--version"], ["fmt", "fabrics/cnf.bsn"],
                                  ["fmt", "cnf_w8"], ["fmt", "-"]])
def test_commands_without_a_network_do_not_import_torch(args):
    text = (ROOT / "fabrics" / "cnf_w4.bsn").read_text(encoding="utf-8")
    status, out = run_child(args, stdin=text)
    assert status == {"code": 0, "torch": False}
    assert out  # they did their work
    if args[-1] == "-":
        assert out == text  # canonical already


def test_fmt_check_does_not_import_torch():
    status, _ = run_child(["fmt", "--check", "fabrics/cnf_w8.bsn", "fabrics/resnet20.bsn"])
    assert status == {"code": 0, "torch": False}


def test_shell_completion_does_not_import_torch():
    status, out = run_child([], {"_BSNC_COMPLETE": "bash_complete", "COMP_WORDS": "bsnc tr", "COMP_CWORD": "1"})
    assert status["torch"] is False
    assert "plain,train" in out.split()


def test_import_bsnc_is_lazy_and_the_api_still_resolves():
    code = ("import sys, bsnc; before = 'torch' in sys.modules; load = bsnc.load; "
            "print(before, 'torch' in sys.modules, callable(load), 'load' in dir(bsnc))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "True", "True"]
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        import bsnc

        bsnc.nothing  # noqa: B018


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_documented_completion_scripts_come_without_torch(shell):
    status, out = run_child([], {"_BSNC_COMPLETE": f"{shell}_source"})
    assert status["torch"] is False and "_BSNC_COMPLETE" in out
    assert f'eval "$(_BSNC_COMPLETE={shell}_source bsnc)"' in (ROOT / "README.md").read_text() or shell == "fish"


@pytest.mark.parametrize(("words", "expected"), [
    ("bsnc train x --data ci", ["cifar10", "cifar100"]),
    ("bsnc cost x --cost dist", ["distributed:n="]),
    ("bsnc check resnet_fabric_n1", ["resnet_fabric_n18"]),
    ("bsnc train x --device cuda:", ["cuda:0", "cuda:1"]),
])
def test_completion_of_values(words, expected):
    env = {"_BSNC_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}
    status, out = run_child([], env)
    assert status["torch"] is False
    offered = [line.split(",", 1)[1] for line in out.split() if line.startswith("plain,")]
    assert offered == expected


def test_progress_bars_only_on_a_terminal_and_not_when_quiet():
    from bsnc.output import NORMAL, QUIET, VERBOSE, progress_wanted, verbosity

    class Stream:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    assert progress_wanted(NORMAL, Stream(True)) and not progress_wanted(NORMAL, Stream(False))
    assert not progress_wanted(QUIET, Stream(True))
    assert progress_wanted(VERBOSE, Stream(False))  # -v asks for them anyway
    assert (verbosity(0, 0), verbosity(1, 0), verbosity(3, 0), verbosity(0, 1)) == (NORMAL, QUIET, QUIET, VERBOSE)


def test_verbose_reports_the_wall_time_and_quiet_drops_notes(tmp_path):
    from click.testing import CliRunner

    from bsnc.cli import main

    result = CliRunner().invoke(main, ["fmt", "-v", "--check", "fabrics/cnf.bsn"])
    assert result.exit_code == 0 and "fabrics/cnf.bsn: canonical" in result.output
    assert re.search(r"bsnc fmt: done in \d+\.\d\d s", result.output)
    result = CliRunner().invoke(main, ["fmt", "-q", "--check", "fabrics/cnf.bsn"])
    assert result.exit_code == 0 and result.output == ""
