"""Parse time against file size: shows that parsing `.bsn` text is linear (a measurement, not a test).

Three kinds of text, each at doubling sizes up to the file-size limit: statements with comments
(what comment placement used to make quadratic), lines of comments only, and long expressions.
For each it prints bytes, tokens, CPU seconds of this process (the median of three; CPU time, not
wall time, so that other work on a shared machine does not blur the figures) and microseconds
per kilobyte; a linear parser keeps the last column flat. Run with `make bench-parse` or
`python benchmarks/bench_parse.py`.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bsnc.lang.limits import _TOKEN, MAX_SOURCE_BYTES, MAX_TOKENS  # noqa: E402
from bsnc.lang.parser import parse  # noqa: E402


def statements(n: int) -> str:
    body = "".join(f"    # layer {i}\n    layer l{i} : [4]  # trailing\n" for i in range(n))
    return "network t() {\n    input x : [4]\n" + body + "    output y : [4]\n}\n"


def comments(n: int) -> str:
    return "".join(f"# a comment line number {i}\n" for i in range(n)) + "network t() {\n}\n"


def expressions(n: int) -> str:
    lets = "".join(f"    let v{i} = (1 + 2) * 3 - 4 // 5 + min(6, 7)\n" for i in range(n))
    return "network t() {\n" + lets + "}\n"


def measure(text: str, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.process_time()
        parse(text, "bench.bsn")
        times.append(time.process_time() - start)
    return statistics.median(times)


def tokens(text: str) -> int:
    return sum(1 for m in _TOKEN.finditer(text) if m.lastgroup not in ("skip", "newline"))


def main() -> None:
    print(f"limits: {MAX_SOURCE_BYTES:,} bytes, {MAX_TOKENS:,} tokens per file")
    print(f"{'text':<12} {'bytes':>10} {'tokens':>9} {'cpu s':>9} {'us/KB':>8}")
    for name, make, start in (("statements", statements, 500), ("comments", comments, 2000),
                              ("expressions", expressions, 250)):
        n = start
        while True:
            text = make(n)
            count = tokens(text)
            if len(text.encode()) > MAX_SOURCE_BYTES or count > MAX_TOKENS:
                break
            seconds = measure(text)
            kb = len(text) / 1024
            print(f"{name:<12} {len(text):>10,} {count:>9,} {seconds:>9.3f} {seconds / kb * 1e6:>8.0f}")
            n *= 2


if __name__ == "__main__":
    main()
