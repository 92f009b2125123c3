"""Scaling: one header with 10k/100k/300k tensors, and a folder of 10/100/1,000 shards.

Header: our reader (parse + every per-tensor rule + the layout rules) against the raw-header parser
(``json.loads`` of the same bytes, the floor any reader pays) and ``safe_open(framework="numpy")``
reading every shape. Target: per-tensor cost within 2× the raw parser's at 100k and 300k.

Shards: the same 111-layer model's tensors spread over 1, 10, 100 and 1,002 shards, ``check --static``
as a whole process and timed after its imports. The cost of an added shard up to 1,002 must stay
within 2× of its cost up to 100 (linear in the shard count)."""

from __future__ import annotations

import json
import statistics
import struct
import sys
from pathlib import Path

from bench.common import OUT, PY, median_run, table
from tests.factory import build_sparse_llama

_IN_PROCESS = """
import json, sys, time
from safetensors import safe_open
from npu_preflight.formats.safetensors import read_header
path, which = sys.argv[1], sys.argv[2]
if True:
    t = time.perf_counter()
    if which == "ours":
        h = read_header(path)
        h.layout_problems()
    elif which == "raw":
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            json.loads(f.read(n))
    else:
        with safe_open(path, framework="numpy") as s:
            for k in s.keys():
                s.get_slice(k).get_shape()
    print(time.perf_counter() - t)
"""


def _header_file(n: int) -> Path:
    path = OUT / f"header-{n}.safetensors"
    if path.exists():
        return path
    hdr: dict[str, object] = {"__metadata__": {"format": "pt"}}
    off = 0
    for i in range(n):
        hdr[f"model.layers.{i // 64}.mlp.experts.{i % 64}.down_proj.weight"] = {
            "dtype": "BF16",
            "shape": [4, 4],
            "data_offsets": [off, off + 32],
        }
        off += 32
    raw = json.dumps(hdr).encode()
    raw += b" " * (-len(raw) % 8)
    OUT.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        f.truncate(8 + len(raw) + off)
    return path


def _in_process(path: Path, which: str, rounds: int) -> float:
    """Median seconds of one read (imports excluded), each read in a fresh interpreter as a check
    does it: once per file, with no earlier header still on the heap."""
    import subprocess

    from bench.common import REPO, env

    times = []
    for _ in range(rounds):
        out = subprocess.run(
            [PY, "-c", _IN_PROCESS, str(path), which],
            capture_output=True,
            text=True,
            env=env(),
            cwd=REPO,
            check=True,
        )
        times.append(float(out.stdout.strip()))
    return statistics.median(times)


def headers(rounds: int) -> dict[int, float]:
    rows = []
    ratios: dict[int, float] = {}
    for n in (10_000, 100_000, 300_000):
        path = _header_file(n)
        ours = _in_process(path, "ours", rounds)
        raw = _in_process(path, "raw", rounds)
        lib = _in_process(path, "numpy", rounds)
        ratios[n] = ours / raw
        rows.append(
            [
                f"{n:,}",
                f"{ours:.3f} s",
                f"{ours / n * 1e6:.2f} µs",
                f"{raw:.3f} s",
                f"{lib:.3f} s",
                f"{ours / raw:.2f}×",
                f"{ours / lib:.2f}×",
            ]
        )
    print(f"one header, n tensors: read + every rule, median of {rounds} fresh interpreters, one read each")
    print(
        table(
            rows,
            ["tensors", "ours", "per tensor", "raw json.loads", "safe_open numpy", "ours / raw", "ours / numpy"],
        )
    )
    for n in (100_000, 300_000):
        print(f"  target per-tensor ≤ 2× the raw parser at {n:,}: {'met' if ratios[n] <= 2 else 'NOT met'}")
    return ratios


_CHECK_IN_PROCESS = """
import contextlib, io, sys, time
import npu_preflight.cli as cli
sys.argv = ["npu-preflight", "check", sys.argv[1], "--static", "--no-out"]
t = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    cli.main()
print(time.perf_counter() - t, file=sys.stderr)
"""


def _check_in_process(folder: Path, rounds: int) -> float:
    """Median seconds of ``check --static --no-out`` after the imports, each in a fresh interpreter."""
    import subprocess

    from bench.common import REPO, env

    times = []
    for _ in range(rounds):
        out = subprocess.run(
            [PY, "-c", _CHECK_IN_PROCESS, str(folder)], capture_output=True, text=True, env=env(), cwd=REPO
        )
        times.append(float(out.stderr.strip().splitlines()[-1]))
    return statistics.median(times)


def shards(n: int) -> float:
    """The marginal cost of a shard, from the check's own time (interpreter start and imports left
    out: their ±5 ms would swamp the few ms that 100 shards add). Linear means a shard costs the
    same at 1,002 as at 100: (T(1,002) − T(1)) / 1,001 within 2× of (T(100) − T(1)) / 99."""
    walls: dict[int, float] = {}
    inner: dict[int, float] = {}
    for count in (1, 10, 100, 1002):
        folder = OUT / f"shards-{count}"
        if not (folder / "config.json").exists():
            build_sparse_llama(folder, layers=111, hidden=512, heads=8, kv_heads=2, intermediate=1024, shards=count)
        walls[count], _ = median_run([PY, "-m", "npu_preflight", "check", str(folder), "--static", "--no-out"], n)
        inner[count] = _check_in_process(folder, max(9, n))
    low = (inner[100] - inner[1]) / 99
    high = (inner[1002] - inner[1]) / 1001
    rows = [[f"{c:,}", f"{w:.3f} s", f"{inner[c] * 1e3:.1f} ms"] for c, w in walls.items()]
    print(
        f"check --static --no-out, the same 1,002 tensors over 1 / 10 / 100 / 1,002 shards: whole process "
        f"(median of {n}) and the check after its imports (median of {max(9, n)} fresh interpreters)"
    )
    print(table(rows, ["shards", "whole process", "check after imports"]))
    print(f"  cost per added shard: up to 100 shards {low * 1e3:.3f} ms, up to 1,002 shards {high * 1e3:.3f} ms")
    ratio = high / low if low > 0 else float("inf")
    print(f"  target 1,000 shards within 2× of 100 per shard: {'met' if ratio <= 2 else 'NOT met'} ({ratio:.2f}×)")
    return ratio


def main(n: int = 5) -> dict[str, float]:
    ratios = headers(max(3, n))
    shard_ratio = shards(n)
    return {"h100k": ratios[100_000], "h300k": ratios[300_000], "shards": shard_ratio}


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
