"""Primitives of your own: a real package (tests/data/plugins/tinyattn) registered with
`--primitives` or an entry point, then checked, trained and exported."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from click.testing import CliRunner
from torch.utils.flop_counter import FlopCounterMode

from bsnc import primitives
from bsnc.api import compile_network
from bsnc.cli import main
from bsnc.codegen.generate import generate
from bsnc.errors import BsncError
from bsnc.lang.frontend import load_network, network_from_text
from bsnc.ops import REGISTRY, ArgSpec, ModuleSpec, Primitive
from tests.helpers import ROOT

PLUGINS = ROOT / "tests" / "data" / "plugins"

NET = textwrap.dedent("""\
    network attn(C: int = 4) {
        input x : [3, 6, 6]
        layer a : [C, 6, 6] post relu
        output y : [10]
        fixed x -> a : conv(C) >> bn
        a -> a2 as attention : attention(heads=2)
        a -> a2 as conv : conv(C)
        layer a2 : [C, 6, 6]
        fixed a2 -> y : global_avgpool >> linear(10)
    }
""")


def test_attention_counts_like_torch(plugins):
    primitives.load(["tinyattn"])
    prim = REGISTRY["attention"]
    for shape, heads in (((4, 3, 5), 2), ((6, 4, 4), 3), ((2, 1, 7), 1)):
        args = {"heads": heads}
        module = prim.torch(shape, args).build()
        x = torch.randn(2, *shape)
        with FlopCounterMode(display=False) as counter:
            y = module(x)
        assert tuple(y.shape[1:]) == prim.shape(shape, args)
        assert counter.get_total_flops() == 2 * 2 * prim.macs(shape, shape, args)
        assert prim.params(shape, args) == sum(p.numel() for p in module.parameters())


def test_unknown_until_registered(plugins, tmp_path):
    path = tmp_path / "attn.bsn"
    path.write_text(NET)
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 1 and "unknown primitive or module 'attention'" in result.stderr
    result = CliRunner().invoke(main, ["check", str(path), "--primitives", "tinyattn"])
    assert result.exit_code == 0, result.output


def test_check_train_export_with_a_user_primitive(plugins, tmp_path):
    path = tmp_path / "attn.bsn"
    path.write_text(NET)
    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(main, ["cost", str(path), "--primitives", "tinyattn", "--json"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["train", str(path), "--primitives", "tinyattn", "--data", "fake", "--epochs", "1",
                                  "--budget", "1M", "--batch-size", "32", "--device", "cpu", "--run-dir", str(run),
                                  "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "config.json").read_text())["config"]["primitives"] == ["tinyattn"]
    # a new process would know nothing of tinyattn: export finds it in the run's configuration
    REGISTRY.pop("attention")
    out = tmp_path / "out"
    result = runner.invoke(main, ["export", str(run), "--prune", "--mask", str(_mask(tmp_path)), "-o", str(out)])
    assert result.exit_code == 0, result.output
    code = (out / "attn_pruned.py").read_text()
    assert "# Needs the Python package(s) of its user primitives: tinyattn" in code
    assert "from tinyattn import SpatialAttention" in code and "SpatialAttention(channels=4, heads=2)" in code
    assert "user primitives attention (--primitives tinyattn)" in (out / "attn_pruned.bsn").read_text()
    # the exported file runs in a fresh interpreter that has tinyattn and torch, and gives what bsnc gives
    pruned = load_network(out / "attn_pruned.bsn")
    static = compile_network(pruned)()
    static.load_state_dict(torch.load(out / "attn_pruned.pt", weights_only=True))
    x = torch.randn(2, 3, 6, 6)
    torch.save(x, tmp_path / "x.pt")
    script = (f"import torch\nns = {{}}\nexec(open({str(out / 'attn_pruned.py')!r}).read(), ns)\n"
              f"m = ns['attn_pruned']()\nm.load_state_dict(torch.load({str(out / 'attn_pruned.pt')!r}))\n"
              f"torch.save(m.eval()(torch.load({str(tmp_path / 'x.pt')!r})), {str(tmp_path / 'y.pt')!r})\n")
    subprocess.run([sys.executable, "-c", script], check=True, env={"PYTHONPATH": str(PLUGINS), "PATH": "/usr/bin"})
    assert torch.allclose(torch.load(tmp_path / "y.pt"), static.eval()(x), atol=1e-5)


def _mask(tmp_path):
    path = tmp_path / "mask.json"
    path.write_text(json.dumps({"edges": {"a->a2:attention": True, "a->a2:conv": False}}))
    return path


def test_entry_point_registers_without_an_option(plugins, tmp_path, monkeypatch):
    dist = tmp_path / "tinyattn_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tinyattn-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[bsnc.primitives]\nattention = tinyattn:PRIMITIVES\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    network = network_from_text(NET)
    assert network.edge("a->a2:attention").macs() == 4 * 16 * 36 + 2 * 36 * 36 * 4


def test_option_errors_name_the_option_and_the_value(plugins, tmp_path):
    path = tmp_path / "attn.bsn"
    path.write_text(NET)
    runner = CliRunner()
    result = runner.invoke(main, ["check", str(path), "--primitives", "no_such_pkg.prims"])
    assert result.exit_code == 1
    assert "--primitives no_such_pkg.prims: cannot import module 'no_such_pkg.prims'" in result.stderr
    assert "Traceback" not in result.output
    result = runner.invoke(main, ["check", str(path), "--primitives", "os; rm"])
    assert result.exit_code == 1 and "expected a module name" in result.stderr
    result = runner.invoke(main, ["check", str(path), "--primitives", "json"])
    assert result.exit_code == 1
    assert "--primitives json: module 'json' registers no primitive" in result.stderr


def _prim(name: str, ctor: str, kwargs=()) -> Primitive:
    return Primitive(name, (ArgSpec("c", int, 1),), lambda s, a: s, lambda i, o, a: 0, lambda i, a: 0,
                     lambda i, a: ModuleSpec(ctor, kwargs), "test", name)


def test_registration_refuses_builtin_names_and_clashes(plugins):
    with pytest.raises(BsncError, match="built into bsnc"):
        primitives.register(_prim("conv", "pkg.mod.Conv"))
    primitives.register(_prim("mine", "pkg.mod.Mine"), "first")
    with pytest.raises(BsncError, match="already registered by first"):
        primitives.register(_prim("mine", "pkg.mod.Other"), "second")


@pytest.mark.parametrize("ctor, kwargs", [
    ("os.system('x') or pkg.Mod", ()),
    ("pkg.class.Mod", ()),
    ("eval", ()),
    ("nn.Conv2d(1, 1, 1) if 0 else nn.ReLU", ()),
    ("pkg.mod.Mod", (("c", object()),)),
    ("pkg.mod.Mod", (("c=1, x", 1),)),
])
def test_hostile_module_paths_and_arguments_never_reach_code(plugins, ctor, kwargs):
    primitives.register(_prim("hostile", ctor, kwargs))
    network = network_from_text("network t() { input x : [2] output y : [2] x -> y : hostile }")
    with pytest.raises(BsncError, match="cannot be written|not a dotted path|neither"):
        generate(network)
