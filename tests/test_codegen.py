"""Generated code: deterministic, readable, lint-clean, safe, and faithful to the IR."""

from __future__ import annotations

import ast as pyast
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import torch

import bsnc
from bsnc.api import compile_network
from bsnc.codegen.generate import generate
from bsnc.errors import SourceError
from bsnc.lang.frontend import load_network
from tests.helpers import FABRICS, ROOT, build, input_for

GOLDEN = ROOT / "tests" / "data" / "golden"
HOSTILE = ROOT / "tests" / "data" / "hostile"
PWNED = Path("/tmp/bsnc_pwned")


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("bsn", sorted(GOLDEN.glob("*.bsn")), ids=lambda p: p.stem)
def test_golden_generated_code(bsn):
    expected = bsn.with_suffix(".py.golden").read_text(encoding="utf-8")
    assert bsnc.compile_source(bsn.relative_to(ROOT)) == expected, (
        "generated code changed; if intended, run: python tests/regen_codegen_goldens.py"
    )


def _generate_in_subprocess(path: str, seed: str) -> str:
    env = dict(os.environ, PYTHONHASHSEED=seed)
    code = "import sys, bsnc; sys.stdout.write(bsnc.compile_source(sys.argv[1], W=3, C=8))"
    return subprocess.run([sys.executable, "-c", code, path], env=env, cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout


def test_output_is_byte_identical_across_runs_and_hash_seeds():
    outputs = {_generate_in_subprocess("fabrics/cnf.bsn", seed) for seed in ("0", "1", "12345")}
    assert len(outputs) == 1
    assert outputs.pop() == bsnc.compile_source("fabrics/cnf.bsn", W=3, C=8)


def _imports(source: str) -> set[str]:
    found = set()
    for node in pyast.walk(pyast.parse(source)):
        if isinstance(node, pyast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, pyast.ImportFrom):
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("path", sorted(FABRICS.glob("*.bsn")), ids=lambda p: p.stem)
def test_generated_code_compiles_lints_and_imports_only_torch_and_runtime(path, tmp_path):
    network = load_network(path)
    source = generate(network)
    target = tmp_path / f"{path.stem}.py"
    target.write_text(source, encoding="utf-8")
    subprocess.run([sys.executable, "-m", "py_compile", str(target)], check=True)
    lint = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated", str(target)],
                          capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    if network.stochastic_edges:
        assert _imports(source) == {"torch", "torch.nn", "bsnc.codegen.runtime"}
    else:
        assert _imports(source) == {"torch", "torch.nn"}
        assert "gate" not in source and "plan" not in source and "sample" not in source


def test_state_dict_keys_are_readable_and_gates_start_from_probabilities():
    network, module = build(GOLDEN / "small.bsn")
    keys = set(module.state_dict())
    assert "edges.a__b.0.weight" in keys and "edges.a__b__pool.1.stride" not in keys
    assert "gate_logits" in keys
    gamma = module.gamma()
    assert module.stochastic_keys == ("a->b", "a->b:pool", "a->y", "b->y")
    assert gamma[0].item() == pytest.approx(0.8)
    assert gamma[1].item() == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item())


def test_static_network_has_no_gates_and_traces_with_fx():
    network, module = build(FABRICS / "resnet20.bsn")
    assert not any("gate" in k for k in module.state_dict())
    traced = torch.fx.symbolic_trace(module.eval())
    x = input_for(network, 2)
    assert torch.equal(traced(x), module(x))


def test_parameter_count_of_generated_module_matches_the_registry():
    for name in ("resnet20.bsn", "cnf_w1.bsn"):
        network, module = build(FABRICS / name)
        assert sum(p.numel() for p in module.edges.parameters()) == network.param_count()


def test_tracebacks_show_generated_lines():
    model = bsnc.load("fabrics/cnf.bsn", W=2, C=4, size=8)
    with pytest.raises(RuntimeError) as info:
        model(torch.randn(2, 5, 8, 8))  # wrong channel count
    text = "".join(traceback.format_exception(info.value))
    assert "plan.run(0, edges.x__n_0_0, x, n_0_0)" in text


def test_load_and_compile_source_accept_overrides():
    model = bsnc.load("fabrics/cnf.bsn", W=2, C=4, size=8)
    assert model(torch.randn(3, 3, 8, 8)).shape == (3, 10)
    assert "Parameters: W=2, C=4" in bsnc.compile_source("fabrics/cnf.bsn", W=2, C=4, size=8)


# --- hostile input -----------------------------------------------------------------------------------


def _only_safe_calls(source: str) -> None:
    banned = {"system", "exec", "eval", "__import__", "open", "compile", "getattr", "setattr", "popen"}
    for node in pyast.walk(pyast.parse(source)):
        if isinstance(node, pyast.Call):
            func = node.func
            name = func.attr if isinstance(func, pyast.Attribute) else getattr(func, "id", "")
            assert name not in banned, pyast.unparse(node)


@pytest.mark.parametrize("bsn", ["names.bsn", "long_names.bsn", "collisions.bsn", "post_collisions.bsn"])
def test_hostile_names_compile_to_code_that_only_builds_the_network(bsn, tmp_path, monkeypatch):
    PWNED.unlink(missing_ok=True)
    network = load_network(HOSTILE / bsn)
    source = generate(network)
    _only_safe_calls(source)
    target = tmp_path / "gen.py"
    target.write_text(source, encoding="utf-8")
    subprocess.run([sys.executable, "-m", "py_compile", str(target)], check=True)
    cls = compile_network(network)
    module = cls()
    module.set_mode("full")
    out = module(input_for(network, 2))
    assert out.shape == (2,) + network.layer(network.output).shape
    assert len(module.edges) == len(network.edges)
    assert not PWNED.exists()
    for line in source.splitlines():
        stripped = line.strip()
        assert not stripped.startswith(("import os", "__import__", "os.")), line


def test_hostile_string_parameter_stays_inside_repr():
    network = load_network(HOSTILE / "names.bsn", {"s": "evil\nimport os\nos.system('x')"})
    source = generate(network)
    assert "\nimport os" not in source
    assert "'evil\\nimport os\\nos.system(\\'x\\')'" in source or "\"evil\\nimport os" in source


def test_hostile_string_argument_is_a_located_error():
    with pytest.raises(SourceError) as info:
        load_network(HOSTILE / "mode_string.bsn")
    message = info.value.render()
    assert "mode_string.bsn:5:" in message and 'must be one of "nearest", "bilinear"' in message


def test_file_name_with_newline_is_repr_in_comments(tmp_path):
    evil = tmp_path / "x\nimport os\n.bsn"
    evil.write_text("network t() {\n input x : [2]\n output y : [2]\n x -> y : linear(2)\n}\n")
    source = generate(load_network(evil))
    assert "\nimport os" not in source
    compile(source, "gen", "exec")


def test_collisions_get_distinct_identifiers():
    network = load_network(HOSTILE / "collisions.bsn")
    module = compile_network(network)()
    assert len(set(module.edges.keys())) == len(network.edges) == 6
