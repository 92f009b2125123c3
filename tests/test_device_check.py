"""``make device-check`` is for GPU machines; here it must at least stay correct: it compiles, and
its CPU mode runs every step (probe, sandboxed init against the plan, a real OOM classified)."""

from __future__ import annotations

import json
import py_compile
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "device_check.py"


def test_the_script_compiles() -> None:
    py_compile.compile(str(SCRIPT), doraise=True)
    assert "device-check:" in (ROOT / "Makefile").read_text()


def test_cpu_mode_runs_every_step(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    figures = json.loads((tmp_path / "device-check.json").read_text())
    assert figures["ok"] and figures["init_ws1"]["outcome"] == "ok"
    assert abs(figures["init_ws1"]["prediction_error_pct"]) < 25
    assert figures["oom"]["outcome"] == "oom-host" and figures["oom"]["stage"] == "kv_cache"
