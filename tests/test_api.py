"""The public Python API (docs/api.md): train on a name or on your own Datasets, export a run, a
model trained in your own loop, or its saved state dict."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from torch.utils.data import TensorDataset

import bsnc
from bsnc.cli import main
from bsnc.codegen.masks import mask_json
from bsnc.errors import UsageError
from bsnc.lang.frontend import load_network
from tests.test_train import TINY


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.bsn"
    path.write_text(TINY)
    return path


def _datasets(n=64, classes=10):
    g = torch.Generator().manual_seed(0)
    y = torch.randint(classes, (n,), generator=g)
    x = torch.randn(n, 3, 8, 8, generator=g) + y.view(-1, 1, 1, 1).float() / 5  # learnable
    return TensorDataset(x[:40], y[:40]), TensorDataset(x[40:52], y[40:52]), TensorDataset(x[52:], y[52:])


def test_train_on_your_own_datasets_then_export_the_run(tiny, tmp_path):
    run = bsnc.train(tiny, _datasets(), budget="20k", epochs=2, batch_size=16, device="cpu",
                     run_dir=tmp_path / "run", optimizer="adam", lr=0.01)
    assert run.run_dir == tmp_path / "run" and len(run.history) == 2 and 0 <= run.test_acc <= 1
    config = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert config["data"] == "custom" and config["optimizer"] == "adam"
    result = bsnc.export(run)
    names = {p.name for p in result.files}
    assert {"tiny_pruned.bsn", "tiny_pruned.pt", "tiny_pruned.py"} <= names
    assert result.out_dir == tmp_path / "run" / "export"


def test_train_a_loaded_module_starts_from_its_file_overrides_and_weights(tiny, tmp_path):
    model = bsnc.load(tiny, C=2)
    with torch.no_grad():
        model.gate_logits.fill_(-1.5)  # a start the default initialisation would not give
    run = bsnc.train(model, _datasets(), budget="20k", epochs=1, batch_size=64, device="cpu", path_lr=0.0,
                     run_dir=tmp_path / "run")
    assert run.network.params["C"] == 2
    # Γ's learning rate is 0: the trained gates are the module's own
    assert torch.equal(run.model.gate_logits.detach(), torch.full_like(run.model.gate_logits, -1.5))
    with pytest.raises(UsageError, match="does not come from bsnc.load"):
        bsnc.train(torch.nn.Linear(2, 2), "fake")


def test_train_rejects_unknown_options_and_missing_files(tiny):
    with pytest.raises(UsageError, match="unknown option 'epoch'"):
        bsnc.train(tiny, "fake", epoch=3)
    with pytest.raises(UsageError, match="no-such: no such file, and no shipped fabric"):
        bsnc.train("no-such", "fake")


def _own_loop(model, steps=3):
    model.set_mode("sample")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for x, y in torch.utils.data.DataLoader(_datasets()[0], batch_size=16):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        steps -= 1
        if not steps:
            break
    with torch.no_grad():
        model.gate_logits.copy_(torch.tensor([5.0, -5.0, 5.0, -5.0])[: model.gate_logits.numel()])


def test_export_a_model_from_your_own_loop_and_its_state_dict(tiny, tmp_path):
    model = bsnc.load(tiny, C=2)
    _own_loop(model)
    kept = bsnc.export(model, tmp_path / "a", draw=False)
    assert {p.name for p in kept.files} == {"tiny_pruned.bsn", "tiny_pruned.pt", "tiny_pruned.py"}
    pruned = bsnc.load(tmp_path / "a" / "tiny_pruned.bsn")
    pruned.load_state_dict(torch.load(tmp_path / "a" / "tiny_pruned.pt", weights_only=True))
    # the pruned network computes what the super network computes with the kept edges
    model.eval()
    model.set_mode("deterministic")
    x = torch.randn(2, 3, 8, 8)
    assert torch.allclose(pruned.eval()(x), model(x), atol=1e-5)

    saved = tmp_path / "own.pt"
    torch.save(model.state_dict(), saved)
    result = CliRunner().invoke(main, ["export", str(saved), "--prune", "--network", str(tiny), "-D", "C=2",
                                       "-o", str(tmp_path / "b"), "--json"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "b" / "tiny_pruned.pt").read_bytes() == (tmp_path / "a" / "tiny_pruned.pt").read_bytes()
    assert "edges (gamma > 0.5)" in (tmp_path / "b" / "tiny_pruned.bsn").read_text()
    mask = tmp_path / "mask.json"
    mask.write_text(mask_json(load_network(tiny, {"C": "2"}), model.edge_mask().cpu()))
    result = CliRunner().invoke(main, ["export", str(saved), "--prune", "--network", str(tiny), "-D", "C=2",
                                       "--mask", str(mask), "-o", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert f"edges (mask {mask})" in (tmp_path / "m" / "tiny_pruned.bsn").read_text(), "it said gamma > 0.5"

    result = CliRunner().invoke(main, ["export", str(saved), "--prune", "--network", str(tiny),
                                       "-o", str(tmp_path / "c")])
    assert result.exit_code == 1 and "the weights do not fit network tiny" in result.output
    assert "of another shape" in result.output
    result = CliRunner().invoke(main, ["export", str(saved), "--prune"])
    assert result.exit_code == 1 and "not a bsnc checkpoint" in result.output
    result = CliRunner().invoke(main, ["export", str(saved), "--prune", "--network", str(tiny), "-D", "C=2"])
    assert result.exit_code == 2 and "give -o DIR" in result.output


def test_bsnc_export_stays_callable_next_to_its_stage_package():
    import bsnc.export.draw  # noqa: F401 - binds the package on bsnc, as any import of the stage does
    from bsnc.export import exporter

    assert callable(bsnc.export) and bsnc.export.exporter is exporter
    with pytest.raises(UsageError, match="cannot export a int"):
        bsnc.export(3)


def test_datasets_are_reachable():
    assert "digits" in bsnc.datasets() and "imagefolder" in bsnc.datasets()
    digits = bsnc.dataset("digits")
    assert len(digits.train) == 1257 and digits.info.input_shape == (1, 8, 8)
    assert bsnc.load("resnet20").__class__.__name__ == "resnet20"
