"""The package layout (ARCHITECTURE.md): one sub-package per pipeline stage, imports flowing one
way, no import cycle. Read from the source with `ast`, imports inside functions included, so a
later change cannot bring a backward import or a cycle back."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "bsnc"

# The stage of each top-level name under bsnc: a module imports only its own stage or earlier ones.
STAGES = {
    "errors": 0, "files": 0, "version": 0, "ops": 0, "nn": 0, "ir": 0, "numeric": 0, "launch": 0, "primitives": 0,  # the shared vocabulary
    "lang": 1,
    "codegen": 2,
    "costs": 3,
    "search": 4,
    "export": 5,
    "api": 6, "cli": 6, "__main__": 6, "cliparams": 6, "config": 6, "output": 6,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, source: str, is_package: bool = False) -> set[str]:
    """The bsnc modules that the module ``name`` imports anywhere in ``source``."""
    found: set[str] = set()
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # `from bsnc.lang import ast` imports the module bsnc.lang.ast
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    return {m for m in found if m == "bsnc" or m.startswith("bsnc.")}


def stage(module: str) -> int:
    parts = module.split(".")
    return STAGES[parts[1]] if len(parts) > 1 else max(STAGES.values())


def import_graph() -> nx.DiGraph:
    graph = nx.DiGraph()
    for name, path in MODULES.items():
        graph.add_node(name)
        targets = imports_of(name, path.read_text(encoding="utf-8"), path.name == "__init__.py")
        graph.add_edges_from((name, target) for target in targets)
    return graph


GRAPH = import_graph()


def test_every_module_belongs_to_a_known_stage():
    unknown = sorted(m for m in MODULES if m != "bsnc" and m.split(".")[1] not in STAGES)
    assert not unknown, f"place these in ARCHITECTURE.md and in STAGES: {unknown}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_flow_from_earlier_stages_only(module):
    later = sorted(t for t in GRAPH.successors(module) if stage(t) > stage(module))
    assert not later, f"{module} (stage {stage(module)}) imports later stages: {later}"


def test_there_is_no_import_cycle():
    cycles = list(nx.simple_cycles(GRAPH))
    assert not cycles, f"import cycles: {cycles[:5]}"


def test_the_checker_sees_lazy_and_submodule_imports():
    """The graph is only as good as its reading of the source."""
    assert "bsnc.costs.report" in set(GRAPH.successors("bsnc.cli"))  # inside a command function
    assert "bsnc.lang.ast" in set(GRAPH.successors("bsnc.lang.parser"))  # `from bsnc.lang import ast`
    lazy = "def f():\n    from bsnc.export.draw import draw\n"
    assert imports_of("bsnc.costs.base", lazy) == {"bsnc.export.draw"}
    assert imports_of("bsnc.costs.base", "from . import latency\nfrom ..ir import Network\n") == {
        "bsnc.costs.latency", "bsnc.ir"}


def test_a_backward_import_or_a_cycle_is_caught():
    graph = GRAPH.copy()
    graph.add_edge("bsnc.lang.summary", "bsnc.search.train")  # what a careless change would add
    assert stage("bsnc.search.train") > stage("bsnc.lang.summary")
    assert list(nx.simple_cycles(graph))  # train already imports lang, so this closes a cycle


def test_the_wheel_ships_every_module(tmp_path):
    """pyproject.toml lists the packages by hand: a new sub-package must be added there too."""
    import subprocess
    import sys
    import zipfile

    root = PACKAGE.parent
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(root)], check=True, cwd=tmp_path, capture_output=True)
    (wheel,) = tmp_path.glob("bsnc-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    expected = {p.relative_to(root).as_posix() for p in MODULES.values()}
    assert expected <= shipped, f"missing from the wheel: {sorted(expected - shipped)}"
    assert {"bsnc/grammars/bsn.lark", "bsnc/templates/network.py.j2"} <= shipped
