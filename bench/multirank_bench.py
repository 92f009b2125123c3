"""Multi-rank init on CPU (gloo): each rank's measured peak against the per-rank plan at world_size
2 and 4 (target |error| ≤ 10%), and the sandbox's launch overhead against a plain
``torch.distributed.run`` of the same child and request (the peer)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import OUT, PY, REPO, env, mib, table
from tests.factory import Spec, build

SPEC = Spec(hidden=1024, layers=8, heads=8, kv_heads=4, intermediate=2816, vocab=16000)
MC = {"world_size": 2, "max_seq_len": 2048, "max_batch_size": 4}

SANDBOXED = """
import json, os, sys, time
from pathlib import Path
from npu_preflight.context import Context, RunOptions
from npu_preflight.sandbox import run_init
mc = json.loads(sys.argv[2])
ctx = Context(Path(sys.argv[1]), mc, options=RunOptions(device="cpu"), env=dict(os.environ))
ctx.plan
req = ctx.init_request()
if os.environ.get("WRITE_REQUEST"):
    Path(os.environ["WRITE_REQUEST"]).write_text(json.dumps(req.child_request(), default=str))
    raise SystemExit(0)
t0 = time.perf_counter(); o = run_init(req); dt = time.perf_counter() - t0
assert o.classified.outcome == "ok", o.to_dict()
print(json.dumps({"wall": dt, "predicted": req.predicted_peak_bytes,
                  "ranks": [[r.rank, r.peak_bytes, r.collective_s] for r in o.ranks]}))
"""


def model() -> Path:
    p = OUT / "model-TP"
    if not (p / "config.json").exists():
        build(p, SPEC)
    return p


def sandboxed(folder: Path, ws: int) -> dict:
    out = subprocess.run(
        [PY, "-c", SANDBOXED, str(folder), json.dumps({**MC, "world_size": ws})],
        capture_output=True,
        text=True,
        env=env(),
        cwd=REPO,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def plain_torchrun(folder: Path, ws: int) -> float:
    """The same child and request under torch.distributed.run alone: no supervisor, no cgroup."""
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        e = env()
        e["WRITE_REQUEST"] = str(t / "request.json")
        subprocess.run(
            [PY, "-c", SANDBOXED, str(folder), json.dumps({**MC, "world_size": ws})], env=e, cwd=REPO, check=True
        )
        (t / "ranks").mkdir()
        child = REPO / "toolkit" / "sandbox" / "child.py"
        e = env()
        e.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
        t0 = time.perf_counter()
        subprocess.run(
            [
                PY,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc-per-node={ws}",
                "--max-restarts=0",
                "--monitor-interval=0.2",
                str(child),
                str(t / "request.json"),
                str(t / "ranks"),
            ],
            env=e,
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        return time.perf_counter() - t0


def main(repeats: int = 3) -> dict:
    folder = model()
    weights = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    print(f"model: {mib(weights)} of bfloat16 weights")
    rows, results = [], {}
    for ws in (2, 4):
        runs = [sandboxed(folder, ws) for _ in range(repeats)]
        peers = [plain_torchrun(folder, ws) for _ in range(repeats)]
        last = runs[-1]
        errs = [(last["predicted"] - p) / p * 100 for _, p, _ in last["ranks"] if p]
        wall, peer = statistics.median(r["wall"] for r in runs), statistics.median(peers)
        worst = max(errs, key=abs)
        results[ws] = {"worst_error_pct": worst, "overhead": wall / peer, "wall": wall, "peer": peer}
        for rank, peak, coll in last["ranks"]:
            rows.append(
                [
                    str(ws),
                    str(rank),
                    mib(peak),
                    mib(last["predicted"]),
                    f"{(last['predicted'] - peak) / peak * 100:+.1f}%",
                    f"{(coll or 0) * 1000:.1f} ms",
                ]
            )
        print(
            f"world_size {ws}: sandboxed {wall:.2f} s vs plain torch.distributed.run {peer:.2f} s "
            f"= {wall / peer:.3f}×; worst per-rank plan error {worst:+.1f}%"
        )
    print(table(rows, ["world_size", "rank", "measured peak", "per-rank plan", "error", "all_reduce"]))
    return results


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
