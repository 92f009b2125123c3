"""Runs the checks phase by phase and assembles the :class:`Report`.

A check never brings the run down: a missing fact makes it ``skipped`` with the reason, a failed fact
or an exception in the check makes it ``errored`` with the traceback, and building the report is
guarded section by section. Ctrl-C stops the run between checks; the report still gets built, with
the checks that did not run marked so.
"""

from __future__ import annotations

import datetime as _dt
import time
import traceback
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

INTERRUPTED = "not run: the run was interrupted (Ctrl-C or SIGTERM)"


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
    return Finding(
        check_id=spec.id,
        severity=h.severity or spec.severity,
        message=h.message,
        location=h.location,
        remediation=h.remediation,
        details=dict(h.details),
    )


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
        findings = tuple(_finding(spec, h) for h in spec.func(ctx))
    except Unavailable as exc:
        return done(Status.SKIPPED, reason=str(exc))
    except FactError as exc:
        return done(Status.ERRORED, reason=f"{exc} (needed by {spec.id}):\n{exc.trace}")
    except Exception:  # noqa: BLE001 - a broken check must not stop the run
        return done(Status.ERRORED, reason=traceback.format_exc(limit=8))
    failed = any(f.severity is not Severity.INFO for f in findings)
    return done(Status.FAILED if failed else Status.PASSED, findings)


def run(ctx: Context, specs: Sequence[CheckSpec], policy: Policy) -> Report:
    """Run ``specs`` in phase order against ``ctx`` and build the report (never raises for a check;
    Ctrl-C ends the run early with a report)."""
    started = time.perf_counter()
    created = _now()
    results: list[CheckResult] = []
    interrupted = False
    on_check = ctx.progress.on_check
    for phase in PHASE_ORDER:
        phase_specs = [s for s in specs if s.phase is phase]
        skip = phase_skip_reason(phase, ctx, results) if phase_specs and not interrupted else None
        for spec in phase_specs:
            if interrupted:
                results.append(CheckResult(spec, Status.SKIPPED, reason=INTERRUPTED))
            elif not policy.selected(spec.id):
                results.append(CheckResult(spec, Status.SKIPPED, reason=policy.deselect_reason()))
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
    data: Mapping[str, Any] = value.to_dict()
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
            errors[name] = str(exc) if str(exc).startswith("fact ") else traceback.format_exc(limit=8)
    records = [CheckRecord.from_result(r) for r in results]
    ordered = [c for c in records if c.status is Status.ERRORED] + [
        c for c in records if c.status is not Status.ERRORED
    ]
    return Report(
        tool_version=__version__,
        created_at=created,
        duration_s=time.perf_counter() - started,
        weights_dir=str(ctx.weights_dir),
        model_config=ctx.model_config.to_dict() if ctx.model_config is not None else None,
        options=ctx.options.to_dict(),
        fail_on=policy.fail_on,
        checks=tuple(ordered),
        findings=tuple(f for r in results for f in r.findings),
        environment=sections["environment"],
        memory=sections["memory"],
        init=sections["init"],
        integrity=sections["integrity"],
        section_errors=errors,
        interrupted=interrupted,
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
    reason = "the run stopped before this check: " + trace
    records = tuple(CheckRecord(s.id, s.title, s.phase.value, Status.ERRORED, 0.0, reason) for s in specs)
    return Report(
        tool_version=__version__,
        created_at=_now(),
        duration_s=0.0,
        weights_dir=weights_dir,
        model_config=dict(model_config) if model_config is not None else None,
        options=dict(options or {}),
        fail_on=policy.fail_on,
        checks=records,
        findings=(),
    )


ProgressCallback = Callable[[CheckSpec], None]
