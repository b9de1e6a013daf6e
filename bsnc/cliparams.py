"""Click parameter types of the `bsnc` command that know bsnc: a `.bsn` file given by path or by
the name of a shipped fabric, a device, and shell completion of `--data` and `--cost` values.
Nothing here imports torch: `--help` and completion must stay fast."""

from __future__ import annotations

import math
import re
from importlib import metadata
from pathlib import Path
from typing import Any

import click
from click.shell_completion import CompletionItem

from bsnc.lang.shipped import find_shipped, shipped_names

# The built-in data sets, for completion without importing torch; tests/test_cli.py holds this
# to bsnc.search.data.DATASETS.
DATASET_NAMES = ("digits", "cifar10", "cifar100", "imagefolder", "partlabels", "synthetic-seg", "fake")
COST_NAMES = ("flops", "params", "latency:", "distributed:n=")


def _entry_point_names(group: str) -> list[str]:
    try:
        return sorted(ep.name for ep in metadata.entry_points(group=group))
    except Exception:  # a broken distribution must not break completion
        return []


def _complete(incomplete: str, names: list[str]) -> list[CompletionItem]:
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]


class BsnFile(click.ParamType):
    """A `.bsn` file: an existing path, or the name of a shipped fabric (``cnf_w8``); with
    ``stdin``, ``-`` too (returned as the string ``"-"``)."""

    name = "bsn_file"

    def __init__(self, stdin: bool = False):
        self.stdin = stdin

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, Path):
            return value
        text = str(value)
        if self.stdin and text == "-":
            return "-"
        if not text:  # Path("") is the working directory
            self.fail("the file name is empty; expected a .bsn file", param, ctx)
        path = Path(text)
        if path.is_dir():
            self.fail(f"{text!r} is a directory; expected a .bsn file", param, ctx)
        if path.exists():
            return path
        shipped = find_shipped(text)
        if shipped is not None:
            return shipped
        self.fail(f"{text!r}: no such file, and no shipped fabric has that name (shipped: "
                  f"{', '.join(shipped_names())}; `bsnc fabrics` shows where they are)", param, ctx)

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
        return [CompletionItem(incomplete, type="file"), *_complete(incomplete, shipped_names())]


class DataName(click.ParamType):
    """A data set name; completes the built-in names and the `bsnc.datasets` entry points."""

    name = "data"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return str(value)

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
        return _complete(incomplete, [*DATASET_NAMES, *_entry_point_names("bsnc.datasets")])


class CostName(click.ParamType):
    """A cost name; completes the built-in costs and the `bsnc.costs` entry points."""

    name = "cost"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return str(value)

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
        return _complete(incomplete, [*COST_NAMES, *_entry_point_names("bsnc.costs")])


_DEVICE = re.compile(r"(auto|cpu|mps|cuda(:\d+)?)")


class Device(click.ParamType):
    """auto, cpu, mps, cuda or cuda:N."""

    name = "device"

    def __init__(self, auto: bool = True):
        self.auto = auto

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = str(value).strip()
        if not _DEVICE.fullmatch(text) or (text == "auto" and not self.auto):
            expected = "auto, " if self.auto else ""
            self.fail(f"{text!r}: expected {expected}cpu, mps, cuda or cuda:N (e.g. cuda:1)", param, ctx)
        return text

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
        return _complete(incomplete, (["auto"] if self.auto else []) + ["cpu", "cuda", "cuda:0", "cuda:1", "mps"])


class Finite(click.FloatRange):
    """A float option, in a range when one is given, that refuses NaN (which passes every
    comparison of click's ``FloatRange``), the infinities and magnitudes beyond
    :data:`bsnc.numeric.MAX_REAL`."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from bsnc.numeric import MAX_REAL

        number = super().convert(value, param, ctx)
        if not math.isfinite(number) or abs(number) > MAX_REAL:
            self.fail(f"{value!r} is not a finite number of magnitude at most {MAX_REAL:g}", param, ctx)
        return number
