"""The cyclic collector's share of a static check, from ``gc.callbacks`` in fresh interpreters: the
program as installed (``npu_preflight.__main__.main``: the CLI imported with the collector off and
frozen, then a young generation of 10,000) against the CLI entered directly with Python's defaults
(``cli.run``, as before 4284267). Collections per generation and the time inside them, median of
ROUNDS, on the 70B-shaped folder with and without the 150k-token tokenizer.json.

Not part of ``make bench`` (a few seconds): ``python -m bench.gc_cost [ROUNDS]``."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

from bench.common import PY, REPO, env, llama70b

CODE = r"""
import atexit, gc, json, os, sys, time
entry, folder = sys.argv[1], sys.argv[2]
counts, spent, started = [0, 0, 0], [0.0], [0.0]
def seen(phase, info):
    if phase == "start":
        started[0] = time.perf_counter()
    else:
        counts[info["generation"]] += 1
        spent[0] += time.perf_counter() - started[0]
gc.callbacks.append(seen)
me = os.getpid()  # the chat template renders fork children, which end through os._exit as well
atexit.register(lambda: os.getpid() == me and print(json.dumps({"counts": counts, "ms": spent[0] * 1e3}), file=sys.stderr))
sys.argv = ["npu-preflight", "check", folder, "--static", "--no-out"]
if entry == "main":
    from npu_preflight.__main__ import main
    main()
else:
    from npu_preflight.cli import run
    run()
"""


def main(rounds: int = 5) -> None:
    plain, tok = llama70b(), llama70b(tokenizer=True)
    print(f"collections (young, middle, old) and time in them during a static check, median of {rounds}")
    for folder in (plain, tok):
        for entry, label in (("main", "as installed (__main__.main)"), ("run", "defaults (cli.run)")):
            got = []
            for _ in range(rounds):
                p = subprocess.run([PY, "-c", CODE, entry, str(folder)], capture_output=True, env=env(), cwd=REPO)
                got.append(json.loads(p.stderr.decode().strip().splitlines()[-1]))
            counts = [int(statistics.median(g["counts"][i] for g in got)) for i in range(3)]
            ms = statistics.median(g["ms"] for g in got)
            print(f"  {folder.name}, {label}: {counts} collections, {ms:.1f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
