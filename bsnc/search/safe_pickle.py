"""Reading CIFAR's python batches without running code.

CIFAR ships as pickles, and `pickle.load` calls whatever a file names: a planted batch file
would run its payload. `load_restricted` admits only what the real format holds (dicts, lists,
strings, bytes, numbers and numpy arrays of plain numbers) and refuses any other global before
anything is called. Arrays are not built by numpy's own unpickling code either: their pickled
state is checked and turned into an array here."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

# Plain-number dtypes; object arrays ("O") would let the file name more objects to build.
_DTYPES = frozenset("b1 i1 u1 i2 u2 i4 u4 i8 u8 f2 f4 f8".split())


class RefusedPickle(pickle.UnpicklingError):
    """The file holds something that CIFAR's format does not."""


class _Dtype:
    """What ``numpy.dtype(spec, ...)`` in the file asked for; checked, built by `_finish`."""

    def __init__(self, spec: Any, align: Any = False, copy: Any = False):
        if not isinstance(spec, str) or spec not in _DTYPES:
            raise RefusedPickle(f"an array of dtype {spec!r} (only plain numbers are allowed)")
        self.spec = spec
        self.order = "|"

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) < 2 or state[1] not in ("<", ">", "|", "="):
            raise RefusedPickle(f"a dtype state {state!r:.80}")
        self.order = state[1]

    def build(self) -> np.dtype:
        order = "=" if self.order == "|" else self.order
        return np.dtype(self.spec).newbyteorder(order)


class _Array:
    """What ``_reconstruct(ndarray, ...)`` followed by ``__setstate__`` describes."""

    def __init__(self, cls: Any, shape: Any = None, code: Any = None):
        if cls is not _Array:
            raise RefusedPickle(f"an array of type {cls!r}")
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5):
            raise RefusedPickle(f"an array state {state!r:.80}")
        _, shape, dtype, fortran, raw = state
        if not (isinstance(shape, tuple) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise RefusedPickle(f"an array shape {shape!r:.80}")
        if not isinstance(dtype, _Dtype):
            raise RefusedPickle(f"an array dtype {dtype!r:.80}")
        if isinstance(raw, str):  # Python 2 pickles (the real CIFAR files) hold str
            raw = raw.encode("latin1")
        if isinstance(raw, pickle.PickleBuffer):
            raw = raw.raw()
        if not isinstance(raw, (bytes, bytearray, memoryview)):
            raise RefusedPickle(f"array data of type {type(raw).__name__}")
        flat = np.frombuffer(bytes(raw), dtype=dtype.build())
        if flat.size != int(np.prod(shape)):
            raise RefusedPickle(f"{len(raw)} bytes of data for an array of shape {shape}")
        self.array = flat.reshape(shape, order="F" if fortran else "C").copy()


def _frombuffer(raw: Any, dtype: Any, shape: Any, order: Any) -> _Array:
    # protocol 5 pickles of arrays
    array = _Array(_Array)
    array.__setstate__((1, shape, dtype, order == "F", raw))
    return array


def _encode(text: Any, encoding: Any = "utf-8") -> bytes:
    # protocol 2 pickles of Python 3 bytes go through _codecs.encode(str, "latin1")
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise RefusedPickle(f"_codecs.encode of {type(text).__name__} as {encoding!r:.20}")
    return text.encode("latin1")


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _Array,
    ("numpy._core.multiarray", "_reconstruct"): _Array,
    ("numpy", "ndarray"): _Array,
    ("numpy", "dtype"): _Dtype,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _encode,
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED.get((module, name))
        if found is None:
            raise RefusedPickle(f"it names {module}.{name:.60}, which a CIFAR batch never holds "
                                "(refused; nothing was run)")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedPickle("a persistent id")


def _finish(value: Any) -> Any:
    if isinstance(value, _Array):
        if value.array is None:
            raise RefusedPickle("an array without data")
        return value.array
    if isinstance(value, _Dtype):
        raise RefusedPickle("a bare dtype")
    if isinstance(value, dict):
        return {_finish(k): _finish(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finish(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_finish(v) for v in value)
    if value is None or isinstance(value, (str, bytes, int, float, bool)):
        return value
    raise RefusedPickle(f"a value of type {type(value).__name__}")


def load_restricted(path: Path) -> Any:
    """Unpickle ``path`` (Python 2 strings read as latin-1, as CIFAR needs), admitting only dicts,
    lists, tuples, strings, bytes, numbers and numeric numpy arrays. Raises `RefusedPickle` for
    anything else, and `pickle`'s or `OSError`'s usual errors for an unreadable file."""
    with open(path, "rb") as handle:
        return _finish(_Unpickler(handle, encoding="latin1").load())
