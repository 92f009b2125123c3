"""DIST: does the model split over the requested tensor-parallel degree (``world_size``)?"""

from __future__ import annotations

from collections.abc import Iterator

from npu_preflight.context import Context
from npu_preflight.model import Hit, Location, Severity
from npu_preflight.registry import check


@check("DIST001", "attention heads divide by world_size", Severity.ERROR, requires=("architecture", "world_size"))
def heads_divisible(ctx: Context) -> Iterator[Hit]:
    """ATB (and every tensor-parallel runtime) gives each rank ``num_attention_heads / world_size``
    query heads; an uneven split is refused at load time.

    Bad: 40 heads with ``world_size`` 3.
    Good: 40 heads with ``world_size`` 2, 4 or 8.
    Fix: choose a world_size that divides num_attention_heads.
    """
    _, d = ctx.architecture
    ws = ctx.world_size
    if d.heads % ws:
        ok = [w for w in (1, 2, 4, 8, 16) if d.heads % w == 0]
        yield Hit(
            f"num_attention_heads {d.heads} is not divisible by world_size {ws}: tensor parallelism cannot split "
            "the query heads evenly",
            f"Use world_size {', '.join(map(str, ok))}.",
            Location(key="model_config.world_size"),
            {"heads": d.heads, "world_size": ws, "valid": ok},
        )


@check(
    "DIST002",
    "KV heads divide by world_size or are replicated",
    Severity.ERROR,
    requires=("architecture", "world_size"),
)
def kv_heads_split(ctx: Context) -> Iterator[Hit]:
    """Each rank holds ``num_key_value_heads / world_size`` KV heads. With fewer KV heads than ranks
    MindIE/ATB replicates them (each rank keeps one, ``world_size / kv_heads`` copies) — legal, but
    the KV cache per rank no longer shrinks with world_size. Neither dividing the other fails.

    Bad: 8 KV heads with ``world_size`` 3.
    Good: 8 KV heads with ``world_size`` 8 (split) or 16 (replicated ×2).
    Fix: choose a world_size that divides, or is a multiple of, num_key_value_heads.
    """
    _, d = ctx.architecture
    ws, kv = ctx.world_size, d.kv_heads
    if kv % ws == 0:
        return
    if ws % kv == 0:
        yield Hit(
            f"num_key_value_heads {kv} < world_size {ws}: each KV head is replicated on {ws // kv} ranks, so the "
            "KV cache per rank does not shrink further with world_size",
            "Fine if intended; the memory plan accounts one KV head per rank.",
            Location(key="model_config.world_size"),
            {"kv_heads": kv, "world_size": ws, "replication": ws // kv},
            severity=Severity.INFO,
        )
    else:
        yield Hit(
            f"num_key_value_heads {kv} and world_size {ws} do not divide each other: the KV heads cannot be "
            "split or replicated evenly",
            "Choose a world_size that divides, or is a multiple of, num_key_value_heads.",
            Location(key="model_config.world_size"),
            {"kv_heads": kv, "world_size": ws},
        )


@check("DIST003", "intermediate size divides by world_size", Severity.ERROR, requires=("architecture", "world_size"))
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


@check("DIST004", "vocabulary splits evenly over world_size", Severity.WARNING, requires=("architecture", "world_size"))
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
