"""Export: the pruned static network, its weights, plain PyTorch code and diagram."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from bsnc.api import compile_network
from bsnc.cli import main
from bsnc.costs.analytic import FlopsCost, ParamsCost
from bsnc.errors import BsncError
from bsnc.export.exporter import export
from bsnc.lang.formatter import format_file
from bsnc.lang.frontend import load_network, network_from_program
from bsnc.lang.parser import parse
from bsnc.lang.program import load_program
from tests.helpers import FABRICS, input_for


def _trained_like(path, overrides, seed=0):
    """A super network with random weights, BN statistics and gate logits, as training leaves them."""
    torch.manual_seed(seed)
    program = load_program(path)
    network = network_from_program(program, overrides)
    module = compile_network(network)()
    module.train().set_mode("full")
    for _ in range(3):
        module(input_for(network, 8))
    with torch.no_grad():
        module.gate_logits.uniform_(-1.5, 3)
    return program, network, module


def test_pruned_export_round_trip(tmp_path):
    program, network, module = _trained_like(FABRICS / "cnf.bsn", {"W": 3, "C": 4, "size": 8})
    result = export(network, program, module.state_dict(), tmp_path, meta={"cost": "flops", "budget_text": "1M"})
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["cnf.dot", "cnf.png", "cnf.svg", "cnf_pruned.bsn", "cnf_pruned.pt", "cnf_pruned.py"]
    bsn = tmp_path / "cnf_pruned.bsn"
    text = bsn.read_text()
    assert format_file(parse(text, str(bsn))) == text, "the export is in canonical form"
    pruned = load_network(bsn)
    assert not pruned.stochastic_edges
    assert len(pruned.edges) == int(result.active.sum())
    # same outputs as the super network in deterministic mode
    static = compile_network(pruned)()
    static.load_state_dict(torch.load(tmp_path / "cnf_pruned.pt", weights_only=True))
    static.eval()
    module.eval().set_mode("deterministic")
    x = input_for(network, 6)
    assert torch.allclose(static(x), module(x), atol=1e-5)
    # costs equal the deterministic architecture's
    det = module.edge_mask("deterministic").unsqueeze(0)
    assert FlopsCost(pruned).full() == FlopsCost(network)(det)[0].item()
    assert ParamsCost(pruned).full() == ParamsCost(network)(det)[0].item()
    assert "budget 1M" in text and "source sha256" in text


def test_plain_pytorch_file_needs_only_torch(tmp_path):
    program, network, module = _trained_like(FABRICS / "cnf.bsn", {"W": 2, "C": 4, "size": 4}, seed=1)
    export(network, program, module.state_dict(), tmp_path, draw_diagram=False)
    code = f"""
import sys, torch
sys.modules['bsnc'] = None  # importing bsnc would fail
namespace = {{}}
exec(open({str(tmp_path / 'cnf_pruned.py')!r}).read(), namespace)
model = namespace['cnf_pruned']()
model.load_state_dict(torch.load({str(tmp_path / 'cnf_pruned.pt')!r}, weights_only=True))
print(model.eval()(torch.randn(2, 3, 4, 4)).shape)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "torch.Size([2, 10])"


def test_export_is_stable_when_reexported(tmp_path):
    program, network, module = _trained_like(FABRICS / "cnf.bsn", {"W": 3, "C": 4, "size": 8}, seed=2)
    export(network, program, module.state_dict(), tmp_path / "a", draw_diagram=False)
    first = (tmp_path / "a" / "cnf_pruned.bsn").read_text()
    assert format_file(parse(first, "x")) == first
    again = load_program(tmp_path / "a" / "cnf_pruned.bsn")
    pruned = network_from_program(again)
    static = compile_network(pruned)()
    export(pruned, again, static.state_dict(), tmp_path / "b", draw_diagram=False)
    second = (tmp_path / "b" / "cnf_pruned_pruned.bsn").read_text()
    body = lambda t: t[t.index("\nnetwork "):]  # noqa: E731 - headers name different sources
    assert body(second).replace("cnf_pruned_pruned", "cnf_pruned") == body(first)


def test_resnet_fabric_masked_to_resnet20_costs_like_resnet20(tmp_path):
    fabric = load_network(FABRICS / "resnet_fabric_n3.bsn")
    resnet20 = load_network(FABRICS / "resnet20.bsn")
    keep = {e.key for e in resnet20.edges}
    proposal = torch.tensor([e.key in keep for e in fabric.edges])
    program = load_program(FABRICS / "resnet_fabric_n3.bsn")
    module = compile_network(fabric)()
    export(fabric, program, module.state_dict(), tmp_path, proposal=proposal, draw_diagram=False)
    pruned = load_network(tmp_path / "resnet_fabric_n3_pruned.bsn")
    for cost in (FlopsCost, ParamsCost):
        assert cost(pruned).full() == cost(resnet20).full()
    assert [e.key for e in pruned.edges] == [e.key for e in resnet20.edges]
    text = (tmp_path / "resnet_fabric_n3_pruned.bsn").read_text()
    assert "module basic(c, stride=1)" in text and "module proj(c, stride=2)" in text


def test_mask_that_cuts_the_output_names_the_layers(tmp_path):
    program, network, module = _trained_like(FABRICS / "cnf.bsn", {"W": 2, "C": 4, "size": 4})
    proposal = torch.ones(len(network.edges), dtype=torch.bool)
    for i, e in enumerate(network.edges):
        if e.dst == "n[1][2]" and e.stochastic:
            proposal[i] = False
    with pytest.raises(BsncError, match=r"unreachable; no active edge reaches 'y', 'n\[1\]\[2\]'"):
        export(network, program, module.state_dict(), tmp_path / "out", proposal=proposal)
    assert not any((tmp_path / "out").glob("*")), "nothing is left behind"


def test_export_command_errors(tmp_path):
    runner = CliRunner()
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(main, ["export", str(empty), "--prune"])
    assert result.exit_code == 1 and "holds no checkpoint" in result.output
    result = runner.invoke(main, ["export", str(empty)])
    assert result.exit_code == 2 and "--prune" in result.output


def test_export_of_a_trained_run_matches_the_recorded_cost(tmp_path):
    from bsnc.search.checkpoint import load_checkpoint
    from bsnc.search.train import TrainConfig, train

    bsn = tmp_path / "net.bsn"
    bsn.write_text((FABRICS / "cnf.bsn").read_text())
    run = tmp_path / "run"
    train(TrainConfig(file=str(bsn), defines={"W": "2", "C": "4", "size": "8"}, data="fake", budget="200k",
                      epochs=2, batch_size=32, device="cpu", run_dir=str(run), progress=False))
    result = CliRunner().invoke(main, ["export", str(run), "--prune", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    recorded = load_checkpoint(run / "best.pt")["history"][-1]["deterministic_cost"]
    cost = CliRunner().invoke(main, ["cost", str(tmp_path / "out" / "cnf_pruned.bsn"), "--cost", "flops", "--json"])
    assert json.loads(cost.output)["costs"]["flops"] == recorded
    # the .bsn it was trained from changes: export refuses
    bsn.write_text(bsn.read_text().replace("# Convolutional", "# A changed Convolutional"))
    again = CliRunner().invoke(main, ["export", str(run), "--prune", "-o", str(tmp_path / "out2")])
    assert again.exit_code == 1 and "the .bsn source changed since training" in again.output
    assert not (tmp_path / "out2").exists() or not any((tmp_path / "out2").iterdir())


def test_export_into_an_unwritable_place(tmp_path):
    program, network, module = _trained_like(FABRICS / "cnf.bsn", {"W": 2, "C": 4, "size": 4})
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(BsncError, match="cannot write there"):
        export(network, program, module.state_dict(), blocker / "out")


def test_draw_with_the_probabilities_of_a_run(tmp_path):
    from bsnc.search.train import TrainConfig, train

    defines = {"W": "2", "C": "4", "size": "8"}
    run = tmp_path / "run"
    train(TrainConfig(file=str(FABRICS / "cnf.bsn"), defines=defines, data="fake", budget="200k", epochs=1,
                      batch_size=32, device="cpu", run_dir=str(run), progress=False))
    args = ["draw", str(FABRICS / "cnf.bsn"), "-D", "W=2", "-D", "C=4", "-D", "size=8", "--probs", str(run),
            "-o", str(tmp_path / "d")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    dot = (tmp_path / "d.dot").read_text()
    from bsnc.search.checkpoint import load_checkpoint

    gamma = torch.sigmoid(load_checkpoint(run / "best.pt")["model"]["gate_logits"]).tolist()
    network = load_network(FABRICS / "cnf.bsn", defines)
    for edge, g in zip(network.stochastic_edges, gamma):
        assert f"{edge.key}: " in dot and f"γ={g:.3f}" in dot  # each edge's learned probability is drawn
    other = CliRunner().invoke(main, args[:-6] + ["-D", "C=8", "--probs", str(run), "-o", str(tmp_path / "e")])
    assert other.exit_code == 1 and "draw with the same overrides" in other.output


def test_export_twice_is_byte_identical_and_never_names_its_staging_directory(tmp_path, monkeypatch):
    program, network, module = _trained_like(FABRICS / "cnf.bsn", {"W": 2, "C": 4, "size": 8})
    state = module.state_dict()
    draw = shutil.which("neato") is not None  # the diagram too, when Graphviz is there
    export(network, program, state, tmp_path / "a", draw_diagram=draw)
    monkeypatch.chdir(tmp_path)  # another working directory, another output directory
    export(network, program, state, tmp_path / "b", draw_diagram=draw)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(["cnf_pruned.bsn", "cnf_pruned.pt", "cnf_pruned.py"] + (["cnf.dot", "cnf.png", "cnf.svg"]
                                                                                   if draw else []))
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    code = (tmp_path / "a" / "cnf_pruned.py").read_text()
    assert "staging" not in code and "from 'cnf_pruned.bsn'" in code
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_export_replaces_its_directory_as_a_set(tmp_path, monkeypatch):
    from bsnc.export import exporter

    program, network, module = _trained_like(FABRICS / "cnf.bsn", {"W": 2, "C": 4, "size": 8})
    out = tmp_path / "out"
    export(network, program, module.state_dict(), out, draw_diagram=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    # a kill while the new set is written (here: the .py fails) leaves the old set whole
    def broken(_network):
        raise KeyboardInterrupt

    monkeypatch.setattr(exporter, "generate", broken)
    with pytest.raises(KeyboardInterrupt):
        export(network, program, module.state_dict(), out, meta={"cost": "params"}, draw_diagram=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_export_refuses_a_directory_of_other_files(tmp_path):
    program, network, module = _trained_like(FABRICS / "cnf.bsn", {"W": 2, "C": 4, "size": 8})
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(BsncError, match="holds files that export did not write"):
        export(network, program, module.state_dict(), tmp_path, draw_diagram=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_export_header_escapes_control_characters(tmp_path):
    program, network, module = _trained_like(FABRICS / "cnf.bsn", {"W": 2, "C": 4, "size": 8})
    meta = {"cost": "latency:evil\nnetwork x() {}\r.json", "budget_text": "1\x0bms", "mask": "m\u2028.json"}
    export(network, program, module.state_dict(), tmp_path / "o", meta=meta, draw_diagram=False)
    text = (tmp_path / "o" / "cnf_pruned.bsn").read_text()
    assert "latency:evil\\nnetwork x() {}\\r.json" in text and "1\\x0bms" in text and "m\\u2028.json" in text
    assert len(load_program(tmp_path / "o" / "cnf_pruned.bsn").root.tree.items) > 1
    assert all(line.startswith(("#", "", " ", "}", "network", "module")) for line in text.split("\n"))


def test_export_swap_without_renameat2_keeps_a_whole_set(tmp_path, monkeypatch):
    import bsnc.files

    program, network, module = _trained_like(FABRICS / "cnf.bsn", {"W": 2, "C": 4, "size": 8})
    out = tmp_path / "out"
    export(network, program, module.state_dict(), out, draw_diagram=False)
    monkeypatch.setattr(bsnc.files, "_exchange", lambda a, b: False)  # another OS: rename aside, then in
    export(network, program, module.state_dict(), out, meta={"cost": "params"}, draw_diagram=False)
    assert "# cost params" in (out / "cnf_pruned.bsn").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_the_header_of_a_full_network_export_names_no_budget_and_no_gamma(tmp_path):
    """A `--full-network` baseline has no budget and no gates: the header and the diagram's title
    say so instead of "budget None" and "(gamma > 0.5)"."""
    from bsnc.codegen.architecture import full_network

    program, network, module = _trained_like(FABRICS / "cnf.bsn", {"W": 2, "C": 4, "size": 8})
    full = full_network(network)
    state = {k: v for k, v in module.state_dict().items() if k != "gate_logits"}
    export(full, program, state, tmp_path, meta={"cost": "flops", "budget_text": None, "full_network": True})
    text = (tmp_path / "cnf_pruned.bsn").read_text()
    assert "# cost flops, no budget" in text and "None" not in text
    assert (f"kept {len(network.edges)} of {len(network.edges)} edges (every edge: the run trained the full "
            "network (--full-network))") in text and "gamma" not in text
    dot = (tmp_path / "cnf.dot").read_text()
    assert "budget None" not in dot and "flops no budget" in dot
