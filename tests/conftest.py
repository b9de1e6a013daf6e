"""Shared test set-up: one torch thread per test process (xdist runs several), paths."""

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
