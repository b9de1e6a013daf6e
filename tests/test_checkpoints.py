"""Checkpoints with the right format but the wrong content: resume, export and draw --probs all
refuse them with bsnc's words, never a traceback (issue 12)."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from click.testing import CliRunner

from bsnc.cli import main
from bsnc.search.train import TrainConfig, train

TINY = """network tiny(C: int = 4) {
    input x : [3, 8, 8]
    layer a : [C, 8, 8] post relu
    output y : [10]
    x -> a : conv(C)
    fixed x -> a as skip : conv(C, k=1)
    a -> y : global_avgpool >> linear(10)
}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("ckpt")
    source = root / "tiny.bsn"
    source.write_text(TINY)
    run = root / "run"
    train(TrainConfig(file=str(source), data="fake", budget="1M", epochs=1, batch_size=32, device="cpu",
                      run_dir=str(run), progress=False))
    return source, run, torch.load(run / "ckpt.pt", weights_only=True)


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/bsnc_checkpoint_pwned",))


def _without(key: str) -> Callable[[dict], dict]:
    return lambda s: {k: v for k, v in s.items() if k != key}


def _wrong_shape(s: dict) -> dict:
    model = dict(s["model"])
    name = next(k for k in model if k.endswith("weight"))
    model[name] = torch.zeros(3, 3)
    return {**s, "model": model}


def _logits(s: dict) -> dict:
    return {**s, "model": {**s["model"], "gate_logits": torch.zeros(7)}}


# damage -> (how to make it, the message of each command that must refuse it)
DAMAGES: dict[str, tuple[Callable[[dict], dict], dict[str, str]]] = {
    "no model": (_without("model"), dict.fromkeys(("resume", "export", "draw"), "it has no 'model' entry")),
    "model a list": (lambda s: {**s, "model": [1, 2]},
                     dict.fromkeys(("resume", "export", "draw"), "its 'model' entry is a list")),
    "weight a string": (lambda s: {**s, "model": {**s["model"], "gate_logits": "x"}},
                        dict.fromkeys(("resume", "export", "draw"), "weight 'gate_logits' is not a tensor")),
    "wrong shape": (_wrong_shape, dict.fromkeys(("resume", "export"), "its weights do not fit network tiny")),
    "history of strings": (lambda s: {**s, "history": ["a"]},
                           dict.fromkeys(("resume", "export", "draw"), "history is not a list of epoch records")),
    "epoch a string": (lambda s: {**s, "epoch": "3"},
                       dict.fromkeys(("resume", "export", "draw"), "its 'epoch' entry is a str")),
    "logits of another size": (_logits, {"resume": "its weights do not fit network tiny",
                                         "export": "its weights do not fit network tiny",
                                         "draw": "(7,) edge logits for the 2 stochastic edges of tiny"}),
    "budget a string": (lambda s: {**s, "budget": "x"},
                        dict.fromkeys(("resume", "export", "draw"), "its 'budget' entry is 'x', expected a cost")),
    "pareto a string": (lambda s: {**s, "pareto": "abc"},
                        dict.fromkeys(("resume", "export", "draw"), "its 'pareto' entry is a str")),
    "pareto point without an epoch": (lambda s: {**s, "pareto": [{"epoch": "x"}]},
                                      dict.fromkeys(("resume", "export", "draw"), "point 1: 'epoch' is 'x'")),
    "epoch record damaged": (lambda s: {**s, "history": [{**s["history"][0], "val_acc": [1]}]},
                             dict.fromkeys(("resume", "export", "draw"), "epoch record 1: 'val_acc' is [1]")),
    "setting of another type": (lambda s: {**s, "config": {**s["config"], "primitives": "x"}},
                                dict.fromkeys(("resume", "export", "draw"), "setting 'primitives' is 'x'")),
    # a checkpoint may name any file as its source: export says it is not the network, and never
    # quotes a foreign file's lines
    "source elsewhere": (lambda s: {**s, "config": {**s["config"], "file": "/etc/passwd"}},
                         {"export": "records /etc/passwd as the source it was trained from, but that file is not "
                                    "a .bsn network"}),
}


def _write(run: Path, state: Any) -> None:
    for name in ("ckpt.pt", "best.pt"):
        (run / name).unlink(missing_ok=True)
    torch.save(state, run / "ckpt.pt")


def _commands(source: Path, run: Path, out: Path) -> dict[str, list[str]]:
    return {
        "resume": ["train", str(source), "--data", "fake", "--budget", "1M", "--epochs", "1", "--batch-size", "32",
                   "--device", "cpu", "--run-dir", str(run), "--quiet", "--resume"],
        "export": ["export", str(run / "ckpt.pt"), "--prune", "-o", str(out)],
        "draw": ["draw", str(source), "--probs", str(run), "-o", str(out / "d")],
    }


@pytest.mark.parametrize("damage", DAMAGES, ids=list(DAMAGES))
def test_damaged_checkpoint_is_refused_everywhere(trained, tmp_path: Path, damage: str) -> None:
    source, run, state = trained
    copy = tmp_path / "run"
    copy.mkdir()
    (copy / "config.json").write_bytes((run / "config.json").read_bytes())
    make, expected = DAMAGES[damage]
    _write(copy, make(state))
    for name, args in _commands(source, copy, tmp_path / "out").items():
        if name not in expected:
            continue
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1, (name, result.output, result.exception)
        assert result.stderr.startswith("error: "), (name, result.output)
        assert expected[name] in result.stderr, (name, result.stderr)
        assert "Traceback" not in result.output and "root:" not in result.output


def test_unsafe_checkpoint_is_explained_in_bsncs_words(trained, tmp_path: Path) -> None:
    source, run, state = trained
    marker = Path("/tmp/bsnc_checkpoint_pwned")
    marker.unlink(missing_ok=True)
    copy = tmp_path / "run"
    copy.mkdir()
    torch.save({**state, "evil": _Payload()}, copy / "ckpt.pt", pickle_module=pickle)
    for name, args in _commands(source, copy, tmp_path / "out").items():
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1, (name, result.output)
        assert "refused: it holds Python objects other than tensors" in result.stderr
        assert "weights_only" not in result.stderr and "Traceback" not in result.output
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"hello\n", b'{"epoch": 1}\n', b""], ids=["text", "json", "empty"])
def test_a_file_torch_did_not_write_is_no_checkpoint(trained, tmp_path: Path, content: bytes) -> None:
    """A text file read as "KeyError: 105"; metrics.jsonl as holding unsafe Python objects."""
    source, run, _ = trained
    copy = tmp_path / "run"
    copy.mkdir()
    (copy / "ckpt.pt").write_bytes(content)
    for name, args in _commands(source, copy, tmp_path / "out").items():
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1, (name, result.output)
        assert "ckpt.pt: not a checkpoint (a file torch.save wrote, as bsnc does)" in result.stderr, (name, result.stderr)


def test_a_run_dir_that_is_no_directory_says_what_it_is(trained, tmp_path: Path) -> None:
    source, _, _ = trained
    result = CliRunner().invoke(main, ["train", str(source), "--data", "fake", "--budget", "1M", "--epochs", "1",
                                       "--device", "cpu", "--run-dir", "/dev/null", "--quiet"])
    assert result.exit_code == 1 and "--run-dir /dev/null: it is a character device, not a directory" in result.stderr


def test_use_it_hint_is_python_that_names_the_exported_files(trained, tmp_path: Path) -> None:
    import ast

    _, run, _ = trained
    out = tmp_path / "it's a \"dir\"; rm -rf ~"
    result = CliRunner().invoke(main, ["export", str(run), "--prune", "-o", str(out)])
    assert result.exit_code == 0, result.output
    hint = next(line for line in result.stdout.splitlines() if line.startswith("use it: "))
    calls = [node for node in ast.walk(ast.parse(hint.removeprefix("use it: "))) if isinstance(node, ast.Call)]
    literals = [arg.value for call in calls for arg in call.args if isinstance(arg, ast.Constant)]
    assert literals == [str(out / "tiny_pruned.bsn"), str(out / "tiny_pruned.pt")]


def test_damaged_config_json_is_refused_by_resume(trained, tmp_path: Path) -> None:
    source, run, state = trained
    copy = tmp_path / "run"
    copy.mkdir()
    torch.save(state, copy / "ckpt.pt")
    (copy / "config.json").write_text('{"config": [], "source_hash": 5}')
    result = CliRunner().invoke(main, _commands(source, copy, tmp_path / "out")["resume"])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"error: {copy / 'config.json'}: damaged run settings: ")
    assert "Traceback" not in result.output


@pytest.mark.parametrize("name, listed", [("ckpt.pt", "(ckpt.pt or best.pt)"), ("best.pt", "(best.pt or ckpt.pt)"),
                                          ("pareto/epoch-001.pt", "(pareto/epoch-001.pt, best.pt or ckpt.pt)")])
def test_a_run_without_checkpoint_names_each_file_once(tmp_path: Path, name: str, listed: str) -> None:
    from bsnc.errors import BsncError
    from bsnc.search.checkpoint import find_checkpoint

    with pytest.raises(BsncError, match=re.escape(f"holds no checkpoint {listed}")):
        find_checkpoint(tmp_path, name)
