"""Deep scan throughput over 4 GiB of real (not sparse) shards, against hashlib's sha256 alone over
the same files, with the page cache warm and cold (every shard evicted with
``posix_fadvise(DONTNEED)`` before each measurement). Targets: one worker ≥ 0.95× hashlib on one
core; two workers ≥ 0.9× hashlib split over two processes; bounded memory.

Throughput runs are not watched. The harness samples a measured process's peak RSS every 3 ms, and
on 2 cores each sample preempts one of the two busy workers, while the two hashlib processes were
never sampled: an unequal load on one side only (2.25–2.38 against 2.35–2.49 GB/s for the same two
workers, sampled and not). Peaks come from one separate, sampled run of each reader."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench.common import OUT, PY, mib, run_capture, table

SHARDS, SHARD_GIB, TENSOR_MIB = 4, 1, 16

#: The peer: a plain hashlib loop over the files given, 1 MiB reads (its best setting measured
#: here). It prints its own clock window, so two copies run at once can be combined into one wall.
HASH_ONLY = """
import hashlib, json, sys, time
buf = bytearray(2**20); total = 0
t0 = time.perf_counter()
for f in sys.argv[1:]:
    h = hashlib.sha256()
    with open(f, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            h.update(memoryview(buf)[:n]); total += n
print(json.dumps({"t0": t0, "t1": time.perf_counter(), "bytes": total}))
"""

OURS = """
import json, sys, time
from pathlib import Path
from npu_preflight.context import Context, RunOptions
ctx = Context(Path(sys.argv[1]), options=RunOptions(static=True, deep=True, workers=int(sys.argv[2])))
ctx.headers
t0 = time.perf_counter(); scan = ctx.deep_scan; dt = time.perf_counter() - t0
bad = sum(t.nan + t.inf for _, t in scan.tensors())
print(json.dumps({"s": dt, "bytes": scan.bytes_read, "tensors": sum(1 for _ in scan.tensors()), "nan_inf": bad}))
"""


def folder():
    d = OUT / "deep-shards"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    per = SHARD_GIB * 1024 // TENSOR_MIB
    for s in range(SHARDS):
        p = d / f"model-{s + 1:05d}-of-{SHARDS:05d}.safetensors"
        if p.exists():
            continue
        n = TENSOR_MIB * 2**20
        header = {"__metadata__": {"format": "pt"}}
        for i in range(per):
            header[f"model.layers.{s * per + i}.mlp.up_proj.weight"] = {
                "dtype": "BF16",
                "shape": [n // 2 // 4096, 4096],
                "data_offsets": [i * n, (i + 1) * n],
            }
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)
        with open(p, "wb") as fh:
            fh.write(struct.pack("<Q", len(raw)) + raw)
            for _ in range(per):
                # finite bf16 values (exponent below all-ones), so the fast path is what is measured
                fh.write(rng.integers(0, 0x7F00, size=n // 2, dtype=np.uint16).tobytes())
    (d / "config.json").write_text(json.dumps({"model_type": "llama", "torch_dtype": "bfloat16"}))
    return d


def evict(files: list[Path]) -> None:
    """Drop the files' pages from the page cache (clean pages: nothing is written)."""
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def warm(files: list[Path]) -> None:
    subprocess.run(["cat", *map(str, files)], stdout=subprocess.DEVNULL, check=True)


def measure(code: str, *args: str) -> tuple[dict, int]:
    """The reader's own report, and its peak RSS sampled every 3 ms."""
    _, peak, _, out = run_capture([PY, "-c", code, *args])
    return json.loads(out.strip().splitlines()[-1]), peak


def rate(code: str, *args: str) -> dict:
    """The reader's own report from a run nobody samples (see the module's docstring)."""
    from bench.common import REPO, env

    p = subprocess.run([PY, "-c", code, *args], capture_output=True, env=env(), cwd=REPO, check=True)
    return json.loads(p.stdout.decode().strip().splitlines()[-1])


def hash_split(files: list[Path]) -> float:
    """hashlib over two processes at once, the files dealt alternately: bytes / joint wall."""
    from bench.common import REPO, env

    halves = [files[0::2], files[1::2]]
    procs = [
        subprocess.Popen([PY, "-c", HASH_ONLY, *map(str, h)], stdout=subprocess.PIPE, env=env(), cwd=REPO)
        for h in halves
    ]
    outs = [json.loads(p.communicate()[0].decode().strip().splitlines()[-1]) for p in procs]
    return sum(o["bytes"] for o in outs) / (max(o["t1"] for o in outs) - min(o["t0"] for o in outs))


def main(repeats: int = 3) -> dict:
    d = folder()
    files = sorted(d.glob("*.safetensors"))
    best: dict[str, float] = {}
    rss: dict[str, int] = {}
    total = 0
    for cache in ("warm", "cold"):
        for _ in range(repeats):
            for key, how in (("hash", None), ("ours1", "1"), ("hash2", None), ("ours2", "2")):
                (evict if cache == "cold" else warm)(files)
                if key == "hash2":
                    speed = hash_split(files)
                elif key == "hash":
                    out = rate(HASH_ONLY, *map(str, files))
                    speed = out["bytes"] / (out["t1"] - out["t0"])
                else:
                    out = rate(OURS, str(d), how or "1")
                    speed = out["bytes"] / out["s"]
                    total = out["bytes"]
                best[f"{cache}-{key}"] = max(best.get(f"{cache}-{key}", 0.0), speed)
    warm(files)
    rss["hash"] = measure(HASH_ONLY, *map(str, files))[1]
    rss["ours1"] = measure(OURS, str(d), "1")[1]
    rss["ours2"] = measure(OURS, str(d), "2")[1]
    rows = []
    for cache in ("warm", "cold"):
        b = {k.split("-", 1)[1]: v for k, v in best.items() if k.startswith(cache)}
        rows += [
            [cache, "hashlib sha256 alone, 1 process", f"{b['hash'] / 1e9:.2f} GB/s", "1.00×", mib(rss["hash"])],
            [
                cache,
                "npu-preflight deep scan, 1 worker",
                f"{b['ours1'] / 1e9:.2f} GB/s",
                f"{b['ours1'] / b['hash']:.2f}×",
                mib(rss["ours1"]),
            ],
            [cache, "hashlib sha256 split over 2 processes", f"{b['hash2'] / 1e9:.2f} GB/s", "1.00×", ""],
            [
                cache,
                "npu-preflight deep scan, 2 workers",
                f"{b['ours2'] / 1e9:.2f} GB/s",
                f"{b['ours2'] / b['hash2']:.2f}×",
                mib(rss["ours2"]),
            ],
        ]
    print(
        f"deep scan (sha256 + NaN/Inf/zero/overflow per tensor) over {total / 2**30:.1f} GiB of real bf16 shards, "
        f"page cache warm and cold (evicted before each run), best of {repeats}"
    )
    print(table(rows, ["cache", "reader", "throughput", "vs its hashlib peer", "peak RSS"]))
    for cache in ("warm", "cold"):
        one = best[f"{cache}-ours1"] / best[f"{cache}-hash"]
        two = best[f"{cache}-ours2"] / best[f"{cache}-hash2"]
        print(f"  {cache}: target one worker ≥ 0.95× hashlib: {'met' if one >= 0.95 else 'NOT met'} ({one:.2f}×)")
        print(
            f"  {cache}: target two workers ≥ 0.9× hashlib over 2 processes: {'met' if two >= 0.9 else 'NOT met'} ({two:.2f}×)"
        )
    print(f"  memory ≤ 256 MB: {'met' if max(rss['ours1'], rss['ours2']) <= 256e6 else 'NOT met'}")
    return {"best": best, "rss": rss}


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
