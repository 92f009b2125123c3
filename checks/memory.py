"""MEM: will weights, KV cache and workspace fit the device, per rank, before anything loads?"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

from npu_preflight.context import Context
from npu_preflight.errors import Unavailable
from npu_preflight.model import Hit, Location, Phase, Severity
from npu_preflight.registry import check
from npu_preflight.units import fmt_bytes

if TYPE_CHECKING:
    from npu_preflight.memory import Plan


def _plan_with_budget(ctx: Context) -> Plan:
    plan = ctx.plan
    if plan.budget_bytes is None:
        raise Unavailable("no device to plan against: " + ("; ".join(plan.notes) or "give --target-device NAME"))
    return plan


@check(
    "MEM001",
    "the weights fit the device",
    Severity.ERROR,
    phase=Phase.PLAN,
    requires=("tensors",),
    backend="preflight",
    source="npu_preflight/memory.py plan (MindIE tensor-parallel sharding, FACTS.md §1)",
)
def weights_fit(ctx: Context) -> Iterator[Hit]:
    """Each rank must hold its share of the weights (``weights / world_size`` for tensor-parallel
    tensors, replicated ones whole) inside the device budget (total × NPU_MEMORY_FRACTION − memory in
    use). If not, the init dies with ``NPU out of memory. Tried to allocate X MiB`` after minutes of loading.

    Bad: a 70B model in bf16 (≈ 131 GiB) with ``world_size`` 1 on a 64 GiB 910B3.
    Good: the same model with ``world_size`` 4 (≈ 33 GiB per rank).
    Fix: raise world_size, load a smaller dtype, or pick a larger device.
    """
    plan = _plan_with_budget(ctx)
    budget = plan.budget_bytes or 0
    if plan.weights_bytes + plan.overhead_bytes > budget:
        dev = plan.device.name if plan.device else "the device"
        min_ws = math.ceil(plan.weights_total_bytes / max(budget - plan.overhead_bytes, 1))
        yield Hit(
            f"the weights need {fmt_bytes(plan.weights_bytes)} per rank (world_size {plan.world_size}) plus "
            f"{fmt_bytes(plan.overhead_bytes)} runtime, but {dev} gives {fmt_bytes(budget)}: the init would fail "
            "with 'out of memory. Tried to allocate …'",
            f"Raise world_size to at least {max(min_ws, plan.world_size + 1)}, or use a device with more memory.",
            Location(key="model_config.world_size"),
            {"weights_per_rank": plan.weights_bytes, "budget": budget, "min_world_size": min_ws},
        )


@check(
    "MEM002",
    "weights + KV cache + workspace fit the device",
    Severity.ERROR,
    phase=Phase.PLAN,
    requires=("tensors", "architecture"),
    backend="preflight",
    source="npu_preflight/memory.py plan; MindIE kvcache_settings.py block formula",
)
def total_fits(ctx: Context) -> Iterator[Hit]:
    """Beyond the weights, each rank holds the KV cache (MindIE: ``max_batch_size × ceil(max_seq_len
    / block_size)`` blocks) and the prefill workspace. MindIE's warmup then fails ("Warmup failed …
    Required block number … Left block number", or NPU out of memory at warmup).

    Bad: ``max_seq_len`` 32768 × ``max_batch_size`` 64 for a 7B model on one 32 GiB 910B4.
    Good: the largest max_seq_len and batch the plan says fit, with 10% headroom.
    Fix: lower max_seq_len or max_batch_size (the finding gives the largest that fit), or raise world_size.
    """
    plan = _plan_with_budget(ctx)
    if plan.weights_bytes + plan.overhead_bytes > (plan.budget_bytes or 0):
        return  # MEM001 already says it
    headroom = plan.headroom_bytes or 0
    if headroom < 0 and plan.kv is not None:
        fit_seq = plan.max_seq_len_fit()
        yield Hit(
            f"weights {fmt_bytes(plan.weights_bytes)} + KV cache {fmt_bytes(plan.kv_cache_bytes)} "
            f"({plan.kv.batch} × {plan.kv.seq_len:,} tokens) + workspace {fmt_bytes(plan.workspace_bytes)} + runtime "
            f"{fmt_bytes(plan.overhead_bytes)} = {fmt_bytes(plan.total_bytes)} exceeds the budget "
            f"{fmt_bytes(plan.budget_bytes)} by {fmt_bytes(-headroom)}; "
            + (
                f"the estimated maximum max_seq_len is {fit_seq:,}"
                if fit_seq
                else "not even one KV block fits at this batch"
            )
            + (
                f" and max_batch_size {plan.max_batch_fit()}"
                if plan.max_batch_fit()
                else f"; no batch fits at max_seq_len {plan.kv.seq_len:,}"
            ),
            plan.remedy(),
            Location(key="model_config.max_seq_len"),
            {
                "total": plan.total_bytes,
                "budget": plan.budget_bytes,
                "max_seq_len_fit": fit_seq,
                "max_batch_fit": plan.max_batch_fit(),
            },
        )


@check(
    "MEM003",
    "at least 10% headroom",
    Severity.WARNING,
    phase=Phase.PLAN,
    requires=("tensors",),
    backend="preflight",
    source="npu_preflight/memory.py plan (10% headroom, as TGI keeps)",
)
def headroom(ctx: Context) -> Iterator[Hit]:
    """A plan that fits with less than 10% to spare fails on fragmentation, a longer prompt, or
    another process on the card (TGI keeps 10% too).

    Bad: 62 GiB needed of a 64 GiB budget.
    Good: ≥ 10% of the budget left.
    Fix: trim max_seq_len/max_batch_size a little, or raise world_size.
    """
    plan = _plan_with_budget(ctx)
    h, b = plan.headroom_bytes, plan.budget_bytes
    if h is not None and b and 0 <= h < 0.10 * b:
        yield Hit(
            f"only {fmt_bytes(h)} ({h / b:.1%}) of the {fmt_bytes(b)} budget is left after the plan",
            "Keep ≥ 10% free: trim max_seq_len or max_batch_size, or raise world_size.",
            Location(key="model_config.max_seq_len"),
            {"headroom": h, "budget": b},
        )


@check(
    "MEM004",
    "host memory can load the weights",
    Severity.WARNING,
    phase=Phase.PLAN,
    requires=("tensors", "probe"),
    backend="preflight",
    source="npu_preflight/memory.py plan; MindIE cpu_mem",
)
def host_memory(ctx: Context) -> Iterator[Hit]:
    """Loading reads shards through host memory (a shard at a time, more with conversions), and
    MindIE keeps ``cpu_mem`` GB of swapped KV blocks on the host. Too little free RAM means a killed
    process (SIGKILL from the OOM killer) with no Python error at all.

    Bad: 8 GiB free RAM for 10 GiB shards.
    Good: free RAM above the largest shard plus cpu_mem.
    Fix: free host memory, re-shard into smaller files, or lower cpu_mem.
    """
    plan = ctx.plan
    avail = plan.host_available_bytes
    if avail is None or plan.device is None:
        return
    cpu_mem = (ctx.model_config.integer("cpu_mem") if ctx.model_config is not None else None) or 0
    if plan.device.kind == "cpu":
        return  # on CPU the device budget is host memory: MEM001/MEM002 cover it
    need = plan.largest_shard_bytes * 2 + int(cpu_mem or 0) * 1024**3
    if need > avail:
        yield Hit(
            f"loading needs about {fmt_bytes(need)} of host memory (2 × the largest shard "
            f"{fmt_bytes(plan.largest_shard_bytes)} + cpu_mem {cpu_mem} GB) but {fmt_bytes(avail)} is available",
            "Free host memory, re-shard the weights into smaller files, or lower cpu_mem.",
            Location(key="model_config.cpu_mem"),
            {"needed": need, "available": avail},
        )


@check(
    "MEM005",
    "MindIE's warmup finds enough KV blocks",
    Severity.ERROR,
    phase=Phase.PLAN,
    requires=("tensors", "architecture"),
    backend="mindie",
    source="mindie_llm text_generator warmup ('Warmup failed … Required block number'), FACTS.md §1",
)
def warmup_blocks(ctx: Context) -> Iterator[Hit]:
    """At warmup MindIE needs ``ceil(max_seq_len / block_size)`` blocks for one sequence from what is
    left after the weights (``npu_mem`` GB if set, else ``total × NPU_MEMORY_FRACTION − in use``);
    otherwise "Warmup failed … Required block number … Left block number".

    Bad: ``npu_mem`` 1 with ``max_seq_len`` 131072 on a 70B model.
    Good: npu_mem -1 (automatic), or a value that holds at least one full sequence.
    Fix: raise npu_mem (or use -1), lower max_seq_len, or raise world_size.
    """
    plan = _plan_with_budget(ctx)
    if plan.kv is None or plan.device is None or plan.device.kind != "npu":
        return
    npu_mem = ctx.model_config.integer("npu_mem") if ctx.model_config is not None else None
    if npu_mem is not None and npu_mem > 0:
        kv_room = npu_mem * 1024**3
        source = f"npu_mem {npu_mem} GB"
    else:
        budget = plan.budget_bytes
        if budget is not None and plan.weights_bytes + plan.overhead_bytes > budget:
            return  # the weights alone do not fit: MEM001 says so, and warmup is never reached
        kv_room = max(plan.kv_budget() or 0, 0)
        source = "the automatic budget (npu_mem -1)"
    left = kv_room // plan.kv.block_bytes if plan.kv.block_bytes else 0
    required = math.ceil(plan.kv.seq_len / plan.kv.block_size)
    if left < required:
        yield Hit(
            f"warmup needs {required} KV blocks for one {plan.kv.seq_len:,}-token sequence but {source} leaves "
            f"{left}: MindIE fails with 'Warmup failed … Required block number {required} … Left block number {left}'",
            "Raise npu_mem (or set -1), lower max_seq_len, or raise world_size.",
            Location(key="model_config.npu_mem"),
            {"required_blocks": required, "left_blocks": left},
        )
