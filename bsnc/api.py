"""The Python API: `.bsn` file to generated source, or straight to a module instance."""

from __future__ import annotations

import hashlib
import linecache
import types
from pathlib import Path
from typing import Any

from torch import nn

from bsnc.codegen import generate
from bsnc.frontend import load_network
from bsnc.ir import Network


def compile_source(path: str | Path, **params: Any) -> str:
    """The generated Python source for the network in ``path`` with parameter overrides."""
    return generate(load_network(path, params))


def compile_network(network: Network) -> type[nn.Module]:
    """Generate, import and return the module class of a checked network.

    The source is registered with linecache, so tracebacks through generated code show its lines.
    """
    source = generate(network)
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()[:12]
    filename = f"<bsnc {network.name} {digest}>"  # one name per distinct source
    module = types.ModuleType(f"bsnc_generated_{network.name}")
    module.__file__ = filename
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102 - our own generated code
    classes = [v for v in module.__dict__.values() if isinstance(v, type) and issubclass(v, nn.Module)
               and v.__module__ == module.__name__ and hasattr(v, "EDGE_KEYS")]
    cls = classes[-1]
    cls.__module__ = module.__name__
    cls.bsnc_network = network
    return cls


def load(path: str | Path, **params: Any) -> nn.Module:
    """An instance of the network in ``path``: ``bsnc.load("fabrics/cnf.bsn", W=4, C=16)``."""
    return compile_network(load_network(path, params))()


__all__ = ["compile_network", "compile_source", "load", "load_network"]
