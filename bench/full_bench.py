"""The whole ``check`` (static phase, probe, memory plan, sandboxed init with a forward pass, four
reports) against the plain script an operator would otherwise run: ``from_pretrained`` and one
forward pass, both as whole processes on the same model. The target is ≤ 1.0×: the probe runs in
the init's own process (torch is imported once), which starts with the run, so the static checks
and the plan happen while it imports torch."""

from __future__ import annotations

import sys

from bench.common import OUT, PY, median_runs, mib, table
from bench.memory_bench import SETS, model

PLAIN = """
import sys, torch, transformers
m = transformers.AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.bfloat16)
with torch.no_grad():
    m(torch.tensor([[1, 2, 3, 4]]))
print("ok")
"""


def main(n: int = 5) -> float:
    folder = model("M")
    sets = [a for s in SETS for a in ("--set", s)]
    ours = [
        PY,
        "-m",
        "npu_preflight",
        "check",
        str(folder),
        *sets,
        "--device",
        "cpu",
        "--out",
        str(OUT / "full-report"),
    ]
    (w_ours, r_ours), (w_plain, r_plain) = median_runs([ours, [PY, "-c", PLAIN, str(folder)]], n)
    print(f"full check vs plain from_pretrained + forward, model M (242.5 MiB bf16), median of {n} alternating rounds")
    print(
        table(
            [
                [
                    "npu-preflight check (static, probe, plan, sandboxed init, reports)",
                    f"{w_ours:.2f} s",
                    mib(r_ours),
                    f"{w_ours / w_plain:.2f}×",
                ],
                ["plain script: from_pretrained + one forward", f"{w_plain:.2f} s", mib(r_plain), "1.00×"],
            ],
            ["command", "wall", "peak RSS (process tree)", "vs plain"],
        )
    )
    print(f"  target ≤ 1.0× the plain script: {'met' if w_ours <= w_plain else 'NOT met'} ({w_ours / w_plain:.2f}×)")
    return w_ours / w_plain


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
