"""Installing bsnc: a real wheel, built from this checkout and installed into a throwaway venv
(which sees this environment's dependencies, torch included, through a .pth file; --no-deps and
--no-build-isolation keep it offline), runs the shipped fabrics by name from outside the
checkout, has the digits, the grammar and the templates, and never reads the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    wheel = next(dist.glob("bsnc-*.whl"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    # the dependencies (torch, lark, ...) come from this environment's site-packages, appended
    # after the venv's own; its .pth files (the editable install of the checkout) are not run
    purelib = sysconfig.get_paths()["purelib"]
    target = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            check=True, capture_output=True, text=True).stdout.strip()
    Path(target, "_dependencies.pth").write_text(purelib + "\n")
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True, timeout=300)
    work = base / "elsewhere"  # not the checkout: nothing may come from it
    work.mkdir()
    return wheel, venv, work


def _run(venv: Path, work: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    return subprocess.run([str(venv / "bin" / "bsnc"), *args], cwd=work, capture_output=True, text=True, env=env,
                          timeout=300)


def test_the_wheel_holds_the_fabrics_digits_grammar_and_templates(wheel_env):
    wheel, _, _ = wheel_env
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"bsnc/fabrics/cnf_w8.bsn", "bsnc/fabrics/resnet20.bsn", "bsnc/search/digits.npz",
            "bsnc/grammars/bsn.lark", "bsnc/templates/network.py.j2"} <= names
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)
    assert len([n for n in names if n.startswith("bsnc/fabrics/") and n.endswith(".bsn")]) == \
        len(list((ROOT / "fabrics").glob("*.bsn")))


def test_the_installed_bsnc_runs_shipped_fabrics_by_name(wheel_env):
    _, venv, work = wheel_env
    result = _run(venv, work, "check", "cnf_w8")
    assert result.returncode == 0, result.stderr
    assert "network cnf_w8 is valid" in result.stdout
    listed = _run(venv, work, "fabrics", "--path")
    assert listed.returncode == 0 and str(ROOT) not in listed.stdout and "site-packages/bsnc/fabrics" in listed.stdout
    # an instance imports its parameterised definition from the installed directory too
    assert _run(venv, work, "cost", "resnet_fabric_n3", "--cost", "params").returncode == 0
    code = ("import bsnc; s = bsnc.dataset('digits'); m = bsnc.load('cnf_w1', C=4, size=8, in_channels=1); "
            "print(len(s.train), type(m).__name__, bsnc.__file__)")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], cwd=work, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    count, name, location = out.stdout.split()
    assert (count, name) == ("1257", "cnf_w1") and str(ROOT) not in location
