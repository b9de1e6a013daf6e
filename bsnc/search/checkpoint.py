"""One checkpoint dict per file, written atomically and loadable with ``weights_only=True``; and
the readers of a run directory's other records (config.json, metrics.jsonl), each checking the
shape and types of what it reads, so that a damaged file is a BsncError naming it."""

from __future__ import annotations

import io
import json
import math
import pickle
import stat
from pathlib import Path
from typing import Any

import torch

from bsnc.errors import BsncError, brief, display_path
from bsnc.files import atomic_write_bytes, read_regular
from bsnc.search.selection import front_problem

FORMAT = "bsnc-checkpoint/1"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    atomic_write_bytes(path, buffer.getvalue(), special=False)  # never through a FIFO or a device


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise BsncError(f"{path}: no checkpoint there")
    if not stat.S_ISREG(path.stat().st_mode):
        raise BsncError(f"{path}: not a regular file; expected a checkpoint")
    with open(path, "rb") as handle:
        head = handle.read(4)
    if not head.startswith((b"PK\x03\x04", b"\x80")):  # torch.save's zip archive, or its legacy pickle
        raise BsncError(f"{path}: not a checkpoint (a file torch.save wrote, as bsnc does); give a run "
                        "directory, its ckpt.pt or best.pt, or a Pareto point's pareto/epoch-N.pt")
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
    problem = (_optional_problem(state) or config_problem(state["config"])
               or next((f"epoch record {i}: {p}" for i, row in enumerate(state["history"], 1)
                        if (p := record_problem(row)) is not None), None)
               or (front_problem(state["pareto"]) if "pareto" in state else None))
    if problem is not None:
        raise BsncError(f"{path}: damaged checkpoint: {problem}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    return _number(value) and math.isfinite(value)


def _optional_problem(state: dict[str, Any]) -> str | None:
    """The entries a checkpoint may lack (older runs), checked when present."""
    budget = state.get("budget")
    if budget is not None and not (_finite(budget) and budget >= 0):
        return f"its 'budget' entry is {brief(budget)}, expected a cost (a number)"
    for key, kind in (("cost", str), ("params", dict), ("gate_optimizer", dict)):
        if state.get(key) is not None and not isinstance(state[key], kind):
            return f"its {key!r} entry is a {type(state[key]).__name__}"
    for key in ("warmup", "anneal_span"):
        value = state.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            return f"its {key!r} entry is {brief(value)}, expected a whole number"
    if "pareto" in state and not isinstance(state["pareto"], list):
        return f"its 'pareto' entry is a {type(state['pareto']).__name__}, expected a list of Pareto points"
    return None


# --- a run's settings (config.json, and a checkpoint's "config") ----------------------------

# the settings a reader uses, and their types (None allowed where a setting may be unset)
_SETTINGS: dict[str, tuple[type, ...]] = {
    "file": (str,), "defines": (dict,), "primitives": (list,), "cost": (str,), "budget": (str, type(None)),
    "channels_last": (bool, type(None)), "full_network": (bool,), "data": (str,),
}


def config_problem(config: Any) -> str | None:
    """What is wrong with a run's settings (config.json's "config", a checkpoint's "config"), or None."""
    if not isinstance(config, dict):
        return f"its settings are a {type(config).__name__}, expected an object"
    for key, kinds in _SETTINGS.items():
        if key in config and not isinstance(config[key], kinds):
            return f"setting {key!r} is {brief(config[key])}"
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in config.get("defines", {}).items()):
        return "setting 'defines' is not a map of names to values"
    if not all(isinstance(m, str) for m in config.get("primitives", [])):
        return "setting 'primitives' is not a list of module names"
    return None


MAX_RECORD_BYTES = 256 * 1024 * 1024  # config.json, metrics.jsonl: far above any real one


def _read_text(path: Path) -> str:
    try:
        return read_regular(path, MAX_RECORD_BYTES, display_path(path)).decode("utf-8")
    except UnicodeDecodeError:
        raise BsncError(f"{display_path(path)}: not UTF-8 text") from None


def read_json(path: str | Path) -> Any:
    """A JSON file written by bsnc (a FIFO, a device or an oversized file refused)."""
    path = Path(path)
    try:
        return json.loads(_read_text(path))
    except ValueError as exc:
        raise BsncError(f"{display_path(path)}: damaged: not JSON ({exc})") from None


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """A run directory's config.json ({} when there is none), its shape checked."""
    path = Path(run_dir) / "config.json"
    if not path.exists() and not path.is_symlink():
        return {}
    data = read_json(path)
    if not isinstance(data, dict):
        problem: str | None = f"expected an object, got a {type(data).__name__}"
    else:
        problem = next((f"its {key!r} entry is {brief(data[key])}, expected a {kind.__name__}"
                        for key, kind in (("network", str), ("source_hash", str), ("params", dict), ("sources", dict))
                        if key in data and not isinstance(data[key], kind)), None)
        problem = problem or (config_problem(data["config"]) if "config" in data else None)
    if problem is not None:
        raise BsncError(f"{display_path(path)}: damaged run settings: {problem}")
    return data


# --- a run's epochs (metrics.jsonl, and a checkpoint's "history") ---------------------------

# what train writes for every epoch (None: a measure the epoch did not take), checked when present
_MEASURES = ("train_loss", "train_acc", "mean_sampled_cost", "deterministic_cost", "entropy", "edges_kept",
             "val_acc", "lr", "time")
_OPTIONAL_MEASURES = ("val_loss", "test_acc", "budget", "search_budget", "cheapest_cost", "val_miou", "test_miou")
_FLAGS = ("consistent", "within_budget")


def record_problem(record: Any) -> str | None:
    """What is wrong with one epoch's record, or None."""
    if not isinstance(record, dict):
        return f"expected an object, got a {type(record).__name__}"
    epoch = record.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        return f"'epoch' is {brief(epoch)}, expected a whole number"
    for key in _MEASURES + _OPTIONAL_MEASURES:
        if key in record and not (_number(record[key]) or (key in _OPTIONAL_MEASURES and record[key] is None)):
            return f"{key!r} is {brief(record[key])}, expected a number"
    for key in _FLAGS + ("cheapest_exact",):
        if key in record and not (isinstance(record[key], bool) or (key == "cheapest_exact" and record[key] is None)):
            return f"{key!r} is {brief(record[key])}, expected true or false"
    if "phase" in record and not isinstance(record["phase"], str):
        return f"'phase' is {brief(record['phase'])}, expected a word"
    gamma = record.get("gamma", {})
    if not isinstance(gamma, dict) or not all(isinstance(k, str) and _number(v) for k, v in gamma.items()):
        return "'gamma' is not a map of edge names to probabilities"
    return None


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """A run directory's metrics.jsonl, one checked record per epoch ([] when there is none)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists() and not path.is_symlink():
        return []
    records = []
    for number, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise BsncError(f"{display_path(path)}:{number}: damaged: not a JSON object") from None
        problem = record_problem(record)
        if problem is not None:
            raise BsncError(f"{display_path(path)}:{number}: damaged epoch record: {problem}")
        records.append(record)
    return records


def load_weights(module: torch.nn.Module, weights: dict[str, Any], path: str | Path, what: str) -> None:
    """``module.load_state_dict(weights)``, a mismatch (missing or extra weights, other shapes)
    explained as a BsncError naming the checkpoint."""
    try:
        module.load_state_dict(weights)
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        detail = " ".join(str(exc).split())
        detail = detail if len(detail) <= 400 else detail[:400] + " ..."
        raise BsncError(f"{path}: its weights do not fit {what}: {detail}") from None


def follow_latest(path: Path) -> Path:
    """``runs/NAME`` (no run or sweep of its own, a ``latest`` link): its newest numbered run."""
    own = ("ckpt.pt", "metrics.jsonl", "results.json")
    while not any((path / name).is_file() for name in own) and (path / "latest").is_dir():
        path = path / "latest"
    return path


def find_checkpoint(path: str | Path, name: str = "ckpt.pt") -> Path:
    """A checkpoint file given itself or its run directory."""
    path = Path(path)
    if path.is_dir():
        path = follow_latest(path)  # runs/NAME: its newest numbered run
        names = list(dict.fromkeys((name, "best.pt", "ckpt.pt")))  # each once
        for candidate in (path / n for n in names):
            if candidate.is_file():
                return candidate
        raise BsncError(f"{path}: this run directory holds no checkpoint ({_listed(names)})")
    if not path.exists():
        raise BsncError(f"{path}: no such run directory or checkpoint")
    return path


def shipped_checkpoint(path: str | Path) -> Path:
    """The checkpoint a run ships (export's default, what draw --probs and report show): a file
    as given; of a run directory, the best point of the front that ckpt.pt records (best.pt is
    its copy, which a crash between an epoch's writes can leave one epoch ahead), else the
    latest state when no point is within budget."""
    from bsnc.search.selection import ParetoFront

    path = Path(path)
    if not path.is_dir():
        return find_checkpoint(path)
    path = follow_latest(path)
    if not (path / "ckpt.pt").is_file():
        return find_checkpoint(path, "best.pt")
    last = path / "ckpt.pt"
    best = ParetoFront.from_json(load_checkpoint(last).get("pareto", []), display_path(last)).best()
    return path / best.file if best is not None and (path / best.file).is_file() else find_checkpoint(path, "best.pt")


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" or {names[-1]}"
