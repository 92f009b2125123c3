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


def run(cmd: Sequence[str], *, check: bool = False) -> tuple[float, int, int]:
    """(wall seconds, peak RSS bytes of the process and its reaped children, exit code)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(list(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env(), cwd=REPO)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""
    if check and p.returncode not in (0, 1):
        raise RuntimeError(f"{cmd} exited {p.returncode}: {err[-2000:]}")
    return wall, ru.ru_maxrss * 1024, p.returncode


def median_run(cmd: Sequence[str], n: int) -> tuple[float, int]:
    """Median wall and max peak RSS over n runs (after one warm-up)."""
    run(cmd)
    walls, rss = [], []
    for _ in range(n):
        w, r, _ = run(cmd, check=True)
        walls.append(w)
        rss.append(r)
    return statistics.median(walls), max(rss)


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def table(rows: list[list[str]], head: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join([line, sep, *body])
