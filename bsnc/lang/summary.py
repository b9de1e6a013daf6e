"""Human-readable summaries of a checked network."""

from __future__ import annotations

from bsnc.ir import Network
from bsnc.ops import format_shape


def human(value: float, unit: str = "") -> str:
    """1234567 -> '1.23 M'; small values stay as they are."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.2f} {prefix}{unit}".rstrip()
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.3g} {unit}".rstrip()
    return f"{int(value)} {unit}".rstrip()


def _value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v) if isinstance(v, str) else str(v)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _decision_counts(network: Network) -> dict[str, int]:
    return {
        "shared_gates": sum(d.kind == "gate" and d.shared for d in network.decisions),
        "choice_groups": sum(d.kind == "choice" for d in network.decisions),
        "per_edge_gates": sum(d.kind == "gate" and not d.shared for d in network.decisions),
    }


def _decisions(network: Network) -> str:
    """'5 stochastic edges in 3 decisions (1 shared gate, 1 choice group, 1 per-edge gate)'."""
    counts = _decision_counts(network)
    kinds = [_plural(counts["shared_gates"], "shared gate"), _plural(counts["choice_groups"], "choice group")]
    if counts["per_edge_gates"]:
        kinds.append(_plural(counts["per_edge_gates"], "per-edge gate"))
    return (f"{_plural(len(network.stochastic_edges), 'stochastic edge')} in "
            f"{_plural(len(network.decisions), 'decision')} ({', '.join(kinds)})")


def summary_lines(network: Network) -> list[str]:
    stochastic = len(network.stochastic_edges)
    params = network.param_count()
    inp, out = network.layer(network.input), network.layer(network.output)
    rows = [
        ("parameters", ", ".join(f"{k}={_value(v)}" for k, v in network.params.items()) or "(none)"),
        ("input", f"{inp.name} {format_shape(inp.shape)}"),
        ("output", f"{out.name} {format_shape(out.shape)}"),
        ("layers", f"{len(network.layers)}"),
        ("edges", f"{len(network.edges)} ({stochastic} stochastic, {len(network.edges) - stochastic} fixed)"),
        *([] if network.plain else [("decisions", _decisions(network))]),
        ("weights", f"{params:,}" + (f" ({human(params)})" if params >= 1000 else "") + " in the full network"),
    ]
    width = max(len(k) for k, _ in rows)
    head = f"{network.source}: network {network.name} is valid"
    return [head] + [f"  {k.ljust(width)}  {v}" for k, v in rows]


def summary_dict(network: Network) -> dict[str, object]:
    """The summary as JSON-ready data (`bsnc check --json`)."""
    stochastic = len(network.stochastic_edges)
    inp, out = network.layer(network.input), network.layer(network.output)
    data: dict[str, object] = {
        "file": str(network.source), "network": network.name, "valid": True,
        "parameters": dict(network.params),
        "input": {"name": inp.name, "shape": list(inp.shape)},
        "output": {"name": out.name, "shape": list(out.shape)},
        "layers": len(network.layers),
        "edges": {"total": len(network.edges), "stochastic": stochastic, "fixed": len(network.edges) - stochastic},
        "weights": network.param_count(),
    }
    if not network.plain:
        data["decisions"] = {"total": len(network.decisions), **_decision_counts(network)}
    return data
