"""A/B of the terminal-only static check against the safetensors numpy reader, alternating the two
every round so that the machine's background load falls on both alike (``median_run`` measures one
command's rounds back to back). ``python -m bench.ab_static [ROUNDS]``; not part of ``make bench``."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from bench.common import PY, REPO, env, llama70b
from bench.static_bench import PEER_A


def main(rounds: int = 21) -> float:
    folder = llama70b()
    cmds = {
        "npu-preflight check --static --no-out": [
            PY,
            "-m",
            "npu_preflight",
            "check",
            str(folder),
            "--static",
            "--no-out",
        ],
        "safe_open(framework=np) walk": [PY, "-c", PEER_A, str(folder)],
    }
    walls: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(rounds):
        for name, cmd in cmds.items():
            t = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env(), cwd=REPO)
            walls[name].append(time.perf_counter() - t)
    ours, peer = (statistics.median(v) for v in walls.values())
    print(f"alternating A/B, median of {rounds} rounds each")
    for name, v in walls.items():
        print(f"  {name}: {statistics.median(v):.3f} s")
    print(f"  ours / peer: {ours / peer:.2f}×")
    return ours / peer


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 21)
