"""Where the `bsnc` command writes and how much it says: the overwrite policy (never replace a
file bsnc did not write, unless --force), numbered run directories with a `latest` link, and
the verbosity shared by every command. Imports no torch."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from bsnc.errors import BsncError, UsageError
from bsnc.files import LEDGER, atomic_write_text, read_regular
from bsnc.launch import launch

# Beside files written to a path the user named, bsnc records their SHA-256: a file whose
# content still matches is bsnc's own and may be replaced; any other existing file needs --force.


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


MAX_LEDGER_BYTES = 16 * 1024 * 1024


def _ledger(directory: Path) -> dict[str, str]:
    """The ledger's records; {} when it is missing or unusable (then every existing file is
    taken as the user's: overwriting it needs --force)."""
    path = directory / LEDGER
    if not path.exists() and not path.is_symlink():
        return {}
    try:  # read_regular: a FIFO or a device is refused, never opened for a blocking read
        data = json.loads(read_regular(path, MAX_LEDGER_BYTES).decode("utf-8"))
    except (BsncError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(data, dict) else {}


def written_by_bsnc(path: Path) -> bool:
    """True when ``path`` holds exactly what bsnc last wrote there."""
    recorded = _ledger(path.parent).get(path.name)
    return recorded is not None and path.is_file() and _digest(path) == recorded


def guard_overwrite(paths: Iterable[Path], force: bool, option: str) -> None:
    """Refuse (UsageError naming ``option``) to replace any existing file in ``paths`` that bsnc
    did not write, or that changed since, unless ``force``."""
    if force:
        return
    # a device or FIFO (-o /dev/null) is written to, not replaced: nothing of the user's is lost
    foreign = [p for p in paths if p.is_file() and not written_by_bsnc(p)]
    if foreign:
        listed = ", ".join(str(p) for p in foreign[:4]) + (", ..." if len(foreign) > 4 else "")
        raise UsageError(f"{option}: would overwrite {listed}, which bsnc did not write (or which changed since); "
                         "pass --force to overwrite, or choose another path")


def guard_directory(directory: Path, force: bool, option: str) -> None:
    """Refuse to write into ``directory`` while it holds files bsnc did not write (see above)."""
    if directory.is_dir():
        guard_overwrite((p for p in sorted(directory.iterdir()) if p.is_file() and p.name != LEDGER), force, option)


def record_written(paths: Iterable[Path]) -> None:
    """Note ``paths`` (just written by bsnc) in their directories' ledgers."""
    by_dir: dict[Path, list[Path]] = {}
    for path in paths:
        if path.is_file():
            by_dir.setdefault(path.parent, []).append(path)
    for directory, files in by_dir.items():
        ledger = _ledger(directory)
        ledger.update({p.name: _digest(p) for p in files})
        # the ledger is bookkeeping: when it cannot be written (a directory, a FIFO, a read-only
        # file), the outputs stay written and the command succeeds; only the next overwrite of
        # them will ask for --force
        try:
            atomic_write_text(directory / LEDGER, json.dumps(dict(sorted(ledger.items())), indent=1) + "\n",
                              special=False)
        except (BsncError, OSError) as exc:
            print(f"warning: {exc}; wrote {', '.join(p.name for p in files)} all the same (a later "
                  "overwrite will need --force)", file=sys.stderr, flush=True)


# --- run directories ----------------------------------------------------------------------------

LATEST = "latest"


def next_run_dir(base: Path) -> Path:
    """``base/N`` for the first N above every numbered run already in ``base`` (0 when none)."""
    numbers = [int(p.name) for p in base.iterdir() if p.is_dir() and re.fullmatch(r"\d+", p.name)] \
        if base.is_dir() else []
    return base / str(max(numbers, default=-1) + 1)


def latest_run_dir(base: Path) -> Path | None:
    """Where ``base/latest`` points, if it does."""
    link = base / LATEST
    return link.resolve() if link.is_dir() else None


def point_latest(run_dir: Path) -> None:
    """Make ``run_dir.parent/latest`` a relative link to ``run_dir`` (replaced atomically)."""
    link = run_dir.parent / LATEST
    tmp = run_dir.parent / f".{LATEST}.{os.getpid()}.tmp"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(run_dir.name, target_is_directory=True)
        os.replace(tmp, link)
    except OSError:
        tmp.unlink(missing_ok=True)  # a file system without links: the numbered run is still there


def choose_run_dir(given: Path | None, base: Path, resume: bool) -> Path:
    """The run directory of `bsnc train`: ``given`` as is; else with ``resume`` the run that
    ``base/latest`` points at; else a new ``base/N`` (created now, ``latest`` pointed at it)."""
    if given is not None:
        return given
    if resume:
        latest = latest_run_dir(base)
        if latest is None:
            raise UsageError(f"--resume: {base / LATEST} does not exist; give --run-dir DIR of the run to continue")
        return latest
    if launch().distributed:
        raise UsageError("under torchrun, give --run-dir DIR: every process must write to the same run directory")
    for _ in range(100):  # another run may take a number between our look and our mkdir
        run_dir = next_run_dir(base)
        try:
            run_dir.mkdir(parents=True)
        except FileExistsError:
            continue
        except OSError as exc:
            raise UsageError(f"--run-dir {run_dir}: cannot create it ({exc.strerror})") from None
        point_latest(run_dir)
        return run_dir
    raise UsageError(f"--run-dir: could not take a new numbered run directory in {base}")


def missing_dirs(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, deepest first: what creating it makes."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def discard_run_dir(run_dir: Path, created: Sequence[Path] = ()) -> None:
    """Undo `choose_run_dir` for a run that stopped before its first checkpoint (it holds its
    config.json at most, nothing to resume from or export): remove the numbered directory, point
    ``latest`` back at the newest run left (or remove it), and remove the directories of
    ``created`` (`missing_dirs` before the run) that are left empty."""
    try:
        if {p.name for p in run_dir.iterdir()} - {"config.json"}:
            return
        (run_dir / "config.json").unlink(missing_ok=True)
        run_dir.rmdir()
    except OSError:
        return
    base = run_dir.parent
    link = base / LATEST
    if link.is_symlink() and os.readlink(link) == run_dir.name:
        link.unlink()
        numbers = [int(p.name) for p in base.iterdir() if p.is_dir() and re.fullmatch(r"\d+", p.name)]
        if numbers:
            point_latest(base / str(max(numbers)))
    for directory in created:
        try:
            directory.rmdir()  # only when empty
        except OSError:
            return


# --- verbosity ----------------------------------------------------------------------------------

QUIET, NORMAL, VERBOSE = 0, 1, 2


def verbosity(quiet: int, verbose: int) -> int:
    """-q lowers, -v raises the level from NORMAL."""
    return max(QUIET, min(VERBOSE + 1, NORMAL - quiet + verbose))


def progress_wanted(level: int, stream: object = None) -> bool:
    """Progress bars on a terminal (never into a log file), not when quiet; -v asks for them anyway."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return level >= VERBOSE or (level >= NORMAL and bool(isatty and isatty()))
