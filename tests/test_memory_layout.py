"""Channels-last training: the executor's row helpers keep a tensor's memory layout, `bsnc train`
lays image networks out channels-last unless told not to, and its checkpoints resume and export
in either layout."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from bsnc.cli import main
from bsnc.codegen.gather import add_rows
from bsnc.codegen.layout import (
    index_add_rows,
    memory_format,
    memory_format_for,
    take_rows,
    zeros_rows,
)
from bsnc.search.train import TrainConfig, Trainer
from tests.helpers import build_text

LAST = torch.channels_last
ROWS = torch.tensor([4, 0, 2])


def _maps(dims: int = 4) -> torch.Tensor:
    x = torch.randn((6, 5, 3, 4, 2)[:dims], dtype=torch.float64)
    return x.contiguous(memory_format={4: LAST, 5: torch.channels_last_3d}[dims])


@pytest.mark.parametrize("dims", [4, 5])
def test_take_rows_is_index_select_in_the_sources_layout(dims):
    x = _maps(dims)
    taken = take_rows(x, ROWS)
    assert torch.equal(taken, x.index_select(0, ROWS))
    assert memory_format(taken) is memory_format(x) is not torch.contiguous_format
    plain = x.contiguous()
    assert take_rows(plain, ROWS).is_contiguous() and memory_format(plain) is torch.contiguous_format


def test_index_add_rows_adds_in_the_targets_layout():
    target, y = _maps(), _maps()[:3]
    expected = target.contiguous().index_add(0, ROWS, y.contiguous())
    out = index_add_rows(target, ROWS, y)
    assert out is target and torch.equal(out, expected) and memory_format(out) is LAST


def test_zeros_rows_follow_the_layout_of_the_tensor_they_are_made_like():
    x = _maps()
    z = zeros_rows(x, 9)
    assert z.shape == (9, 5, 3, 4) and not z.any() and memory_format(z) is LAST and z.dtype == x.dtype
    wider = zeros_rows(x, 2, (8, 3, 4))
    assert wider.shape == (2, 8, 3, 4) and memory_format(wider) is LAST
    assert zeros_rows(x, 2, (7,)).is_contiguous()  # another rank: no layout to follow
    assert zeros_rows(x.contiguous(), 2).is_contiguous()


def test_a_tensor_with_one_channel_or_one_pixel_counts_as_contiguous():
    assert memory_format(torch.randn(4, 1, 3, 3).contiguous(memory_format=LAST)) is torch.contiguous_format
    assert memory_format(torch.randn(4, 6, 1, 1).contiguous(memory_format=LAST)) is torch.contiguous_format


def test_rows_add_gradients_are_the_same_in_either_layout():
    acc, y = _maps().requires_grad_(), _maps()[:3].requires_grad_()
    weight = torch.randn(6, 5, 3, 4, dtype=torch.float64)
    grads = []
    for layout in (torch.contiguous_format, LAST):
        a, b = acc.detach().contiguous(memory_format=layout).requires_grad_(), \
            y.detach().contiguous(memory_format=layout).requires_grad_()
        out = add_rows(a, ROWS, b)
        assert memory_format(out) is layout
        (out * weight).sum().backward()
        grads.append((out.detach(), a.grad, b.grad))
    for first, second in zip(*grads):
        assert torch.equal(first, second)


NET = """
network t(C: int = 4) {
    input x : [1, 8, 8]
    layer a : [C, 8, 8] post relu
    layer b : [C, 8, 8] post relu
    output y : [10]
    fixed x -> a : conv(C) >> bn
    x -> a as wide : conv(C, k=1) >> bn
    fixed a -> b : conv(C) >> bn
    a -> b as skip : identity
    b -> y : global_avgpool >> linear(10)
}
"""

VECTOR = """
network v(F: int = 64) {
    input x : [F]
    layer h : [16] post relu
    output y : [10]
    fixed x -> h : linear(16)
    h -> y : linear(10)
    x -> y as skip : linear(10)
}
"""


def test_image_networks_train_channels_last_unless_told_not_to(tmp_path):
    path = tmp_path / "net.bsn"
    path.write_text(NET)
    for asked, expected in ((True, LAST), (False, torch.contiguous_format)):
        trainer = Trainer(TrainConfig(file=str(path), data="digits", budget="20k", device="cpu", channels_last=asked,
                                      run_dir=str(tmp_path / f"run{asked}"), progress=False))
        assert trainer.memory_format is expected
        assert memory_format(trainer.core.edges["a__b"][0].weight) is expected
        assert memory_format(trainer._on_device(torch.randn(8, 3, 8, 8))) is expected


def test_a_network_without_image_input_keeps_the_default_layout():
    network, _ = build_text(VECTOR)
    assert memory_format_for(network, True) is torch.contiguous_format
    network, _ = build_text(NET)
    assert memory_format_for(network, True) is LAST and memory_format_for(network, False) is torch.contiguous_format


def test_the_layout_is_recorded_and_a_run_resumes_and_exports_in_the_other(tmp_path):
    path = tmp_path / "net.bsn"
    path.write_text(NET)
    run = tmp_path / "run"
    common = ["train", str(path), "--data", "digits", "--budget", "20k", "--device", "cpu", "--run-dir", str(run),
              "--quiet", "--warmup-epochs", "1"]
    result = CliRunner().invoke(main, [*common, "--epochs", "2"])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "config.json").read_text())["config"]["channels_last"] is True
    result = CliRunner().invoke(main, [*common, "--epochs", "3", "--resume", "--no-channels-last"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert json.loads((run / "config.json").read_text())["config"]["channels_last"] is False
    result = CliRunner().invoke(main, ["export", str(run), "--prune", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    weights = torch.load(tmp_path / "out" / "t_pruned.pt", weights_only=True)
    assert weights and all(t.is_contiguous() for t in weights.values()), "exported weights are plain tensors"
