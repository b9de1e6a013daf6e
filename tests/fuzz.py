"""A fuzzer for the `.bsn` front end and code generator.

Inputs come from two seeded sources:

- **grammar**: random derivations of the grammar itself (the rules of `grammars/bsn.lark` as Lark
  compiled them), with terminals drawn from pools that mix ordinary and extreme values;
- **mutation**: the shipped fabrics (their defaults shrunk so that most still compile), mutated
  at the token and byte level: tokens deleted, duplicated, swapped or replaced by extreme
  numbers, keywords, control characters and bytes that are not UTF-8.

Each input is written to a file and loaded as `bsnc check` does. The properties: the only
exception is bsnc's own `BsncError`; no input takes longer than a generous ceiling (a hang or a
blow-up, not a speed goal); and a network that compiles computes what the reference interpreter
(`bsnc.codegen.reference`) computes, on random masks.

`tests/test_fuzz.py` runs a few thousand inputs; `make fuzz` runs a long campaign:
``python -m tests.fuzz --minutes 120``.
"""

from __future__ import annotations

import argparse
import math
import random
import re
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
FABRICS = ROOT / "fabrics"
# Per input: CPU seconds (catches a blow-up whatever else runs on the machine) and wall seconds
# (catches a process that blocks); both generous: they find hangs, they measure no speed.
CEILING_SECONDS = 20.0
WALL_CEILING_SECONDS = 300.0

# Shrunk defaults of the shipped fabrics' parameters, so that mutants stay small enough to run.
_SMALL = {"C": 4, "W": 2, "size": 8, "width": 2, "n": 1, "classes": 3, "cells": 3, "nodes": 2, "depth": 2}


class _Timeout(Exception):
    pass


@dataclass
class Failure:
    source: str
    text: bytes
    problem: str


@dataclass
class Stats:
    inputs: int = 0
    outcomes: Counter = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    slowest: float = 0.0

    def line(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
        return f"{self.inputs} inputs: {parts}; slowest {self.slowest:.2f} s; {len(self.failures)} failures"


# --- inputs from the grammar -------------------------------------------------------------


_NAMES = ["x", "y", "a", "b", "n", "h", "i", "s", "C", "W", "size", "conv", "relu", "bn", "linear", "identity",
          "flatten", "global_avgpool", "upsample", "maxpool", "avgpool", "dropout", "pad_channels", "sum", "mean",
          "min", "max", "log2", "int", "float", "abs", "k", "c", "f", "stride", "padding", "m", "training",
          "forward", "self", "__init__", "edges", "plan", "torch", "nn"]
# mostly ordinary values, some extreme ones
_INTS = ["1", "2", "3", "4", "8"] * 40 + ["0", "16", "63", "64", "9223372036854775807", "9223372036854775808",
                                          "99999999999999999999999", "2147483648"]
_FLOATS = ["0.5", "1.0", "0.25"] * 30 + ["0.0", "1e999", "2.5e-3", "1e308"]
_STRINGS = ['"same"', '"valid"', '"nearest"', '"bilinear"', '"sum"', '""', '"\\n"', '"a\\tb"', '"x.bsn"',
            '"/etc/passwd"', '"fuzz.bsn"']
_TERMINALS = {
    "NAME": _NAMES, "INT": _INTS, "FLOAT": _FLOATS, "STRING": _STRINGS,
    "COMP_OP": ["==", "!=", "<=", ">=", "<", ">"], "ADD_OP": ["+", "-"], "MUL_OP": ["*", "/", "//", "%"],
    "COMMENT": ["# c", "# (((", '# "'],
}


class GrammarGenerator:
    """Random derivations of the compiled Lark grammar, shallow once a depth budget is spent."""

    def __init__(self, rng: random.Random, max_depth: int = 12):
        from bsnc.lang.parser import _lark

        lark = _lark()
        self.rng = rng
        self.max_depth = max_depth
        self.rules: dict[str, list[list]] = {}
        for rule in lark.rules:
            self.rules.setdefault(rule.origin.name, []).append(list(rule.expansion))
        self.terminals = {t.name: t.pattern for t in lark.terminals}
        self.height = self._heights()

    def _heights(self) -> dict[str, float]:
        """The least derivation height of each non-terminal (fixed point)."""
        height = {name: math.inf for name in self.rules}
        changed = True
        while changed:
            changed = False
            for name, expansions in self.rules.items():
                for expansion in expansions:
                    h = 1 + max((height.get(s.name, 0) if not s.is_term else 0 for s in expansion), default=0)
                    if h < height[name]:
                        height[name], changed = h, True
        return height

    def generate(self) -> str:
        """A derivation of the whole grammar, then one of a network (a file needs one to go
        further than the parser)."""
        out: list[str] = []
        self._expand("start", 0, out)
        if self.rng.random() < 0.8:
            self._expand("network_def", 0, out)
        return " ".join(out) + "\n"

    def _expand(self, name: str, depth: int, out: list[str]) -> None:
        expansions = self.rules[name]
        if depth >= self.max_depth:
            best = min(self._expansion_height(e) for e in expansions)
            expansions = [e for e in expansions if self._expansion_height(e) == best]
        expansion = self.rng.choice(expansions)
        if name.startswith("__") and ("star" in name or "plus" in name) and depth < self.max_depth:
            repeat = self.rng.random() < 0.6  # lists: more items while shallow
            if repeat and len(expansions) > 1:
                expansion = max(expansions, key=len)
        for symbol in expansion:
            if symbol.is_term:
                out.append(self._terminal(symbol.name))
            else:
                self._expand(symbol.name, depth + 1, out)

    def _expansion_height(self, expansion: list) -> float:
        return max((self.height.get(s.name, 0) if not s.is_term else 0 for s in expansion), default=0)

    def _terminal(self, name: str) -> str:
        if name in _TERMINALS:
            return self.rng.choice(_TERMINALS[name])
        pattern = self.terminals.get(name)
        value = getattr(pattern, "value", None)
        if isinstance(value, str) and pattern.type == "str":
            return value
        return {"LSHIFT": "<<", "RSHIFT": ">>", "POW": "**", "FIXED": "fixed"}.get(name, name.lower())


# --- inputs by mutation ------------------------------------------------------------------

_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*|[A-Za-z_][A-Za-z0-9_]*|[0-9.eE]+|\*\*|//|<<|>>|->|\.\.|[=!<>]=|\s+|.',
                    re.DOTALL)
_EXTREMES = ["0", "-1", "1", "2", "3", "7", "2 ** 62", "2 ** 63", "9223372036854775807", "1e999", "0.0", "-0.5",
             "(", ")", "[", "]", "{", "}", ",", ":", "->", "..", ">>", "fixed", "for", "if", "else", "let",
             "layer", "output", "input", "network", "module", "import", "prob", "at", "post", "aggregate", "as",
             "\r", "\x00", "\x0b", "\u2028", "\ufeff", '"', "\\", "#", "\n", "training", "forward", "__class__"]


def shrink_defaults(text: str) -> str:
    def small(match: re.Match) -> str:
        return f"{match.group(1)}{_SMALL[match.group(2)]}"

    return re.sub(r"(\b(" + "|".join(_SMALL) + r")\s*:\s*int\s*=\s*)\d+", lambda m: small(m).replace(m.group(0), small(m)),
                  text)


def seed_corpus() -> list[tuple[str, str]]:
    corpus = [(p.name, shrink_defaults(p.read_text(encoding="utf-8"))) for p in sorted(FABRICS.glob("*.bsn"))]
    corpus.append(("tutorial-unet", shrink_defaults((ROOT / "docs" / "tutorial" / "unet.bsn").read_text())))
    return corpus


def mutate(text: str, rng: random.Random, generator: GrammarGenerator) -> bytes:
    tokens = [t for t in _TOKEN.findall(text)]
    for _ in range(rng.choice((1, 1, 1, 2, 3, 4))):
        if not tokens:
            break
        i = rng.randrange(len(tokens))
        action = rng.random()
        if action < 0.2:
            del tokens[i]
        elif action < 0.35:
            tokens.insert(i, tokens[i])
        elif action < 0.5:
            j = rng.randrange(len(tokens))
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif action < 0.75:
            if re.fullmatch(r"[0-9.eE]+", tokens[i]) or rng.random() < 0.5:
                tokens[i] = rng.choice(_EXTREMES)
            else:
                tokens[i] = rng.choice(_NAMES)
        elif action < 0.85:
            tokens.insert(i, " " + generator.generate().strip()[:200] + " ")
        else:
            start = rng.randrange(len(tokens))
            tokens[start:start] = tokens[i : i + rng.randint(1, 30)]  # duplicate a stretch
    data = "".join(tokens).encode("utf-8", "surrogatepass")
    if rng.random() < 0.05:
        k = rng.randrange(len(data) + 1)
        data = data[:k] + rng.choice([b"\xff", b"\xc3", b"\x80\x80", b"\xed\xa0\x80"]) + data[k:]
    return data


# --- the properties ----------------------------------------------------------------------


def _alarm(signum, frame):  # noqa: ARG001
    raise _Timeout()


def check(data: bytes, directory: Path, stats: Stats, source: str, rng: random.Random,
          ceiling: float = CEILING_SECONDS, run: bool = True, wall_ceiling: float = WALL_CEILING_SECONDS) -> None:
    """Load ``data`` as a `.bsn` file (and run it against the reference when it compiles); record
    the outcome, or a failure of one of the properties. The ceiling covers both."""
    from bsnc.errors import BsncError
    from bsnc.lang.frontend import load_network

    path = directory / "fuzz.bsn"
    path.write_bytes(data)
    stats.inputs += 1
    start = time.perf_counter()
    previous = {sig: signal.signal(sig, _alarm) for sig in (signal.SIGALRM, signal.SIGPROF)}
    signal.setitimer(signal.ITIMER_PROF, ceiling)
    signal.setitimer(signal.ITIMER_REAL, wall_ceiling)
    try:
        try:
            network = load_network(path)
        except BsncError:
            stats.outcomes["refused"] += 1
            return
        stats.outcomes["compiled"] += 1
        if run:
            problem = _agrees_with_reference(network, rng)
            if problem == "too large":
                stats.outcomes["too large to run"] += 1
            elif problem:
                stats.failures.append(Failure(source, data, problem))
            else:
                stats.outcomes["ran = reference"] += 1
    except _Timeout:
        stats.failures.append(Failure(source, data, f"took more than {ceiling} s of CPU time or "
                                                    f"{wall_ceiling} s of wall time"))
    except Exception:  # noqa: BLE001 - any other exception is what the fuzzer looks for
        stats.failures.append(Failure(source, data, traceback.format_exc(limit=8)))
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stats.slowest = max(stats.slowest, time.perf_counter() - start)


@torch.no_grad()
def _agrees_with_reference(network, rng: random.Random) -> str | None:
    """None when generated code and the reference interpreter agree on random masks."""
    from bsnc.codegen.loader import compile_network
    from bsnc.codegen.reference import architecture_from_mask, reference_forward

    elements = sum(math.prod(layer.shape) for layer in network.layers)
    macs = sum(edge.macs() for edge in network.edges)
    if network.param_count() > 50_000 or elements > 10_000 or len(network.edges) > 120 or macs > 20_000_000:
        return "too large"
    try:
        torch.manual_seed(rng.randrange(2**31))
        module = compile_network(network)().double().eval()
        batch = 2
        x = torch.randn((batch,) + tuple(network.layer(network.input).shape), dtype=torch.float64)
        if network.stochastic_edges:
            proposal = torch.rand(batch, len(network.edges)) < 0.6
            module.set_mode("mask", proposal)
            out = module(x)
            _, active, _ = architecture_from_mask(network, proposal)
        else:
            out = module(x)
            active = torch.ones(batch, len(network.edges), dtype=torch.bool)
        expected = reference_forward(network, module, x, active)
        if out.shape != expected.shape or not torch.allclose(out, expected, atol=1e-9, equal_nan=True):
            return f"generated code and reference differ: max |diff| {float((out - expected).abs().max())}"
    except _Timeout:
        raise
    except Exception:  # noqa: BLE001
        return "compiling or running a checked network failed:\n" + traceback.format_exc(limit=8)
    return None


def campaign(seed: int, count: int | None = None, seconds: float | None = None, grammar_share: float = 0.3,
             max_runs: int | None = None) -> Stats:
    """Run ``count`` inputs (or as many as fit in ``seconds``) from one seed; at most ``max_runs``
    of those that compile are also run against the reference interpreter."""
    rng = random.Random(seed)
    generator = GrammarGenerator(rng)
    corpus = seed_corpus()
    stats = Stats()
    deadline = time.perf_counter() + seconds if seconds is not None else math.inf
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for fabric in FABRICS.glob("*.bsn"):  # mutants may import the shipped fabrics' neighbours
            (work / fabric.name).write_text(shrink_defaults(fabric.read_text()))
        n = 0
        while (count is None or n < count) and time.perf_counter() < deadline:
            n += 1
            if rng.random() < grammar_share:
                source, data = "grammar", generator.generate().encode("utf-8")
            else:
                name, text = rng.choice(corpus)
                source, data = f"mutant of {name}", mutate(text, rng, generator)
            runs = stats.outcomes["ran = reference"] + stats.outcomes["too large to run"]
            check(data, work, stats, source, rng, run=max_runs is None or runs < max_runs)
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to run (default 10)")
    parser.add_argument("--seed", type=int, default=int(time.time()), help="first seed (default: the time)")
    parser.add_argument("--out", type=Path, default=Path("fuzz-failures"), help="where failing inputs go")
    args = parser.parse_args(argv)
    deadline = time.perf_counter() + args.minutes * 60
    total = Stats()
    seed = args.seed
    while time.perf_counter() < deadline:
        stats = campaign(seed, seconds=min(60.0, deadline - time.perf_counter()))
        total.inputs += stats.inputs
        total.outcomes.update(stats.outcomes)
        total.slowest = max(total.slowest, stats.slowest)
        for failure in stats.failures:
            args.out.mkdir(parents=True, exist_ok=True)
            stem = args.out / f"seed{seed}-{len(total.failures)}"
            stem.with_suffix(".bsn").write_bytes(failure.text)
            stem.with_suffix(".txt").write_text(f"{failure.source}\n{failure.problem}\n")
            total.failures.append(failure)
        print(f"seed {seed}: {stats.line()}", flush=True)
        seed += 1
    print(f"total: {total.line()}")
    if total.failures:
        print(f"failing inputs are in {args.out}/", file=sys.stderr)
    return 1 if total.failures else 0


if __name__ == "__main__":
    sys.exit(main())
