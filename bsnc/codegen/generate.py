"""PyTorch source from a checked network, through the Jinja2 templates in bsnc.templates.

Every literal is rendered here with repr() and every name from `.bsn` text passes through a
Namespace before it reaches a template; templates only paste the prepared strings."""

from __future__ import annotations

import functools
import inspect
import keyword
import math
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jinja2
from torch import nn

from bsnc import nn as helpers
from bsnc.codegen.namespace import Namespace, sanitise
from bsnc.errors import BsncError
from bsnc.ir import Edge, Layer, Network
from bsnc.ops import REGISTRY, ModuleSpec
from bsnc.primitives import is_dotted_path
from bsnc.version import __version__


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    root = resources.files("bsnc.templates")

    def load(name: str) -> str:
        return root.joinpath(name).read_text(encoding="utf-8")

    return jinja2.Environment(
        loader=jinja2.FunctionLoader(load),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


@dataclass(frozen=True)
class _EdgeView:
    index: int
    ident: str
    key: str  # repr() of the key
    src_var: str
    module_lines: list[str]
    location: str  # "file:line" of the .bsn source
    call: str  # the static forward's expression: the module applied, or the source for identity
    offset: int | None  # first channel in a concat destination


@dataclass(frozen=True)
class _LayerView:
    index: int
    var: str
    name: str  # repr()
    post_ident: str | None
    post_source: str | None
    post_inline: bool  # a lone relu post-op: the static forward calls torch.relu directly
    mean: bool
    concat: bool
    edges: list[_EdgeView]  # a concat layer's in slot order
    location: str
    shape: str
    shape_tuple: str


def _location(span) -> str:
    """``file:line`` for a comment; a file name with unusual characters goes through repr()."""
    if span is None:
        return "generated"
    name = span.file if re.fullmatch(r"[A-Za-z0-9_./+-]+", span.file) else repr(span.file)
    return f"{name}:{int(span.line)}"


def _module_lines(edge: Edge, aliases: dict[str, str]) -> list[str]:
    return [spec.source(aliases.get(spec.ctor)) for spec in edge.module_specs()]


def _post_source(layer: Layer, aliases: dict[str, str]) -> str | None:
    if not layer.post:
        return None
    specs = []
    shape = layer.shape
    for op in layer.post:
        spec = REGISTRY[op.prim].torch(shape, op.kwargs)
        specs.append(spec.source(aliases.get(spec.ctor)))
    return specs[0] if len(specs) == 1 else f"nn.Sequential({', '.join(specs)})"


def _helper_sources(network: Network) -> list[str]:
    """Source of the bsnc.nn helper classes the network uses, so static code needs only torch."""
    used = {spec.ctor for spec in _all_specs(network) if not spec.ctor.startswith("nn.") and not spec.external}
    return [inspect.getsource(getattr(helpers, name)).rstrip() for name in sorted(used)]


def _all_specs(network: Network) -> list[ModuleSpec]:
    specs = [spec for edge in network.edges for spec in edge.module_specs()]
    for layer in network.layers:
        specs.extend(REGISTRY[op.prim].torch(layer.shape, op.kwargs) for op in layer.post)
    return specs


_LITERALS = (bool, int, float, str, type(None))


def _is_literal(value: Any) -> bool:
    if isinstance(value, tuple):
        return all(_is_literal(v) for v in value)
    return isinstance(value, _LITERALS) and (not isinstance(value, float) or math.isfinite(value))


def _user_imports(network: Network, names: Namespace) -> tuple[dict[str, str], list[str], list[str]]:
    """The classes of user primitives: an alias for each, their import lines and the packages
    they come from. Paths are checked to be dotted identifiers; arguments must be literals."""
    aliases: dict[str, str] = {}
    for spec in _all_specs(network):
        if not spec.external:
            builtin = (hasattr(nn, spec.ctor[3:]) if spec.ctor.startswith("nn.") and spec.ctor[3:].isidentifier()
                       else isinstance(getattr(helpers, spec.ctor, None), type))
            if not builtin:
                raise BsncError(f"module class {spec.ctor!r} is neither torch.nn's, bsnc's, nor a dotted path "
                                "package.module.Class")
            continue
        if not is_dotted_path(spec.ctor):
            raise BsncError(f"a user primitive's module class {spec.ctor!r} is not a dotted path package.module.Class")
        for key, value in spec.kwargs:
            if not (isinstance(key, str) and key.isidentifier() and not keyword.iskeyword(key)) or not _is_literal(value):
                raise BsncError(f"{spec.ctor}: argument {key!r}={value!r} cannot be written in generated code; "
                                "use names and int, float, bool, str or None values")
        aliases.setdefault(spec.ctor, "")
    lines = []
    for ctor in sorted(aliases):
        module, _, cls = ctor.rpartition(".")
        aliases[ctor] = names.create("import " + ctor, cls)
        lines.append(f"from {module} import {cls} as {aliases[ctor]}" if aliases[ctor] != cls
                     else f"from {module} import {cls}")
    packages = sorted({ctor.partition(".")[0] for ctor in aliases})
    return aliases, lines, packages


def _tuple(items: list[str]) -> str:
    """A Python tuple display of already-rendered items."""
    if len(items) == 1:
        return f"({items[0]},)"
    return "(" + ", ".join(items) + ")"


def generate(network: Network) -> str:
    """The Python source of one module class for ``network`` (byte-identical for equal input)."""
    names = Namespace()
    class_name = names.create(network.name)
    aliases, user_imports, packages = _user_imports(network, names)
    layer_vars = {layer.name: names.create(layer.name) for layer in network.layers}
    edge_names = Namespace()
    edge_ident = {
        e.key: edge_names.create(
            e.key, sanitise(e.src) + "__" + sanitise(e.dst) + (f"__{sanitise(e.name)}" if e.name else "")
        )
        for e in network.edges
    }
    stochastic = any(e.stochastic for e in network.edges)

    layers: list[_LayerView] = []
    for index, layer in enumerate(network.layers):
        incoming = [
            _EdgeView(
                index=network.edge_index[e.key],
                ident=edge_ident[e.key],
                key=repr(e.key),
                src_var=layer_vars[e.src],
                module_lines=_module_lines(e, aliases),
                location=_location(e.span),
                call=(layer_vars[e.src] if all(op.prim == "identity" for op in e.ops)
                      else f"edges.{edge_ident[e.key]}({layer_vars[e.src]})"),
                offset=e.slot,
            )
            for e in network.in_edges(layer.name)
        ]
        if layer.aggregate == "concat":
            incoming.sort(key=lambda view: view.offset)
        layers.append(_LayerView(
            index=index,
            var=layer_vars[layer.name],
            name=repr(layer.name),
            post_ident=layer_vars[layer.name] if layer.post else None,
            post_source=_post_source(layer, aliases),
            post_inline=[op.prim for op in layer.post] == ["relu"],
            mean=layer.aggregate == "mean",
            concat=layer.aggregate == "concat",
            edges=incoming,
            location=_location(layer.span),
            shape=repr(list(layer.shape)),
            shape_tuple=repr(tuple(layer.shape)),
        ))
    all_edges = sorted((e for layer in layers for e in layer.edges), key=lambda e: e.index)
    initial = [repr(float(value)) for d in network.decisions for value in d.init_logits]
    decisions = None if network.plain else {
        "decisions": _tuple([f"({d.kind!r}, {d.offset}, {d.width})" for d in network.decisions]),
        "edge_decision": _tuple([str(e.decision) for e in network.edges]),
        "edge_option": _tuple([str(e.option if e.stochastic else 0) for e in network.edges]),
    }
    template = _environment().get_template("network.py.j2")
    return template.render(
        version=__version__,
        source=repr(network.source),
        source_hash=repr(network.source_hash),
        params=", ".join(f"{k}={v!r}" for k, v in network.params.items()),
        class_name=class_name,
        network_name=repr(network.name),
        stochastic=stochastic,
        helpers=_helper_sources(network),
        user_imports=user_imports,
        packages=", ".join(packages),
        layers=layers,
        edges=all_edges,
        input_var=layer_vars[network.input],
        output_var=layer_vars[network.output],
        output_shape=repr(list(network.layer(network.output).shape)),
        input_index=network.layer_index[network.input],
        output_index=network.layer_index[network.output],
        edge_keys=[repr(e.key) for e in network.edges],
        layer_names=[repr(layer.name) for layer in network.layers],
        edge_src=_tuple([str(network.layer_index[e.src]) for e in network.edges]),
        edge_dst=_tuple([str(network.layer_index[e.dst]) for e in network.edges]),
        edge_stochastic=_tuple([repr(e.stochastic) for e in network.edges]),
        initial_logits=_tuple(initial),
        decisions=decisions,
        post_layers=_tuple([repr(layer.name) for layer in network.layers if layer.post]),
        any_post=any(layer.post for layer in network.layers),
        post_called=any(view.post_ident and not view.post_inline for view in layers),
    )
