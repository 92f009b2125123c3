"""ARCH: do the tensors make the model config.json describes?"""

from __future__ import annotations

import re
from collections.abc import Iterator

from npu_preflight.arch import (
    FAMILIES,
    GENERIC,
    expected_attention,
    expected_layer,
    expert_limit,
    family_for,
    implausible,
    shape_matches,
)
from npu_preflight.context import Context
from npu_preflight.model import Hit, Location, Severity
from npu_preflight.registry import check
from npu_preflight.safetext import short_repr

_MAX = 20
#: dtypes whose stored shape is the logical shape (packed int4 in I32/U8 is not shape-checked).
_SHAPE_DTYPES = frozenset({"F16", "BF16", "F32", "F64", "I8", "F8_E4M3", "F8_E5M2"})
_LAYER = re.compile(r"\.(?:layers|h|blocks)\.(\d+)\.")


def _loc(ctx: Context, tensor: str, key: str | None = None) -> Location:
    t = ctx.tensors.get(tensor)
    return Location(file=t.file if t else None, tensor=tensor, key=key)


@check(
    "ARCH001",
    "embedding rows cover vocab_size",
    Severity.ERROR,
    requires=("architecture",),
    backend="any",
    source="the embedding lookup of every runtime (transformers nn.Embedding, MindIE TensorEmbedding): an id ≥ rows is out of range",
)
def embedding_rows(ctx: Context) -> Iterator[Hit]:
    """Token ids index the embedding (and lm_head) rows. Fewer rows than ``vocab_size`` means some
    ids read past the table — a device-side crash or garbage; more rows is normal padding.

    Bad: ``vocab_size`` 152,064 with ``embed_tokens`` of shape [151,936, 4096].
    Good: rows ≥ vocab_size, width = hidden_size.
    Fix: use the config.json that belongs to these weights, or resize the embedding properly.
    """
    fam, d = ctx.architecture
    for name in (fam.embed, fam.lm_head):
        t = ctx.tensors.get(name)
        if t is None or len(t.info.shape) != 2:
            continue
        rows, cols = t.info.shape
        if d.vocab is not None and rows < d.vocab:
            yield Hit(
                f"{name} has {rows:,} rows but config.json vocab_size is {d.vocab:,}: token ids "
                f"{rows:,}–{d.vocab - 1:,} would index past the table",
                "Use the config.json that belongs to these weights (vocab_size ≤ rows).",
                _loc(ctx, name, "config.json:vocab_size"),
                {"rows": rows, "vocab_size": d.vocab},
            )
        if t.info.dtype in _SHAPE_DTYPES and cols != d.hidden:
            yield Hit(
                f"{name} is {rows:,}×{cols:,} but config.json hidden_size is {d.hidden:,}",
                "Use the config.json that belongs to these weights.",
                _loc(ctx, name, "config.json:hidden_size"),
                {"cols": cols, "hidden_size": d.hidden},
            )


@check(
    "ARCH002",
    "every layer and tensor config.json implies is present",
    Severity.ERROR,
    requires=("architecture",),
    backend="any",
    source="transformers from_pretrained (missing keys), MindIE atb_llm/utils/weights.py get_tensor (missing tensor fails the load)",
)
def layers_present(ctx: Context) -> Iterator[Hit]:
    """``num_hidden_layers`` decoder layers, each with its attention and MLP tensors, must be in the
    weights; a missing tensor fails the load, or (in some servers) stays randomly initialised.

    Bad: ``num_hidden_layers`` 32 with layers 0–29 in the shards (a missing last shard).
    Good: layers 0…num_hidden_layers−1, each complete.
    Fix: download the missing shard(s), or correct num_hidden_layers.
    """
    fam, d = ctx.architecture
    cfg = ctx.effective_config.values
    names = frozenset(ctx.tensors)
    experts = expert_limit(names)
    present = {int(m.group(1)) for n in names if (m := _LAYER.search(n))}
    # Layers are walked only as far as the stored ones (plus a few): a config.json that declares
    # 100,000,000 layers gets one finding for the missing range, not a hundred million loops.
    walk = min(d.layers, (max(present) + 1 if present else 0) + _MAX)
    for required in (fam.embed, fam.final_norm):
        if required not in names:
            yield Hit(
                f"tensor {required} is missing",
                "Download the shard that holds it; check the index.",
                Location(tensor=required),
            )
    hits = 0
    for i in range(walk):
        exp = expected_layer(fam, d, cfg, i, names, experts)
        missing = [n for n in exp if n not in names]
        if not missing:
            continue
        hits += 1
        if hits > _MAX:
            continue
        if len(missing) == len(exp):
            yield Hit(
                f"layer {i} is missing entirely (config.json num_hidden_layers is {d.layers})",
                "Download the missing shard(s), or correct num_hidden_layers in config.json.",
                Location(tensor=fam.layer_prefix.format(i=i) + "*", key="config.json:num_hidden_layers"),
                {"layer": i, "missing": len(missing)},
            )
        else:
            yield Hit(
                f"layer {i} lacks {len(missing)} tensor(s): {', '.join(missing[:4])}",
                "Download the shard that holds them; check the index.",
                Location(tensor=missing[0]),
                {"layer": i, "missing": missing[:20]},
            )
    if hits > _MAX:
        yield Hit(f"{hits - _MAX} more incomplete layers not listed", "See the layers above.", Location())
    if d.layers > walk:
        yield Hit(
            f"layers {walk:,}–{d.layers - 1:,} are missing entirely ({d.layers - walk:,} more of the {d.layers:,} "
            "config.json declares; the weights stop long before)",
            "Use the config.json that belongs to these weights (num_hidden_layers), or download the missing shards.",
            Location(key="config.json:num_hidden_layers"),
            {"first_missing": walk, "declared": d.layers},
        )
    extra = sorted(i for i in present if i >= d.layers + d.extra_layers)
    if extra:
        yield Hit(
            f"tensors for layer(s) {', '.join(map(str, extra[:8]))} exist beyond num_hidden_layers={d.layers}; "
            "they are ignored, or config.json undercounts the layers",
            "Check num_hidden_layers against the weights.",
            Location(key="config.json:num_hidden_layers"),
            {"extra_layers": extra},
            severity=Severity.WARNING,
        )


def _shape_hits(ctx: Context, attention: bool) -> Iterator[Hit]:
    fam, d = ctx.architecture
    cfg = ctx.effective_config.values
    names = frozenset(ctx.tensors)
    attn_keys = set(expected_attention(fam, d, cfg))
    experts = expert_limit(names)
    present = sorted({int(m.group(1)) for n in names if (m := _LAYER.search(n))})
    n = 0
    for i in (i for i in present if i < d.layers):  # only stored layers have shapes to compare
        prefix = fam.layer_prefix.format(i=i)
        for name, shape in expected_layer(fam, d, cfg, i, names, experts).items():
            if (name[len(prefix) :] in attn_keys) != attention:
                continue
            t = ctx.tensors.get(name)
            if t is None or t.info.dtype not in _SHAPE_DTYPES or shape_matches(t.info.shape, shape):
                continue
            n += 1
            if n <= _MAX:
                want = "×".join("?" if s is None else f"{s:,}" for s in shape)
                yield Hit(
                    f"{name} is {'×'.join(f'{s:,}' for s in t.info.shape)} but config.json implies {want} "
                    f"(hidden {d.hidden}, heads {d.heads}, kv heads {d.kv_heads}, head_dim {d.head_dim}"
                    + (f", intermediate {d.intermediate}" if not attention else "")
                    + ")",
                    "Use the config.json that belongs to these weights.",
                    _loc(ctx, name),
                    {"actual": list(t.info.shape), "expected": list(shape)},
                )
    if n > _MAX:
        yield Hit(f"{n - _MAX} more shape mismatches not listed", "See above.", Location())


@check(
    "ARCH003",
    "attention shapes match hidden_size, heads, KV heads and head_dim",
    Severity.ERROR,
    requires=("architecture",),
    backend="any",
    source="each family's modeling code in transformers (schemas/transformers_models.json names the families) and MindIE atb_llm/models",
)
def attention_shapes(ctx: Context) -> Iterator[Hit]:
    """q/k/v/o projections are sized by ``hidden_size``, ``num_attention_heads``,
    ``num_key_value_heads`` and ``head_dim``. A mismatch is a config from another model size
    (e.g. a 7B config on 13B weights) and the load fails with a size mismatch.

    Bad: ``num_key_value_heads`` 8 over k_proj of shape [1024, 4096] with head_dim 256.
    Good: k_proj rows = num_key_value_heads × head_dim.
    Fix: use the config.json that belongs to these weights.
    """
    yield from _shape_hits(ctx, attention=True)


@check(
    "ARCH004",
    "MLP shapes match intermediate_size",
    Severity.ERROR,
    requires=("architecture",),
    backend="any",
    source="each family's modeling code in transformers and MindIE atb_llm/models (MLP and expert shapes)",
)
def mlp_shapes(ctx: Context) -> Iterator[Hit]:
    """gate/up/down projections are sized by ``intermediate_size`` (MoE experts by
    ``moe_intermediate_size``); a mismatch fails the load with a size mismatch.

    Bad: ``intermediate_size`` 11008 over gate_proj of shape [13824, 5120].
    Good: gate_proj rows = intermediate_size.
    Fix: use the config.json that belongs to these weights.
    """
    yield from _shape_hits(ctx, attention=False)


@check(
    "ARCH005",
    "lm_head agrees with tie_word_embeddings",
    Severity.ERROR,
    requires=("architecture",),
    backend="any",
    source="transformers PreTrainedModel.tie_weights and each family's config defaults (schemas/transformers_models.json)",
)
def lm_head_tie(ctx: Context) -> Iterator[Hit]:
    """With ``tie_word_embeddings`` false the output projection must be stored; some servers then
    silently use an uninitialised lm_head and produce garbage. When tied, a stored lm_head is
    ignored (wasted bytes) or, in some loaders, used instead of the embedding. A config.json
    without the key gets its family's default, as transformers' config class defines it (gemma,
    gemma2 and gemma3 tie by default; llama does not).

    Bad: ``"tie_word_embeddings": false`` and no ``lm_head.weight``.
    Good: tied with no lm_head, or untied with lm_head present.
    Fix: set tie_word_embeddings to match the weights.
    """
    fam, d = ctx.architecture
    present = fam.lm_head in ctx.tensors
    mt = ctx.effective_config.values.get("model_type")
    said = (
        f"tie_word_embeddings is {str(d.tie).lower()} (config.json omits it; that is {mt}'s default in transformers)"
        if d.tie_from_default
        else f"config.json tie_word_embeddings is {str(d.tie).lower()}"
    )
    if not d.tie and not present:
        yield Hit(
            f"{fam.lm_head} is missing while {said}: the output projection would be uninitialised (garbage "
            "output) or the load fails",
            'Set "tie_word_embeddings": true if the model shares its embedding, else restore the lm_head shard.',
            Location(tensor=fam.lm_head, key="config.json:tie_word_embeddings"),
            {"tie": d.tie, "from_default": d.tie_from_default},
        )
    elif d.tie and present:
        yield Hit(
            f"{fam.lm_head} is stored although {said}; it is ignored (or used instead of the embedding by some loaders)",
            'Set "tie_word_embeddings": false if the stored lm_head is meant to be used, else drop it.',
            _loc(ctx, fam.lm_head, "config.json:tie_word_embeddings"),
            {"tie": d.tie, "from_default": d.tie_from_default},
            severity=Severity.WARNING,
        )


_EXPERT = re.compile(r"\.experts\.(\d+)\.")


@check(
    "ARCH006",
    "MoE expert count matches the config",
    Severity.ERROR,
    requires=("architecture",),
    backend="any",
    source="transformers MoE blocks (Mixtral, Qwen2/3-MoE, DeepSeek-V2/V3): router rows = experts",
)
def expert_count(ctx: Context) -> Iterator[Hit]:
    """MoE configs declare how many experts each layer routes to (``num_local_experts``,
    ``n_routed_experts``); the router's output size and the stored experts must agree.

    Bad: ``num_local_experts`` 8 with experts 0–3 stored.
    Good: experts 0…N−1 in every MoE layer.
    Fix: use the matching config, or the complete weights.
    """
    fam, d = ctx.architecture
    if d.experts is None:
        return
    per_layer: dict[int, set[int]] = {}
    for name in ctx.tensors:
        m = _EXPERT.search(name)
        lm = _LAYER.search(name)
        if m and lm:
            per_layer.setdefault(int(lm.group(1)), set()).add(int(m.group(1)))
    for layer, found in sorted(per_layer.items()):
        if len(found) != d.experts or max(found) != d.experts - 1:
            yield Hit(
                f"layer {layer} stores {len(found)} expert(s) (ids {min(found)}–{max(found)}) but config.json "
                f"declares {d.experts}",
                "Use the config.json that belongs to these weights, or download the missing experts.",
                Location(tensor=fam.layer_prefix.format(i=layer) + "*experts*", key="config.json:num_local_experts"),
                {"layer": layer, "found": len(found), "declared": d.experts},
            )


@check(
    "ARCH007",
    "the architecture is one the structural checks know",
    Severity.INFO,
    requires=("config", "tensors"),
    backend="preflight",
    source="npu_preflight/arch.py FAMILIES (tensor names checked against transformers on the meta device, tests/test_vendor_configs.py)",
)
def architecture_known(ctx: Context) -> Iterator[Hit]:
    """Structural checks need each family's tensor naming. Known: Llama 2/3.x, Mistral, Mixtral,
    Qwen2/2.5, Qwen3, Qwen2-MoE, Qwen3-MoE, Gemma/Gemma-2/Gemma-3, Phi-3/phi-4, GLM-4 (glm4) and
    ChatGLM/GLM-4 (chatglm), Baichuan2, InternLM2, DeepSeek-V2/V3 (MLA, MoE), and any folder named
    like Llama. Others are not guessed at: this note says the structural checks were skipped.

    Bad: (not a fault) ``model_type`` "rwkv" — structural checks skipped.
    Good: ``model_type`` "qwen2".
    Fix: nothing to fix; the file and security checks still ran.
    """
    cfg = ctx.effective_config.values
    fam = family_for(cfg, set(ctx.tensors))
    bad = implausible(cfg)
    if bad:
        yield Hit(
            "config.json gives implausible dimensions: "
            + ", ".join(f"{k} = {short_repr(cfg[k], 40)}" for k in bad)
            + " (not a positive integer below 2**31); they are treated as missing",
            "Restore the dimensions from the original config.json.",
            Location(file="config.json", key=f"config.json:{bad[0]}"),
            {"keys": bad},
            severity=Severity.ERROR,
        )
    if fam is None:
        yield Hit(
            f"architecture {cfg.get('model_type')!r} is not one the structural checks know; structural checks "
            f"skipped (known: {', '.join(sorted(FAMILIES))})",
            "Nothing to fix; shape checks for this family are not available.",
            Location(file="config.json", key="config.json:model_type"),
        )
    elif ctx.availability("architecture") is not None:
        yield Hit(
            "config.json lacks hidden_size, num_hidden_layers or num_attention_heads; structural checks skipped",
            "Restore the dimensions from the original config.json.",
            Location(file="config.json"),
            severity=Severity.WARNING,
        )
    elif fam is GENERIC:
        yield Hit(
            f"model_type {cfg.get('model_type')!r} is read as a generic Llama-like model (attention checked; "
            "MLP only when named like Llama's)",
            "Nothing to fix.",
            Location(file="config.json", key="config.json:model_type"),
        )
