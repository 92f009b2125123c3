"""Weight folders built from vendors' own config.json files (tests/data/vendor_configs).

Each folder gets the checkpoint's real tensor names, shapes and dtypes — from the installed
transformers on the meta device (``revert_weight_conversion`` gives the names a checkpoint stores,
tied weights dropped as ``save_pretrained`` drops them), or, for the families whose modeling code
ships with the weights (Baichuan2, InternLM2, ChatGLM3), from the names their modeling files use —
written as safetensors shards whose data is a sparse hole: a 140 GB model costs a few MB of disk.

FP8 releases (DeepSeek-V3) store every linear weight of the decoder layers as F8_E4M3 with an F32
``weight_scale_inv`` of ceil(rows/128) × ceil(cols/128) blocks; the router stays BF16 and the
score-correction bias F32, as in the release's index.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data" / "vendor_configs"
SHARD_BYTES = 5 * 1024**3
_DTYPE = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}
_BYTES = {"BF16": 2, "F16": 2, "F32": 4, "F8_E4M3": 1}

Layout = dict[str, tuple[tuple[int, ...], str]]


def cases() -> dict[str, dict[str, Any]]:
    """The cases of tests/data/vendor_configs/SOURCES.json, by name."""
    doc = json.loads((DATA / "SOURCES.json").read_text())
    return dict(doc["configs"])


def config(name: str) -> dict[str, Any]:
    """The vendor's config.json as recorded."""
    value: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text())
    return value


def _meta_layout(cfg: dict[str, Any]) -> Layout:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.core_model_loading import revert_weight_conversion

    clean = {k: v for k, v in cfg.items() if k not in ("auto_map", "quantization_config")}
    conf = AutoConfig.for_model(**clean)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(conf)
    sd = revert_weight_conversion(model, model.state_dict())
    tied = set()
    out_emb, in_emb = model.get_output_embeddings(), model.get_input_embeddings()
    if out_emb is not None and in_emb is not None and out_emb.weight is in_emb.weight:
        tied = {n for n in sd if n.endswith("lm_head.weight")}
    dtype = _DTYPE[str(cfg.get("torch_dtype", "bfloat16"))]
    return {n: (tuple(t.shape), dtype) for n, t in sd.items() if n not in tied}


def _remote_layout(cfg: dict[str, Any]) -> Layout:
    """Names from each family's modeling file (modeling_baichuan.py, modeling_internlm2.py,
    modeling_chatglm.py as the vendors ship them)."""
    mt = cfg["model_type"]
    dt = _DTYPE[str(cfg.get("torch_dtype", "bfloat16"))]
    h = cfg["hidden_size"]
    out: Layout = {}
    if mt == "chatglm":
        layers, v = cfg["num_layers"], cfg["padded_vocab_size"]
        heads, kvg, hd, ffn = (
            cfg["num_attention_heads"],
            cfg["multi_query_group_num"],
            cfg["kv_channels"],
            cfg["ffn_hidden_size"],
        )
        qkv = heads * hd + 2 * kvg * hd
        out["transformer.embedding.word_embeddings.weight"] = ((v, h), dt)
        out["transformer.rotary_pos_emb.inv_freq"] = ((hd // 4,), dt)
        for i in range(layers):
            p = f"transformer.encoder.layers.{i}."
            out[p + "input_layernorm.weight"] = ((h,), dt)
            out[p + "self_attention.query_key_value.weight"] = ((qkv, h), dt)
            out[p + "self_attention.query_key_value.bias"] = ((qkv,), dt)
            out[p + "self_attention.dense.weight"] = ((h, heads * hd), dt)
            out[p + "post_attention_layernorm.weight"] = ((h,), dt)
            out[p + "mlp.dense_h_to_4h.weight"] = ((2 * ffn, h), dt)
            out[p + "mlp.dense_4h_to_h.weight"] = ((h, ffn), dt)
        out["transformer.encoder.final_layernorm.weight"] = ((h,), dt)
        out["transformer.output_layer.weight"] = ((v, h), dt)
        return out
    layers, v, inter = cfg["num_hidden_layers"], cfg["vocab_size"], cfg["intermediate_size"]
    heads = cfg["num_attention_heads"]
    kv = cfg.get("num_key_value_heads") or heads
    hd = h // heads
    if mt == "baichuan":
        out["model.embed_tokens.weight"] = ((v, h), dt)
        for i in range(layers):
            p = f"model.layers.{i}."
            out[p + "self_attn.W_pack.weight"] = ((3 * h, h), dt)
            out[p + "self_attn.o_proj.weight"] = ((h, h), dt)
            out[p + "mlp.gate_proj.weight"] = ((inter, h), dt)
            out[p + "mlp.up_proj.weight"] = ((inter, h), dt)
            out[p + "mlp.down_proj.weight"] = ((h, inter), dt)
            out[p + "input_layernorm.weight"] = ((h,), dt)
            out[p + "post_attention_layernorm.weight"] = ((h,), dt)
        out["model.norm.weight"] = ((h,), dt)
        out["lm_head.weight"] = ((v, h), dt)
        return out
    if mt == "internlm2":
        out["model.tok_embeddings.weight"] = ((v, h), dt)
        for i in range(layers):
            p = f"model.layers.{i}."
            out[p + "attention.wqkv.weight"] = (((heads + 2 * kv) * hd, h), dt)
            out[p + "attention.wo.weight"] = ((h, heads * hd), dt)
            out[p + "feed_forward.w1.weight"] = ((inter, h), dt)
            out[p + "feed_forward.w3.weight"] = ((inter, h), dt)
            out[p + "feed_forward.w2.weight"] = ((h, inter), dt)
            out[p + "attention_norm.weight"] = ((h,), dt)
            out[p + "ffn_norm.weight"] = ((h,), dt)
        out["model.norm.weight"] = ((h,), dt)
        out["output.weight"] = ((v, h), dt)
        return out
    raise ValueError(f"no layout for {mt}")


def _fp8(layout: Layout, cfg: dict[str, Any]) -> Layout:
    """DeepSeek-V3's FP8 release: block-scaled F8_E4M3 linear weights in the decoder layers, plus
    the multi-token-prediction layer (num_nextn_predict_layers) the release stores after them."""
    bs = cfg["quantization_config"]["weight_block_size"]
    n = cfg["num_hidden_layers"]
    out: Layout = {}
    for name, (shape, dt) in layout.items():
        if name.endswith("e_score_correction_bias"):
            out[name] = (shape, "F32")
        elif name.startswith("model.layers.") and len(shape) == 2 and not name.endswith("mlp.gate.weight"):
            out[name] = (shape, "F8_E4M3")
            out[name + "_scale_inv"] = ((math.ceil(shape[0] / bs[0]), math.ceil(shape[1] / bs[1])), "F32")
        else:
            out[name] = (shape, dt)
    last = f"model.layers.{n - 1}."
    mtp = f"model.layers.{n}."
    for name, spec in list(out.items()):
        if name.startswith(last):
            out[mtp + name[len(last) :]] = spec
    h, v = cfg["hidden_size"], cfg["vocab_size"]
    out[mtp + "embed_tokens.weight"] = ((v, h), "BF16")
    out[mtp + "enorm.weight"] = ((h,), "BF16")
    out[mtp + "hnorm.weight"] = ((h,), "BF16")
    out[mtp + "eh_proj.weight"] = ((h, 2 * h), "BF16")
    out[mtp + "shared_head.norm.weight"] = ((h,), "BF16")
    out[mtp + "shared_head.head.weight"] = ((v, h), "BF16")
    return out


@cache
def layout(name: str) -> tuple[tuple[str, tuple[int, ...], str], ...]:
    """The checkpoint's tensors for a vendor config: (name, shape, safetensors dtype)."""
    cfg = config(name)
    if cfg["model_type"] in ("baichuan", "internlm2", "chatglm"):
        lay = _remote_layout(cfg)
    else:
        lay = _meta_layout(cfg)
    if isinstance(cfg.get("quantization_config"), dict) and cfg["quantization_config"].get("quant_method") == "fp8":
        lay = _fp8(lay, cfg)
    return tuple((n, s, d) for n, (s, d) in lay.items())


def _shards(items: tuple[tuple[str, tuple[int, ...], str], ...]) -> Iterator[list[tuple[str, tuple[int, ...], str]]]:
    shard: list[tuple[str, tuple[int, ...], str]] = []
    size = 0
    for item in items:
        nbytes = math.prod(item[1]) * _BYTES[item[2]]
        if shard and size + nbytes > SHARD_BYTES:
            yield shard
            shard, size = [], 0
        shard.append(item)
        size += nbytes
    if shard:
        yield shard


def _write_shard(path: Path, items: list[tuple[str, tuple[int, ...], str]]) -> int:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape, dt in items:
        nbytes = math.prod(shape) * _BYTES[dt]
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        fh.truncate(8 + len(raw) + offset)  # the data: a sparse hole
    return offset


def write_tokenizer(path: Path, size: int = 1000) -> None:
    """A small WordLevel tokenizer.json and a tokenizer_config.json (the vendors' tokenizers are
    not part of these cases; TOK checks have their own real-tokenizer tests)."""
    vocab = {"<unk>": 0, **{f"t{i}": i for i in range(1, size)}}
    doc = {
        "version": "1.0",
        "added_tokens": [],
        "normalizer": None,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
    }
    (path / "tokenizer.json").write_text(json.dumps(doc))
    (path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}))


def build(name: str, path: Path) -> Path:
    """A sparse weight folder for vendor config ``name`` at ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config(name), indent=2))
    groups = list(_shards(layout(name)))
    weight_map: dict[str, str] = {}
    total = 0
    for i, items in enumerate(groups, 1):
        fname = f"model-{i:05d}-of-{len(groups):05d}.safetensors"
        total += _write_shard(path / fname, items)
        weight_map.update({n: fname for n, _, _ in items})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (path / "model.safetensors.index.json").write_text(json.dumps(index))
    write_tokenizer(path)
    return path
