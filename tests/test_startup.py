"""Commands that need no network do not import torch (it takes seconds to import): `bsnc --help`,
`bsnc fmt`, shell completion and `import bsnc`. Checked in a fresh interpreter through
`sys.modules`, not by timing (`make bench` measures the time)."""

from __future__ import annotations

import json
import os
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
