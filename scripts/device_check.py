"""``make device-check``: the accelerator path for real, in one call, on a machine with a GPU.

1. the probe (``npu-preflight env --device cuda``) must see the device;
2. a small real model is built and the sandboxed init runs on it (world_size 1; nccl at
   world_size 2 when two devices are visible), and its measured peak is set against the plan;
3. an oversized KV cache is requested so that the init meets a real "CUDA out of memory", which
   must come back classified as a device OOM with the size it tried to allocate.

Everything goes to ``$OUT`` (or ``--out``): each run's report set and ``device-check.json`` with
the figures bench/RESULTS.md records. Exit 0 when every step behaved as expected.

``--device cpu`` runs the same steps on the host (the OOM then comes from --memory-limit); the
test suite uses it to keep this script working where no GPU is lent.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BASE = {
    "backend_type": "atb",
    "rank": 0,
    "local_rank": 0,
    "npu_device_id": 0,
    "trust_remote_code": False,
    "max_seq_len": 1024,
    "max_batch_size": 2,
}


def cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "npu_preflight", *args]
    print("$", " ".join(cmd), flush=True)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout)


def sets(mc: dict[str, object]) -> list[str]:
    out: list[str] = []
    for k, v in mc.items():
        out += ["--set", f"{k}={json.dumps(v)}"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "device-check-out"))
    ap.add_argument("--quick", action="store_true", help="smaller model, world_size 1 only")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    figures: dict[str, object] = {"device": args.device, "started": time.time()}
    ok = True

    env = cli("env", "--device", args.device, "--format", "json")
    doc = json.loads(env.stdout) if env.stdout.strip().startswith("{") else {}
    devices = (doc.get("environment") or {}).get("cuda", {}).get("devices", []) if args.device == "cuda" else []
    figures["probe"] = {"exit": env.returncode, "cuda_devices": devices}
    if args.device == "cuda" and not devices:
        print("the probe sees no CUDA device:", env.stdout[-2000:], env.stderr[-2000:])
        (out / "device-check.json").write_text(json.dumps(figures, indent=2))
        return 1

    sys.path.insert(0, str(REPO))
    from tests.factory import Spec, build

    model = out / "model"
    if not (model / "config.json").exists():
        hidden = 256 if args.quick else 1024
        build(model, Spec(hidden=hidden, layers=4, heads=8, kv_heads=4, intermediate=hidden * 3, vocab=8192))

    def init_run(name: str, mc: dict[str, object], extra: list[str], select: str) -> tuple[Any, dict[str, Any]]:
        """``check`` with the sandboxed init on the model; the exit and the JSON report."""
        rep = out / name
        r = cli(
            "check",
            str(model),
            "--device",
            args.device,
            *sets(mc),
            *extra,
            "--timeout",
            "600",
            "--out",
            str(rep),
            "--select",
            select,
            "--format",
            "json",
        )
        return r, json.loads((rep / "report.json").read_text())

    runs = [1] if args.quick or (len(devices) < 2 and args.device == "cuda") else [1, 2]
    limit = ["--memory-limit", "6GiB"]
    for ws in runs:
        r, report = init_run(f"init-ws{ws}", {**BASE, "world_size": ws}, limit, "INIT,MEM")
        init = report.get("init") or {}
        mem = report.get("memory") or {}
        figures[f"init_ws{ws}"] = {
            "exit": r.returncode,
            "outcome": init.get("outcome"),
            "summary": init.get("summary"),
            "peak_bytes": init.get("peak_bytes"),
            "peak_source": init.get("peak_source"),
            "predicted_peak_bytes": mem.get("predicted_peak_bytes"),
            "prediction_error_pct": mem.get("prediction_error_pct"),
            "ranks": [
                {k: x.get(k) for k in ("rank", "outcome", "peak_bytes", "prediction_error_pct", "collective_s")}
                for x in init.get("ranks") or []
            ],
        }
        ok &= init.get("outcome") == "ok"

    # a real out-of-memory: a KV cache far beyond the device (or the host cap on CPU)
    huge = {**BASE, "world_size": 1, "max_seq_len": 65536, "max_batch_size": 4096}
    cap = ["--memory-limit", "2GiB"] if args.device == "cpu" else []
    r, report = init_run("oom", huge, cap, "INIT")
    init = report.get("init") or {}
    want = "oom-device" if args.device == "cuda" else "oom-host"
    figures["oom"] = {
        "exit": r.returncode,
        "outcome": init.get("outcome"),
        "summary": init.get("summary"),
        "requested_bytes": init.get("requested_bytes"),
        "stage": init.get("stage"),
    }
    ok &= init.get("outcome") == want and r.returncode == 1
    figures["ok"] = ok
    figures["finished"] = time.time()
    (out / "device-check.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
