"""Extra sinks for a run's per-epoch records: CSV and TensorBoard.

`metrics.jsonl` stays the source of truth (it is written whatever the loggers); a logger
mirrors each record as it is made, so a run can be watched in the tools users already have.
A record is the JSON object of one epoch; its numbers become scalars, and its per-edge
probabilities (``gammas``, keyed by edge) a histogram.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from bsnc.errors import UsageError
from bsnc.files import atomic_write_text, kind_of

LOGGER_NAMES = ("csv", "tensorboard")
LOGGER_PATHS = {"csv": "metrics.csv", "tensorboard": "tensorboard"}  # each logger's file or directory in a run


class EpochLogger(Protocol):
    def log(self, record: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


def scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """The record's finite numbers (booleans as 0/1), by field name."""
    found: dict[str, float] = {}
    for key, value in record.items():
        if isinstance(value, bool):
            found[key] = float(value)
        elif isinstance(value, (int, float)) and math.isfinite(value):
            found[key] = float(value)
    return found


class CsvLogger:
    """``metrics.csv``: one row per epoch, one column per scalar field (rewritten atomically)."""

    def __init__(self, run_dir: Path, history: Sequence[Mapping[str, Any]] = ()):
        self.path = run_dir / LOGGER_PATHS["csv"]
        self.rows = [scalars(r) for r in history]

    def log(self, record: Mapping[str, Any]) -> None:
        self.rows.append(scalars(record))
        columns: list[str] = []
        for row in self.rows:
            columns += [k for k in row if k not in columns]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, out.getvalue(), special=False)

    def close(self) -> None:
        pass


class TensorBoardLogger:
    """Event files under ``RUN_DIR/tensorboard``: every scalar, and a histogram of γ.

    The step is the epoch number. A resumed run purges events after its last checkpointed
    epoch, so the curves stay continuous."""

    def __init__(self, run_dir: Path, start_epoch: int = 0):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UsageError("--logger tensorboard: the tensorboard package is not installed; "
                             "install it with: pip install 'bsnc[tensorboard]'") from None
        self.writer = SummaryWriter(log_dir=str(run_dir / LOGGER_PATHS["tensorboard"]), purge_step=start_epoch + 1)

    def log(self, record: Mapping[str, Any]) -> None:
        import torch

        step = int(record["epoch"])
        for key, value in scalars(record).items():
            if key != "epoch":
                self.writer.add_scalar(key, value, step)
        gammas = record.get("gamma")
        if isinstance(gammas, Mapping) and gammas:
            self.writer.add_histogram("gamma", torch.tensor(list(gammas.values()), dtype=torch.float64), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def parse_loggers(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``--logger csv,tensorboard`` (or repeated) to a tuple of known names."""
    if not text:
        return ()
    items = [text] if isinstance(text, str) else list(text)
    names = [n.strip() for item in items for n in item.split(",") if n.strip()]
    for name in names:
        if name not in LOGGER_NAMES:
            raise UsageError(f"--logger {name}: unknown logger; expected {' or '.join(LOGGER_NAMES)} "
                             "(metrics.jsonl is always written)")
    return tuple(dict.fromkeys(names))


def logger_path_problem(names: Sequence[str], run_dir: Path) -> str | None:
    """Why a logger of ``names`` could not write in ``run_dir`` (something of the wrong kind in
    its place), or None: found before training rather than after its first epoch."""
    for name in names:
        path = run_dir / LOGGER_PATHS[name]
        if not path.exists():
            continue
        if name == "tensorboard" and not path.is_dir():
            return f"{path.name} is {kind_of(path)}, not the directory --logger tensorboard writes in"
        if name == "csv" and not path.is_file():
            return f"{path.name} is {kind_of(path)}, not a file --logger csv can write"
    return None


def open_loggers(names: Sequence[str], run_dir: Path, history: Sequence[Mapping[str, Any]]) -> list[EpochLogger]:
    loggers: list[EpochLogger] = []
    for name in names:
        if name == "csv":
            loggers.append(CsvLogger(run_dir, history))
        else:
            loggers.append(TensorBoardLogger(run_dir, start_epoch=len(history)))
    return loggers
