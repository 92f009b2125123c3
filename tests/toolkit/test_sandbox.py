"""The sandboxed init with real failures: OOM under a memory cap, signals, hangs, floods."""

from __future__ import annotations

import os
import resource
from pathlib import Path
from typing import Any

import pytest

from npu_preflight.context import Context, RunOptions
from npu_preflight.model import Severity
from npu_preflight.sandbox import InitOutcome
from npu_preflight.sandbox.classify import classify_text
from npu_preflight.units import parse_size
from tests.conftest import MINDIE_MC, REPO, check_folder, only

MC = {**MINDIE_MC, "max_seq_len": 256, "max_batch_size": 1}


def init(folder: Path, mc: dict[str, Any] | None = None, **opts: Any) -> InitOutcome:
    os.chdir(REPO)
    ctx = Context(folder, {**MC, **(mc or {})}, options=RunOptions(device="cpu", **opts), env=dict(os.environ))
    return ctx.init_outcome


@pytest.mark.slow
def test_ok_on_cpu_with_stages_and_peak(llama: Path) -> None:
    o = init(llama)
    assert o.classified.outcome == "ok", o.to_dict()
    stages = [s["stage"] for s in o.stages()]
    assert stages[:6] == ["import", "tokenizer", "weights", "sampler", "kv_cache", "forward"]
    assert o.peak_bytes and o.peak_bytes > 100 * 2**20
    data = o.to_dict()["data"]
    assert data["kv_tensors"] == 2 * 2 and data["kv_bytes"] == 2 * 2 * 2 * 16 * 2 * 2 * 128


@pytest.mark.slow
def test_real_oom_allocating_kv_cache(llama: Path) -> None:
    o = init(llama, {"max_seq_len": 32768, "max_batch_size": 512}, memory_limit=parse_size("2GiB"))
    c = o.classified
    assert c.outcome == "oom-host" and c.requested_bytes and c.requested_bytes >= 2**20
    assert o.to_dict()["stage"] == "kv_cache"


@pytest.fixture(scope="session")
def big_model(model_cache):  # type: ignore[no-untyped-def]
    from tests.factory import Spec

    return model_cache(Spec(hidden=1024, layers=8, heads=8, kv_heads=8, intermediate=2816, vocab=8000))


@pytest.mark.slow
def test_real_oom_mapping_weights(big_model: Path) -> None:
    o = init(big_model, {"max_seq_len": 64}, memory_limit=parse_size("1200MiB"))
    assert o.classified.outcome == "oom-host", o.to_dict()
    assert o.to_dict()["stage"] == "weights"
    assert o.classified.requested_bytes is None or o.classified.requested_bytes > 100 * 2**20


@pytest.mark.slow
def test_sigkill(llama: Path) -> None:
    o = init(llama, generator="tests.sandbox_factories:sigkill")
    assert o.classified.outcome == "oom-host" and "SIGKILL" in o.classified.summary
    assert o.last_stage == "generator"


@pytest.mark.slow
def test_sigkill_near_cap_is_oom(llama: Path) -> None:
    o = init(llama, generator="tests.sandbox_factories:sigkill", memory_limit=parse_size("4GiB"))
    assert o.classified.outcome in ("crash", "oom-host")


@pytest.mark.slow
def test_segfault(llama: Path) -> None:
    o = init(llama, generator="tests.sandbox_factories:segfault")
    assert o.classified.outcome == "crash" and "SIGSEGV" in o.classified.summary


@pytest.mark.slow
def test_hang_times_out_and_kills_grandchildren(llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uuid

    from tests.toolkit.test_containment import MARK, marked

    mark = uuid.uuid4().hex
    monkeypatch.setenv("PREFLIGHT_TEST_PIDFILE", str(tmp_path / "pid"))
    monkeypatch.setenv(MARK, mark)
    o = init(llama, generator="tests.sandbox_factories:hang", timeout=8)
    assert o.classified.outcome == "timeout"
    assert (tmp_path / "pid").exists()  # the grandchild had started
    assert marked(mark) == []


@pytest.mark.slow
def test_output_flood_stays_bounded(llama: Path) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    o = init(llama, generator="tests.sandbox_factories:flood")
    assert o.classified.outcome == "error" and "flooded" in o.classified.summary
    assert len(o.stderr_tail) <= 12000
    grew_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grew_kib < 50 * 1024  # the parent never held the 200 MB


@pytest.mark.slow
def test_missing_library(llama: Path) -> None:
    o = init(llama, generator="tests.sandbox_factories:missing_library")
    assert o.classified.outcome == "import-error" and o.classified.library == "libhccl.so"


@pytest.mark.slow
def test_unsupported_dtype(llama: Path) -> None:
    from tests.factory import fix_config

    fix_config(llama, torch_dtype="int8")
    o = init(llama)
    assert o.classified.outcome == "unsupported-dtype"


@pytest.mark.slow
def test_mindie_absent_is_info(llama: Path) -> None:
    r = check_folder(llama, MC, options=RunOptions(device="cpu", generator="mindie"), env=dict(os.environ))
    [f] = only(r, "INIT001")
    assert f.severity is Severity.INFO and "mindie_llm" in f.message


@pytest.mark.slow
def test_recorded_device_ooms_through_the_sandbox(llama: Path) -> None:
    o = init(llama, generator="tests.sandbox_factories:npu_oom")
    assert (o.classified.outcome, o.classified.device, o.classified.requested_bytes) == ("oom-device", "npu", 2 * 2**30)
    o = init(llama, generator="tests.sandbox_factories:cuda_oom")
    assert (o.classified.outcome, o.classified.device, o.classified.requested_bytes) == (
        "oom-device",
        "cuda",
        20 * 2**20,
    )


@pytest.mark.parametrize(
    ("text", "outcome", "size"),
    [
        (
            "RuntimeError: NPU out of memory. Tried to allocate 512.00 MiB (NPU 3; 29.50 GiB total capacity)",
            "oom-device",
            512 * 2**20,
        ),
        (
            "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.50 GiB. GPU 0 has",
            "oom-device",
            int(1.5 * 2**30),
        ),
        (
            "RuntimeError: [enforce fail at alloc_cpu.cpp:117] . DefaultCPUAllocator: can't allocate memory: you tried "
            "to allocate 4294967296 bytes. Error code 12",
            "oom-host",
            4294967296,
        ),
        (
            "RuntimeError: unable to mmap 9437184 bytes from file </w/model-00001-of-00002.safetensors>: Cannot allocate "
            "memory (12)",
            "oom-host",
            9437184,
        ),
        (
            "NotImplementedError: `torch_dtype` is only supported for type `float16` and `bfloat16`, loaded from "
            "config.json -> torch_dtype",
            "unsupported-dtype",
            None,
        ),
        ("ValueError: unsupported type: float32", "unsupported-dtype", None),
    ],
)
def test_classify_recorded_messages(text: str, outcome: str, size: int | None) -> None:
    c = classify_text(text)
    assert c is not None and c.outcome == outcome and c.requested_bytes == size


@pytest.mark.slow
def test_full_check_reports_init_and_measured_peak(llama: Path, tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    from tests.conftest import cli_env, validate_report

    out = tmp_path / "rep"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "npu_preflight",
            "check",
            str(llama),
            "--device",
            "cpu",
            "--out",
            str(out),
            *[f"--set={k}={json.dumps(v)}" for k, v in MC.items()],
        ],
        capture_output=True,
        text=True,
        env=cli_env(),
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((out / "report.json").read_text())
    validate_report(doc)
    assert doc["init"]["outcome"] == "ok" and doc["memory"]["measured_peak_bytes"] > 0
    assert "measured peak" in proc.stdout and "INIT (transformers on cpu): ok" in proc.stdout
