"""INIT: the real generator init in a sandboxed subprocess — did it come up, and as planned?"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from npu_preflight.context import Context
from npu_preflight.errors import Unavailable
from npu_preflight.model import Hit, Location, Phase, Severity
from npu_preflight.registry import check
from npu_preflight.units import fmt_bytes

if TYPE_CHECKING:
    from npu_preflight.sandbox import InitOutcome


def _advice(ctx: Context, o: InitOutcome) -> str:
    kind = o.classified.outcome
    plan = ctx.plan if ctx.availability("plan") is None else None
    if kind == "oom-device":
        if plan is not None and plan.budget_bytes is not None:
            return plan.remedy()
        return "Lower max_seq_len or max_batch_size, raise world_size, or use a device with more memory."
    if kind == "oom-host":
        limit = f" (the cap was {fmt_bytes(o.memory_limit)})" if o.memory_limit else ""
        need = f"; the plan predicts a peak of {fmt_bytes(plan.predicted_peak_bytes)}" if plan else ""
        return (
            f"Give the process more host memory{limit}{need}; lower max_seq_len/max_batch_size; re-shard the weights."
        )
    if kind == "timeout":
        return f"Raise --timeout (it was {o.timeout:.0f}s) if loading is just slow; the last stage was {o.last_stage}."
    if kind == "import-error":
        lib = o.classified.library or ""
        if lib.startswith("lib") and ".so" in lib:
            return f"{lib} is missing from the loader path: source CANN's set_env.sh (install CANN if needed)."
        return f"Install the missing module {lib} in the deployment environment (or pass --python)."
    if kind == "unsupported-dtype":
        return 'Set "torch_dtype" to float16 or bfloat16 (the model README lists what it supports).'
    if kind == "crash":
        return "A native library crashed: check driver/CANN/torch versions; the stderr tail is in the report."
    return "See the error and the stderr tail in the report."


@check(
    "INIT001",
    "the generator initialises in the sandbox",
    Severity.ERROR,
    phase=Phase.INIT,
    requires=("init_outcome",),
    backend="preflight",
    source="the generator's own init, run in npu_preflight's sandbox",
)
def init_ok(ctx: Context) -> Iterator[Hit]:
    """Runs the full generator init — tokenizer, weights in the config's dtype on the device, sampler,
    a KV cache sized as MindIE sizes it, a few-token forward — in a subprocess with time and memory
    limits. Every failure is caught and classified: device OOM, host OOM, timeout, missing library,
    unsupported dtype, crash.

    Bad: ``NPU out of memory. Tried to allocate 2.00 GiB`` while allocating the KV cache.
    Good: the init finishes and the measured peak matches the plan.
    Fix: follow the advice in the finding (it uses the plan's numbers).
    """
    o = ctx.init_outcome
    c = o.classified
    if o.note:
        yield Hit(
            o.note,
            "Fine for a quick check; the per-rank plan is what a tensor-parallel deployment needs.",
            Location(key="model_config.world_size"),
            {"world_size": o.world_size},
            severity=Severity.WARNING if "no tensor-parallel plan" in o.note else Severity.INFO,
        )
    if c.outcome == "ok":
        return
    if c.outcome == "unavailable":
        yield Hit(
            f"--generator {o.generator}: {c.summary}; the sandboxed init was skipped",
            "Run on a host with MindIE installed (or pass --python to its interpreter), or use --generator transformers.",
            Location(),
            {"outcome": c.outcome},
            severity=Severity.INFO,
        )
        return
    stage = o.stage
    if o.ranks:
        failed = o.failed_ranks
        stage = failed[0].stage if failed else o.last_stage
        where = f"{o.world_size} ranks" + (f", node {o.node_rank} of {o.nnodes}" if o.nnodes > 1 else "")
        yield Hit(
            f"the {o.generator} init on {o.device} ({where}) failed ({c.outcome}): {c.summary}",
            _advice(ctx, o),
            Location(key=f"init.rank{failed[0].rank}.{stage}" if failed else None),
            {
                "outcome": c.outcome,
                "ranks": [
                    {"rank": r.rank, "outcome": r.classified.outcome, "stage": r.stage, "evidence": r.evidence[-300:]}
                    for r in o.ranks
                ],
                "stderr_tail": o.stderr_tail[-1500:],
            },
        )
        return
    yield Hit(
        f"the {o.generator} init on {o.device} failed ({c.outcome}) in stage {stage!r}: {c.summary}",
        _advice(ctx, o),
        Location(key=f"init.{stage}" if stage else None),
        {
            "outcome": c.outcome,
            "stage": stage,
            "requested_bytes": c.requested_bytes,
            "library": c.library,
            "stderr_tail": o.stderr_tail[-1500:],
        },
    )


@check(
    "INIT002",
    "measured peak memory matches the plan",
    Severity.WARNING,
    phase=Phase.INIT,
    requires=("init_outcome", "plan"),
    backend="preflight",
    source="npu_preflight plan against the sandbox's measured peak",
)
def measured_vs_plan(ctx: Context) -> Iterator[Hit]:
    """After a successful init the measured peak (device allocator on NPU/CUDA, process RSS on CPU) is
    compared with the plan's prediction; a large gap means the plan's numbers — and the limits it
    suggests — should not be trusted for this model.

    Bad: predicted 14 GiB, measured 22 GiB.
    Good: within 10–25%.
    Fix: report the model and both numbers; plan with extra headroom meanwhile.
    """
    o = ctx.init_outcome
    if o.classified.outcome != "ok":
        raise Unavailable("the init did not succeed (see INIT001)")
    if o.ranks:
        predicted = o.predicted_peak_bytes
        if not predicted:
            raise Unavailable("the plan predicts no per-rank peak")
        for r in o.ranks:
            if not r.peak_bytes:
                continue
            err = (predicted - r.peak_bytes) / r.peak_bytes
            sev = Severity.WARNING if abs(err) > 0.25 else Severity.INFO
            yield Hit(
                f"rank {r.rank}: measured peak {fmt_bytes(r.peak_bytes)} ({r.peak_source}) vs the per-rank plan's "
                f"{fmt_bytes(predicted)} ({err:+.1%})",
                "Nothing to do." if sev is Severity.INFO else "Plan with extra headroom; the plan misjudges this rank.",
                Location(key=f"init.rank{r.rank}"),
                {"rank": r.rank, "measured": r.peak_bytes, "predicted": predicted, "error_pct": round(err * 100, 2)},
                severity=sev,
            )
        return
    peak = o.peak_bytes
    if not peak:
        raise Unavailable("the generator reported no peak memory")
    predicted = o.predicted_peak_bytes or ctx.plan.predicted_peak_bytes
    err = (predicted - peak) / peak
    sev = Severity.WARNING if abs(err) > 0.25 else Severity.INFO
    yield Hit(
        f"measured peak {fmt_bytes(peak)} ({o.peak_source}) vs predicted {fmt_bytes(predicted)} ({err:+.1%})",
        "Nothing to do." if sev is Severity.INFO else "Plan with extra headroom; the plan misjudges this model.",
        Location(),
        {"measured": peak, "predicted": predicted, "error_pct": round(err * 100, 2)},
        severity=sev,
    )


@check(
    "INIT003",
    "the init left the weights folder untouched",
    Severity.ERROR,
    phase=Phase.INIT,
    requires=("init_outcome",),
    backend="preflight",
    source="npu_preflight fingerprint of the weights folder before and after the init",
)
def weights_untouched(ctx: Context) -> Iterator[Hit]:
    """The weights folder must be read-only to the init: a generator (or remote code, or a hostile
    factory) that writes into it changes what the next deployment loads. As root the init sees the
    folder through a read-only bind mount; in every case the folder is fingerprinted before and after
    (every entry's size, mtime, inode, mode, and the sha256 of files up to 16 MiB), and any
    difference is reported here by name.

    Bad: the init appends to ``config.json`` or drops a ``cache.bin`` into the folder.
    Good: nothing in the folder changes.
    Fix: find what writes there (remote code, a conversion step) and point it elsewhere; restore the files.
    """
    o = ctx.init_outcome
    if o.weights_changes:
        shown = list(o.weights_changes[:10])
        more = len(o.weights_changes) - len(shown)
        yield Hit(
            f"the init changed the weights folder: {'; '.join(shown)}" + (f"; and {more} more" if more else ""),
            "Find what writes into the folder during the init and stop it; restore the changed files from the release.",
            Location(file=shown[0].split(":")[0]),
            {"changes": list(o.weights_changes[:50]), "total": len(o.weights_changes)},
        )


@check(
    "INIT004",
    "every rank joins the process group and passes a collective",
    Severity.ERROR,
    phase=Phase.INIT,
    requires=("init_outcome",),
    backend="tensor-parallel",
    source="torch.distributed.run (the ranks as torchrun launches them); torch.distributed all_reduce and barrier",
)
def ranks_form_a_group(ctx: Context) -> Iterator[Hit]:
    """With ``world_size`` > 1 the init launches every rank of this node with torch's own elastic
    launcher (``torch.distributed.run``, as ``torchrun`` does): each joins the process group (hccl on
    NPU, nccl on CUDA, gloo on CPU), loads its shard and runs the forward, then an ``all_reduce`` and
    a ``barrier`` prove the fabric. A rank that never reaches the collective while the others wait
    there is named, with the stage it was stuck in.

    Bad: rank 3 still loading (or stuck) when the time limit ends, ranks 0–2 waiting in all_reduce.
    Good: every rank passes the all_reduce in milliseconds.
    Fix: look at the named rank: its device, its shard of the weights, its host.
    """
    o = ctx.init_outcome
    if not o.ranks:
        raise Unavailable("the init ran one process (world_size 1, --ranks 0, or no tensor-parallel plan)")
    missing = o.missing_at_collective
    if missing:
        waiting = [r.rank for r in o.ranks if r.reached_collective]
        yield Hit(
            f"rank(s) {', '.join(str(r.rank) for r in missing)} never reached the collective "
            f"({'; '.join(f'rank {r.rank} stuck in {r.stage!r}' for r in missing)}) while rank(s) "
            f"{', '.join(map(str, waiting))} waited in all_reduce",
            "Look at the named rank: its device, its weight shard, its host; raise --timeout if it is only slow.",
            Location(key=f"init.rank{missing[0].rank}"),
            {"missing": [r.rank for r in missing], "waiting": waiting},
        )
        return
    if o.classified.outcome == "ok":
        times = [r.collective_s for r in o.ranks if r.collective_s is not None]
        yield Hit(
            f"all {len(o.ranks)} rank(s) joined the group and passed all_reduce + barrier "
            f"(slowest {max(times) * 1000:.1f} ms)"
            if times
            else f"all {len(o.ranks)} rank(s) joined the group",
            "Nothing to do.",
            Location(),
            {"collective_s": times},
            severity=Severity.INFO,
        )
