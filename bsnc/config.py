"""`--config FILE`: option values from TOML, YAML or JSON, including a run's own config.json
(replay: `bsnc train FILE --config runs/cnf_w8/0/config.json`). Keys are option names (`epochs`,
`batch-size` or `batch_size`, `lambda`, `define` as a table); the values become defaults that
flags on the command line override. Imports no torch."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Mapping

from bsnc.files import read_regular

# Keys of a run's settings that are not options: the FILE argument is given on the command line.
RECORD_KEYS = {"file"}
MAX_CONFIG_BYTES = 1024 * 1024


def read_table(path: Path) -> tuple[dict[str, Any], str]:
    """The mapping in ``path`` and the format's name; ValueError with the reason when unreadable."""
    text = read_regular(path, MAX_CONFIG_BYTES, str(path)).decode("utf-8")  # never a FIFO or /dev/zero
    suffix = path.suffix.lower()
    if suffix == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - exercised on Python 3.10 only
            import tomli as tomllib
        kind, data = "TOML", tomllib.loads(text)
    elif suffix in (".yaml", ".yml"):
        import yaml

        kind = "YAML"
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(str(exc).replace("\n", " ")) from None
    elif suffix == ".json":
        kind, data = "JSON", json.loads(text)
    else:
        raise ValueError(f"unknown suffix {path.suffix!r}; expected .toml, .yaml, .yml or .json")
    if not isinstance(data, dict):
        raise ValueError(f"expected a table of option names to values, got {type(data).__name__}")
    return data, kind


def is_run_config(data: dict[str, Any]) -> bool:
    """True for the config.json that `bsnc train` writes into a run directory."""
    return isinstance(data.get("config"), dict) and "source_hash" in data


def option_defaults(data: dict[str, Any], known: Mapping[str, str]) -> tuple[dict[str, Any], str | None]:
    """Click defaults from the config ``data`` for a command whose parameters ``known`` maps
    from each accepted key (a parameter's name, or its long option's without the dashes, with
    underscores for dashes) to the parameter's name; returns them and the first unknown key
    (None when all are known). A run's config.json replays its settings (not its FILE, run
    directory or resume flag)."""
    replay = is_run_config(data)
    if replay:
        data = data["config"]
    defaults: dict[str, Any] = {}
    for key, item in data.items():
        spelled = str(key).replace("-", "_")
        name = known.get(spelled, spelled)
        if replay and (key in RECORD_KEYS or name in ("run_dir", "resume")):
            continue
        if name not in known.values() or name == "config":
            return defaults, key
        if name == "defines" and isinstance(item, dict):
            item = [f"{k}={_define_value(v)}" for k, v in item.items()]
        if name == "milestones" and isinstance(item, list):
            item = ",".join(str(v) for v in item)
        defaults[name] = item
    if replay and "channels_last" in known and "channels_last" not in data:
        defaults["channels_last"] = False  # a run from before the option trained contiguous maps
    return defaults, None


def _define_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
