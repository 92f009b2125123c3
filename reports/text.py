"""The terminal report: verdict first, findings by severity with culprit and remediation, a summary."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from npu_preflight.model import Finding, Report, Severity
from npu_preflight.reports.options import RenderOptions
from npu_preflight.units import fmt_bytes

_COLORS = {"red": "31", "yellow": "33", "blue": "34", "green": "32", "dim": "2", "bold": "1"}
_SEV_COLOR = {Severity.ERROR: "red", Severity.WARNING: "yellow", Severity.INFO: "blue"}
_SEV_LABEL = {Severity.ERROR: "ERRORS", Severity.WARNING: "WARNINGS", Severity.INFO: "NOTES"}


def _paint(text: str, color: str, on: bool) -> str:
    return f"\x1b[{_COLORS[color]}m{text}\x1b[0m" if on else text


def environment_lines(env: Mapping[str, Any]) -> list[str]:
    """The probed environment as a short table (``npu-preflight env``)."""
    lines = ["ENVIRONMENT"]
    host = env.get("host") or {}
    pk = env.get("packages") or {}
    probe = env.get("probe") or {}
    lines.append(f"  python        {host.get('python', '?')} ({probe.get('python') or host.get('executable', '?')})")
    lines.append(
        f"  host          {host.get('cpus_usable', host.get('cpus', '?'))} CPUs, "
        f"{fmt_bytes(host.get('memavailable_bytes'))} free of {fmt_bytes(host.get('memtotal_bytes'))} RAM, "
        f"/dev/shm {fmt_bytes(host.get('shm_bytes'))}"
    )
    for name in ("torch", "torch_npu", "transformers", "tokenizers", "safetensors", "mindie_llm"):
        if name in pk:
            lines.append(f"  {name:<13} {pk[name]}")
    cann = env.get("cann") or {}
    lines.append(
        f"  CANN          {cann.get('toolkit_version') or 'not found'}"
        + (f" (driver {cann['driver_version']})" if cann.get("driver_version") else "")
    )
    for kind, section in (("NPU", env.get("npu")), ("CUDA", env.get("cuda"))):
        devs = (section or {}).get("devices") or []
        for d in devs:
            lines.append(
                f"  {kind} {d.get('index')}         {d.get('name', '?')}: {fmt_bytes(d.get('free_bytes'))} free of "
                f"{fmt_bytes(d.get('total_bytes'))}"
            )
        if section is not None and not devs:
            lines.append(f"  {kind}           none visible")
    for step, err in (env.get("errors") or {}).items():
        lines.append(f"  ! {step}: {err.get('type')}: {str(err.get('message'))[:160]}")
        if err.get("fix"):
            lines.append(f"    fix: {err['fix']}")
    if probe.get("failure"):
        lines.append(f"  ! probe {probe['failure']}")
    return lines


def _wrap(prefix: str, text: str, width: int | None, indent: int = 10) -> list[str]:
    if not width:
        return [prefix + text]
    import textwrap

    return textwrap.wrap(
        text, width=width, initial_indent=prefix, subsequent_indent=" " * indent, break_on_hyphens=False
    ) or [prefix]


def finding_lines(f: Finding, color: bool = False, width: int | None = None) -> list[str]:
    """One finding: id and message, where, and the fix (wrapped to ``width`` when given)."""
    where = f.location.describe()
    plain_id = f.check_id
    head = _wrap(f"  {plain_id}  ", f.message, width)
    head[0] = head[0].replace(plain_id, _paint(plain_id, _SEV_COLOR[f.severity], color), 1)
    lines = head
    if where:
        lines += _wrap("          at: ", where, width, 14)
    if f.remediation:
        lines += _wrap("         fix: ", f.remediation, width, 14)
    return lines


def fit_sentence(kv: Mapping[str, Any]) -> str | None:
    """What fits, honestly: capped at the model's positions, and never 'batch up to 0'."""
    seq, batch = kv.get("max_seq_len_fit"), kv.get("max_batch_fit")
    if seq is None:
        return None
    parts = []
    if not seq:
        parts.append(f"not even one {kv.get('block_size')}-token block at batch {kv.get('batch')}")
    elif kv.get("max_seq_len_fit_capped"):
        parts.append(f"every length up to the model's {seq:,} positions at batch {kv.get('batch')}")
    else:
        parts.append(f"max_seq_len up to {seq:,} at batch {kv.get('batch')}")
    if batch and batch >= 1_000_000:
        parts.append(f"any batch the plan models (1,000,000+) at max_seq_len {kv.get('seq_len'):,}")
    elif batch:
        parts.append(f"batch up to {batch:,} at max_seq_len {kv.get('seq_len'):,}")
    else:
        parts.append(f"no batch fits at max_seq_len {kv.get('seq_len'):,}")
    return "; ".join(parts)


def plan_lines(memory: Mapping[str, Any]) -> list[str]:
    """The memory plan as a small table (shared with ``npu-preflight plan``)."""
    lines = []
    dev = memory.get("device") or {}
    lines.append(
        f"MEMORY PLAN (per rank, world_size {memory.get('world_size', 1)}, "
        f"device {dev.get('name') or 'unknown'}, source {dev.get('source') or '-'})"
    )
    rows = [
        ("weights", memory.get("weights_bytes")),
        ("KV cache", memory.get("kv_cache_bytes")),
        ("workspace", memory.get("workspace_bytes")),
        ("runtime overhead", memory.get("overhead_bytes")),
        ("total needed", memory.get("total_bytes")),
        ("budget", memory.get("budget_bytes")),
        ("headroom", memory.get("headroom_bytes")),
    ]
    for label, value in rows:
        if value is not None:
            lines.append(f"  {label:<18}{fmt_bytes(value):>12}")
    kv = memory.get("kv") or {}
    fits = fit_sentence(kv)
    if fits:
        lines.append(f"  fits: {fits}")
    for note in memory.get("notes") or []:
        lines.append(f"  note: {note}")
    measured = memory.get("measured_peak_bytes")
    if measured:
        lines.append(
            f"  measured peak {fmt_bytes(measured)} vs predicted {fmt_bytes(memory.get('predicted_peak_bytes'))} "
            f"({memory.get('prediction_error_pct', 0):+.1f}%)"
        )
    return lines


def _seconds(value: Any, fmt: str = ".1f") -> str:
    """A duration, or ``?`` when the stage never finished (a killed init)."""
    return f"{value:{fmt}}s" if isinstance(value, (int, float)) and not isinstance(value, bool) else "?"


def init_lines(init: Mapping[str, Any]) -> list[str]:
    """The init section: outcome, stage times (unfinished stages shown as ``?``)."""
    lines = [
        f"INIT ({init.get('generator')} on {init.get('device')}): {init.get('outcome')} "
        f"in {_seconds(init.get('duration_s'))}"
    ]
    ranks = [r for r in init.get("ranks") or [] if isinstance(r, Mapping)]
    if ranks:
        lines[0] += f" · {len(ranks)} rank(s) via {init.get('launcher')}"
        lines.append(f"  {'rank':<6}{'outcome':<13}{'stage':<14}{'peak':>10}{'plan':>10}{'all_reduce':>12}")
        for r in ranks:
            coll = r.get("collective_s")
            lines.append(
                f"  {r.get('rank')!s:<6}{r.get('outcome')!s:<13}{(r.get('stage') or '-')!s:<14}"
                f"{fmt_bytes(r.get('peak_bytes')):>10}{fmt_bytes(r.get('predicted_peak_bytes')):>10}"
                f"{(f'{coll * 1000:.1f} ms' if isinstance(coll, (int, float)) else '-'):>12}"
            )
            if r.get("outcome") not in ("ok", "stopped") and r.get("summary"):
                lines.append(f"        rank {r.get('rank')}: {r.get('summary')}")
        return lines
    for st in init.get("stages") or []:
        if isinstance(st, Mapping):
            lines.append(f"  {st.get('stage')!s:<12}{_seconds(st.get('duration_s'), '.2f'):>9}")
    return lines


def _untrusted_lines(report: Report, color: bool) -> list[str]:
    """Errored checks, failed sections and an interruption: what the verdict could not vouch for."""
    out: list[str] = []
    if report.interrupted:
        out += ["", _paint("INTERRUPTED", "red", color) + ": the run was stopped; checks after that point did not run"]
    if report.errored:
        out += ["", _paint(f"ERRORED CHECKS ({len(report.errored)})", "red", color)]
        for c in report.errored:
            last = (c.reason or "").strip().splitlines()[-1:] or [""]
            out.append(f"  {c.id}  {c.title}: {last[0]}")
    for name, why in report.section_errors.items():
        last = why.strip().splitlines()[-1:] or [""]
        out.append(f"  report section {name} could not be built: {last[0]}")
    return out


def render(report: Report, opts: RenderOptions = RenderOptions()) -> str:
    """The whole text report; ``opts.color`` adds ANSI colours (the CLI sets it only on a tty)."""
    color = opts.color
    out: list[str] = []
    label_color = {"ready": "green", "not_ready": "red", "error": "red"}[report.verdict]
    out.append(_paint(report.verdict_label, label_color, color) + f"  {report.weights_dir}")
    if (report.options or {}).get("cache_hit"):
        out.append(f"  answered from the cache: nothing it depends on changed since {report.created_at}")
    if report.verdict == "error":
        out.append("  the tool could not vouch for this folder (see below)")
    out.extend(_untrusted_lines(report, color))
    for sev in (Severity.ERROR, Severity.WARNING, Severity.INFO):
        group = [f for f in report.findings if f.severity is sev]
        if not group:
            continue
        out.append("")
        out.append(_paint(f"{_SEV_LABEL[sev]} ({len(group)})", _SEV_COLOR[sev], color))
        for f in group:
            out.extend(finding_lines(f, color, opts.width))
    if report.memory:
        out.append("")
        out.extend(plan_lines(report.memory))
    if report.init:
        out.append("")
        out.extend(init_lines(report.init))
    from npu_preflight.coverage import coverage_lines, run_settings

    out.append("")
    out.extend(coverage_lines(report))
    for label, value in run_settings(report):
        out.append(f"  {label}: {value if len(value) <= 300 else value[:299] + '…'}")
    counts = report.status_counts()
    out.append("")
    out.append(
        _paint(
            f"{plural(report.count(Severity.ERROR), 'error')}, {plural(report.count(Severity.WARNING), 'warning')}, "
            f"{plural(report.count(Severity.INFO), 'note')} · checks: {counts['passed']} passed, "
            f"{counts['failed']} failed, {counts['skipped']} skipped, {counts['errored']} errored · "
            f"{report.duration_s:.2f}s",
            "dim",
            color,
        )
    )
    return "\n".join(out) + "\n"


def plural(n: int, word: str) -> str:
    """``1 error``, ``2 errors``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
