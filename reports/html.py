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


def _memory_view(m: Mapping[str, Any]) -> dict[str, Any]:
    parts = [
        ("weights", m.get("weights_bytes") or 0),
        ("KV cache", m.get("kv_cache_bytes") or 0),
        ("workspace", m.get("workspace_bytes") or 0),
        ("runtime", m.get("overhead_bytes") or 0),
    ]
    total = sum(v for _, v in parts)
    budget = m.get("budget_bytes")
    measured = m.get("measured_peak_bytes")
    if budget is not None and budget > total:
        parts.append(("headroom", budget - total))
    scale_max = max([total, budget or 0, measured or 0, 1])
    segs, x = [], 0.0
    for label, v in parts:
        w = 1000.0 * v / scale_max
        segs.append(
            {"x": round(x, 2), "w": round(w, 2), "label": label, "human": fmt_bytes(v), "color": _COLORS[label]}
        )
        x += w
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
    if kv.get("max_seq_len_fit") is not None:
        rows.append(
            (
                "largest that fits",
                f"max_seq_len {kv['max_seq_len_fit']:,} at batch {kv.get('batch')}; "
                f"batch {kv.get('max_batch_fit')} at max_seq_len {kv.get('seq_len'):,}",
            )
        )
    for note in m.get("notes") or []:
        rows.append(("note", str(note)))
    return {
        "world_size": m.get("world_size"),
        "device_name": dev.get("name") or "none",
        "device_source": dev.get("source") or "no device: plan without budget",
        "segments": segs,
        "budget_x": None if budget is None else round(1000.0 * budget / scale_max, 2),
        "budget_human": fmt_bytes(budget),
        "measured_x": None if not measured else round(1000.0 * measured / scale_max, 2),
        "measured_human": fmt_bytes(measured),
        "predicted_human": fmt_bytes(m.get("predicted_peak_bytes")),
        "error_pct": m.get("prediction_error_pct"),
        "chart_h": 76,
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


def render(report: Report, opts: RenderOptions = RenderOptions()) -> str:
    """The page; ``opts.docs`` maps check ids to their explain text (shown on demand)."""
    docs = opts.docs
    phase_of = {c.id: c.phase for c in report.checks}
    ordered = sorted(report.findings, key=lambda f: (-f.severity.rank, f.check_id))
    used = {f.check_id for f in ordered}
    # Rows are built in the browser from compact arrays (remediations deduplicated): 5,000 findings
    # stay well under 2 MB, and every string reaches the page through textContent.
    fixes: dict[str, int] = {}
    rows: list[list[object]] = []
    budget = FINDINGS_BUDGET
    for f in ordered:
        cost = len(f.message) + len(f.location.describe()) + (0 if f.remediation in fixes else len(f.remediation)) + 40
        if cost > budget:
            break
        budget -= cost
        idx = fixes.setdefault(f.remediation, len(fixes)) if f.remediation else -1
        rows.append([f.severity.rank, f.check_id, f.location.describe(), f.message, idx])
    data = {"f": rows, "fix": list(fixes), "phase": phase_of, "omitted": len(ordered) - len(rows)}
    found_phases = {phase_of.get(c, "") for c in used}
    return str(
        _template().render(
            r=report,
            verdict_label=report.verdict_label,
            counts={s.value: report.count(s) for s in Severity},
            status=report.status_counts(),
            findings=ordered,
            domains=sorted({c.rstrip("0123456789") for c in used}),
            phases=[p for p in ("static", "environment", "plan", "init", "deep") if p in found_phases],
            memory=_memory_view(report.memory) if report.memory else None,
            init=_init_view(report.init) if report.init else None,
            env=_env_rows(report.environment) if report.environment else None,
            docs={k: v for k, v in (docs or {}).items() if k in used},
            data=data,
        )
    )
