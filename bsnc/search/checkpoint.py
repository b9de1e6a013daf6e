"""One checkpoint dict per file, written atomically and loadable with ``weights_only=True``."""

from __future__ import annotations

import io
import pickle
import stat
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
    if not stat.S_ISREG(path.stat().st_mode):
        raise BsncError(f"{path}: not a regular file; expected a checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message advises turning safe loading off: never do that for a file like this
        raise BsncError(f"{path}: refused: it holds Python objects other than tensors and plain data, which "
                        "bsnc never loads (loading them could run code); it is not a checkpoint bsnc wrote, "
                        "or it was altered") from None
    except Exception as exc:  # torch raises many kinds for a damaged or foreign file
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise BsncError(f"{path}: not a readable bsnc checkpoint ({type(exc).__name__}: {first})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise BsncError(f"{path}: not a bsnc checkpoint (expected format {FORMAT}); weights saved from your own "
                        "training loop export with --network FILE.bsn and their -D values")
    _check_content(state, path)
    return state


# What every checkpoint holds, and the type of each entry (a damaged or hand-made file that has
# the right format tag but not this content is refused here, not with a KeyError later).
_ENTRIES: dict[str, type | tuple[type, ...]] = {
    "model": dict, "source_hash": str, "defines": dict, "network": str, "epoch": int, "config": dict,
    "history": list, "best_val": (int, float), "optimizer": dict, "scheduler": dict, "scaler": dict,
}


def _check_content(state: dict[str, Any], path: Path) -> None:
    for key, kind in _ENTRIES.items():
        if key not in state:
            raise BsncError(f"{path}: damaged checkpoint: it has no {key!r} entry")
        if not isinstance(state[key], kind) or isinstance(state[key], bool):
            raise BsncError(f"{path}: damaged checkpoint: its {key!r} entry is a {type(state[key]).__name__}")
    bad = next((k for k, v in state["model"].items() if not isinstance(k, str) or not torch.is_tensor(v)), None)
    if bad is not None:
        raise BsncError(f"{path}: damaged checkpoint: weight {bad!r} is not a tensor")
    if not all(isinstance(row, dict) for row in state["history"]):
        raise BsncError(f"{path}: damaged checkpoint: its history is not a list of epoch records")
    if not isinstance(state["config"].get("file", ""), str):
        raise BsncError(f"{path}: damaged checkpoint: its config names no source file")


def load_weights(module: torch.nn.Module, weights: dict[str, Any], path: str | Path, what: str) -> None:
    """``module.load_state_dict(weights)``, a mismatch (missing or extra weights, other shapes)
    explained as a BsncError naming the checkpoint."""
    try:
        module.load_state_dict(weights)
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        detail = " ".join(str(exc).split())
        detail = detail if len(detail) <= 400 else detail[:400] + " ..."
        raise BsncError(f"{path}: its weights do not fit {what}: {detail}") from None


def find_checkpoint(path: str | Path, name: str = "ckpt.pt") -> Path:
    """A checkpoint file given itself or its run directory."""
    path = Path(path)
    if path.is_dir():
        names = list(dict.fromkeys((name, "best.pt", "ckpt.pt")))  # each once
        for candidate in (path / n for n in names):
            if candidate.is_file():
                return candidate
        if (path / "latest").is_dir():  # runs/NAME: its newest numbered run
            return find_checkpoint(path / "latest", name)
        raise BsncError(f"{path}: this run directory holds no checkpoint ({_listed(names)})")
    if not path.exists():
        raise BsncError(f"{path}: no such run directory or checkpoint")
    return path


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" or {names[-1]}"
