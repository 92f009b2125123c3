"""What the tokenizer read-ahead (``npu_preflight.readahead``) gains and costs (issue 17, goal 2):
the static check of the 70B-shaped folder with its 150k-token tokenizer.json, with the read-ahead
and with ``NPU_PREFLIGHT_READAHEAD=0``, beside the same folder without a tokenizer and the numpy
reader, in alternating rounds nobody samples. Wall time, and CPU time of the whole process tree
(user + system, children included): the read-ahead trades CPU on the other core for wall time.

Not part of ``make bench`` (a minute): ``python -m bench.readahead_cost [ROUNDS]``."""

from __future__ import annotations

import statistics
import sys

from bench.common import PY, llama70b, run_wall
from bench.static_bench import PEER_A


def main(rounds: int = 21) -> None:
    plain, tok = llama70b(), llama70b(tokenizer=True)
    check = [PY, "-m", "npu_preflight", "check"]
    cmds: dict[str, tuple[list[str], dict[str, str]]] = {
        "150k-token tokenizer, read ahead": ([*check, str(tok), "--static", "--no-out"], {}),
        "150k-token tokenizer, NPU_PREFLIGHT_READAHEAD=0": (
            [*check, str(tok), "--static", "--no-out"],
            {"NPU_PREFLIGHT_READAHEAD": "0"},
        ),
        "no tokenizer": ([*check, str(plain), "--static", "--no-out"], {}),
        "numpy reader (no tokenizer)": ([PY, "-c", PEER_A, str(plain)], {}),
    }
    for cmd, extra in cmds.values():  # warm-up
        run_wall(cmd, extra)
    walls: dict[str, list[float]] = {k: [] for k in cmds}
    cpus: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(rounds):
        for name, (cmd, extra) in cmds.items():
            wall, code, cpu = run_wall(cmd, extra)
            if code not in (0, 1):
                raise RuntimeError(f"{cmd} exited {code}")
            walls[name].append(wall)
            cpus[name].append(cpu)
    print(f"static check, 70B-shaped folder, median of {rounds} alternating rounds (wall, CPU of the process tree)")
    med = {k: statistics.median(v) for k, v in walls.items()}
    for name in cmds:
        print(f"  {name}: {med[name] * 1e3:.1f} ms wall, {statistics.median(cpus[name]) * 1e3:.0f} ms CPU")
    on, off = med["150k-token tokenizer, read ahead"], med["150k-token tokenizer, NPU_PREFLIGHT_READAHEAD=0"]
    reader = med["numpy reader (no tokenizer)"]
    print(
        f"  read ahead / not: {on / off:.2f}×; with the tokenizer / numpy reader: {on / reader:.2f}× (not: {off / reader:.2f}×)"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 21)
