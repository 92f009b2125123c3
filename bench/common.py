"""Measuring whole processes: wall time and peak RSS (from wait4), medians over repeats."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
PY = sys.executable


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO)
    e["HF_HUB_OFFLINE"] = "1"
    e["TRANSFORMERS_OFFLINE"] = "1"
    return e


def _hwm(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_capture(cmd: Sequence[str], extra_env: dict[str, str] | None = None) -> tuple[float, int, int, str]:
    """(wall seconds, peak RSS of that process alone, exit code, stdout).

    The peak is the kernel's VmHWM of the process, sampled until it exits: wait4's ru_maxrss would
    also count the pages the child shares with this (larger) process between fork and exec.
    """
    e = env()
    e.update(extra_env or {})
    t0 = time.perf_counter()
    p = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e, cwd=REPO)
    peak = 0
    while p.poll() is None:
        peak = max(peak, _hwm(p.pid))
        time.sleep(0.003)
    wall = time.perf_counter() - t0
    out = p.stdout.read().decode(errors="replace") if p.stdout else ""
    return wall, peak, p.returncode, out


def run(cmd: Sequence[str], *, check: bool = False) -> tuple[float, int, int]:
    """(wall seconds, peak RSS bytes, exit code)."""
    wall, peak, code, _ = run_capture(cmd)
    if check and code not in (0, 1):
        raise RuntimeError(f"{cmd} exited {code}")
    return wall, peak, code


def median_run(cmd: Sequence[str], n: int) -> tuple[float, int]:
    """Median wall and max peak RSS over n runs (after one warm-up)."""
    return median_runs([cmd], n)[0]


def median_runs(cmds: Sequence[Sequence[str]], n: int) -> list[tuple[float, int]]:
    """``median_run`` for several commands in alternating rounds (each command once per round, after
    one warm-up each), so that this machine's drifting background load falls on all of them alike
    rather than on whichever ran during a busy spell. Median wall and max peak RSS per command."""
    for cmd in cmds:
        run(cmd)
    walls: list[list[float]] = [[] for _ in cmds]
    rss: list[list[int]] = [[] for _ in cmds]
    for _ in range(n):
        for i, cmd in enumerate(cmds):
            w, r, _ = run(cmd, check=True)
            walls[i].append(w)
            rss[i].append(r)
    return [(statistics.median(w), max(r)) for w, r in zip(walls, rss, strict=True)]


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def table(rows: list[list[str]], head: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join([line, sep, *body])


def llama70b(tokenizer: bool = False) -> Path:
    """The 70B-shaped sparse folder the static benchmarks share, built once under bench/out; with
    ``tokenizer``, its twin holding a real-size 150k-token tokenizer.json."""
    from tests.factory import build_sparse_llama, write_large_tokenizer

    if not tokenizer:
        folder = OUT / "llama70b-sparse"
        if not (folder / "config.json").exists():
            build_sparse_llama(folder)
        return folder
    folder = OUT / "llama70b-sparse-tokenizer"
    if not (folder / "tokenizer.json").exists():
        build_sparse_llama(folder, vocab=150_528)
        write_large_tokenizer(folder)
    return folder
