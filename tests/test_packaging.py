"""What a user installs: the licence and citation files, and pyproject's promises."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from bsnc.version import __version__

ROOT = Path(__file__).resolve().parent.parent

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def test_citation_cff_cites_the_paper_and_bsnc_at_this_version():
    data = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert data["cff-version"] == "1.2.0" and data["version"] == __version__ and data["license"] == "MIT"
    paper = data["preferred-citation"]
    assert paper["title"].startswith("Learning Time/Memory-Efficient Deep Architectures with Budgeted Super")
    assert [a["family-names"] for a in paper["authors"]] == ["Véniat", "Denoyer"] and paper["year"] == 2018
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "@inproceedings{veniat2018budgeted," in readme and "@software{bsnc," in readme


def test_license_and_pyproject_agree():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == {"text": "MIT"}
    licence = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert licence.startswith("MIT License") and "CC BY 4.0" in licence and "digits.npz" in licence
    names = [d.split(">")[0].split(";")[0].strip().lower() for d in project["dependencies"]]
    assert "scikit-learn" not in names and "pyyaml" in names
    # the code runs on 3.10 (tomli stands in for tomllib there) and the ruff target says so too
    assert project["requires-python"] == ">=3.10"
    assert any(d.startswith("tomli") and "python_version < '3.11'" in d for d in project["dependencies"])
