"""bsnc: Budgeted Super Networks compiler.

    >>> import bsnc
    >>> model = bsnc.load("fabrics/cnf.bsn", W=2, C=8, size=8)   # a torch.nn.Module
    >>> source = bsnc.compile_source("fabrics/resnet20.bsn")     # generated Python text
    >>> run = bsnc.train("cnf_w8", "digits", budget="1M", ...)  # see docs/api.md
    >>> bsnc.export(run, "shipped/")

The API is imported on first use (PEP 562), so that `import bsnc` and the commands that need no
network (`bsnc --help`, `bsnc fmt`, shell completion) do not pay for importing torch.
"""

from __future__ import annotations

import types
from typing import Any

import bsnc.export as _export_stage  # the stage's package; torch-free to import
from bsnc.version import __version__

__all__ = ["__version__", "compile_network", "compile_source", "dataset", "datasets", "export", "load",
           "load_network", "train"]


class _CallableStage(types.ModuleType):
    """`bsnc.export` is both the export stage's package and the API function `bsnc.export(...)`:
    once the package is imported, Python binds its name on `bsnc`, shadowing any function."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from bsnc.api import export

        return export(*args, **kwargs)


_export_stage.__class__ = _CallableStage


def __getattr__(name: str) -> Any:
    if name in __all__ and name != "export":
        from bsnc import api

        return getattr(api, name)
    raise AttributeError(f"module 'bsnc' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
