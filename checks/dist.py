"""DIST: does the model split over the requested tensor-parallel degree (``world_size``)?"""

from __future__ import annotations

from collections.abc import Iterator

from npu_preflight.context import Context
from npu_preflight.model import Hit, Location, Severity
from npu_preflight.registry import check

_WEIGHTS = "Ascend/MindIE-LLM examples/atb_models/atb_llm/utils/weights.py"


def _valid(n: int) -> list[int]:
    return [w for w in (1, 2, 4, 8, 16) if n % w == 0 or w % n == 0]


@check(
    "DIST001",
    "attention heads split over world_size as the runtime requires",
    Severity.ERROR,
    requires=("architecture", "world_size"),
    backend="tensor-parallel",
    source=f"{_WEIGHTS} get_sharded / get_tensor_col_packed_qkv_gqa; MindIE qwen README (Qwen2-7B, 28 heads, at "
    "world size 8); vLLM ColumnParallelLinear (heads % tensor_parallel_size)",
)
def heads_divisible(ctx: Context) -> Iterator[Hit]:
    """Tensor parallelism gives each rank ``num_attention_heads / world_size`` query heads. Runtimes
    differ on an uneven split:

    * MindIE ATB, separate q/k/v weights (Llama, Qwen2/2.5/3, Mistral, Mixtral, DeepSeek): the
      loader pads the last ranks with zero heads (``weights.get_sharded``) — MindIE lists Qwen2-7B
      and Qwen2.5-7B (28 heads) at world size 8. A note, not a fault: some compute is wasted.
    * MindIE ATB, one packed GQA qkv weight (Phi-3/phi-4 ``qkv_proj``): the query rows are cut with
      ``torch.chunk`` over world_size, so an uneven head count cuts heads apart — an error.
    * vLLM-style runtimes (and anything else): ``num_attention_heads`` must divide by the tensor
      parallel size; the engine refuses to start. Without a MindIE model_config this is the rule
      applied, as a warning (the runtime is not known).

    Bad: 40 heads with ``world_size`` 3.
    Good: 40 heads with ``world_size`` 2, 4 or 8.
    Fix: choose a world_size that divides num_attention_heads.
    """
    fam, d = ctx.architecture
    ws = ctx.world_size
    if d.heads % ws == 0:
        return
    ok = [w for w in (1, 2, 4, 8, 16) if d.heads % w == 0]
    data = {"heads": d.heads, "world_size": ws, "valid": ok, "backend": ctx.backend}
    loc = Location(key="model_config.world_size")
    if ctx.backend == "mindie-atb" and not fam.packed_qkv:
        per = -(-d.heads // ws)
        yield Hit(
            f"num_attention_heads {d.heads} does not divide by world_size {ws}: MindIE pads the query heads to "
            f"{per} per rank ({per * ws - d.heads} zero head(s) in all), which works and wastes a little compute",
            f"Fine as is; world_size {', '.join(map(str, ok))} splits the heads exactly.",
            loc,
            data,
            severity=Severity.INFO,
        )
    elif ctx.backend == "mindie-atb":
        yield Hit(
            f"num_attention_heads {d.heads} does not divide by world_size {ws}: MindIE splits {fam.name}'s packed "
            "qkv weight by rows (torch.chunk), which cuts attention heads apart",
            f"Use world_size {', '.join(map(str, ok))}.",
            loc,
            data,
        )
    else:
        yield Hit(
            f"num_attention_heads {d.heads} is not divisible by world_size {ws}: vLLM-style tensor parallelism "
            "refuses an uneven split (MindIE's ATB models pad it; set backend_type atb to check against MindIE)",
            f"Use world_size {', '.join(map(str, ok))}.",
            loc,
            data,
            severity=Severity.WARNING,
        )


@check(
    "DIST002",
    "KV heads divide by world_size or are replicated",
    Severity.ERROR,
    requires=("architecture", "world_size"),
    backend="tensor-parallel",
    source=f"{_WEIGHTS} get_partial_sharded / get_partial_sharded_padding_gqa / get_tensor_col_packed_qkv_gqa; "
    "MindIE qwen README (supported world sizes follow num_key_value_heads); vLLM QKVParallelLinear",
)
def kv_heads_split(ctx: Context) -> Iterator[Hit]:
    """Each rank holds ``num_key_value_heads / world_size`` KV heads. With fewer KV heads than ranks
    they are replicated (each rank keeps one, ``world_size / kv_heads`` copies) — legal, but the KV
    cache per rank no longer shrinks with world_size. Neither dividing the other:

    * a packed qkv weight (Phi-3/phi-4 ``qkv_proj``) is cut by rows over
      ``min(world_size, kv_heads)`` ranks, splitting KV heads apart — phi-4's 10 KV heads cannot go
      over 4 or 8 ranks: an error on every runtime;
    * separate k/v weights on MindIE ATB are padded with zero heads (``get_partial_sharded_padding_gqa``)
      while MindIE's docs say the supported world sizes follow ``num_key_value_heads``: a warning;
    * vLLM-style runtimes refuse it: an error.

    Bad: 10 KV heads (phi-4) with ``world_size`` 4.
    Good: 8 KV heads with ``world_size`` 8 (split) or 16 (replicated ×2).
    Fix: choose a world_size that divides, or is a multiple of, num_key_value_heads.
    """
    fam, d = ctx.architecture
    if fam.attention == "mla":
        return  # MLA caches one latent per token: there are no KV heads to split
    ws, kv = ctx.world_size, d.kv_heads
    if kv % ws == 0:
        return
    loc = Location(key="model_config.world_size")
    if ws % kv == 0:
        yield Hit(
            f"num_key_value_heads {kv} < world_size {ws}: each KV head is replicated on {ws // kv} ranks, so the "
            "KV cache per rank does not shrink further with world_size",
            "Fine if intended; the memory plan accounts one KV head per rank.",
            loc,
            {"kv_heads": kv, "world_size": ws, "replication": ws // kv},
            severity=Severity.INFO,
        )
        return
    valid = _valid(kv)
    data = {"kv_heads": kv, "world_size": ws, "valid": valid, "backend": ctx.backend}
    if ctx.backend == "mindie-atb" and not fam.packed_qkv:
        yield Hit(
            f"num_key_value_heads {kv} and world_size {ws} do not divide each other: MindIE pads the KV heads with "
            "zeros, but its model docs list only world sizes that follow the KV heads",
            f"Prefer world_size {', '.join(map(str, valid))}.",
            loc,
            data,
            severity=Severity.WARNING,
        )
        return
    how = (
        f"{fam.name}'s packed qkv weight is cut by rows, splitting KV heads apart"
        if fam.packed_qkv
        else "tensor-parallel runtimes refuse the split"
    )
    yield Hit(
        f"num_key_value_heads {kv} and world_size {ws} do not divide each other: {how}",
        f"Use world_size {', '.join(map(str, valid))}.",
        loc,
        data,
    )


@check(
    "DIST003",
    "intermediate size divides by world_size",
    Severity.ERROR,
    requires=("architecture", "world_size"),
    backend="tensor-parallel",
    source="Ascend/MindIE-LLM examples/atb_models/atb_llm/utils/weights.py get_sharded (pads uneven splits); vLLM MergedColumnParallelLinear (divisible)",
)
def intermediate_divisible(ctx: Context) -> Iterator[Hit]:
    """The MLP's column-parallel gate/up and row-parallel down projections split
    ``intermediate_size`` (MoE: ``moe_intermediate_size``) across ranks; an uneven split fails.

    Bad: ``intermediate_size`` 11008 with ``world_size`` 6.
    Good: ``intermediate_size`` 11008 with ``world_size`` 2, 4 or 8.
    Fix: choose a world_size that divides it.
    """
    _, d = ctx.architecture
    ws = ctx.world_size
    for key, value in (("intermediate_size", d.intermediate), ("moe_intermediate_size", d.moe_intermediate)):
        if value and value % ws:
            yield Hit(
                f"{key} {value:,} is not divisible by world_size {ws}: the MLP projections cannot be split evenly",
                "Choose a world_size that divides it.",
                Location(key=f"config.json:{key}"),
                {key: value, "world_size": ws},
            )


@check(
    "DIST004",
    "vocabulary splits evenly over world_size",
    Severity.WARNING,
    requires=("architecture", "world_size"),
    backend="tensor-parallel",
    source="Ascend/MindIE-LLM examples/atb_models/atb_llm/utils/layers (vocab-parallel embedding and lm_head); vLLM VocabParallelEmbedding (pads to 64)",
)
def vocab_divisible(ctx: Context) -> Iterator[Hit]:
    """The embedding and lm_head are vocab-parallel: each rank holds ``vocab_size / world_size``
    rows. An uneven vocabulary is padded up to a multiple of world_size by the parallel layers
    (unverified for every ATB model; some refuse it), which costs memory and needs care.

    Bad: ``vocab_size`` 32,001 with ``world_size`` 2.
    Good: ``vocab_size`` 32,000 with ``world_size`` 2.
    Fix: pad the embedding to a multiple of world_size (e.g. 64), or check the model's MindIE README.
    """
    fam, d = ctx.architecture
    ws = ctx.world_size
    t = ctx.tensors.get(fam.embed)
    rows = t.info.shape[0] if t is not None and t.info.shape else d.vocab
    if rows and ws > 1 and rows % ws:
        yield Hit(
            f"the embedding has {rows:,} rows, not divisible by world_size {ws}: the vocab-parallel embedding "
            "and lm_head split unevenly (padded, or refused by some models)",
            f"Pad the vocabulary to a multiple of {ws} or check the model's MindIE README.",
            Location(tensor=fam.embed, key="model_config.world_size"),
            {"rows": rows, "world_size": ws},
        )
