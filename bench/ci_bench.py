"""CI shapes: a 10-folder ``scan`` against 10 sequential ``check`` runs of the same folders (the
peer), and a cached re-check of the 70B-shaped folder against an uncached one."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import time

from bench.common import OUT, PY, REPO, env, llama70b, median_run
from tests.factory import Spec, build


def _folders() -> list:
    root = OUT / "ci-folders"
    if not (root / "f9" / "config.json").exists():
        shutil.rmtree(root, ignore_errors=True)
        base = OUT / "ci-base"
        if not (base / "config.json").exists():
            build(base, Spec(family="llama", hidden=256, layers=4, heads=8, kv_heads=4, intermediate=512, vocab=512))
        for i in range(10):
            shutil.copytree(base, root / f"f{i}")
    return sorted(root.iterdir())


def _wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env(), cwd=REPO, capture_output=True)
    return time.perf_counter() - t0


def main(n: int = 3) -> dict[str, float]:
    folders = _folders()
    scans, seqs = [], []
    for _ in range(n):
        scans.append(
            _wall(
                [
                    PY,
                    "-m",
                    "npu_preflight",
                    "scan",
                    str(OUT / "ci-folders"),
                    "--out",
                    str(OUT / "ci-scan"),
                    "--",
                    "--static",
                ]
            )
        )
        t0 = time.perf_counter()
        for f in folders:
            subprocess.run(
                [PY, "-m", "npu_preflight", "check", str(f), "--static", "--no-out"],
                env=env(),
                cwd=REPO,
                capture_output=True,
            )
        seqs.append(time.perf_counter() - t0)
    scan, seq = statistics.median(scans), statistics.median(seqs)
    print(f"10 folders: scan {scan:.2f} s vs 10 sequential checks {seq:.2f} s = {seq / scan:.2f}× faster")
    folder = llama70b()
    cache = OUT / "ci-cache"
    shutil.rmtree(cache, ignore_errors=True)
    base = [PY, "-m", "npu_preflight", "check", str(folder), "--static", "--no-out"]
    uncached, _ = median_run([*base, "--no-cache", "--cache-dir", str(cache)], n * 2 + 1)
    subprocess.run([*base, "--cache-dir", str(cache)], env=env(), cwd=REPO, capture_output=True)  # fill
    cached, _ = median_run([*base, "--cache-dir", str(cache)], n * 2 + 1)
    print(f"70B-shaped folder: cached re-check {cached:.3f} s vs uncached {uncached:.3f} s = {uncached / cached:.2f}×")
    return {"scan_s": scan, "sequential_s": seq, "cached_s": cached, "uncached_s": uncached}


if __name__ == "__main__":
    main()
