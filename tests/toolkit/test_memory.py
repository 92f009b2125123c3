"""The memory planner: terms, tensor parallelism, the fit search, and the MEM findings."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from npu_preflight.context import Context, RunOptions
from npu_preflight.model import Severity
from tests.conftest import MINDIE_MC, check_folder, only
from tests.factory import build_sparse_llama

MC = MINDIE_MC


@pytest.fixture(scope="module")
def l70(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sparse_llama(tmp_path_factory.mktemp("l70") / "m")


def plan(folder: Path, mc: dict[str, Any], device: str = "910B3", env: dict[str, str] | None = None) -> Any:
    return Context(folder, {**MC, **mc}, options=RunOptions(static=True, target_device=device), env=env or {}).plan


def test_70b_weights_and_tp(l70: Path) -> None:
    p1 = plan(l70, {"world_size": 1})
    assert 130 * 2**30 < p1.weights_total_bytes < 133 * 2**30
    assert p1.weights_bytes == p1.weights_total_bytes
    p8 = plan(l70, {"world_size": 8})
    norms = 161 * 8192 * 2
    # everything splits 8 ways except the norms (replicated); KV projections split 8 ways (8 KV heads)
    assert abs(p8.weights_bytes - ((p1.weights_total_bytes - norms) / 8 + norms)) <= 1


def test_kv_heads_replicated_beyond_tp(l70: Path) -> None:
    p16 = plan(l70, {"world_size": 16})
    kv_proj = 80 * 2 * (8 * 128 * 8192 * 2)
    # 16 ranks, 8 KV heads: k/v projections split only 8 ways
    norms = 161 * 8192 * 2
    expected = (p16.weights_total_bytes - kv_proj - norms) / 16 + kv_proj / 8 + norms
    assert abs(p16.weights_bytes - expected) <= 1
    assert p16.kv.kv_heads_per_rank == 1


def test_kv_formula(l70: Path) -> None:
    p = plan(l70, {"world_size": 4, "max_seq_len": 4096, "max_batch_size": 8, "block_size": 128})
    per_token = 2 * (8 // 4) * 128 * 2 * 80
    assert p.kv.per_token_bytes == per_token and p.kv.block_bytes == 128 * per_token
    assert p.kv_cache_bytes == 8 * math.ceil(4096 / 128) * 128 * per_token


def test_seq_len_defaults_to_max_position_embeddings(l70: Path) -> None:
    p = plan(l70, {"world_size": 8})
    assert p.kv.seq_len == 131072 and p.kv.seq_len_source == "config.json max_position_embeddings"


def test_budget_uses_npu_memory_fraction(l70: Path) -> None:
    p = plan(l70, {"world_size": 8}, env={"NPU_MEMORY_FRACTION": "0.5"})
    assert p.budget_bytes == 32 * 2**30


def test_weights_do_not_fit(l70: Path) -> None:
    r = check_folder(l70, {**MC, "world_size": 1}, options=RunOptions(static=True, target_device="910B3"))
    [f] = only(r, "MEM001")
    assert f.details["min_world_size"] >= 3
    assert "MEM002" not in {x.check_id for x in r.findings}


def test_kv_does_not_fit_gives_largest_fit(l70: Path) -> None:
    r = check_folder(
        l70,
        {**MC, "world_size": 4, "max_seq_len": 32768, "max_batch_size": 64},
        options=RunOptions(static=True, target_device="910B3"),
    )
    [f] = only(r, "MEM002")
    seq, batch = f.details["max_seq_len_fit"], f.details["max_batch_fit"]
    assert 0 < seq < 32768 and 0 < batch < 64
    # the advertised fit really fits
    p = plan(l70, {"world_size": 4, "max_seq_len": seq, "max_batch_size": 64})
    assert p.headroom_bytes >= 0
    p = plan(l70, {"world_size": 4, "max_seq_len": seq + 128, "max_batch_size": 64})
    assert p.headroom_bytes < 0
    assert f"max_seq_len to {seq:,}" in f.remediation


def test_headroom_warning(l70: Path) -> None:
    # find a batch whose plan leaves 0–10% headroom
    for batch in range(1, 64):
        p = plan(l70, {"world_size": 4, "max_seq_len": 8192, "max_batch_size": batch})
        if p.headroom_bytes is not None and 0 <= p.headroom_bytes < 0.1 * p.budget_bytes:
            r = check_folder(
                l70,
                {**MC, "world_size": 4, "max_seq_len": 8192, "max_batch_size": batch},
                options=RunOptions(static=True, target_device="910B3"),
            )
            assert [f.severity for f in only(r, "MEM003")] == [Severity.WARNING]
            return
    pytest.fail("no batch lands in the 0–10% headroom band")


def test_warmup_blocks(l70: Path) -> None:
    r = check_folder(
        l70,
        {**MC, "world_size": 8, "npu_mem": 1, "max_seq_len": 131072},
        options=RunOptions(static=True, target_device="910B3"),
    )
    [f] = only(r, "MEM005")
    assert "Required block number 1024" in f.message


def test_no_device_skips_with_reason(l70: Path) -> None:
    r = check_folder(l70, {**MC, "world_size": 8})
    reasons = {c.id: c.reason for c in r.checks}
    assert "--target-device" in (reasons["MEM001"] or "")
    assert r.memory is not None and r.memory["budget_bytes"] is None


def test_mla_kv_uses_latent(make_model) -> None:  # type: ignore[no-untyped-def]
    m = make_model(family="deepseek_v3")
    p = plan(m, {"max_seq_len": 256})
    assert p.kv.per_token_bytes == (16 + 8) * 2 * 2  # (kv_lora_rank + rope) × bf16 × 2 layers
