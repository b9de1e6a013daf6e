"""Reading and writing files safely: nothing half-written is ever left on disk, no special file
is read, and every failure is a BsncError naming the file."""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from bsnc.errors import BsncError

# beside bsnc's outputs: the SHA-256 of each file it wrote (bsnc/output.py), so that it never
# replaces a file of the user's
LEDGER = ".bsnc-written.json"

# atomic_open's temporary files: ".NAME.XXXXXXXX.tmp" (mkstemp's 8 random characters)
_TEMP = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
STAGING_PREFIX = ".bsnc-staging-"


class FileTooLarge(BsncError):
    def __init__(self, shown: str, size: int, limit: int):
        super().__init__(f"{shown}: file is {size:,} bytes or more; the limit is {limit:,}")
        self.size = size
        self.limit = limit


class OutputError(BsncError):
    """A file or directory bsnc was asked to write cannot be written."""


def describe(exc: OSError) -> str:
    """An OSError in words, without Python's repr: 'No space left on device'."""
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    return (exc.strerror or str(exc)).rstrip(".")


def read_regular(path: str | Path, limit: int, shown: str | None = None) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes.

    A FIFO, a device (/dev/zero) or a directory is refused without reading it (a FIFO is opened
    non-blocking, so it cannot hang), and no more than ``limit + 1`` bytes are ever read."""
    shown = shown if shown is not None else str(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise BsncError(f"{shown}: cannot read it ({describe(exc)})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BsncError(f"{shown}: not a regular file ({_kind(info.st_mode)}); expected a file")
        if info.st_size > limit:
            raise FileTooLarge(shown, info.st_size, limit)
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:  # the file grew while being read
            raise FileTooLarge(shown, size, limit)
        return b"".join(chunks)
    except OSError as exc:
        raise BsncError(f"{shown}: cannot read it ({describe(exc)})") from None
    finally:
        os.close(fd)


def kind_of(path: Path) -> str:
    """What ``path`` is, for a message: "a file", "a FIFO", "a directory"..."""
    return _kind(path.stat().st_mode)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISREG, "a file"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


def _target(path: Path) -> Path:
    """Where writing ``path`` lands: a symbolic link's target, so that the link stays a link
    (but /dev/stdout, a link to /proc/self/fd/1 whose target has no path when it is a pipe, is
    itself)."""
    if not path.is_symlink():
        return path
    target = Path(os.path.realpath(path))
    return path if path.exists() and not target.exists() else target


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8", *,
                special: bool = True) -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it over ``path`` only if the block succeeds.

    An existing file keeps its permissions, a symbolic link keeps pointing at the rewritten
    file, and a read-only file is refused. An OSError becomes an OutputError naming ``path``.

    A character device or a FIFO that a user names as an output (``-o /dev/stdout``, ``-o
    /dev/null``) is written through, never replaced; a FIFO only while a process reads it (it
    is opened without blocking, so a FIFO nobody reads is an error, never a hang). Files bsnc
    keeps for itself (checkpoints, its ledger, a sweep's tables) pass ``special=False``: there a
    FIFO or a device is refused."""
    shown = str(path)
    path = _target(Path(path))
    try:
        existing = path.stat() if path.exists() else None
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            raise OutputError(f"{shown}: cannot write it (it is a directory)")
        if existing is not None and not stat.S_ISREG(existing.st_mode) and (
                not special or not (stat.S_ISCHR(existing.st_mode) or stat.S_ISFIFO(existing.st_mode))):
            raise OutputError(f"{shown}: cannot write it (it is {_kind(existing.st_mode)}; expected a regular "
                              "file: remove it and run again)")
        if existing is not None and not os.access(path, os.W_OK):
            raise OutputError(f"{shown}: cannot write it (the file is read-only)")
        if existing is not None and not stat.S_ISREG(existing.st_mode):
            fd, tmp = -1, ""  # a device or FIFO (/dev/stdout, /dev/null) is written, never replaced
        else:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"{shown}: cannot write it ({describe(exc)})") from None
    if fd < 0:
        handle = _open_special(path, shown, mode, encoding)
        try:
            with handle:
                yield handle
        except OSError as exc:
            raise OutputError(f"{shown}: cannot write it ({describe(exc)})") from None
        return
    try:
        # mkstemp makes 0600; a new file gets the usual mode, a rewritten one keeps its own
        os.chmod(tmp, stat.S_IMODE(existing.st_mode) if existing is not None else 0o666 & ~_umask())
        binary = "b" in mode
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"{shown}: cannot write it ({describe(exc)})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _open_special(path: Path, shown: str, mode: str, encoding: str | None) -> IO:
    """A character device or FIFO opened for writing, without waiting for a reader."""
    flags = os.O_WRONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    flags |= os.O_APPEND if "a" in mode else 0
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO with no reader: opening it would block for ever
            raise OutputError(f"{shown}: cannot write it (it is a FIFO that no process is reading)") from None
        raise OutputError(f"{shown}: cannot write it ({describe(exc)})") from None
    try:
        os.set_blocking(fd, True)  # a reader is there: write as to any pipe
        return os.fdopen(fd, mode, encoding=None if "b" in mode else encoding)
    except OSError as exc:
        os.close(fd)
        raise OutputError(f"{shown}: cannot write it ({describe(exc)})") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str, *, special: bool = True) -> None:
    with atomic_open(path, "w", special=special) as handle:
        handle.write(text)


def atomic_write_bytes(path: str | Path, data: bytes, *, special: bool = True) -> None:
    with atomic_open(path, "wb", special=special) as handle:
        handle.write(data)


def remove_leftovers(directory: str | Path) -> list[Path]:
    """Remove the temporary files atomic_open left in ``directory`` when a write was interrupted
    (by whoever owns the directory, e.g. a run starting or resuming). Returns what was removed."""
    removed: list[Path] = []
    try:
        entries = list(Path(directory).iterdir())
    except OSError:
        return removed
    for entry in entries:
        if _TEMP.match(entry.name) and entry.is_file() and not entry.is_symlink():
            try:
                entry.unlink()
            except OSError:
                continue
            removed.append(entry)
    return removed


def remove_staging(target: str | Path) -> list[Path]:
    """Remove the staging directories an interrupted build of ``target`` left beside it (only
    those of ``target``: other writers in the same directory are left alone)."""
    target = Path(target)
    removed: list[Path] = []
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return removed
    # the prefix and then mkdtemp's random characters, no dot: the staging of `out.v2` is not out's
    own = re.compile(re.escape(f"{STAGING_PREFIX}{target.name}.") + r"[a-z0-9_]+")
    for entry in entries:
        if own.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def staging_directory(target: str | Path) -> Path:
    """A new, empty directory beside ``target`` in which to build what will replace it."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{target.name}.", dir=target.parent))
        # mkdtemp makes 0700: the directory that replaces ``target`` keeps its mode, a new one gets
        # the usual one (0755 under umask 022), as mkdir would have made it
        mode = stat.S_IMODE(target.stat().st_mode) if target.is_dir() else 0o777 & ~_umask()
        os.chmod(staging, mode)
        return staging
    except FileExistsError:  # mkdir(exist_ok=True) of a path that is there but no directory
        raise OutputError(f"{target}: cannot write there ({target.parent} is not a directory)") from None
    except OSError as exc:
        raise OutputError(f"{target}: cannot write there ({describe(exc)})") from None


def replace_directory(staging: Path, target: Path) -> None:
    """Put the directory ``staging`` in place of ``target`` as one step: a reader (or a kill) sees
    the old set of files or the new one, never a mixture. Uses Linux's renameat2(RENAME_EXCHANGE);
    elsewhere the old directory is first renamed aside, so at worst ``target`` is briefly absent
    while the old set survives in a staging directory that the next run removes."""
    try:
        if not target.exists():
            os.rename(staging, target)
            return
        if _exchange(staging, target):
            shutil.rmtree(staging, ignore_errors=True)  # now the old set
            return
        old = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{target.name}.old.", dir=target.parent))
        os.rename(target, old / "x")
        os.rename(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        raise OutputError(f"{target}: cannot replace it ({describe(exc)})") from None


def _exchange(a: Path, b: Path) -> bool:
    try:
        import ctypes

        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


class DirectoryLock:
    """An exclusive advisory lock (flock) on a directory, held until :meth:`release` or until the
    process ends (even by kill -9: the kernel drops it with the descriptor). Two bsnc processes
    that would write the same run or sweep directory at once are refused instead of interleaving
    their files. Where flock is unavailable (not POSIX) it locks nothing."""

    def __init__(self, directory: str | Path, what: str):
        self._fd: int | None = None
        try:
            import fcntl
        except ImportError:  # Windows: no lock
            return
        try:
            fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:  # a directory that cannot be opened is reported by whoever writes it
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputError(f"{what}: another bsnc process is writing {directory}; wait for it to "
                                  "finish (or stop it) before starting another there") from None
            return  # a file system without locks (some network ones): go on unlocked
        self._fd = fd

    def __enter__(self) -> DirectoryLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    def __del__(self) -> None:
        self.release()
