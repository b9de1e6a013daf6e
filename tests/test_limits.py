"""Limits of the language enforced early, and input files read safely (issue 12)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from bsnc.cli import main
from bsnc.errors import BsncError, SourceError
from bsnc.files import read_regular
from bsnc.lang import limits
from bsnc.lang.frontend import network_from_text
from bsnc.lang.parser import parse

TINY = """network t(C: int = 1) {
    input x : [4]
    output y : [4]
    x -> y : identity
}
"""


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.bsn"
    os.mkfifo(fifo)
    for command in (["check", str(fifo)], ["fmt", str(fifo)], ["compile", str(fifo)]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 1, result.output
        assert "not a regular file (a FIFO)" in result.stderr
        assert "Traceback" not in result.output


def test_device_is_refused_without_reading() -> None:
    for command in (["check", "/dev/zero"], ["fmt", "/dev/zero"]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 1
        assert "/dev/zero: not a regular file (a character device)" in result.stderr


def test_read_regular_caps_what_it_reads(tmp_path: Path) -> None:
    big = tmp_path / "big.bsn"
    big.write_bytes(b"# x\n" * 1000)
    assert read_regular(big, 4000) == b"# x\n" * 1000
    with pytest.raises(BsncError, match="4,000 bytes or more; the limit is 3,999"):
        read_regular(big, 3999)


def test_oversized_source_is_a_located_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "big.bsn"
    source.write_text(TINY + "# padding\n" * 200)
    monkeypatch.setattr("bsnc.lang.parser.MAX_SOURCE_BYTES", 1000)
    result = CliRunner().invoke(main, ["check", str(source)])
    assert result.exit_code == 1
    assert f"{source}:1:1: error: file is" in result.stderr and "the limit is 1,000" in result.stderr


def test_token_limit_is_checked_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_TOKENS", 50)
    text = "network t() {\n" + "    let a = 1\n" * 30 + "}\n"
    with pytest.raises(SourceError) as info:
        parse(text, "many.bsn")
    assert "more than 50 tokens" in info.value.message
    # the 51st token: 5 in `network t() {`, then 4 a line: `a` of line 13
    assert (info.value.span.line, info.value.span.column) == (13, 9)


def test_brace_depth_is_checked_before_parsing() -> None:
    text = "network t() {\n" + "if true {\n" * 40 + "}\n" * 41
    with pytest.raises(SourceError, match="blocks nested more than 32 deep") as info:
        parse(text, "deep.bsn")
    assert info.value.span.line == 33


def test_brackets_in_strings_and_comments_do_not_count() -> None:
    inside = "# " + "(" * 300 + "\n    let s = \"" + "[" * 300 + "\"\n    input x"
    text = TINY.replace("input x", inside)
    network_from_text(text)


def test_commented_statements_parse_in_linear_time() -> None:
    """The old comment placement was quadratic: 8,000 commented statements took 8 s."""
    body = "".join(f"    # layer {i}\n    layer l{i} : [4]  # trailing {i}\n" for i in range(8000))
    text = "network t() {\n    input x : [4]\n" + body + "    output y : [4]\n}\n"
    start = time.process_time()
    tree = parse(text, "commented.bsn")
    elapsed = time.process_time() - start
    network = tree.items[0]
    comments = [s for s in network.body if type(s).__name__ == "Comment"]
    assert len(comments) == 8000
    assert network.body[2].comment == "# trailing 0"
    assert elapsed < 60  # a generous ceiling against a quadratic return, not a speed goal


@pytest.mark.parametrize(("expr", "ok"), [
    ("2 ** 62", True), ("2 ** 63", False), ("(-2) ** 63", False), ("3 ** 39", True), ("3 ** 40", False),
    ("2 ** 1000000000", False), ("9223372036854775807", True), ("9223372036854775807 + 1", False),
])
def test_integer_bounds(expr: str, ok: bool) -> None:
    text = TINY.replace("input x", f"let v = {expr}\n    input x")
    if ok:
        network_from_text(text)
    else:
        with pytest.raises(SourceError, match="integer out of range"):
            network_from_text(text)


@pytest.mark.parametrize("value", ["10**30", "1" * 25, "-" + "9" * 20, "9223372036854775808"])
def test_define_integers_are_bounded(tmp_path: Path, value: str) -> None:
    source = tmp_path / "t.bsn"
    source.write_text(TINY)
    result = CliRunner().invoke(main, ["check", str(source), "-D", f"C={value}"])
    assert result.exit_code == 1
    assert f"-D C={value}: parameter 'C' is int" in result.stderr
    assert "Traceback" not in result.output


def test_python_override_is_bounded() -> None:
    from bsnc.errors import UsageError

    with pytest.raises(UsageError, match="out of range"):
        network_from_text(TINY, {"C": 2**70})


def test_ops_per_edge_is_bounded_before_unrolling() -> None:
    modules = "module m0(c) = relu >> relu\n" + "".join(
        f"module m{i}(c) = m{i - 1}(c) >> m{i - 1}(c)\n" for i in range(1, 30))
    text = modules + TINY.replace("identity", "m29(1)")
    start = time.process_time()
    with pytest.raises(SourceError, match="more than 1,000 primitives"):
        network_from_text(text)
    assert time.process_time() - start < 30  # 2**30 primitives would never finish


def test_post_op_chain_is_bounded() -> None:
    modules = "module m0(c) = relu >> relu\n" + "".join(
        f"module m{i}(c) = m{i - 1}(c) >> m{i - 1}(c)\n" for i in range(1, 12))
    text = modules + TINY.replace("output y : [4]", "output y : [4] post m11(1)")
    with pytest.raises(SourceError, match="more than 1,000 primitives"):
        network_from_text(text)


def test_layer_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bsnc.lang.expand.MAX_LAYERS", 10)
    text = TINY.replace("output y", "for i in 0..20 { layer h[i] : [4] }\n    output y")
    with pytest.raises(SourceError, match="more than 10 layers") as info:
        network_from_text(text)
    assert info.value.span.line == 3


def test_shipped_fabrics_are_far_below_the_limits() -> None:
    root = Path(__file__).resolve().parent.parent / "fabrics"
    for path in root.glob("*.bsn"):
        assert len(path.read_bytes()) < limits.MAX_SOURCE_BYTES // 100


@pytest.mark.parametrize("bounds", ["0..9223372036854775807", "-9223372036854775807..9223372036854775807",
                                    "0..10000000", "-9223372036854775807..0"])
def test_huge_loop_range_is_a_located_error(bounds: str) -> None:
    """len() of a range longer than sys.maxsize raised OverflowError."""
    text = TINY.replace("input x", f"for i in {bounds} {{ }}\n    input x")
    with pytest.raises(SourceError, match="loops unroll to more than 10,000,000 iterations") as info:
        network_from_text(text)
    assert info.value.span is not None and info.value.span.line == 2


def _with_lets(lets: str) -> str:
    return TINY.replace("input x", lets + "\n    input x")


@pytest.mark.parametrize(("lets", "message"), [
    # 26 doublings allocated 2 GB and 39 exhausted memory
    ('let s0 = "xxxxxxxxxxxxxxxx"\n' + "".join(f"    let s{i} = s{i - 1} + s{i - 1}\n" for i in range(1, 40)),
     "'\\+' makes a string of 131,072 characters; the limit is 100,000"),
    ('let s = "' + "x" * 100_001 + '"', "string of 100,001 characters; the limit is 100,000"),
    # shared lists: exponential as text (a message, an export), not in memory
    ("let a0 = [1]\n" + "".join(f"    let a{i} = [a{i - 1}, a{i - 1}]\n" for i in range(1, 40)),
     "list holds more than 100,000 values"),
    ("let a0 = []\n" + "".join(f"    let a{i} = (a{i - 1}, a{i - 1})\n" for i in range(1, 40)),
     "tuple holds more than 100,000 values"),
    ('let s = "' + "x" * 60_000 + '"\n    let l = [s, s]', "list holds more than 100,000 values"),
    # deep lists made Python's == and the printing of values recurse beyond its stack
    ("let a0 = [1]\n" + "".join(f"    let a{i} = [a{i - 1}]\n" for i in range(1, 3000)),
     "lists and tuples nested more than 100 deep"),
])
def test_values_are_bounded_when_made(lets: str, message: str) -> None:
    start = time.process_time()
    with pytest.raises(SourceError, match=message) as info:
        network_from_text(_with_lets(lets))
    assert info.value.span is not None
    assert time.process_time() - start < 10


def test_values_within_the_limits_are_accepted() -> None:
    lets = ('let s = "' + "x" * 50_000 + '"\n    let t = s + s\n    let n = len(t)\n'
            "    let a0 = [1]\n" + "".join(f"    let a{i} = [a{i - 1}, a{i - 1}]\n" for i in range(1, 16))
            + "    let m = len(a15)\n" + "    let d0 = [1]\n" + "".join(f"    let d{i} = [d{i - 1}]\n" for i in range(1, 100))
            + "    let e = d99 == d99")
    network_from_text(_with_lets(lets))


def test_string_override_is_bounded() -> None:
    from bsnc.errors import UsageError

    text = TINY.replace("C: int = 1", 'C: int = 1, s: str = "a"')
    with pytest.raises(UsageError, match=r"-D s=aaaa.*… \(100,001 characters\): parameter 's' is a string of 100,001"):
        network_from_text(text, {"s": "a" * 100_001})


def test_long_values_are_cut_in_messages() -> None:
    """A value quoted in a message is cut to 80 characters: a 3 MB padding string was printed whole."""
    big = "p" * 90_000
    text = TINY.replace("input x : [4]", "input x : [1, 8, 8]").replace(
        "x -> y : identity", f'x -> y : conv(4, padding="{big}") >> global_avgpool >> linear(4)')
    with pytest.raises(SourceError) as info:
        network_from_text(text)
    assert len(info.value.message) < 200
    assert '"' + "p" * 79 + '… (90,000 characters)' in info.value.message
    for bad in (f'let v = -"{big}"', f'for i in ["{big}"] {{ let z = 1 + i }}', f'let v = int([["{big}"]])'):
        with pytest.raises(SourceError) as info:
            network_from_text(_with_lets(bad))
        assert len(info.value.message) < 200
        assert all(len(note.message) < 200 for note in info.value.notes)


def test_huge_python_override_is_named_without_printing_it() -> None:
    """repr() of an int of over 4,300 digits raises ValueError: the message must not need it."""
    from bsnc.errors import UsageError

    with pytest.raises(UsageError, match=r"-D C=<an integer of 33,220 bits>: parameter 'C' is out of range"):
        network_from_text(TINY, {"C": 10**10000})
