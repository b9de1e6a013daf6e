"""One checkpoint dict per file, written atomically and loadable with ``weights_only=True``."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from bsnc.errors import BsncError
from bsnc.files import atomic_write_bytes

FORMAT = "bsnc-checkpoint/1"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise BsncError(f"{path}: no checkpoint there")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many kinds for a damaged or foreign file
        raise BsncError(f"{path}: not a readable bsnc checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise BsncError(f"{path}: not a bsnc checkpoint (expected format {FORMAT}); weights saved from your own "
                        "training loop export with --network FILE.bsn and their -D values")
    return state


def find_checkpoint(path: str | Path, name: str = "ckpt.pt") -> Path:
    """A checkpoint file given itself or its run directory."""
    path = Path(path)
    if path.is_dir():
        for candidate in (path / name, path / "best.pt", path / "ckpt.pt"):
            if candidate.is_file():
                return candidate
        if (path / "latest").is_dir():  # runs/NAME: its newest numbered run
            return find_checkpoint(path / "latest", name)
        raise BsncError(f"{path}: this run directory holds no checkpoint ({name}, best.pt or ckpt.pt)")
    if not path.exists():
        raise BsncError(f"{path}: no such run directory or checkpoint")
    return path
