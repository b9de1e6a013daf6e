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


@pytest.mark.parametrize("channels", [None, 1], ids=["whole", "channel-slice"])
def test_index_add_rows_adds_channels_last_maps_through_their_pixel_major_views(channels, monkeypatch):
    target, y = _maps(), _maps()[:3]
    part = target if channels is None else target.narrow(1, channels, 2)
    y = y if channels is None else y[:, :2].contiguous(memory_format=LAST)
    expected = part.contiguous().index_add(0, ROWS, y.contiguous())
    seen = []
    original = torch.Tensor.index_add_
    monkeypatch.setattr(torch.Tensor, "index_add_", lambda t, *a: seen.append(t.is_contiguous()) or original(t, *a))
    out = index_add_rows(part, ROWS, y)
    assert out is part and torch.equal(out, expected) and memory_format(part) is LAST
    # torch's index_add_ on a channels-last map takes a generic scatter several times slower:
    # it only ever sees a plainly contiguous view (a channel slice goes through index_put_)
    assert seen == ([True] if channels is None else [])


def test_a_channel_slice_of_a_channels_last_map_is_channels_last():
    x = _maps()
    assert memory_format(x.narrow(1, 1, 3)) is LAST
    assert memory_format(x.contiguous().narrow(1, 1, 3)) is torch.contiguous_format
    assert memory_format(torch.randn(4, 5, 1, 1).expand(4, 5, 3, 3)) is torch.contiguous_format  # a mean's gradient


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


@pytest.mark.parametrize("rows,channels", [(ROWS, None), (ROWS, 2), (None, 2)], ids=["rows", "slot", "whole-slot"])
def test_rows_add_gives_the_same_values_and_gradients_in_either_layout_and_keeps_it(rows, channels):
    acc = _maps()
    y = _maps()[:3] if rows is not None else _maps()
    y = y if channels is None else y[:, :3].contiguous(memory_format=LAST)
    # the gradient arrives contiguous, as a mean's expanded gradient does
    upstream = torch.randn(6, 5, 1, 1, dtype=torch.float64).expand(6, 5, 3, 4)
    runs = []
    for layout in (torch.contiguous_format, LAST):
        a, b = acc.detach().contiguous(memory_format=layout).requires_grad_(), \
            y.detach().contiguous(memory_format=layout).requires_grad_()
        out = add_rows(a, rows, b, channels=channels)
        assert memory_format(out) is layout
        out.backward(upstream)
        assert memory_format(a.grad) is layout and memory_format(b.grad) is layout
        runs.append((out.detach(), a.grad, b.grad))
    for first, second in zip(*runs):
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
    for asked, expected in ((None, LAST), (True, LAST), (False, torch.contiguous_format)):
        trainer = Trainer(TrainConfig(file=str(path), data="digits", budget="20k", device="cpu", channels_last=asked,
                                      run_dir=str(tmp_path / f"run{asked}"), progress=False))
        assert trainer.memory_format is expected
        assert memory_format(trainer.core.edges["a__b"][0].weight) is expected
        assert memory_format(trainer._on_device(torch.randn(8, 3, 8, 8))) is expected
        assert trainer.core.memory_format is expected and trainer.config.channels_last is (expected is LAST)


def test_a_network_without_image_input_keeps_the_default_layout():
    network, _ = build_text(VECTOR)
    assert memory_format_for(network, True) is torch.contiguous_format
    network, _ = build_text(NET)
    assert memory_format_for(network, True) is LAST and memory_format_for(network, False) is torch.contiguous_format


def _train(*args: str):
    return CliRunner().invoke(main, ["train", *args, "--data", "digits", "--budget", "20k", "--device", "cpu",
                                     "--quiet", "--warmup-epochs", "1"])


def _recorded(run) -> bool | None:
    return json.loads((run / "config.json").read_text())["config"].get("channels_last")


def _resumed_layout(path, run) -> torch.memory_format:
    return Trainer(TrainConfig(file=str(path), data="digits", budget="20k", device="cpu", epochs=9, warmup_epochs=1,
                               resume=True, run_dir=str(run), progress=False)).memory_format


def test_a_resumed_run_keeps_its_layout_unless_told_and_exports_plain_weights(tmp_path):
    path = tmp_path / "net.bsn"
    path.write_text(NET)
    run = tmp_path / "run"
    result = _train(str(path), "--epochs", "2", "--run-dir", str(run))
    assert result.exit_code == 0, result.output
    assert _recorded(run) is True and _resumed_layout(path, run) is LAST
    result = _train(str(path), "--epochs", "3", "--run-dir", str(run), "--resume", "--no-channels-last")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert _recorded(run) is False and _resumed_layout(path, run) is torch.contiguous_format
    result = CliRunner().invoke(main, ["export", str(run), "--prune", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    weights = torch.load(tmp_path / "out" / "t_pruned.pt", weights_only=True)
    assert weights and all(t.is_contiguous() for t in weights.values()), "exported weights are plain tensors"


def test_a_run_from_before_the_option_replays_and_resumes_contiguous(tmp_path):
    path = tmp_path / "net.bsn"
    path.write_text(NET)
    run = tmp_path / "run"
    assert _train(str(path), "--epochs", "2", "--run-dir", str(run)).exit_code == 0
    record = json.loads((run / "config.json").read_text())
    del record["config"]["channels_last"]  # as written before the option existed
    (run / "config.json").write_text(json.dumps(record))
    assert _resumed_layout(path, run) is torch.contiguous_format
    replay = tmp_path / "replay"
    result = _train(str(path), "--config", str(run / "config.json"), "--epochs", "2", "--run-dir", str(replay))
    assert result.exit_code == 0, result.output
    assert _recorded(replay) is False


VIEWING = """
network v(C: int = 4) {
    input x : [1, 8, 8]
    layer a : [C, 8, 8] post relu
    output y : [10]
    fixed x -> a : conv(C) >> bn
    a -> y : viewflat >> linear(10)
    a -> y as pooled : global_avgpool >> linear(10)
}
"""


def test_a_network_of_user_primitives_trains_contiguous_and_a_view_on_channels_last_is_a_clear_error(
        tmp_path, plugins):
    path = tmp_path / "v.bsn"
    path.write_text(VIEWING)
    result = _train(str(path), "--primitives", "viewflat", "--epochs", "2", "--run-dir", str(tmp_path / "a"))
    assert result.exit_code == 0, result.output
    assert _recorded(tmp_path / "a") is False
    result = _train(str(path), "--primitives", "viewflat", "--epochs", "2", "--run-dir", str(tmp_path / "b"),
                    "--channels-last")
    assert result.exit_code == 1, result.output
    assert "--channels-last: a module of the network called .view" in result.stderr
    assert "--no-channels-last" in result.stderr and "Traceback" not in result.output + result.stderr
