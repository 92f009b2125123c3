"""``make bench``: every benchmark, each printing its ratios against the peer measured in the same run.

Figures are recorded in bench/RESULTS.md. Working data (a sparse 70B-shaped folder, three real
models up to ~1 GB, 4 GiB of shards) goes to bench/out/ and is reused between runs.
"""

from __future__ import annotations

import platform
import sys
import time

from bench import (
    ci_bench,
    deep_bench,
    full_bench,
    memory_bench,
    multirank_bench,
    pickle_bench,
    report_bench,
    scaling_bench,
    static_bench,
)


def main() -> None:
    import os

    print(f"host: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    quick = "--quick" in sys.argv
    for name, fn in (
        ("static", lambda: static_bench.main(3 if quick else 7)),
        ("scaling", lambda: scaling_bench.main(3 if quick else 5)),
        ("pickle", lambda: pickle_bench.main(2 if quick else 5)),
        ("memory", lambda: memory_bench.main(1 if quick else 5)),
        ("full", lambda: full_bench.main(1 if quick else 5)),
        ("multirank", lambda: multirank_bench.main(1 if quick else 3)),
        ("report", lambda: report_bench.main(3 if quick else 5)),
        ("deep", lambda: deep_bench.main(1 if quick else 3)),
        ("ci", lambda: ci_bench.main(1 if quick else 3)),
    ):
        t0 = time.perf_counter()
        print(f"\n== {name} ==")
        fn()
        print(f"({name} took {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
