"""Generated source to a live module class, with its text registered for tracebacks."""

from __future__ import annotations

import hashlib
import linecache
import types

from torch import nn

from bsnc.codegen.generate import generate
from bsnc.ir import Network


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
