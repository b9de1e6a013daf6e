"""The Python API: `.bsn` file to generated source, or straight to a module instance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from bsnc.codegen.generate import generate
from bsnc.codegen.loader import compile_network
from bsnc.costs.memory import check_fits
from bsnc.lang.frontend import load_network


def compile_source(path: str | Path, **params: Any) -> str:
    """The generated Python source for the network in ``path`` with parameter overrides."""
    return generate(load_network(path, params))


def load(path: str | Path, **params: Any) -> nn.Module:
    """An instance of the network in ``path``: ``bsnc.load("fabrics/cnf.bsn", W=4, C=16)``."""
    network = load_network(path, params)
    check_fits(network, torch.device("cpu"))  # a clear error rather than the allocator's
    return compile_network(network)()


__all__ = ["compile_network", "compile_source", "load", "load_network"]
