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


def _descendants(pid: int) -> list[int]:
    """The live processes below ``pid`` (children of children included)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            with open(f"/proc/{parent}/task/{parent}/children", encoding="ascii") as fh:
                kids = [int(k) for k in fh.read().split()]
        except OSError:
            continue
        out.extend(kids)
        todo.extend(kids)
    return out


def run_capture(
    cmd: Sequence[str], extra_env: dict[str, str] | None = None, *, tree: bool = False
) -> tuple[float, int, int, str]:
    """(wall seconds, peak RSS, exit code, stdout).

    The peak is the kernel's VmHWM of the process, sampled every 3 ms until it exits: wait4's
    ru_maxrss would also count the pages the child shares with this (larger) process between fork
    and exec. With ``tree``, it is the sum of the peaks of the process and of every process below it
    that a sample saw (a child forked by the run counts in full, pages it shares included; one that
    lives under 3 ms may be missed). Sampling takes a share of a CPU: time a run unsampled
    (:func:`run_wall`) where the wall matters.
    """
    e = env()
    e.update(extra_env or {})
    t0 = time.perf_counter()
    p = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e, cwd=REPO)
    peaks: dict[int, int] = {}
    while p.poll() is None:
        for pid in [p.pid, *(_descendants(p.pid) if tree else [])]:
            peaks[pid] = max(peaks.get(pid, 0), _hwm(pid))
        time.sleep(0.003)
    wall = time.perf_counter() - t0
    out = p.stdout.read().decode(errors="replace") if p.stdout else ""
    return wall, sum(peaks.values()), p.returncode, out


def run_wall(cmd: Sequence[str], extra_env: dict[str, str] | None = None) -> tuple[float, int, float]:
    """(wall seconds, exit code, CPU seconds) of a run nobody samples: this process waits in
    ``wait4`` and takes no CPU from it (the sampler in :func:`run_capture` preempts one of a run's
    processes on a two-core machine whenever the run keeps both cores busy). The CPU time is user
    and system time of the process and of every process below it that was waited for."""
    e = env()
    e.update(extra_env or {})
    t0 = time.perf_counter()
    p = subprocess.Popen(list(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=e, cwd=REPO)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    return wall, p.returncode, usage.ru_utime + usage.ru_stime


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
    rather than on whichever ran during a busy spell. Per command: the median wall of the ``n``
    rounds, which nobody samples (:func:`run_wall`), and the peak RSS of the warm-up run, sampled
    over the whole process tree (:func:`run_capture` with ``tree``)."""
    rss = []
    for cmd in cmds:
        _, peak, code, _ = run_capture(cmd, tree=True)
        if code not in (0, 1):
            raise RuntimeError(f"{cmd} exited {code}")
        rss.append(peak)
    walls: list[list[float]] = [[] for _ in cmds]
    for _ in range(n):
        for i, cmd in enumerate(cmds):
            w, code, _ = run_wall(cmd)
            if code not in (0, 1):
                raise RuntimeError(f"{cmd} exited {code}")
            walls[i].append(w)
    return [(statistics.median(w), r) for w, r in zip(walls, rss, strict=True)]


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
