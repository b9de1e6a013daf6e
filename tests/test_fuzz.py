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
    stats = campaign(seed, count=INPUTS_PER_SEED, max_runs=10)
    print(f"fuzz seed {seed}: {stats.line()}")
    assert stats.inputs == INPUTS_PER_SEED
    assert not stats.failures, "\n\n".join(f"{f.source}: {f.problem}\n{f.text[:2000]!r}" for f in stats.failures[:3])
    # the inputs exercise every outcome: refused, compiled, and run against the reference
    assert stats.outcomes["refused"] > 0 and stats.outcomes["compiled"] > 0
    assert stats.outcomes["ran = reference"] > 0


def test_the_fuzzer_catches_each_kind_of_failure(tmp_path, monkeypatch) -> None:
    """The properties can fail: a stray exception, a hang and a disagreement are each recorded."""
    import random
    import time

    import bsnc.lang.frontend as frontend
    from tests import fuzz

    text = (fuzz.FABRICS / "resnet20.bsn").read_text()
    rng = random.Random(0)

    def run(patch) -> fuzz.Stats:
        stats = fuzz.Stats()
        with monkeypatch.context() as m:
            patch(m)
            fuzz.check(text.encode(), tmp_path, stats, "test", rng, ceiling=1.0, wall_ceiling=3.0)
        return stats

    def spin(path):
        while True:
            pass

    crash = run(lambda m: m.setattr(frontend, "load_network", lambda path: {}["boom"]))
    assert "KeyError: 'boom'" in crash.failures[0].problem
    expected = "took more than 1.0 s of CPU time or 3.0 s of wall time"
    busy = run(lambda m: m.setattr(frontend, "load_network", spin))
    assert busy.failures[0].problem == expected
    blocked = run(lambda m: m.setattr(frontend, "load_network", lambda path: time.sleep(10)))
    assert blocked.failures[0].problem == expected

    tiny = "network t() {\n    input x : [4]\n    output y : [4]\n    x -> y : linear(4)\n}\n"
    stats = fuzz.Stats()
    with monkeypatch.context() as m:
        m.setattr("bsnc.codegen.reference.reference_forward", lambda network, module, x, active: x + 1)
        fuzz.check(tiny.encode(), tmp_path, stats, "test", rng)
    assert "generated code and reference differ" in stats.failures[0].problem
    fine = fuzz.Stats()
    fuzz.check(tiny.encode(), tmp_path, fine, "test", rng)
    assert not fine.failures and fine.outcomes["ran = reference"] == 1
