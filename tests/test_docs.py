"""Every code block of docs/*.md runs here, one test per block (id ``FILE.md:LINE``, the line of
the opening fence), so the documentation cannot drift from what bsnc does.

How a block is tagged (the words after the opening ```), and what its test does:

``bsn``
    A whole `.bsn` file. It is written to a temporary directory beside copies of `fabrics/*.bsn`
    (so ``import "cnf.bsn"`` works) and loaded with ``bsnc.frontend.load_network``: parsed,
    expanded and checked, exactly as ``bsnc check`` does. Words the tag may carry:
    ``define=NAME=VALUE`` (a -D override, repeatable), ``save=PATH`` (also write the block to the
    document's working directory, for the commands after it), ``file=PATH`` (the block must equal
    that file of the repository, e.g. the tutorial's final network).
``bsn fragment``
    A piece of a file, only parsed (``bsnc.parser.parse``). Text that does not start with
    ``import``, ``module`` or ``network`` is a piece of a network's body and is parsed inside
    ``network fragment() { ... }``.
``bsn error``
    A whole file that bsnc must reject with a located error (never a traceback). When the next
    block is ``text``, the rendered error must equal it; the file is called ``example.bsn``
    unless the tag says ``name=OTHER.bsn``.
``console``
    A shell session: ``$ `` starts a command (a trailing ``\\`` continues it on the next line);
    the lines after it, up to the next ``$ ``, are its expected output. Output is compared line by
    line; ``...`` alone on a line matches any number of lines, and ``...`` inside a line matches
    any text. A command shown without output is run but its output is not compared. A command
    ending in ``# exits N`` must exit with status N; every other command must exit 0.
``sh``
    Commands without prompts or outputs (one per line, ``\\`` continues): each must exit 0.
``python``
    Executed with ``exec``, each block in a fresh namespace (files it needs come from earlier
    blocks: a run directory, an export).
``toml``, ``json`` (with ``save=PATH``)
    A file the commands use: parsed, then written to the document's working directory.
``text``
    Output or plain text; not run (see ``bsn error``).

Commands and Python blocks of one document share a working directory, a temporary copy of
``fabrics/`` and ``docs/tutorial/``, and run in document order: each test first runs the earlier
blocks of its document that have not run yet in this process, so any one test can run alone.
``bsnc ...`` commands run in this process through click's ``CliRunner`` (fast: no interpreter
start-up); any other command (``torchrun``, pipes, redirections, ``VAR=value`` prefixes) runs in
``bash -c`` with the virtualenv's ``bin`` first on ``PATH`` and ``OMP_NUM_THREADS=1``.

A ``console``, ``sh`` or ``python`` tag may also name hardware: ``cuda``, ``mps`` or ``gpus=N``
(N CUDA devices). Such blocks are skipped, visibly, on machines without it.

Further tests: every fence has one of the tags above, every relative link and #anchor between
the documents resolves, docs/cli.md is what docs/gen_cli_reference.py generates, and
language.md documents every primitive of the registry with all its arguments, every function and
every keyword.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import tomllib
import torch
from click.testing import CliRunner

from bsnc.cli import main
from bsnc.errors import BsncError
from bsnc.lang.frontend import load_network
from bsnc.lang.parser import parse

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BIN = Path(sys.executable).parent
KNOWN_TAGS = {"bsn", "console", "sh", "python", "toml", "json", "text"}
BSN_KINDS = {"fragment", "error"}
HARDWARE = {"cuda", "mps"}
RUNNABLE = {"console", "sh", "python"}
TOP_LEVEL = re.compile(r"^\s*(import|module|network)\b", re.MULTILINE)
EXITS = re.compile(r"\s+#\s*exits\s+(\d+)\s*$")
SHELL_SYNTAX = re.compile(r"[|<>;&`]|\$\(|^\s*\w+=")


# --- reading the documents ------------------------------------------------------------------------


@dataclass
class Block:
    doc: Path
    line: int  # of the opening fence, 1-based
    lang: str
    words: tuple[str, ...]  # the rest of the info string
    text: str

    @property
    def id(self) -> str:
        return f"{self.doc.name}:{self.line}"

    @property
    def flags(self) -> set[str]:
        return {w for w in self.words if "=" not in w}

    def options(self, key: str) -> list[str]:
        return [w.split("=", 1)[1] for w in self.words if w.startswith(key + "=")]

    def option(self, key: str) -> str | None:
        values = self.options(key)
        return values[-1] if values else None


def read_blocks(doc: Path) -> list[Block]:
    blocks: list[Block] = []
    lines = doc.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = re.match(r"^(\s*)(`{3,}|~{3,})(.*)$", lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, info = opening.groups()
        words = info.split()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not re.match(rf"^\s*{re.escape(fence)}\s*$", lines[j]):
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j])
            j += 1
        if j == len(lines):
            raise AssertionError(f"{doc.name}:{i + 1}: the code block is never closed")
        blocks.append(Block(doc, i + 1, words[0] if words else "", tuple(words[1:]), "\n".join(body) + "\n"))
        i = j + 1
    return blocks


DOC_FILES = sorted(DOCS.glob("*.md"))
ALL_BLOCKS = [b for doc in DOC_FILES for b in read_blocks(doc)]
TESTED = [b for b in ALL_BLOCKS if b.lang in KNOWN_TAGS - {"text"}]


def _following(block: Block) -> Block | None:
    blocks = [b for b in ALL_BLOCKS if b.doc == block.doc]
    later = [b for b in blocks if b.line > block.line]
    return later[0] if later else None


def _missing_hardware(block: Block) -> str | None:
    if "cuda" in block.flags and not torch.cuda.is_available():
        return "needs a CUDA device"
    if "mps" in block.flags and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        return "needs an Apple MPS device"
    gpus = block.option("gpus")
    if gpus is not None and (not torch.cuda.is_available() or torch.cuda.device_count() < int(gpus)):
        return f"needs {gpus} CUDA devices"
    return None


# --- running commands -----------------------------------------------------------------------------


@contextlib.contextmanager
def _cwd(path: Path):
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def _terminal(text: str) -> str:
    """Roughly what a terminal shows: a progress bar redrawn with carriage returns and then
    blanked out leaves only what was printed after it; trailing spaces go."""
    shown = []
    for line in text.split("\n"):
        if "\r" in line:
            line = line.split("\r")[-1].lstrip(" ")
            if not line.strip():
                continue
        shown.append(line.rstrip())
    while shown and not shown[-1]:
        shown.pop()
    return "\n".join(shown)


# Lines that depend on the machine, not on bsnc: left out before comparing outputs.
MACHINE_NOTES = re.compile(r"^note: Graphviz's dot is not installed.*$\n?", re.MULTILINE)


def _matches(expected: list[str], actual: str) -> bool:
    actual = MACHINE_NOTES.sub("", actual)
    pattern = ""
    for line in expected:
        if line.strip() == "...":
            pattern += r"(?:[^\n]*\n)*?"
        else:
            pattern += ".*?".join(re.escape(part) for part in line.rstrip().split("...")) + r"\n"
    return re.fullmatch(pattern, actual + "\n" if actual else "") is not None


@dataclass
class Command:
    text: str
    expected: list[str] = field(default_factory=list)
    status: int = 0
    line: int = 0


def console_commands(block: Block) -> list[Command]:
    commands: list[Command] = []
    lines = block.text.rstrip("\n").splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if block.lang == "sh":
            if not line.strip() or line.lstrip().startswith("#"):
                i += 1
                continue
            text, start = line, i
        elif line.startswith("$ "):
            text, start = line[2:], i
        else:
            if not commands:
                raise AssertionError(f"{block.id}: output line {line!r} before any `$ ` command")
            commands[-1].expected.append(line)
            i += 1
            continue
        while text.endswith("\\"):
            i += 1
            if i == len(lines):
                raise AssertionError(f"{block.id}: a command ends in `\\` at the end of the block")
            text = text[:-1].rstrip() + " " + lines[i].strip()
        status = 0
        found = EXITS.search(text)
        if found:
            status, text = int(found.group(1)), text[: found.start()]
        commands.append(Command(text.strip(), status=status, line=block.line + 1 + start))
        i += 1
    return commands


def run_command(command: str) -> tuple[int, str, str | None]:
    """(exit status, output as a terminal shows it, traceback of an unexpected exception)."""
    if command.startswith("bsnc ") and not SHELL_SYNTAX.search(command):
        args: list[str] = []
        for word in shlex.split(command, comments=True)[1:]:
            matched = sorted(glob.glob(word)) if any(c in word for c in "*?") else []
            args.extend(matched or [word])
        result = CliRunner().invoke(main, args, prog_name="bsnc")
        crash = None
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            crash = "".join(traceback.format_exception(result.exception))
        return result.exit_code, _terminal(result.output), crash
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1")
    proc = subprocess.run(["bash", "-c", command], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=600)
    return proc.returncode, _terminal(proc.stdout), None


# --- one working directory per document -----------------------------------------------------------


class DocSession:
    """The working directory of one document and which of its blocks have run."""

    def __init__(self, doc: Path, workdir: Path):
        self.doc = doc
        self.workdir = workdir
        self.blocks = [b for b in ALL_BLOCKS if b.doc == doc]
        self.done: set[int] = set()
        shutil.copytree(ROOT / "fabrics", workdir / "fabrics")
        shutil.copytree(DOCS / "tutorial", workdir / "docs" / "tutorial")

    def run(self, block: Block) -> None:
        """Run the earlier steps of the document that have not run, then ``block``."""
        for earlier in self.blocks:
            if earlier.line >= block.line:
                break
            if earlier.line in self.done or not _is_step(earlier) or _missing_hardware(earlier):
                continue
            self.done.add(earlier.line)
            try:
                self.step(earlier)
            except BaseException as exc:  # noqa: BLE001 - say which block broke the chain
                pytest.fail(f"{block.id} needs the earlier block {earlier.id}, which failed:\n{exc}")
        self.done.add(block.line)
        self.step(block)

    def step(self, block: Block) -> None:
        with _cwd(self.workdir):
            save = block.option("save")
            if save is not None:
                target = self.workdir / save
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(block.text, encoding="utf-8")
            if block.lang in ("console", "sh"):
                for command in console_commands(block):
                    status, output, crash = run_command(command.text)
                    where = f"{self.doc.name}:{command.line}: $ {command.text}"
                    if crash is not None:
                        pytest.fail(f"{where}\ncrashed:\n{crash}", pytrace=False)
                    if status != command.status:
                        pytest.fail(f"{where}\nexited {status}, the documentation says {command.status}; "
                                    f"output:\n{output}", pytrace=False)
                    if command.expected and not _matches(command.expected, output):
                        pytest.fail(f"{where}\noutput differs from the documentation.\n--- documented\n"
                                    + "\n".join(command.expected) + "\n--- actual\n" + output, pytrace=False)
            elif block.lang == "python":
                code = compile(block.text, f"{self.doc}:{block.line + 1}", "exec")
                exec(code, {"__name__": f"docs_{self.doc.stem}_{block.line}"})  # noqa: S102


def _is_step(block: Block) -> bool:
    return block.lang in RUNNABLE or block.option("save") is not None


_SESSIONS: dict[Path, DocSession] = {}


@pytest.fixture(scope="session")
def docs_workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("docs")


def session_for(doc: Path, base: Path) -> DocSession:
    if doc not in _SESSIONS:
        _SESSIONS[doc] = DocSession(doc, base / doc.stem)
    return _SESSIONS[doc]


# --- the tests ------------------------------------------------------------------------------------


def test_there_are_docs():
    assert {p.name for p in DOC_FILES} >= {"language.md", "tutorial.md", "cli.md", "gpu.md"}
    assert TESTED


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=[b.id for b in ALL_BLOCKS])
def test_block_tag_is_known(block: Block):
    assert block.lang in KNOWN_TAGS, f"{block.id}: tag {block.lang!r}; expected one of {sorted(KNOWN_TAGS)}"
    if block.lang == "bsn":
        kinds = block.flags & BSN_KINDS
        assert len(kinds) <= 1 and block.flags <= BSN_KINDS, f"{block.id}: bsn takes one of {sorted(BSN_KINDS)}"
    elif block.lang in RUNNABLE:
        assert block.flags <= HARDWARE, f"{block.id}: unknown words {sorted(block.flags - HARDWARE)}"
    elif block.lang in ("toml", "json"):
        assert block.option("save"), f"{block.id}: a {block.lang} block needs save=PATH"


def _check_bsn(block: Block, tmp_path: Path) -> None:
    kinds = block.flags & BSN_KINDS
    if "fragment" in kinds:
        text = block.text if TOP_LEVEL.match(block.text) else "network fragment() {\n" + block.text + "}\n"
        parse(text, block.id)
        return
    for fabric in (ROOT / "fabrics").glob("*.bsn"):
        shutil.copy(fabric, tmp_path / fabric.name)
    name = block.option("name") or ("example.bsn" if "error" in kinds else "block.bsn")
    (tmp_path / name).write_text(block.text, encoding="utf-8")
    defines = dict(d.split("=", 1) for d in block.options("define"))
    with _cwd(tmp_path):
        if "error" in kinds:
            with pytest.raises(BsncError) as caught:
                load_network(name, defines)
            shown = caught.value.render()
            after = _following(block)
            if after is not None and after.lang == "text" and shown != after.text.rstrip("\n"):
                pytest.fail(f"{block.id}: the error differs from the documented one ({after.id}).\n"
                            f"--- documented\n{after.text}--- actual\n{shown}", pytrace=False)
            return
        try:
            load_network(name, defines)
        except BsncError as exc:
            pytest.fail(f"{block.id}: the example does not check:\n{exc.render()}")
    shipped = block.option("file")
    if shipped is not None:
        assert (ROOT / shipped).read_text(encoding="utf-8") == block.text, \
            f"{block.id}: the block differs from {shipped}; keep them identical"


@pytest.mark.parametrize("block", TESTED, ids=[b.id for b in TESTED])
def test_block(block: Block, tmp_path: Path, docs_workdir: Path):
    missing = _missing_hardware(block)
    if missing:
        pytest.skip(f"{block.id} {missing}")
    if block.lang == "bsn":
        _check_bsn(block, tmp_path)
    elif block.lang == "toml":
        tomllib.loads(block.text)
    elif block.lang == "json":
        json.loads(block.text)
    if _is_step(block):
        session_for(block.doc, docs_workdir).run(block)


def test_cli_reference_is_up_to_date():
    spec = importlib.util.spec_from_file_location("gen_cli_reference", DOCS / "gen_cli_reference.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert (DOCS / "cli.md").read_text(encoding="utf-8") == generator.render(), \
        "docs/cli.md is out of date: run `python docs/gen_cli_reference.py`"


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    rest = text[start + len(heading):]
    end = re.search(r"^#{1,3} ", rest, re.MULTILINE)
    return rest[: end.start()] if end else rest


def test_language_reference_covers_every_primitive_function_and_keyword():
    from bsnc.lang.evaluate import FUNCTIONS
    from bsnc.lang.parser import KEYWORDS
    from bsnc.ops import REGISTRY

    text = (DOCS / "language.md").read_text(encoding="utf-8")
    for name, prim in REGISTRY.items():
        heading = f"\n### `{name}`"
        assert heading in text, f"language.md has no section `### `{name}`` for the primitive {name}"
        section = _section(text, heading)
        for arg in prim.args:
            assert f"`{arg.name}`" in section, f"language.md: section {name} does not document argument {arg.name}"
    for function in FUNCTIONS:
        assert f"`{function}(" in text, f"language.md does not document the function {function}()"
    keywords = _section(text, "\n## Keywords")
    for keyword in KEYWORDS:
        assert f"`{keyword}`" in keywords, f"language.md's Keywords section does not list `{keyword}`"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    in_code = False
    for line in doc.read_text(encoding="utf-8").splitlines():
        if re.match(r"^\s*(```|~~~)", line):
            in_code = not in_code
            continue
        heading = re.match(r"^#{1,6} (.*)$", line)
        if heading and not in_code:
            slug = _slug(heading.group(1))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f"{slug}-{count}")
    return found


@pytest.mark.parametrize("doc", DOC_FILES, ids=[d.name for d in DOC_FILES])
def test_links_resolve(doc: Path):
    text = re.sub(r"^(```|~~~).*?^\1", "", doc.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target):
            continue  # an external address
        path, _, anchor = target.partition("#")
        linked = (doc.parent / path).resolve() if path else doc
        assert linked.exists(), f"{doc.name}: link to {target}: no file {linked}"
        if anchor:
            assert linked.suffix == ".md", f"{doc.name}: link to {target}: an anchor into a file that is not Markdown"
            assert anchor in _anchors(linked), f"{doc.name}: link to {target}: no heading with that anchor"
