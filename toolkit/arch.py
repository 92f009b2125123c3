"""What a model family's tensors should look like, read from config.json.

Each family names its tensors its own way (Llama's ``q_proj``, Baichuan's ``W_pack``, InternLM2's
``wqkv``, ChatGLM's ``query_key_value``). :func:`expected_layer` lists, for one decoder layer, the
tensors the config implies with their shapes; ``None`` in a shape means "not checked".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from npu_preflight.records import frozen

Shape = tuple[int | None, ...]


@frozen
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
    qk_nope_head_dim: int | None = None
    v_head_dim: int | None = None
    q_lora_rank: int | None = None
    shared_experts: int = 0  # DeepSeek: n_shared_experts of moe_intermediate each
    shared_intermediate: int | None = None  # Qwen2-MoE: shared_expert_intermediate_size
    sparse_step: int = 1  # Qwen-MoE: decoder_sparse_step
    dense_layers: frozenset[int] = frozenset()  # Qwen-MoE: mlp_only_layers
    moe_layer_freq: int = 1  # DeepSeek: moe_layer_freq
    tie_from_default: bool = False  # tie_word_embeddings came from the family's default


#: Attention layouts whose q, k and v live in one packed tensor.
PACKED_ATTENTION = frozenset({"fused_qkv", "w_pack", "wqkv", "glm"})


@frozen
class Family:
    """A family's tensor naming and layout.

    ``attention``: split (q/k/v/o_proj) | fused_qkv (Phi-3 qkv_proj) | w_pack (Baichuan) | wqkv
    (InternLM2) | glm (ChatGLM query_key_value) | mla (DeepSeek). ``mlp``: gated | gated_fused
    (gate_up_proj) | internlm | glm | moe_mixtral | moe_deepseek | moe_qwen2 (experts + shared
    expert) | moe_qwen3 | auto (gated when named like Llama's, else unchecked).
    """

    name: str
    attention: str = "split"
    mlp: str = "gated"
    qk_norm: bool = False
    embed: str = "model.embed_tokens.weight"
    lm_head: str = "lm_head.weight"
    final_norm: str = "model.norm.weight"
    layer_prefix: str = "model.layers.{i}."
    root: str = ""  # a multimodal wrapper's prefix (Gemma-3: "language_model.")

    @property
    def packed_qkv(self) -> bool:
        """q, k and v are stored in one tensor."""
        return self.attention in PACKED_ATTENTION

    @property
    def moe(self) -> bool:
        """The MLP is a mixture of experts."""
        return self.mlp.startswith("moe_")

    def rooted(self, root: str) -> Family:
        """The same family under a wrapper's prefix."""
        if not root:
            return self
        return replace(
            self,
            embed=root + self.embed,
            lm_head=root + self.lm_head,
            final_norm=root + self.final_norm,
            layer_prefix=root + self.layer_prefix,
            root=root,
        )


LLAMA = Family("llama-like")
_GLM = Family(
    "chatglm",
    attention="glm",
    mlp="glm",
    embed="transformer.embedding.word_embeddings.weight",
    lm_head="transformer.output_layer.weight",
    final_norm="transformer.encoder.final_layernorm.weight",
    layer_prefix="transformer.encoder.layers.{i}.",
)
FAMILIES: dict[str, Family] = {
    "llama": LLAMA,
    "mistral": LLAMA,
    "qwen2": LLAMA,
    "qwen3": Family("qwen3", qk_norm=True),
    "gemma": Family("gemma"),
    "gemma2": Family("gemma2"),
    "gemma3_text": Family("gemma3", qk_norm=True),
    "phi3": Family("phi3", attention="fused_qkv", mlp="gated_fused"),
    "glm4": Family("glm4", mlp="gated_fused"),
    "baichuan": Family("baichuan", attention="w_pack"),
    "internlm2": Family(
        "internlm2", attention="wqkv", mlp="internlm", embed="model.tok_embeddings.weight", lm_head="output.weight"
    ),
    "chatglm": _GLM,
    "mixtral": Family("mixtral", mlp="moe_mixtral"),
    "qwen2_moe": Family("qwen2-moe", mlp="moe_qwen2"),
    "qwen3_moe": Family("qwen3-moe", mlp="moe_qwen3", qk_norm=True),
    "deepseek_v2": Family("deepseek", attention="mla", mlp="moe_deepseek"),
    "deepseek_v3": Family("deepseek", attention="mla", mlp="moe_deepseek"),
    "deepseekv2": Family("deepseek", attention="mla", mlp="moe_deepseek"),  # MindIE's own spelling
}
#: Any other model_type whose tensors are named like Llama's: attention is checked, the MLP only
#: when Llama's gated MLP names are present (an unknown MoE block is left alone).
GENERIC = Family("llama-like (generic)", mlp="auto")


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


def _root(tensor_names: set[str] | frozenset[str], embed: str) -> str | None:
    """The prefix under which ``embed`` is stored ("" when at the top), None when it is not."""
    if embed in tensor_names:
        return ""
    for n in tensor_names:
        if n.endswith("." + embed):
            return n[: -len(embed)]
    return None


def family_for(cfg: Mapping[str, Any], tensor_names: set[str] | frozenset[str]) -> Family | None:
    """The family by ``model_type``; else Llama-like when the tensors are named that way; else None.
    A multimodal wrapper's prefix (``language_model.``) is found from where the embedding is."""
    mt = cfg.get("model_type")
    fam = FAMILIES.get(mt.lower()) if isinstance(mt, str) else None
    if fam is not None:
        root = _root(tensor_names, fam.embed)
        return fam.rooted(root or "")
    root = _root(tensor_names, LLAMA.embed)
    if root is not None and any(n.endswith("self_attn.q_proj.weight") for n in tensor_names):
        return GENERIC.rooted(root)
    return None


def _layers(value: Any) -> frozenset[int]:
    if isinstance(value, list):
        return frozenset(v for v in value if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_DIM)
    return frozenset()


def dims(cfg: Mapping[str, Any], fam: Family, defaulted: frozenset[str] = frozenset()) -> Dims | None:
    """Normalised dimensions, or None when the config lacks the basics. ``cfg`` is config.json
    completed with the family's defaults (``defaulted`` names the keys that came from them)."""
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
        qk_nope_head_dim=_int(cfg, "qk_nope_head_dim"),
        v_head_dim=_int(cfg, "v_head_dim"),
        q_lora_rank=_int(cfg, "q_lora_rank"),
        shared_experts=_int(cfg, "n_shared_experts") or 0,
        shared_intermediate=_int(cfg, "shared_expert_intermediate_size"),
        sparse_step=_int(cfg, "decoder_sparse_step") or 1,
        dense_layers=_layers(cfg.get("mlp_only_layers")),
        moe_layer_freq=_int(cfg, "moe_layer_freq") or 1,
        tie_from_default="tie_word_embeddings" in defaulted,
    )


def is_moe_layer(fam: Family, d: Dims, layer: int) -> bool:
    """Whether decoder layer ``layer`` holds experts (each family's own rule)."""
    if not fam.moe or not d.experts:
        return False
    if fam.mlp == "moe_deepseek":  # DeepseekV2/V3: dense below first_k_dense_replace
        return layer >= d.first_dense and layer % d.moe_layer_freq == 0
    if fam.mlp in ("moe_qwen2", "moe_qwen3"):  # Qwen-MoE: every decoder_sparse_step-th, bar mlp_only_layers
        return layer not in d.dense_layers and (layer + 1) % d.sparse_step == 0
    return True


def expected_attention(fam: Family, d: Dims, cfg: Mapping[str, Any]) -> dict[str, Shape]:
    """Attention tensors of one layer (names relative to the layer prefix) and their shapes."""
    h, nh, kv, hd = d.hidden, d.heads, d.kv_heads, d.head_dim
    out: dict[str, Shape]
    if fam.attention == "split":
        out = {
            "self_attn.q_proj.weight": (nh * hd, h),
            "self_attn.k_proj.weight": (kv * hd, h),
            "self_attn.v_proj.weight": (kv * hd, h),
            "self_attn.o_proj.weight": (h, nh * hd),
        }
        if fam.qk_norm:
            out["self_attn.q_norm.weight"] = (hd,)
            out["self_attn.k_norm.weight"] = (hd,)
        return out
    if fam.attention == "fused_qkv":
        return {"self_attn.qkv_proj.weight": ((nh + 2 * kv) * hd, h), "self_attn.o_proj.weight": (h, nh * hd)}
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
        rope, nope, v = d.qk_rope_head_dim, d.qk_nope_head_dim, d.v_head_dim
        q_rows = nh * (nope + rope) if nope is not None else None
        lora = d.kv_lora_rank
        out = {
            "self_attn.o_proj.weight": (h, nh * v if v else None),
            "self_attn.kv_a_proj_with_mqa.weight": (lora + rope if lora else None, h),
            "self_attn.kv_b_proj.weight": (nh * (nope + v) if nope is not None and v else None, lora),
        }
        if cfg.get("q_lora_rank"):
            out["self_attn.q_a_proj.weight"] = (d.q_lora_rank, h)
            out["self_attn.q_b_proj.weight"] = (q_rows, d.q_lora_rank)
        else:
            out["self_attn.q_proj.weight"] = (q_rows, h)
        return out
    return {}


def _gated(prefix: str, inter: int | None, h: int) -> dict[str, Shape]:
    return {
        prefix + "gate_proj.weight": (inter, h),
        prefix + "up_proj.weight": (inter, h),
        prefix + "down_proj.weight": (h, inter),
    }


def expected_mlp(
    fam: Family, d: Dims, layer: int, names: frozenset[str] = frozenset(), experts: int | None = None
) -> dict[str, Shape]:
    """MLP (or MoE) tensors of one layer and their shapes; ``experts`` caps the expert loop (the
    number stored, see :func:`expert_limit`)."""
    h, inter = d.hidden, d.intermediate
    n_experts = min(d.experts or 0, experts if experts is not None else 4096)
    gated_present = fam.layer_prefix.format(i=layer) + "mlp.gate_proj.weight" in names
    if fam.moe and not is_moe_layer(fam, d, layer):
        return _gated("mlp.", inter, h)
    if fam.mlp == "gated" or (fam.mlp == "auto" and gated_present):
        return _gated("mlp.", inter, h)
    if fam.mlp == "gated_fused":
        return {"mlp.gate_up_proj.weight": (2 * inter if inter else None, h), "mlp.down_proj.weight": (h, inter)}
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
    mi = d.moe_intermediate
    out = {"mlp.gate.weight": (d.experts, h)}
    for e in range(n_experts):
        out.update(_gated(f"mlp.experts.{e}.", mi, h))
    if fam.mlp == "moe_deepseek" and d.shared_experts:
        out.update(_gated("mlp.shared_experts.", mi * d.shared_experts if mi else None, h))
    if fam.mlp == "moe_qwen2" and d.shared_intermediate:
        out.update(_gated("mlp.shared_expert.", d.shared_intermediate, h))
        out["mlp.shared_expert_gate.weight"] = (1, h)
    return out


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
