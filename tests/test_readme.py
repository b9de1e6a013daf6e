"""Every command of the README's tour runs as written (in a copy of the fabrics)."""

from __future__ import annotations

import json
import re
import shlex
import shutil

from click.testing import CliRunner

from bsnc.cli import main
from tests.helpers import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _tour_commands() -> list[list[str]]:
    blocks = re.findall(r"```console\n(.*?)```", README, flags=re.S)
    commands = [line[2:] for block in blocks for line in block.splitlines() if line.startswith("$ ")]
    return [shlex.split(c)[1:] for c in commands if c.startswith("bsnc ")]


def test_the_readme_tour_runs(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "fabrics", tmp_path / "fabrics")
    monkeypatch.chdir(tmp_path)
    commands = _tour_commands()
    assert [c[0] for c in commands] == ["check", "cost", "train", "export", "draw"]
    runner = CliRunner()
    for args in commands:
        if args[0] == "train":
            args = args + ["--quiet"]
        result = runner.invoke(main, args)
        assert result.exit_code == 0, f"bsnc {' '.join(args)}\n{result.output}"
        if args[0] == "train":
            assert "warning:" not in result.output, "the tour's search is long enough for its budget"
            last = json.loads((tmp_path / "runs" / "tour" / "metrics.jsonl").read_text().splitlines()[-1])
            assert last["consistent"] and last["within_budget"], last
    assert (tmp_path / "runs" / "tour" / "export" / "cnf_pruned.bsn").is_file()
    assert (tmp_path / "runs" / "tour" / "cnf.dot").is_file()


def test_the_readme_names_exactly_two_setup_commands():
    block = re.search(r"```sh\n(.*?)```", README, flags=re.S).group(1)
    assert [line.split()[:2] for line in block.splitlines()] == [["make", "demo"], ["make", "test"]]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
