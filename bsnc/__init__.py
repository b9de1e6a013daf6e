"""bsnc: Budgeted Super Networks compiler.

    >>> import bsnc
    >>> model = bsnc.load("fabrics/cnf.bsn", W=2, C=8, size=8)   # a torch.nn.Module
    >>> source = bsnc.compile_source("fabrics/resnet20.bsn")     # generated Python text
"""

from __future__ import annotations

from bsnc.api import compile_network, compile_source, load, load_network
from bsnc.version import __version__

__all__ = ["__version__", "compile_network", "compile_source", "load", "load_network"]
