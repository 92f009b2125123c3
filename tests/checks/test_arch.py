"""ARCH and DIST: config ↔ tensors across the families people deploy, and tensor parallelism."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from npu_preflight.model import Severity
from tests.conftest import MINDIE_MC, check_folder, ids, only, problems
from tests.factory import HF_FAMILIES, REMOTE_FAMILIES, fix_config

MC = MINDIE_MC


NOT_IN_MINDIE = ("gemma", "gemma2", "gemma3_text", "glm4")


def _remote_mc() -> dict:  # type: ignore[type-arg]
    return {**MC, "trust_remote_code": True}


CLEAN_CASES = (
    # MindIE's READMEs list BF16 as unsupported for Mixtral on the 800I A2 (CFG007): float16 there
    [dict(family=f) for f in HF_FAMILIES if f not in ("mixtral", "phi3")]
    + [dict(family="mixtral", dtype="float16"), dict(family="phi3", dtype="float16")]
    + [dict(family=f, dtype="float16") for f in REMOTE_FAMILIES]
    + [
        dict(family="llama", tie=True),
        dict(family="qwen2", tie=True, dtype="float16"),
        dict(family="llama", shard_bytes=40_000),
        dict(family="qwen3", shard_bytes=30_000, tie=True),
        dict(family="llama", vocab=384),
        dict(family="mistral", dtype="float16", vocab=352),
    ]
)


@pytest.mark.parametrize("kw", CLEAN_CASES, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_zero_false_positives_on_clean_folders(make_model, kw) -> None:  # type: ignore[no-untyped-def]
    """Clean toy folders of every family: no error, no warning. On MindIE's ATB backend the
    remote-code families' auto_map is only a note (MindIE runs its own model code); families MindIE
    does not implement (gemma*, HF-format glm4) are checked with backend_type torch."""
    m = make_model(**kw)
    remote = kw["family"] in REMOTE_FAMILIES
    base = _remote_mc() if remote else MC
    if kw["family"] in NOT_IN_MINDIE:
        base = {**base, "backend_type": "torch"}
    for ws in (1, 2):
        mc = {**base, "world_size": ws}
        r = check_folder(m, mc, env={})
        found = [(f.check_id, f.message) for f in r.findings if f.severity is not Severity.INFO]
        assert found == [], found
        if remote:
            assert all(f.details["needed"] is False for f in only(r, "SEC002"))
        assert r.status_counts()["errored"] == 0
        # the structural checks really ran (not skipped)
        ran = {c.id for c in r.checks if c.status.value != "skipped"}
        assert {"ARCH001", "ARCH002", "ARCH003", "ARCH004", "ARCH005", "DIST001", "TOK003"} <= ran


def _drop(folder: Path, prefix: str) -> list[str]:
    p = folder / "model.safetensors"
    t = load_file(str(p))
    gone = [k for k in t if k.startswith(prefix)]
    for k in gone:
        del t[k]
    save_file(t, str(p), metadata={"format": "pt"})
    return gone


def _replace(folder: Path, name: str, arr: np.ndarray) -> None:
    p = folder / "model.safetensors"
    t = load_file(str(p))
    t[name] = arr
    save_file(t, str(p), metadata={"format": "pt"})


def test_embedding_rows_fewer_than_vocab(make_model) -> None:  # type: ignore[no-untyped-def]
    m = make_model(family="qwen2", dtype="float16")
    fix_config(m, vocab_size=400)
    [f, *_] = only(check_folder(m), "ARCH001")
    assert f.location.tensor == "model.embed_tokens.weight" and f.location.key == "config.json:vocab_size"
    assert "320 rows" in f.message


def test_padded_vocab_is_fine(make_model) -> None:  # type: ignore[no-untyped-def]
    m = make_model(family="qwen2", dtype="float16")
    fix_config(m, vocab_size=300)
    assert "ARCH001" not in ids(check_folder(m))


def test_missing_layer_named(make_model) -> None:  # type: ignore[no-untyped-def]
    m = make_model(family="llama", dtype="float16", layers=3)
    _drop(m, "model.layers.2.")
    [f] = only(check_folder(m), "ARCH002")
    assert "layer 2 is missing entirely" in f.message
    assert f.location.key == "config.json:num_hidden_layers"


def test_missing_tensor_in_layer_named(make_model) -> None:  # type: ignore[no-untyped-def]
    m = make_model(family="llama", dtype="float16")
    _drop(m, "model.layers.1.mlp.up_proj")
    [f] = only(check_folder(m), "ARCH002")
    assert f.location.tensor == "model.layers.1.mlp.up_proj.weight"


def test_extra_layers_warn(make_model) -> None:  # type: ignore[no-untyped-def]
    m = make_model(family="llama", dtype="float16", layers=3)
    fix_config(m, num_hidden_layers=2)
    [f] = only(check_folder(m), "ARCH002")
    assert f.severity is Severity.WARNING and "2" in f.message


def test_kv_heads_mismatch(make_model) -> None:  # type: ignore[no-untyped-def]
    m = make_model(family="llama", dtype="float16")
    fix_config(m, num_key_value_heads=4)
    fs = only(check_folder(m), "ARCH003")
    assert {f.location.tensor for f in fs} >= {
        "model.layers.0.self_attn.k_proj.weight",
        "model.layers.0.self_attn.v_proj.weight",
    }


def test_hidden_size_mismatch(make_model) -> None:  # type: ignore[no-untyped-def]
    m = make_model(family="mistral", dtype="float16")
    fix_config(m, hidden_size=128)
    r = check_folder(m)
    assert "ARCH001" in ids(r) and "ARCH003" in ids(r)


def test_intermediate_mismatch(make_model) -> None:  # type: ignore[no-untyped-def]
    m = make_model(family="qwen3", dtype="float16")
    fix_config(m, intermediate_size=256)
    fs = only(check_folder(m), "ARCH004")
    assert fs and fs[0].location.tensor == "model.layers.0.mlp.gate_proj.weight"
    assert fs[0].details == {"actual": [128, 64], "expected": [256, 64]}


def test_baichuan_w_pack_shape(make_model) -> None:  # type: ignore[no-untyped-def]
    m = make_model(family="baichuan", dtype="float16")
    _replace(m, "model.layers.0.self_attn.W_pack.weight", np.zeros((128, 64), np.float16))
    [f] = only(check_folder(m, _remote_mc()), "ARCH003")
    assert f.location.tensor == "model.layers.0.self_attn.W_pack.weight"


def test_internlm2_names(make_model) -> None:  # type: ignore[no-untyped-def]
    m = make_model(family="internlm2", dtype="float16")
    _drop(m, "output.")
    [f] = only(check_folder(m, _remote_mc()), "ARCH005")
    assert f.location.tensor == "output.weight"


def test_chatglm_mlp(make_model) -> None:  # type: ignore[no-untyped-def]
    m = make_model(family="chatglm", dtype="float16")
    fix_config(m, ffn_hidden_size=96)
    assert "ARCH004" in ids(check_folder(m, _remote_mc()))


def test_lm_head_missing_untied_is_error(make_model) -> None:  # type: ignore[no-untyped-def]
    m = make_model(family="llama", dtype="float16")
    _drop(m, "lm_head.")
    [f] = only(check_folder(m), "ARCH005")
    assert f.severity is Severity.ERROR and f.location.key == "config.json:tie_word_embeddings"


def test_lm_head_present_while_tied_is_warning(make_model) -> None:  # type: ignore[no-untyped-def]
    m = make_model(family="llama", dtype="float16")
    fix_config(m, tie_word_embeddings=True)
    [f] = only(check_folder(m), "ARCH005")
    assert f.severity is Severity.WARNING


def test_mixtral_expert_count(make_model) -> None:  # type: ignore[no-untyped-def]
    m = make_model(family="mixtral", dtype="float16")
    fix_config(m, num_local_experts=8)
    r = check_folder(m)
    fs = only(r, "ARCH006")
    assert len(fs) == 2 and "declares 8" in fs[0].message


def test_deepseek_expert_missing(make_model) -> None:  # type: ignore[no-untyped-def]
    m = make_model(family="deepseek_v3", dtype="float16")
    _drop(m, "model.layers.1.mlp.experts.3.")
    r = check_folder(m)
    assert "ARCH006" in ids(r) and "ARCH002" in ids(r)


def test_unknown_architecture_is_info_only(tmp_path: Path) -> None:
    d = tmp_path / "rwkv"
    d.mkdir()
    save_file(
        {"blocks.0.att.key.weight": np.zeros((8, 8), np.float16)},
        str(d / "model.safetensors"),
        metadata={"format": "pt"},
    )
    (d / "config.json").write_text(
        json.dumps({"model_type": "rwkv", "architectures": ["RwkvForCausalLM"], "torch_dtype": "float16"})
    )
    r = check_folder(d)
    [f] = only(r, "ARCH007")
    assert f.severity is Severity.INFO and "structural checks skipped" in f.message
    assert not [x for x in ids(r) if x.startswith("ARCH") and x != "ARCH007"]


def test_generic_llama_like_fallback(make_model) -> None:  # type: ignore[no-untyped-def]
    m = make_model(family="llama", dtype="float16")
    fix_config(m, model_type="my_llama_fork")
    r = check_folder(m)
    assert [f.severity for f in only(r, "ARCH007")] == [Severity.INFO]
    assert problems(r) == []


def test_tp_heads_not_divisible_follows_the_backend(make_model) -> None:  # type: ignore[no-untyped-def]
    """4 heads, 2 KV heads, intermediate 128 over 3 ranks: MindIE ATB pads separate q/k/v weights
    (a note for the query heads, a warning for the KV heads its docs do not list); a generic
    tensor-parallel runtime refuses both."""
    m = make_model(family="llama", dtype="float16")
    atb = check_folder(m, {**MC, "world_size": 3})
    assert only(atb, "DIST001")[0].severity is Severity.INFO and "pads" in only(atb, "DIST001")[0].message
    assert only(atb, "DIST002")[0].severity is Severity.WARNING
    assert "DIST003" in ids(atb, Severity.ERROR)
    assert only(atb, "DIST001")[0].details["valid"] == [1, 2, 4]
    generic = check_folder(m, {"world_size": 3}, env={})
    assert only(generic, "DIST001")[0].severity is Severity.WARNING
    assert only(generic, "DIST002")[0].severity is Severity.ERROR


def test_tp_kv_replicated_is_info(make_model) -> None:  # type: ignore[no-untyped-def]
    m = make_model(family="llama", dtype="float16")
    [f] = only(check_folder(m, {**MC, "world_size": 4}), "DIST002")
    assert f.severity is Severity.INFO and "replicated on 2 ranks" in f.message


def test_tp_vocab_uneven_warns(make_model) -> None:  # type: ignore[no-untyped-def]
    m = make_model(family="llama", dtype="float16", vocab=322)
    [f] = only(check_folder(m, {**MC, "world_size": 4}), "DIST004")
    assert f.severity is Severity.WARNING


def test_quantised_int4_packed_not_shape_checked(make_model) -> None:  # type: ignore[no-untyped-def]
    m = make_model(family="llama", dtype="float16")
    _replace(m, "model.layers.0.mlp.up_proj.weight", np.zeros((16, 64), np.int32))
    assert "ARCH004" not in ids(check_folder(m))


def test_header_only_read(make_model) -> None:  # type: ignore[no-untyped-def]
    """The structural checks read headers, not data: zeroing the data changes nothing."""
    m = make_model(family="llama", dtype="float16")
    p = m / "model.safetensors"
    data = bytearray(p.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    data[8 + n :] = bytes(len(data) - 8 - n)
    p.write_bytes(bytes(data))
    assert problems(check_folder(m)) == []


def test_qwen2_bf16_on_atb_is_fine(make_model) -> None:  # type: ignore[no-untyped-def]
    """MindIE's qwen README: Qwen2/2.5 run bfloat16 on the 800I A2 — no CFG007."""
    m = make_model(family="qwen2")
    assert "CFG007" not in ids(check_folder(m, MC))


def test_qwen15_looking_bf16_on_atb_warns(make_model) -> None:  # type: ignore[no-untyped-def]
    """A qwen2-type folder with MHA and transformers 4.37 (a Qwen1.5 release) in bf16: MindIE lists
    no BF16 for it and its non-flash qwen2 path accepts only float16."""
    m = make_model(family="qwen2", kv_heads=4)
    fix_config(m, transformers_version="4.37.0")
    [f] = only(check_folder(m, MC), "CFG007")
    assert f.severity is Severity.WARNING and "Qwen1.5" in f.message
    assert "CFG007" not in ids(check_folder(m, {**MC, "backend_type": "torch"}))


def test_mixtral_bf16_on_atb_warns_from_the_readme(make_model) -> None:  # type: ignore[no-untyped-def]
    m = make_model(family="mixtral")
    [f] = only(check_folder(m, MC), "CFG007")
    assert f.severity is Severity.WARNING and "README" in f.message and "mixtral" in f.details["source"]
