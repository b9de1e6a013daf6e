"""Weights trained outside `bsnc train` (your own loop over a `bsnc.load` model): read a saved
state dict and check it against the network before exporting it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from bsnc.codegen.loader import compile_network
from bsnc.errors import UsageError
from bsnc.ir import Network
from bsnc.search.checkpoint import FORMAT


def read_state_dict(path: Path) -> dict[str, Any]:
    """The state dict in ``path``: a file of ``torch.save(model.state_dict())`` (read with
    ``weights_only=True``) or a bsnc checkpoint (its model)."""
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a damaged or foreign file
        raise UsageError(f"{path}: not a readable PyTorch file of weights ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and state.get("format") == FORMAT:
        state = state.get("model", {})
    if not (isinstance(state, dict) and state and all(isinstance(k, str) for k in state)
            and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise UsageError(f"{path}: expected a state dict (torch.save(model.state_dict(), path)) of a model from "
                         "bsnc.load")
    return state


def check_state_dict(state: dict[str, Any], network: Network) -> None:
    """UsageError unless ``state`` has exactly the tensors, with the shapes, of ``network``'s module."""
    expected = compile_network(network)().state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {list(state[k].shape)} (expected {list(v.shape)})" for k, v in expected.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("of another shape", wrong)):
        if items:
            problems.append(f"{len(items)} {label}: {', '.join(items[:3])}{', ...' if len(items) > 3 else ''}")
    if problems:
        raise UsageError(f"the weights do not fit network {network.name} from {network.source} with these "
                         f"-D values ({'; '.join(problems)}); give the .bsn file and -D values the model was "
                         "built with")
