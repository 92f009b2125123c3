"""Real vendors' config.json files over sparse shards with the real tensor names: no false alarms,
the true faults found (tests/data/vendor_configs/SOURCES.json says which, and why)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from npu_preflight.cli import registry
from npu_preflight.context import Context, RunOptions
from npu_preflight.model import Severity
from npu_preflight.policy import Policy
from npu_preflight.runner import run
from tests import vendor

CASES = vendor.cases()
STRUCTURAL = ("ARCH001", "ARCH002", "ARCH003", "ARCH004", "ARCH005", "DIST001", "DIST002", "MEM001")


def _mc(ws: int) -> dict[str, Any]:
    return {
        "backend_type": "atb",
        "world_size": ws,
        "rank": 0,
        "local_rank": 0,
        "npu_device_id": 0,
        "trust_remote_code": False,
        "max_seq_len": 4096,
        "max_batch_size": 1,
    }


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {}


def _folder(folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    if name not in folders:
        folders[name] = vendor.build(name, tmp_path_factory.mktemp("vendor") / name)
    return folders[name]


def test_the_set_is_broad_enough() -> None:
    """At least 20 vendor configs from at least 12 families, each with its origin."""
    assert len(CASES) >= 20
    families = {vendor.config(n)["model_type"] for n in CASES}
    assert len(families) >= 12, families
    for name, case in CASES.items():
        o = case["origin"]
        assert o["repo"].count("/") == 1 and len(o["commit"]) == 40 and o["path"], name
        assert set(case["expected"]) == {"1", "4", "8"}, name


@pytest.mark.parametrize("name", sorted(CASES))
def test_vendor_config(folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, name: str) -> None:
    folder = _folder(folders, tmp_path_factory, name)
    case = CASES[name]
    for ws in ("1", "4", "8"):
        ctx = Context(
            folder,
            _mc(int(ws)),
            options=RunOptions(static=True, target_device="910B3"),
            env={"ASCEND_RT_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"},
        )
        report = run(ctx, registry().specs, Policy())
        assert report.status_counts()["errored"] == 0, [c.reason for c in report.checks if c.status.value == "errored"]
        found = {f.check_id: f.severity.value for f in report.findings if f.severity is not Severity.INFO}
        assert found == case["expected"][ws], f"{name} at world_size {ws}: " + "; ".join(
            f"{f.check_id} {f.severity.value}: {f.message}" for f in report.findings if f.severity is not Severity.INFO
        )
        assert report.ready == ("error" not in case["expected"][ws].values())
        ran = {c.id for c in report.checks if c.status.value != "skipped"}
        assert set(STRUCTURAL) <= ran, f"{name}: structural checks skipped: {set(STRUCTURAL) - ran}"
        arch7 = [f.message for f in report.findings if f.check_id == "ARCH007"]
        assert not arch7, arch7  # a known family, read with its own naming (not the generic fallback)


def test_phi4_fault_names_the_kv_heads(folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = _folder(folders, tmp_path_factory, "phi-4")
    ctx = Context(folder, _mc(4), options=RunOptions(static=True, target_device="910B3"), env={})
    [f] = [f for f in run(ctx, registry().specs, Policy()).findings if f.check_id == "DIST002"]
    assert f.details["kv_heads"] == 10 and f.details["valid"] == [1, 2] and "packed qkv" in f.message


def test_deepseek_v3_fp8_is_planned_as_stored_and_as_converted(
    folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """98.8% of DeepSeek-V3's bytes are FP8: the plan on an FP8 GPU counts them as stored, on the
    910B as the BF16 conversion the target needs."""
    folder = _folder(folders, tmp_path_factory, "DeepSeek-V3")
    plans = {}
    for target in ("910B3", "H100-80GB"):
        ctx = Context(folder, _mc(8), options=RunOptions(static=True, target_device=target), env={})
        report = run(ctx, registry().specs, Policy())
        plans[target] = report.memory
        q = ctx.quantization
        assert q.method == "fp8" and q.block == (128, 128) and 0.98 < q.share < 0.995
        # the 58k F32 weight_scale_inv tensors are not "converted while loading" (the F32
        # e_score_correction_bias, 59 tensors, is: a note)
        cfg5 = [f for f in report.findings if f.check_id == "CFG005"]
        assert all(f.severity is Severity.INFO and f.details["tensors"] < 100 for f in cfg5), cfg5
    stored, converted = plans["H100-80GB"]["weights_total_bytes"], plans["910B3"]["weights_total_bytes"]
    assert 680e9 < stored < 700e9  # the release is ~689 GB
    assert 1.3e12 < converted < 1.4e12  # BF16: twice the FP8 weights, scales dropped
    assert any("runs no FP8" in n for n in plans["910B3"]["notes"])
