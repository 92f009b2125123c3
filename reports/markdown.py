"""Markdown: a summary for CI step summaries and pull-request comments."""

from __future__ import annotations

from npu_preflight.model import Report, Severity
from npu_preflight.reports.options import RenderOptions
from npu_preflight.reports.text import plural
from npu_preflight.units import fmt_bytes

MAX_ROWS = 50


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def render(report: Report, opts: RenderOptions = RenderOptions()) -> str:
    """The summary: verdict, counts, the findings that matter, the plan and the init."""
    icon = {"ready": "✅", "not_ready": "❌", "error": "⚠️"}[report.verdict]
    verdict = report.verdict_label
    c = report.status_counts()
    out = [
        f"## {icon} npu-preflight: {verdict}",
        "",
        f"`{_cell(report.weights_dir)}` · {plural(report.count(Severity.ERROR), 'error')} · "
        f"{plural(report.count(Severity.WARNING), 'warning')} · {plural(report.count(Severity.INFO), 'note')} · "
        f"checks {c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped, {c['errored']} errored · "
        f"{report.duration_s:.2f}s",
        "",
    ]
    if report.errored or report.section_errors or report.interrupted:
        out += ["### Not vouched for", ""]
        if report.interrupted:
            out.append("- the run was interrupted: later checks did not run")
        for ch in report.errored:
            last = (ch.reason or "").strip().splitlines()[-1:] or [""]
            out.append(f"- `{ch.id}` {_cell(ch.title)} errored: {_cell(last[0])}")
        for name, why in report.section_errors.items():
            last = why.strip().splitlines()[-1:] or [""]
            out.append(f"- report section {name} could not be built: {_cell(last[0])}")
        out.append("")
    shown = [f for f in report.findings if f.severity is not Severity.INFO]
    shown.sort(key=lambda f: (-f.severity.rank, f.check_id))
    if shown:
        out += ["| | check | where | finding | fix |", "|---|---|---|---|---|"]
        for f in shown[:MAX_ROWS]:
            mark = "🔴" if f.severity is Severity.ERROR else "🟡"
            out.append(
                f"| {mark} | `{f.check_id}` | {_cell(f.location.describe())} | {_cell(f.message)} | "
                f"{_cell(f.remediation)} |"
            )
        if len(shown) > MAX_ROWS:
            out.append(f"\n…and {len(shown) - MAX_ROWS} more in report.json.")
        out.append("")
    m = report.memory
    if m:
        out += ["### Memory plan (per rank)", "", "| term | bytes |", "|---|---|"]
        for label, key in (
            ("weights", "weights_bytes"),
            ("KV cache", "kv_cache_bytes"),
            ("workspace", "workspace_bytes"),
            ("runtime", "overhead_bytes"),
            ("total", "total_bytes"),
            ("budget", "budget_bytes"),
            ("headroom", "headroom_bytes"),
        ):
            if m.get(key) is not None:
                out.append(f"| {label} | {fmt_bytes(m[key])} |")
        if m.get("measured_peak_bytes"):
            out.append(
                f"| measured peak | {fmt_bytes(m['measured_peak_bytes'])} ({m.get('prediction_error_pct')}% error) |"
            )
        out.append("")
    i = report.init
    if i:
        out += [
            f"### Init: {i.get('outcome')}",
            "",
            f"{_cell(str(i.get('summary')))} ({i.get('generator')} on "
            f"{i.get('device')}, {i.get('duration_s', 0):.1f}s)",
            "",
        ]
        ranks = [r for r in i.get("ranks") or [] if isinstance(r, dict)]
        if ranks:
            out += ["| rank | outcome | stage | peak | per-rank plan | all_reduce |", "|---|---|---|---|---|---|"]
            for r in ranks:
                coll = r.get("collective_s")
                out.append(
                    f"| {r.get('rank')} | {r.get('outcome')} | {r.get('stage') or '–'} | {fmt_bytes(r.get('peak_bytes'))} "
                    f"| {fmt_bytes(r.get('predicted_peak_bytes'))} | "
                    f"{f'{coll * 1000:.1f} ms' if isinstance(coll, (int, float)) else '–'} |"
                )
            out.append("")
    from npu_preflight.coverage import coverage, skip_groups

    cov = coverage(report)
    out += [
        "### Coverage",
        "",
        f"{cov['ran']} of {cov['total']} checks ran, {cov['skipped']} skipped; init {_cell(cov['init'])}.",
        "",
    ]
    groups = skip_groups(report)
    if groups:
        out += ["| skipped | because | to run them |", "|---|---|---|"]
        for g in groups:
            out.append(
                f"| {len(g.checks)} ({', '.join(g.checks[:6])}{'…' if len(g.checks) > 6 else ''}) "
                f"| {_cell(g.reason)} | {_cell(g.enable or '–')} |"
            )
        out.append("")
    return "\n".join(out).rstrip() + "\n"
