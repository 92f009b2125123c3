"""What the deep scan's value statistics cost over hashing alone, on one core (issue 17, goal 4):

* ``loop``: one 1 GiB shard from a warm page cache, best of 3 in one process, read by a bare
  hashlib loop (the peer), by ``deep.scan_file`` hashing only (no header: the read loop, its
  prefetch advice), and by ``deep.scan_file`` with the value scan;
* ``reduction``: per 1 MiB of bf16 from the CPU cache, ``TensorStats.feed`` and the ways to get the
  largest magnitude: the two max reductions it uses, and single passes over a temporary.

Not part of ``make bench`` (about 20 s): ``python -m bench.deep_scan_cost``."""

from __future__ import annotations

import hashlib
import subprocess
import threading
import time

import numpy as np

from bench.deep_bench import folder
from npu_preflight.deep import TensorStats, _np, scan_file
from npu_preflight.formats.safetensors import read_header


def best(fn, rounds: int = 3, inner: int = 1) -> float:
    out = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        out = min(out, (time.perf_counter() - t) / inner)
    return out


def loop() -> None:
    shard = sorted(folder().glob("*.safetensors"))[0]
    subprocess.run(["cat", str(shard)], stdout=subprocess.DEVNULL, check=True)
    header = read_header(shard)
    _np()

    def peer() -> None:
        buf, h = bytearray(1 << 20), hashlib.sha256()
        with open(shard, "rb", buffering=0) as fh:
            while n := fh.readinto(buf):
                h.update(memoryview(buf)[:n])

    stop = threading.Event()
    walls = {
        "bare hashlib loop (peer)": best(peer),
        "scan_file, hash only": best(lambda: scan_file(shard, "x", None, stop)),
        "scan_file, hash + value scan": best(lambda: scan_file(shard, "x", header, stop)),
    }
    print(f"one {shard.stat().st_size / 2**30:.1f} GiB shard, warm, best of 3")
    for name, w in walls.items():
        print(f"  {name}: {w:.3f} s ({walls['bare hashlib loop (peer)'] / w:.3f}× the peer)")


def reduction() -> None:
    rng = np.random.default_rng(0)
    # finite bf16 of both signs (no Inf/NaN: their exact count is a slower path the benchmark's
    # shards never take)
    mag = rng.integers(0, 0x7F00, size=1 << 19, dtype=np.uint16)
    raw = (mag | (rng.integers(0, 2, size=mag.size, dtype=np.uint16) << 15)).tobytes()
    u, s = np.frombuffer(raw, np.uint16), np.frombuffer(raw, np.int16)
    tmp = np.empty_like(u)
    stats = TensorStats("t", "BF16", u.size)
    view = memoryview(raw)

    def blocks() -> None:
        for i in range(0, u.size, 32768):
            part = tmp[: min(32768, u.size - i)]
            np.left_shift(u[i : i + 32768], 1, out=part)
            part.max()

    ways = {
        "TensorStats.feed (what the scan runs)": lambda: stats.feed(view),
        "int16 max + uint16 max (its two reductions)": lambda: (s.max(), u.max()),
        "bitwise_and into a temporary, then max": lambda: (np.bitwise_and(u, 0x7FFF, out=tmp), tmp.max()),
        "left_shift into a temporary, then max": lambda: (np.left_shift(u, 1, out=tmp), tmp.max()),
        "left_shift + max in 64 KiB blocks": blocks,
    }
    print("per 1 MiB of bf16 from the CPU cache, best of 3 × 2,000")
    for name, fn in ways.items():
        print(f"  {name}: {best(fn, inner=2000) * 1e6:.1f} µs")


if __name__ == "__main__":
    loop()
    reduction()
