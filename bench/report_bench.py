"""Report scale: 5,000 findings rendered to every format. Targets: under 1 s, HTML under 2 MB."""

from __future__ import annotations

import random
import sys
import time

from bench.common import table
from npu_preflight.cli import registry
from npu_preflight.model import CheckRecord, Finding, Location, Report, Severity, Status
from npu_preflight.reports import RENDERERS, RenderOptions


def big_report(n: int = 5000) -> Report:
    rnd = random.Random(0)
    specs = registry().specs
    checks = tuple(CheckRecord(s.id, s.title, s.phase.value, Status.FAILED, 0.001, None) for s in specs)
    findings = []
    for i in range(n):
        s = specs[i % len(specs)]
        layer = rnd.randrange(80)
        findings.append(
            Finding(
                s.id,
                rnd.choice(list(Severity)),
                f"model-{i % 30 + 1:05d}-of-00030.safetensors: tensor model.layers.{layer}.mlp.up_proj.weight ends at byte "
                f"{rnd.randrange(10**10):,} but the file holds {rnd.randrange(10**10):,} <script>alert({i})</script>",
                Location(
                    file=f"model-{i % 30 + 1:05d}-of-00030.safetensors",
                    tensor=f"model.layers.{layer}.mlp.up_proj.weight",
                ),
                "Copy the file again and compare its sha256 with the release.",
                {"i": i},
            )
        )
    return Report(
        "0.1.0", "2026-11-25T00:00:00+00:00", 1.0, "/models/x", None, {}, Severity.ERROR, checks, tuple(findings)
    )


def main(repeats: int = 5) -> dict[str, float]:
    r = big_report()
    opts = RenderOptions(docs={s.id: s.doc for s in registry().specs})
    RENDERERS["html"](r, opts)  # warm the template cache
    rows, out = [], {}
    for name, fn in RENDERERS.items():
        best = float("inf")
        size = 0
        for _ in range(repeats):
            t0 = time.perf_counter()
            text = fn(r, opts)
            best = min(best, time.perf_counter() - t0)
            size = len(text.encode())
        rows.append([name, f"{best * 1000:.0f} ms", f"{size / 2**20:.2f} MiB"])
        out[name] = best
        out[name + "_bytes"] = size
    print(f"rendering a report with {len(r.findings):,} findings (best of {repeats})")
    print(table(rows, ["format", "time", "size"]))
    ok = max(v for k, v in out.items() if not k.endswith("_bytes")) < 1.0 and out["html_bytes"] < 2 * 2**20
    print("  targets (every format < 1 s, HTML < 2 MB):", "met" if ok else "NOT met")
    return out


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
