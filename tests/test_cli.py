"""The CLI as users run it: through click's runner and as a real subprocess, for each exit code."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from npu_preflight.cli import main
from tests.conftest import PYTHON, REPO, cli_env, validate_report
from tests.factory import fix_config


def invoke(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.stdout, res.stderr


def test_ready_exit_0_and_reports_written(llama: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    code, stdout, _ = invoke("check", str(llama), "--static", "--out", str(out))
    assert code == 0, stdout
    assert stdout.startswith("READY")
    doc = json.loads((out / "report.json").read_text())
    validate_report(doc)
    assert doc["verdict"] == "ready" and doc["environment"] is None
    assert not list(out.glob(".*.tmp"))


def test_not_ready_exit_1_json_on_stdout(llama: Path, tmp_path: Path) -> None:
    fix_config(llama, torch_dtype="float32")
    code, stdout, _ = invoke("check", str(llama), "--static", "--format", "json", "--out", str(tmp_path / "r"))
    assert code == 1
    doc = json.loads(stdout)
    validate_report(doc)
    assert doc["verdict"] == "not_ready"
    assert [f["check_id"] for f in doc["findings"] if f["severity"] != "info"] == ["CFG004"]


def test_fail_on_warning(llama: Path, tmp_path: Path) -> None:
    fix_config(llama, torch_dtype="float16")  # stored bf16 → CFG005 warning
    assert invoke("check", str(llama), "--static", "--no-out")[0] == 0
    assert invoke("check", str(llama), "--static", "--no-out", "--fail-on", "warning")[0] == 1


def test_select_and_ignore(llama: Path, tmp_path: Path) -> None:
    fix_config(llama, torch_dtype="float32")
    assert invoke("check", str(llama), "--static", "--no-out", "--ignore", "CFG004")[0] == 0
    code, stdout, _ = invoke("check", str(llama), "--static", "--no-out", "--select", "WT", "--format", "json")
    doc = json.loads(stdout)
    assert code == 0
    statuses = {c["id"]: (c["status"], c["reason"]) for c in doc["checks"]}
    assert statuses["CFG004"][0] == "skipped" and "--select WT" in statuses["CFG004"][1]


@pytest.mark.parametrize("target", ["missing", "file"])
def test_bad_weights_dir_exit_2(tmp_path: Path, target: str) -> None:
    p = tmp_path / "nope"
    if target == "file":
        p.write_text("x")
    code, _, stderr = invoke("check", str(p), "--static")
    assert code == 2
    assert str(p) in stderr


def test_out_inside_weights_refused(llama: Path) -> None:
    code, _, stderr = invoke("check", str(llama), "--static", "--out", str(llama / "rep"))
    assert code == 2 and "never writes" in stderr
    assert not (llama / "rep").exists()


def test_bad_model_config_file_exit_2(llama: Path, tmp_path: Path) -> None:
    bad = tmp_path / "mc.json"
    bad.write_bytes(b"\xff\x00garbage")
    code, _, stderr = invoke("check", str(llama), "--static", "-c", str(bad), "--no-out")
    assert code == 2 and "mc.json" in stderr


def test_set_recorded_in_report(llama: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    invoke("check", str(llama), "--static", "--set", "world_size=2", "--set", "backend_type=atb", "--out", str(out))
    doc = json.loads((out / "report.json").read_text())
    assert doc["target"]["model_config"]["world_size"] == 2
    assert doc["target"]["model_config"]["backend_type"] == "atb"


def test_checks_and_explain() -> None:
    code, stdout, _ = invoke("checks")
    assert code == 0 and "CFG002" in stdout and "WT011" in stdout
    code, stdout, _ = invoke("explain", "cfg002")
    assert code == 0 and "Bad:" in stdout and "Good:" in stdout and "Fix:" in stdout
    code, _, stderr = invoke("explain", "CFG")
    assert code == 2 and "did you mean" in stderr


def test_internal_error_exit_3(llama: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import npu_preflight.runner

    def boom(*a: object, **k: object) -> None:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(npu_preflight.runner, "run", boom)
    code, _, stderr = invoke("check", str(llama), "--static", "--no-out")
    assert code == 3 and "internal error" in stderr and "ZeroDivisionError" in stderr


def _subprocess(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "npu_preflight", *args],
        capture_output=True,
        text=True,
        env=cli_env(),
        cwd=cwd or REPO,
        timeout=120,
    )


def test_subprocess_exit_codes(llama: Path, tmp_path: Path) -> None:
    p = _subprocess("check", str(llama), "--static", "--out", str(tmp_path / "a"))
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    fix_config(llama, torch_dtype=None, dtype=None)
    p = _subprocess("check", str(llama), "--static", "--out", str(tmp_path / "b"))
    assert p.returncode == 1 and "CFG002" in p.stdout
    p = _subprocess("check", str(tmp_path / "missing"), "--static")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    p = _subprocess("check", "--bogus-option", str(llama))
    assert p.returncode == 2
    code = (
        "import sys, npu_preflight.runner as r\n"
        "def boom(*a, **k): raise RuntimeError('injected')\n"
        "r.run = boom\n"
        "from npu_preflight.cli import main\n"
        f"sys.argv=['npu-preflight','check',{str(llama)!r},'--static','--no-out']\n"
        "main()\n"
    )
    p = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=120)
    assert p.returncode == 3 and "injected" in p.stderr


def test_garbage_everywhere_never_tracebacks(llama: Path, tmp_path: Path) -> None:
    import os

    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
        "model.safetensors.index.json",
        "pytorch_model.bin",
    ):
        (llama / name).write_bytes(os.urandom(3000))
    p = _subprocess("check", str(llama), "--static", "--out", str(tmp_path / "g"))
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stdout + p.stderr
    doc = json.loads((tmp_path / "g" / "report.json").read_text())
    assert doc["summary"]["checks"]["errored"] == 0, [c for c in doc["checks"] if c["status"] == "errored"]


def test_console_script_help_lists_commands() -> None:
    p = _subprocess("--help")
    assert p.returncode == 0 and "check" in p.stdout and "explain" in p.stdout


def test_env_command_json() -> None:
    res = CliRunner().invoke(main, ["env", "--format", "json", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["environment"]["packages"]["torch"].startswith("2.")
    assert doc["environment"]["probe"]["failure"] is None


def test_env_command_text_and_bad_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASCEND_RT_VISIBLE_DEVICES", "1,0")
    res = CliRunner().invoke(main, ["env"])
    assert res.exit_code == 1 and "ENVIRONMENT" in res.stdout and "ENV001" in res.stdout


def test_plan_command(llama: Path) -> None:
    res = CliRunner().invoke(
        main,
        [
            "plan",
            str(llama),
            "--target-device",
            "910B4",
            "--set",
            "world_size=1",
            "--set",
            "max_seq_len=256",
            "--format",
            "json",
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["memory"]["device"]["name"] == "910B4" and doc["memory"]["kv"]["seq_len"] == 256
    res = CliRunner().invoke(main, ["plan", str(llama), "--target-device", "310P3"])
    assert res.exit_code == 1 and "ENV009" in res.stdout and "MEMORY PLAN" in res.stdout
    res = CliRunner().invoke(main, ["plan", str(llama), "--target-device", "B200-not-there"])
    assert res.exit_code == 2 and "catalog" in res.stderr


def test_devices_command() -> None:
    res = CliRunner().invoke(main, ["devices"])
    assert res.exit_code == 0 and "910B3" in res.stdout and "310P3" in res.stdout and "H100-80GB" in res.stdout
