"""Runs the checks phase by phase and assembles the :class:`Report`.

A check never brings the run down: an unexpected exception becomes an ``errored`` result with its
traceback, and a missing fact becomes a ``skipped`` result with the reason.
"""

from __future__ import annotations

import datetime as _dt
import time
import traceback
from collections.abc import Callable, Sequence

from toolkit import __version__
from toolkit.context import Context
from toolkit.errors import Unavailable
from toolkit.model import (
    PHASE_ORDER,
    CheckRecord,
    CheckResult,
    CheckSpec,
    Finding,
    Phase,
    Report,
    Severity,
    Status,
)
from toolkit.policy import Policy

ProgressCallback = Callable[[CheckSpec], None]


def phase_skip_reason(phase: Phase, ctx: Context, earlier: Sequence[CheckResult]) -> str | None:
    """Why a whole phase does not run, or None."""
    opts = ctx.options
    if phase is Phase.ENVIRONMENT and opts.static:
        return "--static: no environment probe"
    if phase is Phase.INIT:
        if opts.static:
            return "--static: no sandboxed init"
        if opts.no_init:
            return "--no-init: the sandboxed init was not requested"
        blocking = sorted({f.check_id for r in earlier for f in r.findings if f.severity is Severity.ERROR})
        if blocking:
            return "blocked by errors found earlier: " + ", ".join(blocking)
    if phase is Phase.DEEP and not opts.deep:
        return "the deep scan runs only with --deep"
    return None


def run_check(spec: CheckSpec, ctx: Context) -> CheckResult:
    """Run one check, converting its hits into findings and any exception into a result."""
    start = time.perf_counter()
    for fact in spec.requires:
        reason = ctx.availability(fact)
        if reason is not None:
            return CheckResult(spec, Status.SKIPPED, reason=reason, duration_s=time.perf_counter() - start)
    try:
        hits = list(spec.func(ctx))
    except Unavailable as exc:
        return CheckResult(spec, Status.SKIPPED, reason=str(exc), duration_s=time.perf_counter() - start)
    except Exception:  # noqa: BLE001 - a broken check must not stop the run
        return CheckResult(
            spec, Status.ERRORED, reason=traceback.format_exc(limit=8), duration_s=time.perf_counter() - start
        )
    findings = tuple(
        Finding(
            check_id=spec.id,
            severity=h.severity or spec.severity,
            message=h.message,
            location=h.location,
            remediation=h.remediation,
            details=dict(h.details),
        )
        for h in hits
    )
    failed = any(f.severity is not Severity.INFO for f in findings)
    return CheckResult(
        spec,
        Status.FAILED if failed else Status.PASSED,
        findings=findings,
        duration_s=time.perf_counter() - start,
    )


def run(
    ctx: Context,
    specs: Sequence[CheckSpec],
    policy: Policy,
    *,
    on_check: ProgressCallback | None = None,
) -> Report:
    """Run ``specs`` in phase order against ``ctx`` and build the report."""
    started = time.perf_counter()
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    results: list[CheckResult] = []
    for phase in PHASE_ORDER:
        phase_specs = [s for s in specs if s.phase is phase]
        skip = phase_skip_reason(phase, ctx, results) if phase_specs else None
        for spec in phase_specs:
            if not policy.selected(spec.id):
                results.append(CheckResult(spec, Status.SKIPPED, reason=policy.deselect_reason()))
                continue
            if skip is not None:
                results.append(CheckResult(spec, Status.SKIPPED, reason=skip))
                continue
            if on_check is not None:
                on_check(spec)
            results.append(run_check(spec, ctx))
    return Report(
        tool_version=__version__,
        created_at=created,
        duration_s=time.perf_counter() - started,
        weights_dir=str(ctx.weights_dir),
        model_config=ctx.model_config,
        options=ctx.options.to_dict(),
        fail_on=policy.fail_on,
        checks=tuple(CheckRecord.from_result(r) for r in results),
        findings=tuple(f for r in results for f in r.findings),
        environment=ctx.probe.to_dict() if ctx.computed("probe") else None,
        memory=_memory(ctx),
        init=ctx.init_outcome.to_dict() if ctx.computed("init_outcome") else None,
        integrity=ctx.deep_scan.to_dict() if ctx.computed("deep_scan") else None,
    )


def _memory(ctx: Context) -> dict[str, object] | None:
    """The plan, with the init's measured peak attached when an init ran."""
    if not ctx.computed("plan"):
        return None
    plan = ctx.plan
    if ctx.computed("init_outcome") and ctx.init_outcome.classified.outcome == "ok":
        plan = plan.with_measurement(ctx.init_outcome.peak_bytes, ctx.init_outcome.peak_source)
    return plan.to_dict()
