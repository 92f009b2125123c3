"""The HTML report: one self-contained page (inline CSS, JS and SVG; nothing fetched).

Jinja2 autoescapes every string from the report (tensor names and messages are untrusted), and
the check docs are embedded once as JSON through ``tojson``, which escapes ``<``, ``>`` and ``&``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from npu_preflight.model import Report, Severity
from npu_preflight.reports.options import RenderOptions
from npu_preflight.units import fmt_bytes

_COLORS = {
    "weights": "#1565c0",
    "KV cache": "#00897b",
    "workspace": "#f9a825",
    "runtime": "#8d6e63",
    "headroom": "#c8e6c9",
}
#: Bytes of findings text the page carries (errors first); the rest are counted and left to
#: report.json, so the page stays under 2 MB whatever the folder holds.
FINDINGS_BUDGET = 1_400_000
_STAGE_COLORS = ["#1565c0", "#00897b", "#f9a825", "#8d6e63", "#6a1b9a", "#c62828", "#546e7a", "#2e7d32"]


@cache
def _template() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("npu_preflight.reports", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("report.html.j2")


def _segments(parts: list[tuple[str, int]], scale: float) -> list[dict[str, Any]]:
    segs, x = [], 0.0
    for label, v in parts:
        w = 1000.0 * v / scale
        segs.append(
            {"x": round(x, 2), "w": round(w, 2), "label": label, "human": fmt_bytes(v), "color": _COLORS[label]}
        )
        x += w
    return segs


def _memory_view(m: Mapping[str, Any], init: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Does it fit, by how much, and what would: the per-rank stack against the budget (overflow
    drawn past it in red), one bar per rank with its measured peak when the init ran ranks."""
    parts = [
        ("weights", m.get("weights_bytes") or 0),
        ("KV cache", m.get("kv_cache_bytes") or 0),
        ("workspace", m.get("workspace_bytes") or 0),
        ("runtime", m.get("overhead_bytes") or 0),
    ]
    total = sum(v for _, v in parts)
    budget = m.get("budget_bytes")
    measured = m.get("measured_peak_bytes")
    ranks = [r for r in (init or {}).get("ranks") or [] if isinstance(r, Mapping)]
    peaks = [r.get("peak_bytes") or 0 for r in ranks] + [measured or 0]
    scale = max([total, budget or 0, *peaks, 1]) * 1.02
    stack = list(parts)
    if budget is not None and budget > total:
        stack.append(("headroom", budget - total))
    over = None
    if budget is not None and total > budget:
        over = {
            "x": round(1000.0 * budget / scale, 2),
            "w": round(1000.0 * (total - budget) / scale, 2),
            "human": fmt_bytes(total - budget),
        }
    segs = _segments(stack, scale)
    bars = []
    if ranks:
        for n, r in enumerate(ranks):
            peak = r.get("peak_bytes")
            bars.append(
                {
                    "label": f"rank {r.get('rank')}",
                    "y": 6 + n * 40,
                    "segments": segs,
                    "over": over,
                    "measured_x": round(1000.0 * peak / scale, 2) if peak else None,
                    "measured_human": fmt_bytes(peak),
                }
            )
    else:
        bars.append(
            {
                "label": "each rank",
                "y": 6,
                "segments": segs,
                "over": over,
                "measured_x": round(1000.0 * measured / scale, 2) if measured else None,
                "measured_human": fmt_bytes(measured),
            }
        )
    dev = m.get("device") or {}
    kv = m.get("kv") or {}
    rows = [
        (
            "weights per rank",
            f"{fmt_bytes(m.get('weights_bytes'))} of {fmt_bytes(m.get('weights_total_bytes'))} total"
            f" ({m.get('load_dtype')})",
        ),
        (
            "KV cache",
            fmt_bytes(m.get("kv_cache_bytes"))
            + (
                f" — {kv.get('batch')} × {kv.get('seq_len'):,} tokens "
                f"({kv.get('seq_len_source')}), block {kv.get('block_size')}"
                if kv
                else ""
            ),
        ),
        ("workspace", fmt_bytes(m.get("workspace_bytes"))),
        ("runtime overhead", fmt_bytes(m.get("overhead_bytes"))),
        ("total needed", fmt_bytes(m.get("total_bytes"))),
        (
            "budget",
            "—"
            if budget is None
            else f"{fmt_bytes(budget)} ({m.get('fraction')} of "
            f"{fmt_bytes(dev.get('total_bytes'))}, {fmt_bytes(m.get('in_use_bytes'))} in use)",
        ),
        ("headroom", "—" if m.get("headroom_bytes") is None else fmt_bytes(m.get("headroom_bytes"))),
    ]
    from npu_preflight.reports.text import fit_sentence

    fits = fit_sentence(kv)
    if fits:
        rows.append(("what fits", fits))
    if measured:
        rows.append(
            (
                "measured peak",
                f"{fmt_bytes(measured)} vs predicted {fmt_bytes(m.get('predicted_peak_bytes'))} ({m.get('prediction_error_pct')}%)",
            )
        )
    for note in m.get("notes") or []:
        rows.append(("note", str(note)))
    if budget is None:
        verdict = "no budget to compare against"
    elif total > budget:
        verdict = f"does not fit — over by {fmt_bytes(total - budget)}"
    else:
        verdict = f"fits with {fmt_bytes(budget - total)} to spare"
    return {
        "world_size": m.get("world_size"),
        "device_name": dev.get("name") or "none",
        "device_source": dev.get("source") or "no device: plan without budget",
        "no_budget": budget is None,
        "verdict": verdict,
        "bars": bars,
        "legend": [s for s in segs if s["label"] != "headroom" or budget is not None],
        "over_human": over["human"] if over else None,
        "measured": bool(measured) or any(b["measured_x"] is not None for b in bars),
        "budget_x": None if budget is None else round(1000.0 * budget / scale, 2),
        "budget_human": fmt_bytes(budget),
        "chart_h": 12 + 40 * len(bars),
        "rows": rows,
    }


def _init_view(i: Mapping[str, Any]) -> dict[str, Any]:
    stages = [s for s in i.get("stages") or [] if s.get("stage") not in ("done", "start")]
    total = sum((s.get("duration_s") or 0) for s in stages) or 1.0
    out, x = [], 0.0
    for n, s in enumerate(stages):
        d = s.get("duration_s") or 0
        w = max(1000.0 * d / total, 2.0)
        out.append(
            {
                "stage": s.get("stage"),
                "x": round(x, 2),
                "w": round(w, 2),
                "color": _STAGE_COLORS[n % 8],
                "dur": "?" if s.get("duration_s") is None else f"{d:.2f}s",
            }
        )
        x += w
    return {
        "outcome": i.get("outcome"),
        "summary": i.get("summary"),
        "generator": i.get("generator"),
        "device": i.get("device"),
        "duration": i.get("duration_s") or 0.0,
        "stage": i.get("stage"),
        "stages": out,
        "stderr": (i.get("stderr_tail") or "")[-3000:] if i.get("outcome") != "ok" else "",
        "ranks": [_rank_view(r) for r in i.get("ranks") or [] if isinstance(r, Mapping)],
        "launcher": i.get("launcher"),
        "world_size": i.get("world_size"),
        "note": i.get("note"),
    }


def _rank_view(r: Mapping[str, Any]) -> dict[str, Any]:
    """One row of the ranks table: outcome, per-stage bar, peak against the per-rank plan."""
    stages = [s for s in r.get("stages") or [] if isinstance(s, Mapping)]
    total = sum((s.get("duration_s") or 0) for s in stages) or 1.0
    bars, x = [], 0.0
    for n, s in enumerate(stages):
        d = s.get("duration_s") or 0
        w = max(300.0 * d / total, 1.0)
        dur = "?" if s.get("duration_s") is None else f"{d:.2f}s"
        bars.append(
            {"x": round(x, 2), "w": round(w, 2), "color": _STAGE_COLORS[n % 8], "title": f"{s.get('stage')} {dur}"}
        )
        x += w
    peak, plan = r.get("peak_bytes"), r.get("predicted_peak_bytes")
    coll = r.get("collective_s")
    return {
        "rank": r.get("rank"),
        "node": r.get("node_rank"),
        "outcome": r.get("outcome"),
        "ok": r.get("outcome") == "ok",
        "summary": r.get("summary"),
        "stage": r.get("stage") or "",
        "bars": bars,
        "peak": fmt_bytes(peak) if peak else "–",
        "plan": fmt_bytes(plan) if plan else "–",
        "err": f"{r.get('prediction_error_pct'):+.1f}%"
        if isinstance(r.get("prediction_error_pct"), (int, float))
        else "",
        "collective": f"{coll * 1000:.1f} ms" if isinstance(coll, (int, float)) else "–",
        "evidence": (r.get("evidence") or "")[-600:],
    }


def _env_rows(e: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    host = e.get("host") or {}
    if host:
        rows.append(
            (
                "host",
                f"{host.get('cpus_usable', host.get('cpus'))} CPUs, {fmt_bytes(host.get('memavailable_bytes'))}"
                f" free of {fmt_bytes(host.get('memtotal_bytes'))}, python {host.get('python')}",
            )
        )
    for k, v in (e.get("packages") or {}).items():
        rows.append((k, str(v)))
    cann = e.get("cann") or {}
    if cann:
        rows.append(("CANN", str(cann.get("toolkit_version") or "not found")))
    for kind in ("npu", "cuda"):
        for d in (e.get(kind) or {}).get("devices") or []:
            rows.append(
                (
                    f"{kind.upper()} {d.get('index')}",
                    f"{d.get('name')}: {fmt_bytes(d.get('free_bytes'))} free of {fmt_bytes(d.get('total_bytes'))}",
                )
            )
    for step, err in (e.get("errors") or {}).items():
        rows.append((f"error: {step}", f"{err.get('type')}: {err.get('message')}"))
    for k, v in (e.get("variables") or {}).items():
        rows.append((k, str(v)))
    return rows


def _finding_rows(report: Report, phase_of: Mapping[str, str]) -> tuple[list[dict[str, Any]], int]:
    """Errors first, then warnings, then notes, as long as the page's findings budget lasts."""
    from html import escape

    ordered = sorted(report.findings, key=lambda f: (-f.severity.rank, f.check_id))
    rows: list[dict[str, Any]] = []
    budget = FINDINGS_BUDGET
    for f in ordered:
        loc = f.location.describe()
        cost = len(escape(f.message)) + len(escape(loc)) + len(escape(f.remediation)) + 330
        if cost > budget:
            break
        budget -= cost
        rows.append(
            {
                "sev": f.severity.value,
                "rank": f.severity.rank,
                "id": f.check_id,
                "dom": f.check_id.rstrip("0123456789"),
                "phase": phase_of.get(f.check_id, ""),
                "loc": loc,
                "msg": f.message,
                "fix": f.remediation,
            }
        )
    return rows, len(ordered) - len(rows)


_GROUP_ORDER = ("errored", "failed", "passed", "skipped")


def _check_groups(report: Report, docs: Mapping[str, str]) -> list[dict[str, Any]]:
    """Checks by status: errored and failed open, passed and skipped collapsed with their counts."""
    from markupsafe import Markup

    from npu_preflight.doctext import for_html

    groups: dict[str, list[dict[str, Any]]] = {}
    for c in report.checks:
        groups.setdefault(c.status.value, []).append(
            {
                "id": c.id,
                "status": c.status.value,
                "dom": c.id.rstrip("0123456789"),
                "phase": c.phase,
                "title": c.title,
                "reason": c.reason,
                "doc": Markup(for_html(docs[c.id])) if c.id in docs else None,
            }
        )
    return [
        {"status": st, "checks": groups[st], "open": st in ("errored", "failed")} for st in _GROUP_ORDER if st in groups
    ]


def render(report: Report, opts: RenderOptions = RenderOptions()) -> str:
    """The page. Findings, coverage, plan and checks are rendered here, on the server side: the page
    reads the same with JavaScript and CSS blocked (a CI server's CSP); script only adds filters,
    sorting and explain toggles. ``opts.docs`` maps check ids to their explain text."""
    from npu_preflight.coverage import coverage, run_settings

    docs = opts.docs or {}
    phase_of = {c.id: c.phase for c in report.checks}
    rows, omitted = _finding_rows(report, phase_of)
    used = {r["id"] for r in rows}
    found_phases = {phase_of.get(c, "") for c in used}
    return str(
        _template().render(
            r=report,
            verdict_label=report.verdict_label,
            counts={s.value: report.count(s) for s in Severity},
            status=report.status_counts(),
            rows=rows,
            omitted=omitted,
            domains=sorted({c.rstrip("0123456789") for c in used}),
            phases=[p for p in ("static", "environment", "plan", "init", "deep") if p in found_phases],
            memory=_memory_view(report.memory, report.init) if report.memory else None,
            init=_init_view(report.init) if report.init else None,
            env=_env_rows(report.environment) if report.environment else None,
            coverage=coverage(report),
            settings=run_settings(report),
            check_groups=_check_groups(report, docs),
            check_domains=sorted({c.id.rstrip("0123456789") for c in report.checks}),
            check_phases=[
                p for p in ("static", "environment", "plan", "init", "deep") if any(c.phase == p for c in report.checks)
            ],
        )
    )
