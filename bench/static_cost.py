"""Where the terminal-only static check's time goes (issue 17, goal 1), each line from fresh
interpreters (median of the rounds):

* ``python -c pass`` (the interpreter and site start, which the numpy reader pays too);
* ``import npu_preflight.cli``;
* the check in-process after that import: its first run (which imports what the run needs) and a
  second run in the same process (the checks alone);
* making the 42-class shape of the static path's data types: ``@dataclass(frozen=True)`` against
  ``@frozen`` (``toolkit/records.py``), per class.

Not part of ``make bench`` (about 10 s): ``python -m bench.static_cost [ROUNDS]``."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

from bench.common import PY, REPO, env, llama70b

IN_PROCESS = r"""
import contextlib, io, json, sys, time
import npu_preflight.cli as cli
sys.argv = ["npu-preflight", "check", sys.argv[1], "--static", "--no-out"]
def once():
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            cli.main()
        except SystemExit:
            pass
    return time.perf_counter() - t
print(json.dumps({"first run": once(), "second run": once()}))
"""

CLASSES = r"""
import dataclasses, json, time
from npu_preflight.records import frozen
def make(deco, n=42):
    t = time.perf_counter()
    for i in range(n):
        ns = {"__annotations__": {f"f{j}": "int" for j in range(6)}, "__doc__": "x"}
        deco(type(f"C{i}", (), ns))
    return (time.perf_counter() - t) / n
print(json.dumps({"@dataclass(frozen=True)": make(dataclasses.dataclass(frozen=True)), "@frozen": make(frozen)}))
"""


def wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env(), cwd=REPO, check=False)
    return time.perf_counter() - t


def main(rounds: int = 9) -> None:
    folder = llama70b()
    walls: dict[str, list[float]] = {"python -c pass": [], "python -c 'import npu_preflight.cli'": []}
    runs: dict[str, list[float]] = {}
    classes: dict[str, list[float]] = {}
    for _ in range(rounds):
        walls["python -c pass"].append(wall([PY, "-c", "pass"]))
        walls["python -c 'import npu_preflight.cli'"].append(wall([PY, "-c", "import npu_preflight.cli"]))
        for name, code, into in (("in-process", IN_PROCESS, runs), ("classes", CLASSES, classes)):
            args = [PY, "-c", code, *([str(folder)] if name == "in-process" else [])]
            out = subprocess.run(args, capture_output=True, env=env(), cwd=REPO, check=True)
            for k, v in json.loads(out.stdout.decode().strip().splitlines()[-1]).items():
                into.setdefault(k, []).append(v)
    print(f"terminal-only static check of {folder.name}, fresh interpreters, median of {rounds}")
    for k, v in walls.items():
        print(f"  {k}: {statistics.median(v) * 1e3:.1f} ms (whole process)")
    for k, v in runs.items():
        print(f"  check in-process after that import, {k}: {statistics.median(v) * 1e3:.1f} ms")
    for k, v in classes.items():
        print(f"  one frozen six-field class with {k}: {statistics.median(v) * 1e6:.0f} µs")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 9)
