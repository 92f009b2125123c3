"""The static phase beside a 1 GiB ``torch.save`` checkpoint: the pickle scanner decodes
``data.pkl`` in place from the memory map and never reads the storage members. Target: the whole
static check's peak RSS ≤ 100 MB. Peer, in the same run: a straightforward scanner that reads every
zip member with ``zipfile`` and walks ``pickletools.genops`` over the pickles (what scanners do)."""

from __future__ import annotations

import sys

from bench.common import OUT, PY, median_run, mib, table
from tests.factory import Spec, build

PEER = """
import pickletools, sys, zipfile
found = []
with zipfile.ZipFile(sys.argv[1]) as z:
    for info in z.infolist():
        data = z.read(info)
        if info.filename.endswith(".pkl"):
            found += [arg for op, arg, pos in pickletools.genops(data) if op.name in ("GLOBAL", "STACK_GLOBAL")]
print(len(found))
"""


def folder() -> tuple[str, str]:
    f = OUT / "with-1gib-checkpoint"
    ckpt = f / "pytorch_model.bin"
    if not ckpt.exists():
        build(f, Spec())
        import torch

        torch.save({"big": torch.zeros(256 * 1024 * 1024, dtype=torch.float32), "b": torch.ones(3)}, str(ckpt))
    return str(f), str(ckpt)


def main(n: int = 5) -> dict[str, float]:
    f, ckpt = folder()
    ours = [PY, "-m", "npu_preflight", "check", f, "--static", "--out", str(OUT / "pickle-report")]
    w_ours, r_ours = median_run(ours, n)
    w_peer, r_peer = median_run([PY, "-c", PEER, ckpt], n)
    print(f"static check of a folder holding a 1 GiB torch.save checkpoint, median of {n}")
    print(
        table(
            [
                ["npu-preflight check --static (pickle simulated in place)", f"{w_ours:.3f} s", mib(r_ours), "1.0×"],
                [
                    "peer: zipfile.read every member + pickletools.genops",
                    f"{w_peer:.3f} s",
                    mib(r_peer),
                    f"{w_peer / w_ours:.2f}×",
                ],
            ],
            ["command", "wall", "peak RSS", "peer wall / ours"],
        )
    )
    print(f"  peak RSS: ours / peer = {r_ours / r_peer:.3f}")
    print(f"  target static peak RSS ≤ 100 MB with the checkpoint: {'met' if r_ours <= 100e6 else 'NOT met'}")
    return {"ours_s": w_ours, "ours_rss": r_ours, "peer_s": w_peer, "peer_rss": r_peer}


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
