"""Runs the checks phase by phase and assembles the :class:`Report`.

A check never brings the run down: a missing fact makes it ``skipped`` with the reason, a failed fact
or an exception in the check makes it ``errored`` with the traceback, and building the report is
guarded section by section. Ctrl-C stops the run between checks; the report still gets built, with
the checks that did not run marked so.
"""

from __future__ import annotations

import datetime as _dt
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from npu_preflight import __version__
from npu_preflight.context import Context
from npu_preflight.errors import FactError, Unavailable
from npu_preflight.model import (
    PHASE_ORDER,
    CheckRecord,
    CheckResult,
    CheckSpec,
    FactName,
    Finding,
    Hit,
    Phase,
    Report,
    Severity,
    Status,
)
from npu_preflight.policy import Policy
from npu_preflight.safetext import MAX_MULTILINE, MAX_SECTION_LIST, json_safe, safe_text

INTERRUPTED = "not run: the run was interrupted (Ctrl-C or SIGTERM)"
#: Findings kept per check; the rest are counted into one summary finding (a hostile folder can
#: make a check yield millions).
MAX_FINDINGS_PER_CHECK = 40
#: Hits consumed per check before the count stops (the summary then says "at least").
MAX_HITS_COUNTED = 1_000_000


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
        broken = sorted(r.spec.id for r in earlier if r.status is Status.ERRORED)
        if broken:
            return "blocked: earlier checks errored: " + ", ".join(broken)
    if phase is Phase.DEEP and not opts.deep:
        return "the deep scan runs only with --deep"
    return None


def _finding(spec: CheckSpec, h: Hit) -> Finding:
    """A hit as a finding, every string escaped and capped, details made strict-JSON safe."""
    loc = h.location
    return Finding(
        check_id=spec.id,
        severity=h.severity or spec.severity,
        message=safe_text(str(h.message)) or "(no message)",
        location=type(loc)(
            *(None if v is None else safe_text(str(v), 500) for v in (loc.file, loc.tensor, loc.key, loc.env))
        ),
        remediation=safe_text(str(h.remediation)),
        details=json_safe(dict(h.details)),
    )


def _collect(spec: CheckSpec, ctx: Context) -> tuple[Finding, ...]:
    """The check's hits as findings, at most MAX_FINDINGS_PER_CHECK of them plus one that counts the rest."""
    kept: list[Finding] = []
    extra = 0
    worst: Severity | None = None
    by_sev: dict[str, int] = {}
    capped = False
    for n, h in enumerate(spec.func(ctx), 1):
        if n <= MAX_FINDINGS_PER_CHECK:
            kept.append(_finding(spec, h))
            continue
        extra += 1
        sev = h.severity or spec.severity
        by_sev[sev.value] = by_sev.get(sev.value, 0) + 1
        if worst is None or sev.rank > worst.rank:
            worst = sev
        if n >= MAX_HITS_COUNTED:
            capped = True
            break
    if extra and worst is not None:
        total = len(kept) + extra
        kept.append(
            Finding(
                spec.id,
                worst,
                f"{'at least ' if capped else ''}{extra:,} more {spec.id} finding(s) like the above are not listed "
                f"({'at least ' if capped else ''}{total:,} in all)",
                remediation="Fix the ones listed, then run again to see the rest.",
                details={"total": total, "shown": len(kept), "not_listed_by_severity": by_sev, "count_capped": capped},
            )
        )
    return tuple(kept)


def run_check(spec: CheckSpec, ctx: Context) -> CheckResult:
    """Run one check: hits become findings, a missing fact a skip, anything unexpected an error."""
    start = time.perf_counter()

    def done(status: Status, findings: tuple[Finding, ...] = (), reason: str | None = None) -> CheckResult:
        return CheckResult(spec, status, findings, reason, time.perf_counter() - start)

    try:
        for name in spec.requires:
            reason = ctx.availability(name)
            if reason is not None:
                return done(Status.SKIPPED, reason=reason)
        findings = _collect(spec, ctx)
    except Unavailable as exc:
        return done(Status.SKIPPED, reason=safe_text(str(exc)))
    except FactError as exc:
        return done(Status.ERRORED, reason=_trace(f"{exc} (needed by {spec.id}):\n{exc.trace}"))
    except Exception:  # noqa: BLE001 - a broken check must not stop the run
        import traceback

        return done(Status.ERRORED, reason=_trace(traceback.format_exc(limit=8)))
    failed = any(f.severity is not Severity.INFO for f in findings)
    return done(Status.FAILED if failed else Status.PASSED, findings)


def _trace(text: str) -> str:
    return safe_text(text, MAX_MULTILINE, multiline=True)


def run(ctx: Context, specs: Sequence[CheckSpec], policy: Policy) -> Report:
    """Run ``specs`` in phase order against ``ctx`` and build the report (never raises for a check;
    Ctrl-C ends the run early with a report)."""
    try:
        return _run(ctx, specs, policy)
    finally:
        ctx.close()  # whatever prefetch started and nothing collected


def _run(ctx: Context, specs: Sequence[CheckSpec], policy: Policy) -> Report:
    started = time.perf_counter()
    created = _now()
    results: list[CheckResult] = []
    on_check = ctx.progress.on_check
    interrupted = False
    try:
        ctx.prefetch({name for s in specs if policy.selected(s.id) for name in s.requires})
    except KeyboardInterrupt:
        interrupted = True
    for phase in PHASE_ORDER:
        phase_specs = [s for s in specs if s.phase is phase]
        skip = phase_skip_reason(phase, ctx, results) if phase_specs and not interrupted else None
        for spec in phase_specs:
            if interrupted:
                results.append(CheckResult(spec, Status.SKIPPED, reason=INTERRUPTED))
            elif not policy.selected(spec.id):
                results.append(CheckResult(spec, Status.SKIPPED, reason=policy.deselect_reason(spec.id)))
            elif skip is not None:
                results.append(CheckResult(spec, Status.SKIPPED, reason=skip))
            else:
                if on_check is not None:
                    on_check(spec)
                try:
                    results.append(run_check(spec, ctx))
                except KeyboardInterrupt:
                    interrupted = True
                    results.append(CheckResult(spec, Status.SKIPPED, reason=INTERRUPTED))
    return build_report(ctx, results, policy, started, created, interrupted)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


_SECTIONS: tuple[tuple[str, FactName], ...] = (
    ("environment", "probe"),
    ("memory", "plan"),
    ("init", "init_outcome"),
    ("integrity", "deep_scan"),
)


def _section(ctx: Context, name: str, fact_name: FactName) -> Mapping[str, Any] | None:
    """One report section from its fact, if the fact was computed (raises what its serialiser raises)."""
    state, value = ctx.state(fact_name)
    if state == "failed":
        raise RuntimeError(value)
    if state != "value":
        return None
    if name == "memory":
        init_state, outcome = ctx.state("init_outcome")
        if init_state == "value" and outcome.classified.outcome == "ok":
            value = value.with_measurement(outcome.peak_bytes, outcome.peak_source)
    data: Mapping[str, Any] = json_safe(value.to_dict(), items=MAX_SECTION_LIST)
    return data


def build_report(
    ctx: Context,
    results: Sequence[CheckResult],
    policy: Policy,
    started: float,
    created: str,
    interrupted: bool = False,
) -> Report:
    """The report of a run; a section that cannot be built becomes a section error (verdict error)."""
    sections: dict[str, Mapping[str, Any] | None] = {}
    errors: dict[str, str] = {}
    for name, fact_name in _SECTIONS:
        try:
            sections[name] = _section(ctx, name, fact_name)
        except Exception as exc:  # noqa: BLE001 - the report is always written
            sections[name] = None
            import traceback

            errors[name] = _trace(str(exc) if str(exc).startswith("fact ") else traceback.format_exc(limit=8))
    records = [CheckRecord.from_result(r) for r in results]
    ordered = [c for c in records if c.status is Status.ERRORED] + [
        c for c in records if c.status is not Status.ERRORED
    ]
    return Report(
        tool_version=__version__,
        created_at=created,
        duration_s=time.perf_counter() - started,
        weights_dir=safe_text(str(ctx.weights_dir), 4096),
        model_config=json_safe(ctx.model_config.to_dict()) if ctx.model_config is not None else None,
        options=json_safe(ctx.options.to_dict()),
        fail_on=policy.fail_on,
        checks=tuple(ordered),
        findings=tuple(f for r in results for f in r.findings),
        environment=sections["environment"],
        memory=sections["memory"],
        init=sections["init"],
        integrity=sections["integrity"],
        section_errors=errors,
        interrupted=interrupted,
        run_id=uuid.uuid4().hex,
    )


def crash_report(
    weights_dir: str,
    specs: Sequence[CheckSpec],
    policy: Policy,
    trace: str,
    *,
    model_config: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
) -> Report:
    """A report for a run that could not even be carried out: every check errored with ``trace``."""
    reason = _trace("the run stopped before this check: " + trace)
    records = tuple(CheckRecord(s.id, s.title, s.phase.value, Status.ERRORED, 0.0, reason) for s in specs)
    return Report(
        tool_version=__version__,
        created_at=_now(),
        duration_s=0.0,
        weights_dir=safe_text(weights_dir, 4096),
        model_config=json_safe(dict(model_config)) if model_config is not None else None,
        options=json_safe(dict(options or {})),
        fail_on=policy.fail_on,
        checks=records,
        findings=(),
        run_id=uuid.uuid4().hex,
    )


ProgressCallback = Callable[[CheckSpec], None]
