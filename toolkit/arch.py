"""What a model family's tensors should look like, read from config.json.

Each family names its tensors its own way (Llama's ``q_proj``, Baichuan's ``W_pack``, InternLM2's
``wqkv``, ChatGLM's ``query_key_value``). :func:`expected_layer` lists, for one decoder layer, the
tensors the config implies with their shapes; ``None`` in a shape means "not checked".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Shape = tuple[int | None, ...]


@dataclass(frozen=True)
class Dims:
    """The dimensions the checks compare against, normalised across families."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int | None
    vocab: int | None
    tie: bool
    experts: int | None = None
    moe_intermediate: int | None = None
    first_dense: int = 0
    extra_layers: int = 0
    kv_lora_rank: int | None = None  # MLA (DeepSeek): the compressed KV latent cached per token
    qk_rope_head_dim: int = 0


@dataclass(frozen=True)
class Family:
    """A family's tensor naming."""

    name: str
    embed: str
    lm_head: str
    final_norm: str
    layer_prefix: str
    attention: str  # split | w_pack | wqkv | glm | mla
    mlp: str  # gated | internlm | glm | moe_mixtral | moe_deepseek


LLAMA = Family(
    "llama-like",
    "model.embed_tokens.weight",
    "lm_head.weight",
    "model.norm.weight",
    "model.layers.{i}.",
    "split",
    "gated",
)
FAMILIES: dict[str, Family] = {
    "llama": LLAMA,
    "mistral": LLAMA,
    "qwen2": LLAMA,
    "qwen3": LLAMA,
    "baichuan": Family(
        "baichuan",
        "model.embed_tokens.weight",
        "lm_head.weight",
        "model.norm.weight",
        "model.layers.{i}.",
        "w_pack",
        "gated",
    ),
    "internlm2": Family(
        "internlm2",
        "model.tok_embeddings.weight",
        "output.weight",
        "model.norm.weight",
        "model.layers.{i}.",
        "wqkv",
        "internlm",
    ),
    "chatglm": Family(
        "chatglm",
        "transformer.embedding.word_embeddings.weight",
        "transformer.output_layer.weight",
        "transformer.encoder.final_layernorm.weight",
        "transformer.encoder.layers.{i}.",
        "glm",
        "glm",
    ),
    "mixtral": Family(
        "mixtral",
        "model.embed_tokens.weight",
        "lm_head.weight",
        "model.norm.weight",
        "model.layers.{i}.",
        "split",
        "moe_mixtral",
    ),
    "deepseek_v2": Family(
        "deepseek",
        "model.embed_tokens.weight",
        "lm_head.weight",
        "model.norm.weight",
        "model.layers.{i}.",
        "mla",
        "moe_deepseek",
    ),
    "deepseek_v3": Family(
        "deepseek",
        "model.embed_tokens.weight",
        "lm_head.weight",
        "model.norm.weight",
        "model.layers.{i}.",
        "mla",
        "moe_deepseek",
    ),
}
#: Any other model_type whose tensors are named like Llama's: attention is checked, the MLP only
#: when Llama's gated MLP names are present (an unknown MoE block is left alone).
GENERIC = Family(
    "llama-like (generic)",
    "model.embed_tokens.weight",
    "lm_head.weight",
    "model.norm.weight",
    "model.layers.{i}.",
    "split",
    "auto",
)


#: Larger "dimensions" are not believed (a hostile config.json can say 10**400); they are treated as
#: missing, never used in arithmetic, and ARCH007 names them.
MAX_DIM = 2**31 - 1
DIM_KEYS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "intermediate_size",
    "vocab_size",
    "num_local_experts",
    "n_routed_experts",
    "num_experts",
    "moe_intermediate_size",
    "max_position_embeddings",
)
_EXPERT = re.compile(r"\.experts\.(\d+)\.")


def _int(cfg: Mapping[str, Any], *keys: str) -> int | None:
    for k in keys:
        v = cfg.get(k)
        if isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_DIM:
            return v
    return None


def implausible(cfg: Mapping[str, Any]) -> list[str]:
    """Dimension keys whose value is an integer no model has (≤ 0 or above 2**31 − 1)."""
    out = []
    for k in DIM_KEYS:
        v = cfg.get(k)
        if isinstance(v, int) and not isinstance(v, bool) and not 0 < v <= MAX_DIM:
            out.append(k)
    return out


#: Expert loops check at least this many experts (real MoE models have up to a few hundred)...
EXPERT_WALK = 1024


def expert_limit(names: frozenset[str] | set[str]) -> int:
    """...and never more than this: the larger of EXPERT_WALK and one past the highest stored expert
    index. A config declaring 10**8 experts costs no more than the experts actually stored; a
    count mismatch beyond that is ARCH006's to report."""
    best = -1
    for n in names:
        m = _EXPERT.search(n)
        if m:
            best = max(best, int(m.group(1)))
    return max(best + 1, EXPERT_WALK)


def family_for(cfg: Mapping[str, Any], tensor_names: set[str]) -> Family | None:
    """The family by ``model_type``; else Llama-like when the tensors are named that way; else None."""
    mt = cfg.get("model_type")
    if isinstance(mt, str) and mt in FAMILIES:
        return FAMILIES[mt]
    if LLAMA.embed in tensor_names and any(n.endswith("self_attn.q_proj.weight") for n in tensor_names):
        return GENERIC
    return None


def dims(cfg: Mapping[str, Any], fam: Family) -> Dims | None:
    """Normalised dimensions, or None when the config lacks the basics."""
    hidden = _int(cfg, "hidden_size", "n_embd", "d_model")
    layers = _int(cfg, "num_hidden_layers", "num_layers", "n_layer")
    heads = _int(cfg, "num_attention_heads", "n_head")
    if hidden is None or layers is None or heads is None:
        return None
    if fam.attention == "glm":
        kv = _int(cfg, "multi_query_group_num") if cfg.get("multi_query_attention") else heads
        kv = kv or heads
        head_dim = _int(cfg, "kv_channels") or hidden // heads
    else:
        kv = _int(cfg, "num_key_value_heads") or heads
        head_dim = _int(cfg, "head_dim") or hidden // heads
    inter = _int(cfg, "intermediate_size", "ffn_hidden_size")
    vocab = _int(cfg, "vocab_size", "padded_vocab_size")
    tie = cfg.get("tie_word_embeddings")
    experts = _int(cfg, "num_local_experts", "n_routed_experts", "num_experts")
    return Dims(
        hidden=hidden,
        layers=layers,
        heads=heads,
        kv_heads=kv,
        head_dim=head_dim,
        intermediate=inter,
        vocab=vocab,
        tie=bool(tie) if isinstance(tie, bool) else False,
        experts=experts,
        moe_intermediate=_int(cfg, "moe_intermediate_size"),
        first_dense=_int(cfg, "first_k_dense_replace") or 0,
        extra_layers=_int(cfg, "num_nextn_predict_layers") or 0,
        kv_lora_rank=_int(cfg, "kv_lora_rank"),
        qk_rope_head_dim=_int(cfg, "qk_rope_head_dim") or 0,
    )


def expected_attention(fam: Family, d: Dims, cfg: Mapping[str, Any]) -> dict[str, Shape]:
    """Attention tensors of one layer (names relative to the layer prefix) and their shapes."""
    h, nh, kv, hd = d.hidden, d.heads, d.kv_heads, d.head_dim
    if fam.attention == "split":
        return {
            "self_attn.q_proj.weight": (nh * hd, h),
            "self_attn.k_proj.weight": (kv * hd, h),
            "self_attn.v_proj.weight": (kv * hd, h),
            "self_attn.o_proj.weight": (h, nh * hd),
        }
    if fam.attention == "w_pack":
        return {"self_attn.W_pack.weight": (3 * h, h), "self_attn.o_proj.weight": (h, h)}
    if fam.attention == "wqkv":
        return {"attention.wqkv.weight": ((nh + 2 * kv) * hd, h), "attention.wo.weight": (h, nh * hd)}
    if fam.attention == "glm":
        return {
            "self_attention.query_key_value.weight": (nh * hd + 2 * kv * hd, h),
            "self_attention.dense.weight": (h, nh * hd),
        }
    if fam.attention == "mla":
        out: dict[str, Shape] = {"self_attn.o_proj.weight": (h, None)}
        out["self_attn.kv_a_proj_with_mqa.weight"] = (None, h)
        out["self_attn.kv_b_proj.weight"] = (None, None)
        if cfg.get("q_lora_rank"):
            out["self_attn.q_a_proj.weight"] = (None, h)
            out["self_attn.q_b_proj.weight"] = (None, None)
        else:
            out["self_attn.q_proj.weight"] = (None, h)
        return out
    return {}


def expected_mlp(
    fam: Family, d: Dims, layer: int, names: frozenset[str] = frozenset(), experts: int | None = None
) -> dict[str, Shape]:
    """MLP (or MoE) tensors of one layer and their shapes; ``experts`` caps the expert loop (the
    number stored, see :func:`expert_limit`)."""
    h, inter = d.hidden, d.intermediate
    n_experts = min(d.experts or 0, experts if experts is not None else 4096)
    gated_present = fam.layer_prefix.format(i=layer) + "mlp.gate_proj.weight" in names
    if (
        fam.mlp == "gated"
        or (fam.mlp == "auto" and gated_present)
        or (fam.mlp == "moe_deepseek" and layer < d.first_dense)
    ):
        return {
            "mlp.gate_proj.weight": (inter, h),
            "mlp.up_proj.weight": (inter, h),
            "mlp.down_proj.weight": (h, inter),
        }
    if fam.mlp == "internlm":
        return {
            "feed_forward.w1.weight": (inter, h),
            "feed_forward.w3.weight": (inter, h),
            "feed_forward.w2.weight": (h, inter),
        }
    if fam.mlp == "glm":
        return {"mlp.dense_h_to_4h.weight": (2 * inter if inter else None, h), "mlp.dense_4h_to_h.weight": (h, inter)}
    if fam.mlp == "moe_mixtral":
        out: dict[str, Shape] = {"block_sparse_moe.gate.weight": (d.experts, h)}
        for e in range(n_experts):
            p = f"block_sparse_moe.experts.{e}."
            out[p + "w1.weight"] = (inter, h)
            out[p + "w3.weight"] = (inter, h)
            out[p + "w2.weight"] = (h, inter)
        return out
    if fam.mlp == "moe_deepseek":
        mi = d.moe_intermediate
        out = {"mlp.gate.weight": (d.experts, h)}
        for e in range(n_experts):
            p = f"mlp.experts.{e}."
            out[p + "gate_proj.weight"] = (mi, h)
            out[p + "up_proj.weight"] = (mi, h)
            out[p + "down_proj.weight"] = (h, mi)
        return out
    return {}


def expected_layer(
    fam: Family,
    d: Dims,
    cfg: Mapping[str, Any],
    layer: int,
    names: frozenset[str] = frozenset(),
    experts: int | None = None,
) -> dict[str, Shape]:
    """Every checked tensor of decoder layer ``layer``, by full name."""
    prefix = fam.layer_prefix.format(i=layer)
    rel = {**expected_attention(fam, d, cfg), **expected_mlp(fam, d, layer, names, experts)}
    return {prefix + k: v for k, v in rel.items()}


def shape_matches(actual: tuple[int, ...], expected: Shape) -> bool:
    """True when ``actual`` equals ``expected`` where ``expected`` is not None."""
    if len(actual) != len(expected):
        return False
    return all(e is None or a == e for a, e in zip(actual, expected, strict=True))
