"""The project's own code passes ruff with the rules in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT


def test_ruff_passes():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "bsnc", "tests", "benchmarks",
                             "examples", "docs"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
