"""No traceback, no injection, nothing half-written: output paths, streams, exports (issue 12)."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bsnc.cli import main
from bsnc.files import atomic_write_text, remove_leftovers, remove_staging
from bsnc.ops import printable

ROOT = Path(__file__).resolve().parent.parent
TINY = """network t() {
    input x : [4]
    output y : [4]
    x -> y : linear(4)
}
"""
UNFORMATTED = "network t() {\ninput x : [4]\n  output y : [4]\n x -> y : linear(4)\n}\n"


def _bsnc(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bsnc", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=120)


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "t.bsn"
    path.write_text(TINY)
    return path


@pytest.mark.parametrize("command", [
    ["compile", "{src}", "-o", "{missing}/x.py"],
    ["latency-table", "{src}", "--samples", "0", "--repeats", "1", "-o", "{missing}/t.json"],
    ["compile", "{src}", "-o", "{readonly}/x.py"],
    ["draw", "{src}", "-o", "{readonly}/sub/pic"],
])
def test_unwritable_output_paths_are_errors(tmp_path: Path, tiny: Path, command: list[str]) -> None:
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o555)
    if "{readonly}" in " ".join(command) and os.access(readonly, os.W_OK):
        pytest.skip("running as a user that ignores permissions")  # root in a container
    args = [c.format(src=tiny, missing=tmp_path / "nope", readonly=readonly) for c in command]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "cannot" in result.stderr and "Traceback" not in result.output


def test_output_into_missing_directory_names_the_file(tiny: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["compile", str(tiny), "-o", str(tmp_path / "nope" / "x.py")])
    assert result.exit_code == 1
    assert result.stderr == f"error: {tmp_path / 'nope' / 'x.py'}: cannot write it (No such file or directory)\n"


def test_full_stdout_is_an_error_not_a_traceback(tiny: Path) -> None:
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "bsnc", "check", str(tiny)], stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr == "error: cannot write the output (no space left on the device)\n"


def test_full_disk_is_an_error(tiny: Path) -> None:
    result = CliRunner().invoke(main, ["compile", str(tiny), "-o", "/dev/full"])
    assert result.exit_code == 1
    assert "/dev/full: cannot write it" in result.stderr


def test_ascii_terminal_gets_escapes(tmp_path: Path) -> None:
    source = tmp_path / "résumé.bsn"
    source.write_text(TINY.replace("x -> y : linear(4)", "x -> y : linear(4)\n    y -> z : relu"))
    done = _bsnc("check", str(source), env={"PYTHONIOENCODING": "ascii"})
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "undeclared layer 'z'" in done.stderr
    # print() (the training summary's Γ) goes through the streams the CLI makes tolerant
    code = "from bsnc.cli import _tolerant_streams; _tolerant_streams(); print('H(\u0393) r\xe9sum\xe9')"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60,
                           env={**os.environ, "PYTHONIOENCODING": "ascii"})
    assert shown.returncode == 0 and shown.stdout == b"H(\\u0393) r\\xe9sum\\xe9\n"


def test_non_utf8_file_name(tmp_path: Path) -> None:
    name = os.fsdecode(b"bad\xff.bsn")
    (tmp_path / name).write_text(TINY)
    done = subprocess.run([sys.executable, "-m", "bsnc", "compile", name, "-o", "out.py"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    code = (tmp_path / "out.py").read_text(encoding="utf-8")
    assert "'bad\\udcff.bsn'" in code  # through repr(), never the raw bytes
    compile(code, "out.py", "exec")


def test_fmt_write_keeps_symlink_and_mode(tmp_path: Path) -> None:
    target = tmp_path / "real.bsn"
    target.write_text(UNFORMATTED)
    target.chmod(0o640)
    link = tmp_path / "link.bsn"
    link.symlink_to(target)
    result = CliRunner().invoke(main, ["fmt", "-w", str(link)])
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == TINY
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_fmt_write_refuses_read_only_file(tmp_path: Path) -> None:
    target = tmp_path / "ro.bsn"
    target.write_text(UNFORMATTED)
    target.chmod(0o444)
    if os.access(target, os.W_OK):
        pytest.skip("running as a user that ignores permissions")
    result = CliRunner().invoke(main, ["fmt", "-w", str(target)])
    assert result.exit_code == 1
    assert "read-only" in result.stderr
    assert target.read_text() == UNFORMATTED


def test_fmt_check_hint_is_shell_quoted(tmp_path: Path) -> None:
    target = tmp_path / "a b;rm -rf x.bsn"
    target.write_text(UNFORMATTED)
    result = CliRunner().invoke(main, ["fmt", "--check", str(target)])
    assert result.exit_code == 1
    assert f"run `bsnc fmt -w '{target}'`" in result.stderr


def test_leftover_temporary_files_are_removed(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "keep.json", "{}")
    stale = tmp_path / ".ckpt.pt.abcd1234.tmp"
    stale.write_text("half")
    staging = tmp_path / ".bsnc-staging-export.x1y2z3"
    staging.mkdir()
    (staging / "a.bsn").write_text("half")
    others = tmp_path / ".bsnc-staging-export2.x1y2z3"  # another directory's build: left alone
    others.mkdir()
    hidden = tmp_path / ".hidden"
    hidden.write_text("mine")
    assert remove_leftovers(tmp_path) == [stale]
    assert remove_staging(tmp_path / "export") == [staging]
    assert (tmp_path / "keep.json").exists() and hidden.exists() and others.exists()


@pytest.mark.parametrize("text", ["a\nimport os", "a\rimport os", "a\x0bb", "a\u2028b", "a\x85b",
                                  os.fsdecode(b"a\xffb")])
def test_printable_never_breaks_a_line(text: str) -> None:
    shown = printable(text)
    assert shown.isprintable() and len(shown.splitlines()) == 1
    assert printable("plain/path-1.bsn") == "plain/path-1.bsn"


def test_draw_output_is_never_an_option(tiny: Path, tmp_path: Path) -> None:
    if subprocess.run(["sh", "-c", "command -v dot"], capture_output=True).returncode:
        pytest.skip("Graphviz is not installed")
    (tmp_path / "-o").mkdir()
    result = CliRunner().invoke(main, ["draw", str(tiny), "-o", "-o/pic"], catch_exceptions=False) \
        if False else None
    done = _bsnc("draw", str(tiny), "-o", "-o/pic", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "-o" / "pic.svg").stat().st_size > 0
    assert result is None


@pytest.mark.parametrize("option", ["--lambda", "--lr", "--path-lr", "--inconsistent-penalty", "--momentum",
                                    "--weight-decay", "--entropy-weight", "--budget-use", "--idle-penalty"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e39"])
def test_every_real_train_option_refuses_nan_infinities_and_float32_overflow(tmp_path: Path, tiny: Path, option: str,
                                                                             value: str) -> None:
    """On the command line (click's FloatRange lets a NaN through) and through the Python API
    (1e39 was a RuntimeError inside torch's optimiser; a NaN momentum, a NaN loss blamed on --lr)."""
    from bsnc.errors import UsageError
    from bsnc.search.train import TrainConfig, validate_config

    args = ["train", str(tiny), "--data", "fake", "--epochs", "1", "--budget", "1k", "--device", "cpu",
            "--run-dir", str(tmp_path / "run"), "--quiet", option, value]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}': " in result.stderr
    if value == "nan":  # in every range by click's comparisons
        assert "'nan' is not a finite number of magnitude at most 1e+30" in result.stderr
    assert not (tmp_path / "run").exists()
    field = {"--lambda": "lam"}.get(option, option[2:].replace("-", "_"))
    config = TrainConfig(file=str(tiny), data="fake", budget="1k", run_dir=str(tmp_path / "run"), **{field: float(value)})
    with pytest.raises(UsageError, match=f"^{re.escape(option)} {re.escape(str(float(value)))}: expected "):
        validate_config(config)


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--budget", "1e999", "--budget 1e999: expected a finite budget"),
    ("--batch-size", "99999999999", "--batch-size 99999999999: expected an integer from 1 to 16,777,216"),
    ("--seed", "99999999999999999999999", "--seed 99999999999999999999999: expected an integer from 0"),
    ("--seed", "-1", "--seed -1: expected an integer from 0"),
    ("--workers", "100000", "--workers 100000: expected an integer from 0 to 256"),
    ("--epochs", "10000000000000000000000", "--epochs 10000000000000000000000: expected an integer from 1"),
])
def test_numeric_train_options_are_checked(tmp_path: Path, tiny: Path, option: str, value: str, message: str) -> None:
    args = ["train", str(tiny), "--data", "fake", "--epochs", "1", "--budget", "1k", "--device", "cpu",
            "--run-dir", str(tmp_path / "run"), "--quiet", option, value]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert f"error: {message}" in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("variables, message", [
    ({"WORLD_SIZE": "abc"}, "environment variable WORLD_SIZE='abc': expected a whole number, at least 1"),
    ({"WORLD_SIZE": "0"}, "environment variable WORLD_SIZE='0': expected a whole number, at least 1"),
    ({"RANK": "x"}, "environment variable RANK='x': expected a whole number, at least 0"),
    ({"LOCAL_RANK": "-1"}, "environment variable LOCAL_RANK='-1': expected a whole number, at least 0"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, "environment variable RANK=2: expected less than WORLD_SIZE=2"),
    ({"WORLD_SIZE": "2"}, "environment variable WORLD_SIZE=2 asks for 2 processes, but RANK, MASTER_ADDR and "
                          "MASTER_PORT are not set: launch several processes with torchrun"),
    ({"WORLD_SIZE": "2", "RANK": "1", "MASTER_ADDR": "127.0.0.1"}, "but MASTER_PORT is not set"),
    ({"BSNC_DENSE_THRESHOLD": "abc"},
     "environment variable BSNC_DENSE_THRESHOLD='abc': expected a share from 0 to 1, never or always"),
    ({"BSNC_DENSE_THRESHOLD": "nan"}, "environment variable BSNC_DENSE_THRESHOLD='nan': expected a share"),
])
def test_environment_variables_are_checked_before_the_run_starts(tmp_path: Path, tiny: Path, variables: dict[str, str],
                                                                 message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """torchrun's variables and BSNC_DENSE_THRESHOLD, set by hand: an error naming the variable,
    before the run directory is made (both were tracebacks, the directory left behind)."""
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "BSNC_DENSE_THRESHOLD"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["train", str(tiny), "--data", "fake", "--epochs", "1", "--budget", "1k",
                                       "--device", "cpu", "--run-dir", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 1, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_keep_threshold_nan_is_refused(tiny: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["draw", str(tiny), "--keep-threshold", "nan", "-o", str(tmp_path / "d")])
    assert result.exit_code == 2
    assert "Invalid value for '--keep-threshold': 'nan' is not a finite number" in result.stderr
    result = CliRunner().invoke(main, ["export", str(tmp_path), "--prune", "--keep-threshold", "nan"])
    assert result.exit_code == 2, "refused as an option, before the run is read"
    assert "Invalid value for '--keep-threshold': 'nan' is not a finite number" in result.stderr


BIG = """network big() {
    input x : [65536]
    layer h : [65536]
    output y : [10]
    x -> h : linear(65536)
    fixed x -> h as skip : identity
    h -> y : linear(10)
}
"""


def test_network_too_large_for_memory_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bsnc
    from bsnc.costs import memory
    from bsnc.errors import BsncError

    source = tmp_path / "big.bsn"
    source.write_text(BIG)
    monkeypatch.setattr(memory, "available_bytes", lambda device: 8 * 2**30)
    with pytest.raises(BsncError, match=r"network big does not fit in the memory of cpu: it needs at least 16\.0 GiB "
                                        r"\(parameters 16\.0 GiB, activations at batch size 0 0 bytes\) and 8\.0 GiB"):
        bsnc.load(source)
    result = CliRunner().invoke(main, ["train", str(source), "--data", "fake", "--budget", "1k", "--device", "cpu",
                                       "--run-dir", str(tmp_path / "run"), "--batch-size", "1024"])
    assert result.exit_code == 1
    assert "(parameters, gradients and momentum 48.0 GiB, activations at batch size 1024 1.0 GiB)" in result.stderr
    assert not (tmp_path / "run").exists()


def test_quoted_source_lines_are_counted_as_the_lexer_counts_and_never_emit_control_characters() -> None:
    from bsnc.errors import SourceError
    from bsnc.lang.frontend import network_from_text

    text = "# a\x0cb\r\nnetwork t() {\r\n  input x : [4]\x1b[31m\r\n  output y : [4]\r\n}\r\n"
    with pytest.raises(SourceError) as info:
        network_from_text(text, name="ev\nil.bsn")
    rendered = info.value.render()
    assert rendered.splitlines() == [
        "ev\\nil.bsn:3:16: error: unexpected character '\\x1b'",
        "   3 |   input x : [4]?[31m",
        "     |                ^",
    ]


def test_config_file_that_is_a_fifo_is_refused(tmp_path: Path, tiny: Path) -> None:
    fifo = tmp_path / "cfg.toml"
    os.mkfifo(fifo)
    result = CliRunner().invoke(main, ["train", str(tiny), "--config", str(fifo)])
    assert result.exit_code == 2
    assert "not a regular file (a FIFO)" in result.output


def test_latency_table_counts_are_bounded(tiny: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["latency-table", str(tiny), "--repeats", "100000000000",
                                       "-o", str(tmp_path / "t.json")])
    assert result.exit_code == 1
    assert "--repeats 100000000000: expected an integer from 1 to 1,000,000" in result.stderr
    assert not (tmp_path / "t.json").exists()


def test_latency_table_samples_of_one_is_refused_before_timing_and_bars_stay_off_a_terminal(tiny: Path,
                                                                                           tmp_path: Path) -> None:
    """--samples 1 wrote the table, then failed its check (a correlation needs two); the bars
    were printed into a redirected stderr."""
    result = CliRunner().invoke(main, ["latency-table", str(tiny), "--samples", "1", "-o", str(tmp_path / "t.json")])
    assert result.exit_code == 2
    assert "Invalid value for '--samples': 1: expected 0 (no check) or at least 2" in result.stderr
    assert not (tmp_path / "t.json").exists()
    done = _bsnc("latency-table", str(tiny), "--samples", "2", "--repeats", "1", "-o", str(tmp_path / "t.json"))
    assert done.returncode == 0, done.stderr
    assert "timing edges" not in done.stderr and "checking the table" not in done.stderr


@pytest.mark.parametrize("stem", ["", "figures/.."])
def test_draw_output_must_end_in_a_name(tiny: Path, tmp_path: Path, stem: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """-o "" was a ValueError traceback; -o dir/.. wrote dir/...dot and its siblings."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["draw", str(tiny), "-o", stem])
    assert result.exit_code == 2
    assert "expected a path ending in a file name (without suffix)" in result.stderr
    assert not list(tmp_path.rglob("*.dot"))


def test_a_long_source_line_is_quoted_as_a_window_around_the_error() -> None:
    from bsnc.errors import SourceError
    from bsnc.lang.frontend import network_from_text

    text = "network t() {\n    let a = " + "1 + " * 5000 + "@\n}\n"
    with pytest.raises(SourceError) as info:
        network_from_text(text, name="long.bsn")
    head, quoted, caret = info.value.render().splitlines()
    assert head == "long.bsn:2:20013: error: unexpected character '@'"
    assert len(quoted) < 220 and quoted.startswith("   2 | …") and quoted.endswith("1 + @")
    assert caret.index("^") == quoted.index("@") and caret.count("^") == 1


def test_staging_leftovers_of_one_target_spare_a_neighbours(tmp_path):
    from bsnc.files import remove_staging, staging_directory

    mine, neighbours = staging_directory(tmp_path / "out"), staging_directory(tmp_path / "out.v2")
    assert remove_staging(tmp_path / "out") == [mine]
    assert not mine.exists() and neighbours.is_dir()


def test_a_fifo_where_bsnc_keeps_its_records_is_an_error_never_a_hang(tmp_path: Path) -> None:
    from bsnc.files import OutputError
    from bsnc.search.checkpoint import save_checkpoint
    from tests.test_checkpoints import TINY as IMAGES

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    os.mkfifo(tmp_path / "ckpt.pt")

    def hung(signum, frame):
        raise TimeoutError("blocked opening a FIFO")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    try:
        # nobody reads it: writing through would block for ever
        with pytest.raises(OutputError, match="it is a FIFO that no process is reading"):
            atomic_write_text(fifo, "x")
        # bsnc's own records are never written through a FIFO or a device
        with pytest.raises(OutputError, match=r"ckpt.pt: cannot write it \(it is a FIFO; expected a regular file"):
            save_checkpoint(tmp_path / "ckpt.pt", {})
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    # a run whose metrics.jsonl became a FIFO: resuming it says so, before training (it hung in atomic_open)
    source = tmp_path / "i.bsn"
    source.write_text(IMAGES)
    run = tmp_path / "run"
    args = ["train", str(source), "--data", "fake", "--budget", "1M", "--batch-size", "32", "--device", "cpu",
            "--run-dir", str(run), "-q"]
    assert _bsnc(*args, "--epochs", "1").returncode == 0
    (run / "metrics.jsonl").unlink()
    os.mkfifo(run / "metrics.jsonl")
    resumed = _bsnc(*args, "--epochs", "2", "--resume")
    assert resumed.returncode == 1, resumed.stderr
    assert "metrics.jsonl is a FIFO, not a file this run can keep its records in; remove it" in resumed.stderr
    assert "Traceback" not in resumed.stderr


def test_a_fifo_with_a_reader_is_written_through(tiny: Path) -> None:
    # -o /dev/stdout into a pipe: /dev/stdout links to a pipe that has no path of its own
    done = subprocess.run([sys.executable, "-m", "bsnc", "compile", str(tiny), "-o", "/dev/stdout"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("# Generated by bsnc")


@pytest.mark.parametrize("make", [os.mkfifo, os.mkdir])
def test_an_unusable_ledger_does_not_fail_a_write(tmp_path: Path, tiny: Path, make) -> None:
    # the ledger is bookkeeping: the output is written, the command succeeds and says why a
    # later overwrite will ask for --force (a FIFO hung; a directory made the write exit 1)
    make(tmp_path / ".bsnc-written.json")
    here = {"PYTHONPATH": str(ROOT)}  # this checkout, whatever the working directory
    done = _bsnc("compile", str(tiny), "-o", "m.py", cwd=tmp_path, env=here)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "m.py").read_text().startswith("# Generated by bsnc")
    assert done.stderr.startswith("warning: .bsnc-written.json: cannot write it (it is a")
    assert "wrote m.py all the same (a later overwrite will need --force)" in done.stderr
    again = _bsnc("compile", str(tiny), "-o", "m.py", cwd=tmp_path, env=here)
    assert again.returncode == 1 and "pass --force to overwrite" in again.stderr


@pytest.mark.parametrize("name", ["metrics.jsonl", "config.json", "pareto.json"])
def test_a_fifo_among_a_runs_files_is_refused_before_training(tmp_path: Path, tiny: Path, name: str) -> None:
    """Refused when the run directory is prepared, not after an epoch of work (or never: a
    FIFO without a reader blocked the write)."""
    run = tmp_path / "run"
    run.mkdir()
    os.mkfifo(run / name)
    result = _bsnc("train", str(tiny), "--data", "fake", "--epochs", "1", "--budget", "1k", "--device", "cpu",
                   "--run-dir", str(run), "-q")
    assert result.returncode == 1, result.stderr
    assert f"{name} is a FIFO, not a file this run can keep its records in; remove it" in result.stderr
    assert not (run / "ckpt.pt").exists()


@pytest.mark.parametrize(("logger", "make", "expected"), [
    ("csv", os.mkfifo, "metrics.csv is a FIFO, not a file --logger csv can write"),
    ("csv", os.mkdir, "metrics.csv is a directory, not a file --logger csv can write"),
    ("tensorboard", lambda path: path.write_text(""), "tensorboard is a file, not the directory --logger tensorboard"),
])
def test_a_loggers_path_of_the_wrong_kind_is_refused_before_training(tmp_path: Path, tiny: Path, logger: str,
                                                                     make, expected: str) -> None:
    """A FIFO metrics.csv failed the run after its first epoch; a file named tensorboard said
    only "File exists"."""
    run = tmp_path / "run"
    run.mkdir()
    make(run / ("metrics.csv" if logger == "csv" else "tensorboard"))
    result = _bsnc("train", str(tiny), "--data", "fake", "--epochs", "1", "--budget", "1k", "--device", "cpu",
                   "--run-dir", str(run), "--logger", logger, "-q")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert expected in result.stderr and "remove it" in result.stderr
    assert not (run / "ckpt.pt").exists() and not (run / "config.json").exists()
