"""The fuzzer (tests/fuzz.py) as a test: a few thousand generated and mutated `.bsn` inputs.

Properties: only BsncError escapes, no input exceeds a generous time ceiling, and networks that
compile agree with the reference interpreter. `make fuzz` runs the same for hours."""

from __future__ import annotations

import pytest

from tests.fuzz import campaign

SEEDS = range(4)
INPUTS_PER_SEED = 600


@pytest.mark.parametrize("seed", SEEDS)
def test_fuzz_campaign(seed: int) -> None:
    stats = campaign(seed, count=INPUTS_PER_SEED, max_runs=4)
    print(f"fuzz seed {seed}: {stats.line()}")
    assert stats.inputs == INPUTS_PER_SEED
    assert not stats.failures, "\n\n".join(f"{f.source}: {f.problem}\n{f.text[:2000]!r}" for f in stats.failures[:3])
    # the inputs exercise every outcome: refused, compiled, and run against the reference
    assert stats.outcomes["refused"] > 0 and stats.outcomes["compiled"] > 0
    assert stats.outcomes["ran = reference"] > 0
