"""ENV checks: the static variables, and the probe's findings from real and recorded probes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from npu_preflight.cli import registry
from npu_preflight.context import Context, RunOptions
from npu_preflight.model import Severity
from npu_preflight.policy import Policy
from npu_preflight.probe import ProbeResult, classify_import_error
from npu_preflight.runner import run
from tests.conftest import REPO, check_folder, ids, only


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("3,1", "not ascending"), ("0,,1", "empty item"), ("npu0", "'npu0'"), ("-1", "negative"), ("0,0", "duplicate")],
)
def test_visible_devices_malformed(llama: Path, value: str, fragment: str) -> None:
    fs = only(check_folder(llama, env={"ASCEND_RT_VISIBLE_DEVICES": value}), "ENV001")
    assert fs and fragment in fs[0].message and fs[0].location.env == "ASCEND_RT_VISIBLE_DEVICES"


def test_visible_devices_good(llama: Path) -> None:
    assert "ENV001" not in ids(check_folder(llama, env={"ASCEND_RT_VISIBLE_DEVICES": "0,1,2,3"}))


@pytest.mark.parametrize(
    ("name", "value", "check"),
    [
        ("NPU_MEMORY_FRACTION", "95", "ENV002"),
        ("NPU_MEMORY_FRACTION", "0", "ENV002"),
        ("RESERVED_MEMORY_GB", "64", "ENV003"),
        ("RESERVED_MEMORY_GB", "3GB", "ENV003"),
    ],
)
def test_memory_variables(llama: Path, name: str, value: str, check: str) -> None:
    [f] = only(check_folder(llama, env={name: value}), check)
    assert f.location.env == name


def test_rank_env_against_model_config(llama: Path) -> None:
    mc = {"backend_type": "atb", "world_size": 2, "rank": 0, "npu_device_id": 0}
    fs = only(check_folder(llama, mc, env={"WORLD_SIZE": "4", "RANK": "5"}), "ENV004")
    msgs = " | ".join(f.message for f in fs)
    assert (
        "RANK=5 is not below WORLD_SIZE=4" in msgs
        and "WORLD_SIZE=4 in the environment but model_config world_size is 2" in msgs
    )


def test_rank_table_problems(llama: Path, tmp_path: Path) -> None:
    table = tmp_path / "rt.json"
    table.write_text(
        '{"server_list": [{"device": [{"device_id": "0", "device_ip": "192.168.1", "rank_id": "0"},'
        '{"device_id": "1", "device_ip": "10.0.0.2", "rank_id": "0"}]}]}'
    )
    mc = {"backend_type": "atb", "world_size": 4, "rank": 0, "npu_device_id": 0}
    msgs = [
        f.message
        for f in only(check_folder(llama, mc, env={"RANK_TABLE_FILE": str(table), "MASTER_PORT": "99999"}), "ENV005")
    ]
    assert any("192.168.1" in m for m in msgs) and any("repeats rank_id" in m for m in msgs)
    assert any("lists 2 rank(s) but world_size is 4" in m for m in msgs) and any("MASTER_PORT" in m for m in msgs)


def test_rank_table_missing_file(llama: Path, tmp_path: Path) -> None:
    [f] = only(check_folder(llama, env={"RANK_TABLE_FILE": str(tmp_path / "none.json")}), "ENV005")
    assert f.location.env == "RANK_TABLE_FILE"


def test_cann_not_sourced_for_npu(llama: Path) -> None:
    r = check_folder(llama, options=RunOptions(static=True, device="npu"), env={})
    [f] = only(r, "ENV006")
    assert f.severity is Severity.ERROR


def test_autoload_disabled_note(llama: Path) -> None:
    [f] = only(check_folder(llama, env={"TORCH_DEVICE_BACKEND_AUTOLOAD": "0"}), "ENV007")
    assert f.severity is Severity.INFO


def test_deprecated_log_variable(llama: Path) -> None:
    assert "ENV008" in ids(check_folder(llama, env={"MINDIE_LLM_LOG_LEVEL": "debug"}))


RECORDED = {
    "libhccl": "ImportError: libhccl.so: cannot open shared object file: No such file or directory",
    "autoload": "RuntimeError: Failed to load the backend extension: torch_npu. You can disable extension "
    "auto-loading with TORCH_DEVICE_BACKEND_AUTOLOAD=0.\nImportError: libhccl.so: cannot open shared object file",
    "abi": "ImportError: /usr/local/lib/python3.10/site-packages/torch_npu/lib/libtorch_npu.so: undefined symbol: "
    "_ZN3atb9Operation",
    "ascendcl": "OSError: libascendcl.so: cannot open shared object file: No such file or directory",
}


@pytest.mark.parametrize(
    ("key", "kind", "lib"),
    [
        ("libhccl", "cann-missing", "libhccl.so"),
        ("autoload", "autoload-failure", "libhccl.so"),
        ("abi", "abi-mismatch", "libtorch_npu.so"),
        ("ascendcl", "cann-missing", "libascendcl.so"),
    ],
)
def test_classify_recorded_import_failures(key: str, kind: str, lib: str) -> None:
    f = classify_import_error(RECORDED[key])
    assert (f.kind, f.library) == (kind, lib)
    assert f.fix


def _with_probe(folder: Path, data: dict[str, Any], device: str = "auto", failure: str | None = None) -> Any:
    ctx = Context(
        folder,
        {"backend_type": "atb", "world_size": 1, "rank": 0, "npu_device_id": 0},
        options=RunOptions(no_init=True, device=device),
        env={},
    )
    ctx.__dict__["probe"] = ProbeResult(data, None, failure=failure)
    return run(ctx, registry().specs, Policy())


def test_version_mismatch_and_cann_matrix(llama: Path) -> None:
    data = {
        "packages": {"torch": "2.6.0", "torch_npu": "2.5.1"},
        "cann": {"toolkit_version": "8.0.0"},
        "errors": {},
        "torch": {"version": "2.6.0"},
        "npu": {"count": 1, "devices": []},
    }
    r = _with_probe(llama, data, device="npu")
    assert "built for torch 2.5.1" in only(r, "ENV013")[0].message
    assert "built for CANN 8.1.RC1" in only(r, "ENV014")[0].message


def test_probe_failure_is_env010(llama: Path) -> None:
    r = _with_probe(llama, {}, failure="crashed with SIGSEGV")
    [f] = only(r, "ENV010")
    assert "SIGSEGV" in f.message
    skipped = {c.id: c.reason for c in r.checks if c.status.value == "skipped"}
    assert "ENV010" in skipped["ENV011"]


def test_npu_without_devices(llama: Path) -> None:
    data = {
        "packages": {"torch": "2.5.1", "torch_npu": "2.5.1"},
        "errors": {},
        "npu": {"count": 0, "devices": []},
        "cann": {"toolkit_version": "8.1.RC1"},
    }
    r = _with_probe(llama, data, device="npu")
    assert "sees no NPU" in only(r, "ENV012")[0].message
    assert "ENV015" in ids(r)


def test_bf16_on_device_without_it(llama: Path) -> None:
    r = check_folder(llama, options=RunOptions(static=True, target_device="310P3"), env={})
    [f] = only(r, "ENV009")
    assert "310P3" in f.message and "does not support bfloat16" in f.message
    assert "ENV009" not in ids(check_folder(llama, options=RunOptions(static=True, target_device="910B3"), env={}))


def test_real_cpu_probe(llama: Path) -> None:
    r = check_folder(
        llama,
        {"backend_type": "atb", "world_size": 1, "rank": 0, "npu_device_id": 0},
        options=RunOptions(no_init=True, device="cpu"),
        env=dict(os.environ),
    )
    env = r.environment or {}
    assert env["packages"]["torch"].startswith("2.13")
    assert env["host"]["memtotal_bytes"] > 0 and env["host"]["runtime_rss_bytes"] > 0
    assert not [i for i in ids(r, Severity.ERROR) if i.startswith("ENV")]


def _fake_python(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "fake-python"
    p.write_text("#!/bin/sh\n" + body + "\n")
    p.chmod(0o755)
    return p


def test_probe_timeout_kills_the_tree(llama: Path, tmp_path: Path) -> None:
    import uuid

    from tests.toolkit.test_containment import MARK, marked

    mark = uuid.uuid4().hex
    pidfile = tmp_path / "grandchild.pid"
    fake = _fake_python(tmp_path, f"setsid sleep 300 & echo $! > {pidfile}\nsleep 300")
    from npu_preflight.probe import run_probe

    res = run_probe(str(fake), {MARK: mark}, 2)
    assert res.failure and "timed out" in res.failure
    assert pidfile.exists() and marked(mark) == []


def test_probe_segfault(llama: Path, tmp_path: Path) -> None:
    fake = _fake_python(tmp_path, "kill -SEGV $$")
    r = check_folder(llama, options=RunOptions(no_init=True, python=str(fake)), env={})
    [f] = only(r, "ENV010")
    assert "SIGSEGV" in f.message


def test_probe_missing_interpreter(llama: Path, tmp_path: Path) -> None:
    r = check_folder(llama, options=RunOptions(no_init=True, python=str(tmp_path / "no-python")), env={})
    assert "cannot start" in only(r, "ENV010")[0].message


@pytest.fixture(scope="session")
def torch_npu_target() -> Path:
    """torch-npu==2.13.0 installed into an isolated folder (it breaks ``import torch`` wherever it is)."""
    target = REPO / ".cache" / "torch-npu-2.13.0"
    if not (target / "torch_npu").is_dir():
        target.parent.mkdir(exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), "torch-npu==2.13.0"],
            check=True,
            timeout=900,
        )
    return target


@pytest.mark.slow
def test_real_torch_npu_without_cann(llama: Path, torch_npu_target: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASCEND", "TORCH_DEVICE"))}
    env["PYTHONPATH"] = str(torch_npu_target)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "npu_preflight",
            "check",
            str(llama),
            "--no-init",
            "--format",
            "json",
            "--no-out",
            "--set",
            "backend_type=atb",
            "--set",
            "world_size=1",
            "--set",
            "rank=0",
            "--set",
            "npu_device_id=0",
        ],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": f"{REPO}:{torch_npu_target}"},
        cwd=REPO,
        timeout=300,
    )
    import json

    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stdout
    doc = json.loads(proc.stdout)
    [f] = [f for f in doc["findings"] if f["check_id"] == "ENV011"]
    assert f["details"]["kind"] == "autoload-failure" and f["details"]["library"] == "libhccl.so"
    assert "set_env.sh" in f["remediation"] and "TORCH_DEVICE_BACKEND_AUTOLOAD=0" in f["remediation"]
    # with auto-loading off, torch imports and torch_npu itself names the missing CANN library
    env2 = {**env, "PYTHONPATH": f"{REPO}:{torch_npu_target}", "TORCH_DEVICE_BACKEND_AUTOLOAD": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "npu_preflight", "env", "--device", "npu", "--format", "json"],
        capture_output=True,
        text=True,
        env=env2,
        cwd=REPO,
        timeout=300,
    )
    doc = json.loads(proc.stdout)
    [g] = [f for f in doc["findings"] if f["check_id"] == "ENV012"]
    assert g["details"]["kind"] == "cann-missing" and g["details"]["library"].startswith("lib")
    assert "set_env.sh" in g["remediation"]
