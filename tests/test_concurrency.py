"""Run, sweep and output directories: one writer each, Ctrl-C of a sweep, and what an output
directory is made as (its mode, a file in the way)."""

from __future__ import annotations

import os
import signal
import stat
import threading
import time
from pathlib import Path

import pytest

from bsnc.files import DirectoryLock, OutputError
from bsnc.search import sweep
from bsnc.search.train import TrainConfig, train
from tests.test_train import TINY


def test_a_locked_directory_is_refused_until_released(tmp_path):
    held = DirectoryLock(tmp_path, "--run-dir run")
    with pytest.raises(OutputError, match="another bsnc process is writing"):
        DirectoryLock(tmp_path, "--run-dir run")
    held.release()
    DirectoryLock(tmp_path, "--run-dir run").release()


def _config(path: Path, run_dir: Path, **changes) -> TrainConfig:
    values = dict(file=str(path), data="fake", cost="flops", budget="20k", epochs=1, batch_size=32, lr=0.05,
                  path_lr=0.5, lam=2.0, seed=3, device="cpu", run_dir=str(run_dir), progress=False, quiet=True)
    values.update(changes)
    return TrainConfig(**values)


def test_training_refuses_a_run_directory_another_process_writes(tmp_path):
    tiny = tmp_path / "tiny.bsn"
    tiny.write_text(TINY)
    run = tmp_path / "run"
    run.mkdir()
    other = DirectoryLock(run, "another run")  # as a `bsnc train` still in its first epoch holds it
    with pytest.raises(OutputError, match="another bsnc process is writing"):
        train(_config(tiny, run))
    assert list(run.iterdir()) == []  # nothing of the refused run was written
    with pytest.raises(OutputError, match="another bsnc process is writing"):  # not "holds no ckpt.pt"
        train(_config(tiny, run, resume=True))
    other.release()
    train(_config(tiny, run))  # the run, once free, trains; and lets go of it when done
    DirectoryLock(run, "after").release()
    assert (run / "ckpt.pt").is_file()


def test_a_sweep_refuses_an_out_directory_another_sweep_writes(tmp_path):
    (tmp_path / "out").mkdir()
    other = DirectoryLock(tmp_path / "out", "another sweep")
    spec = sweep.SweepSpec(file=tmp_path / "x.bsn", defines={}, budgets=["10%"], seeds=[0], out=tmp_path / "out",
                           baseline=False)
    with pytest.raises(OutputError, match="another bsnc process is writing"):
        sweep.run_sweep(spec)
    other.release()


def test_ctrl_c_stops_a_sweep_and_its_running_training_and_starts_no_other(tmp_path):
    # a stand-in for `python -m bsnc train ...`: notes that it started, then waits for Ctrl-C
    fake = tmp_path / "fake-python"
    fake.write_text(f"#!/bin/sh\necho started >> {tmp_path}/started\n"
                    f"trap 'echo interrupted >> {tmp_path}/interrupted; exit 130' INT\n"
                    "i=0; while [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    spec = sweep.SweepSpec(file=tmp_path / "x.bsn", defines={}, budgets=["10%", "20%", "30%"], seeds=[0],
                           out=tmp_path / "out", baseline=False, jobs=1, python=str(fake))

    def press_ctrl_c() -> None:  # once the first training runs, as a user would
        deadline = time.monotonic() + 20
        while not (tmp_path / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGINT)  # a real signal wakes the main thread's wait

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(spec)
    assert (tmp_path / "started").read_text().splitlines() == ["started"]  # no further run started
    assert (tmp_path / "interrupted").read_text().splitlines() == ["interrupted"]  # it got the Ctrl-C
    # the interrupted run is no failure: the next sweep resumes it
    assert not any((tmp_path / "out" / "runs").glob(f"*/{sweep.STATUS_FILE}"))
    sweep.DirectoryLock(tmp_path / "out", "next sweep").release()  # and the sweep let go of --out


def test_a_replaced_output_directory_gets_the_mode_mkdir_gives_or_keeps_its_own(tmp_path):
    from bsnc.files import replace_directory, staging_directory

    old = os.umask(0o022)
    try:
        target = tmp_path / "export"
        staging = staging_directory(target)
        replace_directory(staging, target)
        assert stat.S_IMODE(target.stat().st_mode) == 0o755  # not mkdtemp's 0700
        target.chmod(0o750)
        staging = staging_directory(target)
        replace_directory(staging, target)
        assert stat.S_IMODE(target.stat().st_mode) == 0o750
    finally:
        os.umask(old)


def test_an_output_directory_under_a_file_names_the_file(tmp_path):
    from bsnc.files import staging_directory

    (tmp_path / "ckpt.pt").write_text("")
    with pytest.raises(OutputError, match=r"ckpt.pt/x: cannot write there \(.*ckpt.pt is not a directory\)"):
        staging_directory(tmp_path / "ckpt.pt" / "x")
