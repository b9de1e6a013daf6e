"""Shared test set-up: one torch thread per test process (xdist runs several), paths, and the
tests' own primitive packages."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
FABRICS = ROOT / "fabrics"
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def fabrics_dir() -> Path:
    return FABRICS


@pytest.fixture
def plugins(monkeypatch):
    """The packages of tests/data/plugins (tinyattn, viewflat) importable; the primitive registry
    restored afterwards, so that no other test sees what a test registered."""
    from bsnc import primitives
    from bsnc.ops import REGISTRY

    monkeypatch.syspath_prepend(str(DATA / "plugins"))
    registry, origins, scanned = dict(REGISTRY), dict(primitives._origin), set(primitives._scanned)
    loaded = set(primitives._loaded)
    yield
    REGISTRY.clear()
    REGISTRY.update(registry)
    primitives._origin.clear()
    primitives._origin.update(origins)
    primitives._scanned.clear()
    primitives._scanned.update(scanned)
    primitives._loaded.clear()
    primitives._loaded.update(loaded)
