"""bsnc: Budgeted Super Networks compiler.

    >>> import bsnc
    >>> model = bsnc.load("fabrics/cnf.bsn", W=2, C=8, size=8)   # a torch.nn.Module
    >>> source = bsnc.compile_source("fabrics/resnet20.bsn")     # generated Python text

The API is imported on first use (PEP 562), so that `import bsnc` and the commands that need no
network (`bsnc --help`, `bsnc fmt`, shell completion) do not pay for importing torch.
"""

from __future__ import annotations

from typing import Any

from bsnc.version import __version__

__all__ = ["__version__", "compile_network", "compile_source", "load", "load_network"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from bsnc import api

        return getattr(api, name)
    raise AttributeError(f"module 'bsnc' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
