"""Checks of numeric options in one place: a NaN, an infinity or a value beyond what the work can
take is refused with the option's name, before any work starts."""

from __future__ import annotations

import math

from bsnc.errors import UsageError

MAX_SEED = 2**32 - 1
MAX_BATCH_SIZE = 2**24
MAX_EPOCHS = 1_000_000
MAX_WORKERS = 256  # data-loading processes
MAX_REPEATS = 1_000_000  # timings of one edge, or architectures timed end to end
# a weight or rate of training: far above any useful one, and below float32's 3.4e38, which the
# optimisers and the loss turn it into (a larger one is a RuntimeError inside torch)
MAX_REAL = 1e30


def real(option: str, value: float, minimum: float | None = None, maximum: float | None = None,
         min_open: bool = False, max_open: bool = False) -> float:
    """``value`` if it is a finite number within the bounds, else a UsageError naming ``option``."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise UsageError(f"{option} {value!r}: expected a number") from None
    if not math.isfinite(number):
        raise UsageError(f"{option} {value}: expected a finite number")
    low = minimum is not None and (number <= minimum if min_open else number < minimum)
    high = maximum is not None and (number >= maximum if max_open else number > maximum)
    if low or high:
        raise UsageError(f"{option} {value}: expected {_range(minimum, maximum, min_open, max_open)}")
    return number


def whole(option: str, value: int, minimum: int, maximum: int) -> int:
    """``value`` if it is an integer within [minimum, maximum], else a UsageError naming ``option``."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise UsageError(f"{option} {value}: expected an integer from {minimum:,} to {maximum:,}")
    return value


def _range(minimum: float | None, maximum: float | None, min_open: bool, max_open: bool) -> str:
    parts = []
    if minimum is not None:
        parts.append(f"{'>' if min_open else '>='} {minimum:g}")
    if maximum is not None:
        parts.append(f"{'<' if max_open else '<='} {maximum:g}")
    return "a number " + " and ".join(parts)
