"""The process's place in a torchrun job, read from the environment torchrun sets, and checked:
a variable a user set by hand is an error that names it, not a traceback or a hang."""

from __future__ import annotations

import os
from dataclasses import dataclass

from bsnc.errors import UsageError

_HOW = "torchrun sets it (docs/gpu.md); unset it to train in one process"


@dataclass(frozen=True)
class Launch:
    world: int  # processes in the job; 1 without torchrun
    rank: int  # this process's place among them
    local_rank: int  # its place on this machine: the GPU it takes

    @property
    def distributed(self) -> bool:
        return self.world > 1


def _whole(name: str, default: int, minimum: int) -> int:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        value = int(text.strip())
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise UsageError(f"environment variable {name}={text!r}: expected a whole number, at least {minimum}; {_HOW}")
    return value


def _listing(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def launch() -> Launch:
    """``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` (1, 0, 0 when unset), checked; for a job of
    several processes, also that torchrun's rendezvous variables are there."""
    world = _whole("WORLD_SIZE", 1, 1)
    rank = _whole("RANK", 0, 0)
    local_rank = _whole("LOCAL_RANK", 0, 0)
    if rank >= world:
        raise UsageError(f"environment variable RANK={rank}: expected less than WORLD_SIZE={world}; {_HOW}")
    if world > 1:
        missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
        if missing:
            raise UsageError(f"environment variable WORLD_SIZE={world} asks for {world} processes, but "
                             f"{_listing(missing)} {'is' if len(missing) == 1 else 'are'} not set: "
                             f"launch several processes with torchrun (docs/gpu.md), or unset WORLD_SIZE")
    return Launch(world, rank, local_rank)
