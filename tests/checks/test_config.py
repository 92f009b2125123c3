"""CFG checks: one clean folder, one broken per rule, exact id and location asserted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from npu_preflight.model import Severity
from tests.conftest import check_folder, ids, only, problems
from tests.factory import fix_config


def test_clean_folder_has_no_cfg_findings(llama: Path) -> None:
    assert ids(check_folder(llama, select="CFG")) == []


def test_missing_config(llama: Path) -> None:
    (llama / "config.json").unlink()
    r = check_folder(llama)
    [f] = only(r, "CFG001")
    assert f.location.file == "config.json" and f.details["kind"] == "missing"
    # checks that need config.json are skipped, naming the blocking check
    skipped = {c.id: c.reason for c in r.checks if c.status.value == "skipped"}
    assert "CFG001" in skipped["CFG002"]


def test_config_not_json(llama: Path) -> None:
    (llama / "config.json").write_bytes(b'{"model_type": "lla')
    [f] = only(check_folder(llama), "CFG001")
    assert f.details["kind"] == "invalid"


def test_config_binary_garbage(llama: Path) -> None:
    (llama / "config.json").write_bytes(bytes(range(256)) * 10)
    [f] = only(check_folder(llama), "CFG001")
    assert f.details["kind"] == "not-utf8"


def test_config_not_object(llama: Path) -> None:
    (llama / "config.json").write_text("[1, 2]")
    [f] = only(check_folder(llama), "CFG001")
    assert f.details["kind"] == "not-object"


def test_config_deeply_nested_is_a_finding(llama: Path) -> None:
    (llama / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    [f] = only(check_folder(llama), "CFG001")
    assert f.details["kind"] == "too-deep"


def test_config_too_large(llama: Path) -> None:
    with open(llama / "config.json", "w") as fh:
        fh.write('{"pad": "' + "x" * (11 * 1024 * 1024) + '"}')
    [f] = only(check_folder(llama), "CFG001")
    assert f.details["kind"] == "too-large"


def test_config_is_a_directory(llama: Path) -> None:
    (llama / "config.json").unlink()
    (llama / "config.json").mkdir()
    [f] = only(check_folder(llama), "CFG001")
    assert f.details["kind"] == "not-regular" and "directory" in f.message


def test_torch_dtype_missing(llama: Path) -> None:
    fix_config(llama, torch_dtype=None, dtype=None)
    r = check_folder(llama)
    [f] = only(r, "CFG002")
    assert "unsupported type: None" in f.message
    assert f.location.key == "config.json:torch_dtype"
    assert '"torch_dtype": "bfloat16"' in f.remediation  # suggests the stored dtype
    assert problems(r) == ["CFG002"]


def test_only_transformers5_dtype(llama: Path) -> None:
    fix_config(llama, torch_dtype=None, dtype="bfloat16")
    r = check_folder(llama)
    assert problems(r) == ["CFG003"]
    assert only(r, "CFG003")[0].location.key == "config.json:dtype"


def test_torch_dtype_float32(llama: Path) -> None:
    fix_config(llama, torch_dtype="float32")
    r = check_folder(llama)
    [f] = only(r, "CFG004")
    assert "unsupported type: float32" in f.message
    assert f.location.key == "config.json:torch_dtype"


def test_torch_dtype_nonsense_string(llama: Path) -> None:
    fix_config(llama, torch_dtype="fp16")
    assert "CFG004" in ids(check_folder(llama))


def test_stored_bf16_declared_fp16(llama: Path) -> None:
    fix_config(llama, torch_dtype="float16")
    r = check_folder(llama)
    [f] = only(r, "CFG005")
    assert f.severity is Severity.WARNING
    assert "bfloat16" in f.message and "65504" in f.message
    assert f.location.file == "model.safetensors" and f.location.tensor


def test_stored_fp32_declared_bf16(tmp_path: Path, llama: Path) -> None:
    (llama / "model.safetensors").unlink()
    save_file(
        {"model.embed_tokens.weight": np.zeros((320, 64), np.float32)},
        str(llama / "model.safetensors"),
        metadata={"format": "pt"},
    )
    [f] = only(check_folder(llama, select="CFG005"), "CFG005")
    assert "float32" in f.message and "host memory" in f.message


def test_few_fp32_norms_are_only_a_note(make_model) -> None:  # type: ignore[no-untyped-def]
    m = make_model(dtype="float32", hidden=64)
    fix_config(m, torch_dtype="float32")
    # all float32: a MindIE dtype error, but no mismatch
    assert "CFG005" not in ids(check_folder(m))


def test_model_type_and_architectures_missing(llama: Path) -> None:
    fix_config(llama, model_type=None, architectures=None)
    fs = only(check_folder(llama), "CFG006")
    assert [(f.severity, f.location.key) for f in fs] == [
        (Severity.ERROR, "config.json:model_type"),
        (Severity.WARNING, "config.json:architectures"),
    ]


def test_cfg_never_writes(llama: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in llama.iterdir()}
    check_folder(llama)
    assert {p.name: p.stat().st_mtime_ns for p in llama.iterdir()} == before
    assert json.loads((llama / "config.json").read_text())["torch_dtype"] == "bfloat16"
