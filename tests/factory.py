"""Builds real tiny model folders for tests, the demo and the benchmarks.

Models come from transformers ``save_pretrained`` (families transformers ships), or are written
tensor by tensor with the safetensors library for families that exist only as remote code
(Baichuan, InternLM2, ChatGLM). Tokenizers are trained offline with ``tokenizers``. Nothing is
downloaded.

``python -m tests.factory DIR [--family llama] [--dtype bfloat16] [--hidden 64] [--layers 2]``
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

CORPUS = [
    f"the quick brown fox {i} jumps over the lazy dog; preflight checks weights before deployment {i * 7}"
    for i in range(300)
]
SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]
CHAT_TEMPLATE = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"


@cache
def _tokenizer_json(vocab_size: int) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    return tok.to_str()


def write_tokenizer(path: Path, vocab_size: int = 300) -> int:
    """Write tokenizer.json, tokenizer_config.json and chat_template.jinja; return the vocab size."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer.from_str(_tokenizer_json(vocab_size))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(path))
    return int(tok.get_vocab_size())


@dataclass
class Spec:
    """Shape of a toy model."""

    family: str = "llama"
    dtype: str = "bfloat16"
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 128
    vocab: int = 320
    tie: bool = False
    shard_bytes: int | None = None
    max_position: int = 512
    experts: int = 4
    tokenizer_vocab: int = 300


def _hf_config(spec: Spec) -> Any:
    import transformers as tf

    common: dict[str, Any] = dict(
        vocab_size=spec.vocab,
        hidden_size=spec.hidden,
        intermediate_size=spec.intermediate,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.kv_heads,
        max_position_embeddings=spec.max_position,
        tie_word_embeddings=spec.tie,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
    )
    fam = spec.family
    if fam == "llama":
        return tf.LlamaConfig(**common)
    if fam == "mistral":
        return tf.MistralConfig(**common)
    if fam == "qwen2":
        return tf.Qwen2Config(**common)
    if fam == "qwen3":
        return tf.Qwen3Config(head_dim=spec.hidden // spec.heads, **common)
    if fam == "mixtral":
        return tf.MixtralConfig(num_local_experts=spec.experts, num_experts_per_tok=2, **common)
    hd = spec.hidden // spec.heads
    if fam == "phi3":
        return tf.Phi3Config(**common)
    if fam == "gemma":
        return tf.GemmaConfig(head_dim=hd, **common)
    if fam == "gemma2":
        return tf.Gemma2Config(head_dim=hd, **common)
    if fam == "gemma3_text":
        return tf.Gemma3TextConfig(head_dim=hd, **common)
    if fam == "glm4":
        return tf.Glm4Config(head_dim=hd, **common)
    if fam == "qwen2_moe":
        return tf.Qwen2MoeConfig(
            num_experts=spec.experts,
            num_experts_per_tok=2,
            moe_intermediate_size=spec.intermediate // 2,
            shared_expert_intermediate_size=spec.intermediate,
            **common,
        )
    if fam == "qwen3_moe":
        return tf.Qwen3MoeConfig(
            head_dim=hd,
            num_experts=spec.experts,
            num_experts_per_tok=2,
            moe_intermediate_size=spec.intermediate // 2,
            **common,
        )
    if fam == "deepseek_v2":
        return tf.DeepseekV2Config(
            vocab_size=spec.vocab,
            hidden_size=spec.hidden,
            intermediate_size=spec.intermediate,
            moe_intermediate_size=spec.intermediate // 2,
            num_hidden_layers=spec.layers,
            num_attention_heads=spec.heads,
            num_key_value_heads=spec.heads,
            n_routed_experts=spec.experts,
            n_shared_experts=2,
            num_experts_per_tok=2,
            first_k_dense_replace=1,
            n_group=1,
            topk_group=1,
            q_lora_rank=None,
            kv_lora_rank=16,
            qk_rope_head_dim=8,
            qk_nope_head_dim=8,
            v_head_dim=16,
            max_position_embeddings=spec.max_position,
            tie_word_embeddings=spec.tie,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=3,
        )
    if fam == "deepseek_v3":
        return tf.DeepseekV3Config(
            vocab_size=spec.vocab,
            hidden_size=spec.hidden,
            intermediate_size=spec.intermediate,
            moe_intermediate_size=spec.intermediate // 2,
            num_hidden_layers=spec.layers,
            num_attention_heads=spec.heads,
            num_key_value_heads=spec.heads,
            n_routed_experts=spec.experts,
            n_shared_experts=1,
            num_experts_per_tok=2,
            first_k_dense_replace=1,
            n_group=1,
            topk_group=1,
            q_lora_rank=32,
            kv_lora_rank=16,
            qk_rope_head_dim=8,
            qk_nope_head_dim=8,
            v_head_dim=16,
            max_position_embeddings=spec.max_position,
            tie_word_embeddings=spec.tie,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=3,
        )
    raise ValueError(f"no transformers config for family {fam!r}")


REMOTE_FAMILIES = ("baichuan", "internlm2", "chatglm")
HF_FAMILIES = (
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "mixtral",
    "deepseek_v3",
    "deepseek_v2",
    "phi3",
    "gemma",
    "gemma2",
    "gemma3_text",
    "glm4",
    "qwen2_moe",
    "qwen3_moe",
)


def build(path: Path, spec: Spec | None = None, *, tokenizer: bool = True) -> Path:
    """Build a clean, MindIE-ready toy folder at ``path`` (torch_dtype set, tokenizer present)."""
    spec = spec or Spec()
    path.mkdir(parents=True, exist_ok=True)
    if spec.family in REMOTE_FAMILIES:
        _build_remote_family(path, spec)
    else:
        import torch
        import transformers as tf

        torch.manual_seed(0)
        cfg = _hf_config(spec)
        model = tf.AutoModelForCausalLM.from_config(cfg)
        model = model.to(getattr(torch, spec.dtype))
        kwargs: dict[str, Any] = {}
        if spec.shard_bytes:
            kwargs["max_shard_size"] = spec.shard_bytes
        model.save_pretrained(str(path), **kwargs)
        fix_config(path, torch_dtype=spec.dtype)
    if tokenizer:
        write_tokenizer(path, spec.tokenizer_vocab)
    return path


def fix_config(path: Path, **updates: Any) -> None:
    """Update keys of ``config.json`` (a value of None deletes the key)."""
    p = path / "config.json"
    cfg = json.loads(p.read_text())
    for k, v in updates.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    p.write_text(json.dumps(cfg, indent=2))


def _build_remote_family(path: Path, spec: Spec) -> None:
    """Families transformers does not ship: write the tensors with each family's own names."""
    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    h, inter, v = spec.hidden, spec.intermediate, spec.vocab
    hd = h // spec.heads
    kvh = spec.kv_heads
    t: dict[str, Any] = {}

    def w(*shape: int) -> Any:
        return (rng.standard_normal(shape) * 0.02).astype(np.float16)

    if spec.family == "baichuan":
        t["model.embed_tokens.weight"] = w(v, h)
        for i in range(spec.layers):
            p = f"model.layers.{i}."
            t[p + "self_attn.W_pack.weight"] = w(3 * h, h)
            t[p + "self_attn.o_proj.weight"] = w(h, h)
            t[p + "mlp.gate_proj.weight"] = w(inter, h)
            t[p + "mlp.up_proj.weight"] = w(inter, h)
            t[p + "mlp.down_proj.weight"] = w(h, inter)
            t[p + "input_layernorm.weight"] = np.ones(h, np.float16)
            t[p + "post_attention_layernorm.weight"] = np.ones(h, np.float16)
        t["model.norm.weight"] = np.ones(h, np.float16)
        t["lm_head.weight"] = w(v, h)
        cfg = {
            "architectures": ["BaichuanForCausalLM"],
            "model_type": "baichuan",
            "auto_map": {
                "AutoConfig": "configuration_baichuan.BaichuanConfig",
                "AutoModelForCausalLM": "modeling_baichuan.BaichuanForCausalLM",
            },
            "hidden_size": h,
            "intermediate_size": inter,
            "num_attention_heads": spec.heads,
            "num_hidden_layers": spec.layers,
            "vocab_size": v,
            "model_max_length": spec.max_position,
            "tie_word_embeddings": False,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "pad_token_id": 3,
        }
    elif spec.family == "internlm2":
        t["model.tok_embeddings.weight"] = w(v, h)
        for i in range(spec.layers):
            p = f"model.layers.{i}."
            t[p + "attention.wqkv.weight"] = w((spec.heads + 2 * kvh) * hd, h)
            t[p + "attention.wo.weight"] = w(h, h)
            t[p + "feed_forward.w1.weight"] = w(inter, h)
            t[p + "feed_forward.w3.weight"] = w(inter, h)
            t[p + "feed_forward.w2.weight"] = w(h, inter)
            t[p + "attention_norm.weight"] = np.ones(h, np.float16)
            t[p + "ffn_norm.weight"] = np.ones(h, np.float16)
        t["model.norm.weight"] = np.ones(h, np.float16)
        t["output.weight"] = w(v, h)
        cfg = {
            "architectures": ["InternLM2ForCausalLM"],
            "model_type": "internlm2",
            "auto_map": {
                "AutoConfig": "configuration_internlm2.InternLM2Config",
                "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM",
            },
            "hidden_size": h,
            "intermediate_size": inter,
            "num_attention_heads": spec.heads,
            "num_key_value_heads": kvh,
            "num_hidden_layers": spec.layers,
            "vocab_size": v,
            "max_position_embeddings": spec.max_position,
            "tie_word_embeddings": False,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "pad_token_id": 3,
        }
    elif spec.family == "chatglm":
        t["transformer.embedding.word_embeddings.weight"] = w(v, h)
        for i in range(spec.layers):
            p = f"transformer.encoder.layers.{i}."
            t[p + "self_attention.query_key_value.weight"] = w(h + 2 * kvh * hd, h)
            t[p + "self_attention.query_key_value.bias"] = w(h + 2 * kvh * hd)
            t[p + "self_attention.dense.weight"] = w(h, h)
            t[p + "mlp.dense_h_to_4h.weight"] = w(2 * inter, h)
            t[p + "mlp.dense_4h_to_h.weight"] = w(h, inter)
            t[p + "input_layernorm.weight"] = np.ones(h, np.float16)
            t[p + "post_attention_layernorm.weight"] = np.ones(h, np.float16)
        t["transformer.encoder.final_layernorm.weight"] = np.ones(h, np.float16)
        t["transformer.output_layer.weight"] = w(v, h)
        cfg = {
            "architectures": ["ChatGLMModel"],
            "model_type": "chatglm",
            "auto_map": {
                "AutoConfig": "configuration_chatglm.ChatGLMConfig",
                "AutoModelForCausalLM": "modeling_chatglm.ChatGLMForConditionalGeneration",
            },
            "hidden_size": h,
            "ffn_hidden_size": inter,
            "num_attention_heads": spec.heads,
            "multi_query_group_num": kvh,
            "multi_query_attention": True,
            "kv_channels": hd,
            "num_layers": spec.layers,
            "padded_vocab_size": v,
            "seq_length": spec.max_position,
            "tie_word_embeddings": False,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "pad_token_id": 3,
        }
    else:
        raise ValueError(spec.family)
    if spec.dtype == "bfloat16":
        raise ValueError("remote-code toy families are written in float16 (numpy has no bfloat16)")
    cfg["torch_dtype"] = spec.dtype
    save_file(t, str(path / "model.safetensors"), metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps(cfg, indent=2))
    (path / "generation_config.json").write_text(
        json.dumps({"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 3, "max_length": spec.max_position})
    )


def main() -> None:
    """Command-line entry: build one folder."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("dir", type=Path)
    ap.add_argument("--family", default="llama")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--intermediate", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=320)
    ap.add_argument("--shard-bytes", type=int)
    ap.add_argument("--max-position", type=int, default=512)
    a = ap.parse_args()
    build(
        a.dir,
        Spec(
            family=a.family,
            dtype=a.dtype,
            hidden=a.hidden,
            layers=a.layers,
            heads=a.heads,
            kv_heads=a.kv_heads,
            intermediate=a.intermediate,
            vocab=a.vocab,
            shard_bytes=a.shard_bytes,
            max_position=a.max_position,
        ),
    )
    print(a.dir)


if __name__ == "__main__":
    main()


def build_sparse_llama(
    path: Path,
    *,
    layers: int = 80,
    hidden: int = 8192,
    heads: int = 64,
    kv_heads: int = 8,
    intermediate: int = 28672,
    vocab: int = 128256,
    shards: int = 30,
    dtype: str = "BF16",
) -> Path:
    """A Llama-shaped folder whose shards have real headers and sparse (unwritten) data: a 70B model
    in a few MB of disk. Only the static phase can use it — the bytes are zeros."""
    import struct

    path.mkdir(parents=True, exist_ok=True)
    hd = hidden // heads
    names: list[tuple[str, list[int]]] = [("model.embed_tokens.weight", [vocab, hidden])]
    for i in range(layers):
        p = f"model.layers.{i}."
        names += [
            (p + "input_layernorm.weight", [hidden]),
            (p + "self_attn.q_proj.weight", [heads * hd, hidden]),
            (p + "self_attn.k_proj.weight", [kv_heads * hd, hidden]),
            (p + "self_attn.v_proj.weight", [kv_heads * hd, hidden]),
            (p + "self_attn.o_proj.weight", [hidden, heads * hd]),
            (p + "post_attention_layernorm.weight", [hidden]),
            (p + "mlp.gate_proj.weight", [intermediate, hidden]),
            (p + "mlp.up_proj.weight", [intermediate, hidden]),
            (p + "mlp.down_proj.weight", [hidden, intermediate]),
        ]
    names += [("model.norm.weight", [hidden]), ("lm_head.weight", [vocab, hidden])]
    per = -(-len(names) // shards)
    weight_map: dict[str, str] = {}
    total = 0
    for s in range(shards):
        chunk = names[s * per : (s + 1) * per]
        if not chunk:
            break
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
        off = 0
        for name, shape in chunk:
            n = 2
            for d in shape:
                n *= d
            header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + n]}
            off += n
            weight_map[name] = fname
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)
        with open(path / fname, "wb") as fh:
            fh.write(struct.pack("<Q", len(raw)) + raw)
            fh.truncate(8 + len(raw) + off)
        total += off
    (path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
    )
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "torch_dtype": "bfloat16",
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "vocab_size": vocab,
        "max_position_embeddings": 131072,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "rms_norm_eps": 1e-5,
    }
    (path / "config.json").write_text(json.dumps(cfg, indent=2))
    (path / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}))
    return path


def write_large_tokenizer(path: Path, vocab: int = 150_000, added: int = 200) -> None:
    """A tokenizer.json the size of a modern LLM's (BPE, ``vocab`` entries and merges, added tokens),
    generated without training, plus tokenizer_config.json — for the static benchmark."""
    import random

    rnd = random.Random(0)
    alphabet = "abcdefghijklmnopqrstuvwxyzĠĊ"
    words: dict[str, int] = {}
    while len(words) < vocab:
        words.setdefault("".join(rnd.choice(alphabet) for _ in range(rnd.randint(2, 9))), len(words))
    keys = list(words)
    doc = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": vocab + i,
                "content": f"<|special_{i}|>",
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for i in range(added)
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel"},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": words,
            "merges": [[a, b] for a, b in itertools.pairwise(keys)],
        },
    }
    (path / "tokenizer.json").write_text(json.dumps(doc, ensure_ascii=False))
    (path / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "bos_token": "<|special_0|>",
                "eos_token": "<|special_1|>",
                "tokenizer_class": "PreTrainedTokenizerFast",
                "chat_template": "{% for m in messages %}<|special_2|>{{ m['content'] }}<|special_1|>{% endfor %}",
            }
        )
    )
