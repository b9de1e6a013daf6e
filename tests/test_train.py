"""bsnc train: budgeted REINFORCE training, run directories, resume, errors, distributed."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from click.testing import CliRunner

from bsnc.cli import main
from bsnc.errors import Interrupted
from bsnc.search.checkpoint import load_checkpoint
from bsnc.search.train import TrainConfig, Trainer, train
from tests.helpers import FABRICS

TINY = """
network tiny(C: int = 4, classes: int = 10) {
    input x : [3, 8, 8]
    layer a : [C, 8, 8] post relu
    layer b : [C, 4, 4] post relu
    output y : [classes]
    fixed x -> a : conv(C) >> bn
    a -> b : conv(C, stride=2) >> bn
    a -> b as pool : maxpool(2) >> conv(C, k=1)
    b -> y : global_avgpool >> linear(classes)
    a -> y : global_avgpool >> linear(classes)
}
"""

STATIC = """
network static(C: int = 4) {
    input x : [3, 8, 8]
    layer a : [C, 8, 8] post relu
    output y : [10]
    fixed x -> a : conv(C) >> bn
    fixed a -> y : global_avgpool >> linear(10)
}
"""


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.bsn"
    path.write_text(TINY)
    return path


def _config(path, run_dir, **changes) -> TrainConfig:
    values = dict(file=str(path), data="fake", cost="flops", budget="20k", epochs=2, batch_size=32, lr=0.05,
                  path_lr=0.5, lam=2.0, seed=3, device="cpu", run_dir=str(run_dir), progress=False)
    values.update(changes)
    return TrainConfig(**values)


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_budgeted_training_writes_a_complete_run_directory(tiny, tmp_path):
    run = tmp_path / "run"
    result = train(_config(tiny, run, epochs=3, warmup_epochs=1))
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "ckpt.pt", "config.json", "metrics.jsonl", "pareto",
                                                     "pareto.json"]
    rows = _metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert [r["phase"] for r in rows] == ["warmup", "search", "search"]
    expected = {"train_loss", "train_acc", "mean_sampled_cost", "deterministic_cost", "entropy", "edges_kept",
                "val_acc", "test_acc", "lr", "time", "within_budget"}
    assert expected <= set(rows[0])
    assert rows[-1]["test_acc"] is not None
    assert load_checkpoint(run / "best.pt")["history"][-1]["test_acc"] is not None, "the selected model is tested"
    config = json.loads((run / "config.json").read_text())
    assert config["sources"][str(tiny)] == TINY and config["config"]["budget"] == "20k"
    state = load_checkpoint(run / "ckpt.pt")  # weights_only=True
    assert state["epoch"] == 2 and "gate_logits" in state["model"]
    gates = state["model"]["gate_logits"]
    assert not torch.allclose(gates, torch.full_like(gates, 3.0)), "REINFORCE moved the edge probabilities"
    assert 0 <= result.test_acc <= 1


def test_warmup_freezes_gates_then_resets_them(tiny, tmp_path):
    trainer = Trainer(_config(tiny, tmp_path / "run", epochs=2, warmup_epochs=1))
    with torch.no_grad():
        trainer.core.gate_logits.fill_(1.0)
    trainer.train_epoch(0, "warmup")
    assert torch.all(trainer.core.gate_logits == 1.0), "gates are frozen during warm-up"
    assert trainer.core.last.drawn.all(), "every edge is on during warm-up"


def test_cost_pressure_lowers_the_probabilities_of_expensive_edges(tiny, tmp_path):
    trainer = Trainer(_config(tiny, tmp_path / "run", epochs=4, budget="5k", lam=50.0, path_lr=2.0))
    before = trainer.core.gamma().detach().clone()
    trainer.run()
    after = trainer.core.gamma().detach()
    assert after.mean() < before.mean()


def test_a_network_without_stochastic_edges_trains_as_a_plain_network(tmp_path):
    path = tmp_path / "static.bsn"
    path.write_text(STATIC)
    result = train(_config(path, tmp_path / "run", budget=None))
    rows = _metrics(tmp_path / "run")
    assert rows[0]["phase"] == "train" and rows[0]["entropy"] == 0.0
    assert rows[0]["deterministic_cost"] == rows[0]["mean_sampled_cost"] > 0
    assert result.test_acc is not None


def test_segmentation_uses_pixel_accuracy(tmp_path):
    run = tmp_path / "run"
    config = _config(FABRICS / "cnf.bsn", run, data="synthetic-seg", budget="1M", epochs=1,
                     defines={"W": "2", "C": "4", "size": "8", "classes": "3", "segmentation": "true"})
    result = train(config)
    assert 0 < result.test_acc <= 1
    assert _metrics(run)[0]["val_acc"] > 0.2


def test_resumed_run_ends_with_exactly_the_metrics_of_an_uninterrupted_one(tiny, tmp_path, monkeypatch):
    full = tmp_path / "full"
    train(_config(tiny, full, epochs=4))

    stopped = tmp_path / "stopped"
    original = Trainer.train_epoch

    def stop_at_third_epoch(self, epoch, phase):
        if epoch == 2:
            raise KeyboardInterrupt
        return original(self, epoch, phase)

    monkeypatch.setattr(Trainer, "train_epoch", stop_at_third_epoch)
    # Ctrl-C: bsnc's own error (exit status 130 in the CLI), naming the resumable checkpoint
    with pytest.raises(Interrupted, match=r"interrupted; the last good checkpoint is .*ckpt.pt \(epoch 2\)"):
        train(_config(tiny, stopped, epochs=4))
    (stopped / ".ckpt.pt.abcd1234.tmp").write_bytes(b"half a checkpoint")  # as a kill mid-write leaves
    monkeypatch.setattr(Trainer, "train_epoch", original)
    assert len(_metrics(stopped)) == 2
    train(_config(tiny, stopped, epochs=4, resume=True))

    def without_time(rows):
        return [{k: v for k, v in r.items() if k != "time"} for r in rows]

    assert without_time(_metrics(stopped)) == without_time(_metrics(full))
    assert not list(stopped.glob(".*.tmp")), "the resume removes what an interrupted write left"
    a, b = load_checkpoint(full / "ckpt.pt"), load_checkpoint(stopped / "ckpt.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_resume_refuses_another_source_or_other_overrides(tiny, tmp_path):
    run = tmp_path / "run"
    train(_config(tiny, run, epochs=1))
    runner = CliRunner()
    base = ["train", str(tiny), "--data", "fake", "--budget", "20k", "--epochs", "2", "--run-dir", str(run),
            "--device", "cpu", "--quiet", "--resume"]
    result = runner.invoke(main, base + ["-D", "C=8"])
    assert result.exit_code == 1 and "trained with -D {}" in result.output
    tiny.write_text(TINY.replace("maxpool(2)", "avgpool(2)"))
    result = runner.invoke(main, base)
    assert result.exit_code == 1 and "another version of" in result.output


@pytest.mark.parametrize("args, message", [
    (["--data", "nope"], "--data nope: unknown dataset 'nope'"),
    (["--budget", "0"], "--budget 0: the budget must be greater than 0"),
    (["--budget", "12ms"], "--budget 12ms: the flops cost is a count"),
    (["--lambda", "-1"], "--lambda -1.0: expected a number >= 0"),
    (["--cost", "distributed:n=0"], "n must be at least 1"),
    (["--resume"], "holds no ckpt.pt to resume from"),
    (["--data", "cifar10"], "--data-dir"),
    ([], "--budget is needed"),
])
def test_training_errors_name_the_option(tiny, tmp_path, args, message):
    base = ["train", str(tiny), "--data", "fake", "--epochs", "1", "--run-dir", str(tmp_path / "r"),
            "--device", "cpu", "--quiet"]
    if "--budget" not in args and message != "--budget is needed":
        base += ["--budget", "20k"]
    result = CliRunner().invoke(main, base + args)
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert "Traceback" not in result.output


def test_dataset_shape_mismatch_names_the_overrides(tmp_path):
    result = CliRunner().invoke(main, ["train", str(FABRICS / "cnf.bsn"), "-D", "C=4", "--data", "digits",
                                       "--budget", "1M", "--run-dir", str(tmp_path / "r"), "--quiet"])
    assert result.exit_code == 1
    assert "try -D in_channels=1 -D size=8" in result.output


def test_unwritable_run_directory(tiny, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = CliRunner().invoke(main, ["train", str(tiny), "--data", "fake", "--budget", "20k", "--run-dir",
                                       str(blocker / "run"), "--quiet", "--device", "cpu"])
    assert result.exit_code == 1 and "cannot write there" in result.output


def test_nan_loss_stops_with_epoch_and_step_and_keeps_the_last_checkpoint(tiny, tmp_path, monkeypatch):
    import bsnc.search.train as training

    run = tmp_path / "run"
    original = training._task_loss
    calls = {"n": 0}

    def poisoned(out, y):
        loss, correct = original(out, y)
        if out.requires_grad:  # training steps only: 8 per epoch
            calls["n"] += 1
            if calls["n"] == 10:  # epoch 2, step 2
                loss = loss * float("nan")
        return loss, correct

    monkeypatch.setattr(training, "_task_loss", poisoned)
    with pytest.raises(training.BsncError, match=r"at epoch 2, step 2") as info:
        train(_config(tiny, run, epochs=3))
    assert f"the last good checkpoint is {run / 'ckpt.pt'} (epoch 1)" in str(info.value)
    assert load_checkpoint(run / "ckpt.pt")["epoch"] == 0

    # in the first epoch there is no checkpoint yet: the message must not name one
    calls["n"] = 7
    first = tmp_path / "first"
    with pytest.raises(training.BsncError, match=r"at epoch 1, step 3") as info:
        train(_config(tiny, first, epochs=3))
    assert "no checkpoint was written yet" in str(info.value) and not (first / "ckpt.pt").exists()


def test_ctrl_c_exits_130_after_a_resumable_checkpoint(tiny, tmp_path, monkeypatch):
    original = Trainer.train_epoch

    def interrupted(self, epoch, phase):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch, phase)

    monkeypatch.setattr(Trainer, "train_epoch", interrupted)
    run = tmp_path / "run"
    args = ["train", str(tiny), "--data", "fake", "--budget", "20k", "--epochs", "2", "--batch-size", "32",
            "--run-dir", str(run), "--device", "cpu", "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 130, result.output
    assert f"error: interrupted; the last good checkpoint is {run / 'ckpt.pt'} (epoch 1)" in result.stderr
    monkeypatch.setattr(Trainer, "train_epoch", original)
    resumed = CliRunner().invoke(main, args + ["--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert [r["epoch"] for r in _metrics(run)] == [1, 2]


def test_ctrl_c_before_the_first_checkpoint_leaves_no_numbered_run(tiny, tmp_path, monkeypatch):
    """The run held only config.json, and `latest` pointed at it: --resume then failed with
    "holds no ckpt.pt"."""
    def interrupted(self, epoch, phase):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "train_epoch", interrupted)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["train", str(tiny), "--data", "fake", "--budget", "20k", "--epochs", "2",
                                       "--device", "cpu", "--quiet"])
    assert result.exit_code == 130 and "no checkpoint was written yet" in result.stderr, result.output
    assert not (tmp_path / "runs").exists()


def test_sigterm_stops_training_as_ctrl_c_does_with_status_143(tiny, tmp_path, monkeypatch):
    """SLURM, Kubernetes and `docker stop` send SIGTERM: the same clean stop as Ctrl-C, the last
    checkpoint named, instead of a silent kill (exit 143 with no word)."""
    import os
    import signal

    original = Trainer.train_epoch

    def terminated(self, epoch, phase):
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, epoch, phase)

    monkeypatch.setattr(Trainer, "train_epoch", terminated)
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(tiny), "--data", "fake", "--budget", "20k", "--epochs", "2",
                                       "--batch-size", "32", "--run-dir", str(run), "--device", "cpu", "--quiet"])
    assert result.exit_code == 143, result.output
    assert f"error: terminated; the last good checkpoint is {run / 'ckpt.pt'} (epoch 1)" in result.stderr
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the command's handler is gone with it


def test_config_file_sets_defaults_that_flags_override(tiny, tmp_path):
    config = tmp_path / "train.toml"
    config.write_text('data = "fake"\nbudget = "20k"\nepochs = 2\nbatch-size = 32\ndevice = "cpu"\n')
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(tiny), "--config", str(config), "--epochs", "1",
                                       "--run-dir", str(run), "--quiet"])
    assert result.exit_code == 0, result.output
    saved = json.loads((run / "config.json").read_text())["config"]
    assert saved["epochs"] == 1 and saved["batch_size"] == 32 and saved["budget"] == "20k"
    bad = tmp_path / "bad.toml"
    bad.write_text("epoch = 3\n")
    result = CliRunner().invoke(main, ["train", str(tiny), "--config", str(bad)])
    assert result.exit_code == 2 and "unknown option 'epoch'" in result.output


# --- distributed data parallel on CPU (gloo, two processes) -------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, path: str, run_dir: str, out_dir: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import bsnc.search.train as training

    maxima = []  # (this process's bound, every process's largest), one per search step
    shared_max = training._Distributed.max

    def spy(self, value, device):
        largest = shared_max(self, value, device)
        maxima.append((value, largest))
        return largest
    training._Distributed.max = spy
    result = train(_config(path, run_dir, epochs=2))  # as the CLI runs it: to the barrier and release
    state = {k: v.detach().clone() for k, v in result.model.state_dict().items()}
    state["maxima"] = torch.tensor(maxima, dtype=torch.float64)
    state["group left"] = torch.tensor(not torch.distributed.is_initialized())
    torch.save(state, Path(out_dir) / f"rank{rank}.pt")


def test_two_gloo_processes_hold_identical_gates_and_weights(tiny, tmp_path):
    out = tmp_path / "states"
    out.mkdir()
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tiny), str(tmp_path / "run"), str(out)), nprocs=2, join=True)
    a = torch.load(out / "rank0.pt", weights_only=True)
    b = torch.load(out / "rank1.pt", weights_only=True)
    assert not torch.allclose(a["gate_logits"], torch.full_like(a["gate_logits"], 3.0))
    # the reward floor's bound: every process takes the largest of all of them, each search step
    assert len(a["maxima"]) == len(b["maxima"]) > 0
    assert torch.equal(a["maxima"][:, 1], b["maxima"][:, 1])
    assert torch.equal(a["maxima"][:, 1], torch.maximum(a["maxima"][:, 0], b["maxima"][:, 0]))
    assert bool(a["group left"]) and bool(b["group left"])  # train() destroyed the group it started
    for key in a:
        if "running" in key or "num_batches" in key or key == "maxima":
            continue  # batch-norm statistics are per process, and so is each one's own bound
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["best.pt", "ckpt.pt", "config.json",
                                                                     "metrics.jsonl", "pareto", "pareto.json"]


def test_warmup_end_restores_each_edge_initial_probability(tmp_path):
    path = tmp_path / "p.bsn"
    path.write_text(TINY.replace("a -> b : conv(C, stride=2) >> bn", "a -> b : conv(C, stride=2) >> bn prob 0.2"))
    trainer = Trainer(_config(path, tmp_path / "run", epochs=2, warmup_epochs=1, path_lr=0.0))
    trainer.run()
    gamma = dict(zip(trainer.core.stochastic_keys, trainer.core.gamma().tolist()))
    assert gamma["a->b"] == pytest.approx(0.2, abs=1e-6)
    assert gamma["a->y"] == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item(), abs=1e-6)


def test_an_architecture_that_misses_the_output_is_never_within_budget(tiny, tmp_path):
    trainer = Trainer(_config(tiny, tmp_path / "run", epochs=1))
    with torch.no_grad():
        trainer.core.gate_logits.fill_(-5.0)  # every stochastic edge off: y is unreachable
    cost, kept, consistent = trainer.deterministic_cost()
    assert (cost, kept, consistent) == (0.0, 0, False)


def test_a_last_batch_of_one_row_is_dropped_in_training(tmp_path):
    path = tmp_path / "vector_bn.bsn"
    path.write_text("network v() {\n input x : [3, 8, 8]\n output y : [10]\n"
                    " fixed x -> y : flatten >> linear(16) >> bn >> relu >> linear(10)\n}\n")
    result = train(_config(path, tmp_path / "run", budget=None, epochs=1, batch_size=255))
    assert result.test_acc is not None


def test_resume_refuses_other_training_settings(tiny, tmp_path):
    run = tmp_path / "run"
    train(_config(tiny, run, epochs=1))
    with pytest.raises(Exception, match=r"other settings \(budget '20k' -> '30k'\)"):
        train(_config(tiny, run, epochs=1, budget="30k", resume=True))


def test_export_works_from_another_directory(tiny, tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    (project / "tiny.bsn").write_text(TINY)
    monkeypatch.chdir(project)
    result = CliRunner().invoke(main, ["train", "tiny.bsn", "--data", "fake", "--budget", "20k", "--epochs", "1",
                                       "--device", "cpu", "--quiet", "--run-dir", "run"])
    assert result.exit_code == 0, result.output
    monkeypatch.chdir(tmp_path)
    exported = CliRunner().invoke(main, ["export", "project/run", "--prune", "-o", "out"])
    assert exported.exit_code == 0, exported.output
    assert (tmp_path / "out" / "tiny_pruned.bsn").is_file()


def test_resume_with_more_epochs_extends_a_finished_run_with_a_stretched_schedule(tiny, tmp_path):
    run = tmp_path / "run"
    train(_config(tiny, run, epochs=2, lr=0.08))
    assert [r["lr"] for r in _metrics(run)] == [0.08, pytest.approx(0.008)]  # milestone at epoch 1 of 2
    result = train(_config(tiny, run, epochs=4, lr=0.08, resume=True))
    rows = _metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4] and len(result.history) == 4
    # the schedule of a 4-epoch run (milestones at epochs 2 and 3) from epoch 3 on
    assert [r["lr"] for r in rows[2:]] == [pytest.approx(0.008), pytest.approx(0.0008)]
    assert json.loads((run / "config.json").read_text())["config"]["epochs"] == 4
    with pytest.raises(Exception, match="--epochs 3: .* has already trained 4 epochs"):
        train(_config(tiny, run, epochs=3, lr=0.08, resume=True))


def test_training_on_a_full_disk_is_an_error_naming_the_file(tiny, tmp_path, monkeypatch):
    import errno

    import bsnc.files

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(bsnc.files.os, "fsync", full)
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(tiny), "--data", "fake", "--budget", "20k", "--epochs", "1",
                                       "--run-dir", str(run), "--quiet", "--device", "cpu"])
    assert result.exit_code == 1, result.output
    assert result.stderr == f"error: {run / 'config.json'}: cannot write it (no space left on the device)\n"
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]



class _Crash(Exception):
    pass


def test_a_crash_between_two_writes_of_an_epoch_leaves_no_file_naming_a_missing_one(tiny, tmp_path, monkeypatch):
    """pareto.json and ckpt.pt's front name point checkpoints; whichever write of the last epoch
    the process dies before, every file they name is on disk."""
    import bsnc.search.train as training
    from bsnc.export.exporter import _choose_checkpoint
    from bsnc.search.checkpoint import load_checkpoint, shipped_checkpoint
    from bsnc.search.selection import ParetoFront

    real_save, real_write = training.save_checkpoint, training.atomic_write_text
    writes: list[str] = []
    crash_at = [None]

    def counted(write, run):
        def wrapper(path, *args, **kwargs):
            if len(writes) == crash_at[0]:
                raise _Crash(str(path))
            writes.append(Path(path).relative_to(run).as_posix())
            return write(path, *args, **kwargs)
        return wrapper

    def run_until_crash(run: Path, at: int | None, **changes) -> None:
        writes.clear()
        crash_at[0] = at
        monkeypatch.setattr(training, "save_checkpoint", counted(real_save, run))
        monkeypatch.setattr(training, "atomic_write_text", counted(real_write, run))
        train(_config(tiny, run, **{"epochs": 3, "warmup_epochs": 0, **changes}))

    run_until_crash(tmp_path / "whole", None)
    epochs = [i for i, name in enumerate(writes) if name == "ckpt.pt"]
    last = writes[epochs[-2] + 1:]  # what the last epoch writes
    assert len(epochs) == 3 and "best.pt" in last and any(n.startswith("pareto/") for n in last), writes
    for k in range(len(last)):
        run = tmp_path / f"crash{k}"
        with pytest.raises(_Crash):
            run_until_crash(run, epochs[-2] + 1 + k)
        front = json.loads((run / "pareto.json").read_text())
        assert all((run / p["file"]).is_file() for p in front), (k, last, front)
        state = load_checkpoint(run / "ckpt.pt")
        assert all((run / p["file"]).is_file() for p in state["pareto"]), (k, last, state["pareto"])
        # export ships the best point of the front ckpt.pt records, even when best.pt got one epoch ahead
        best = ParetoFront.from_json(state["pareto"], "ckpt.pt").best()
        shipped = load_checkpoint(_choose_checkpoint(run, None, False))
        assert shipped["history"][-1]["epoch"] == best.epoch, (k, last)
        shown = load_checkpoint(shipped_checkpoint(run))  # what draw --probs and report show
        assert shown["history"][-1]["epoch"] == best.epoch, (k, last)
    # a resume after the last crash leaves exactly the front's checkpoints, also removing one a crash
    # left between ckpt.pt and the removal of the points that had left the front
    (run / "pareto" / "epoch-099.pt").write_bytes((run / "ckpt.pt").read_bytes())
    run_until_crash(run, None, epochs=4, resume=True)
    front = json.loads((run / "pareto.json").read_text())
    assert sorted(p.as_posix() for p in (run / "pareto").iterdir()) == sorted((run / p["file"]).as_posix() for p in front)


UNWRITABLE = """
network u() {
    input x : [4, 2, 4]
    layer h : [4, 6, 10]
    layer q : [6, 6, 10] aggregate concat
    output y : [10]
    x -> h : upsample(2) >> conv(4, k=1, padding=1) prob 0.1
    fixed h -> q as thin : conv(2, k=1)
    x -> q as wide : upsample(2) >> conv(4, k=1, padding=1)
    fixed q -> y : bn >> relu >> global_avgpool >> linear(10)
}
"""


def test_an_architecture_export_cannot_write_is_not_shipped(tmp_path):
    """With x->h off, q's slot of `thin` must stay zeros (its reader starts with bn), and no
    layer before q is a map that a stride and one up-sampling factor make 6x10: export would refuse the architecture, so
    training does not ship it, says why each epoch, and ends with exit 3."""
    from click.testing import CliRunner

    from bsnc.cli import main

    path = tmp_path / "u.bsn"
    path.write_text(UNWRITABLE)
    result = CliRunner().invoke(main, ["train", str(path), "--data", "fake", "--budget", "100%", "--epochs", "1",
                                       "--path-lr", "0", "--device", "cpu", "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 3, result.output
    assert "epoch 1: export cannot write the deterministic architecture, so it is not a candidate to ship: " \
           "cannot export layer 'q'" in result.stderr
    assert "and export cannot write some of the architectures it chose (cannot export layer 'q'" in result.stderr
    assert not (tmp_path / "run" / "best.pt").exists()
    assert _metrics(tmp_path / "run")[0]["consistent"] is True


def test_resume_keeps_the_budget_its_run_started_with(tmp_path):
    """A percentage measured against another reference (the full super network, before choice
    groups had a largest architecture) gives the same --budget text another value: the resumed
    run keeps the recorded one, which its Pareto front was judged against, and says so."""
    from click.testing import CliRunner

    from bsnc.cli import main
    from bsnc.search.checkpoint import load_checkpoint, save_checkpoint
    from tests.test_decisions import CELLS

    path = tmp_path / "cells.bsn"
    path.write_text(CELLS)
    run = tmp_path / "run"
    args = ["train", str(path), "--data", "fake", "--budget", "50%", "--device", "cpu", "--run-dir", str(run), "-q"]
    assert CliRunner().invoke(main, [*args, "--epochs", "1"]).exit_code in (0, 3)
    state = load_checkpoint(run / "ckpt.pt")
    now = state["budget"]
    state["budget"] = 1.25 * now
    save_checkpoint(run / "ckpt.pt", state)
    result = CliRunner().invoke(main, [*args, "--epochs", "2", "--resume"])
    assert result.exit_code in (0, 3), result.output
    assert "--resume: this run's budget 50% was" in result.stderr and "it keeps" in result.stderr
    assert _metrics(run)[-1]["budget"] == 1.25 * now
