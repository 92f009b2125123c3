"""What the run checked and what it did not: counts, skipped checks grouped by reason with the one
flag or file that would enable each group, and whether the init ran — for every format."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from npu_preflight.model import Report, Status
from npu_preflight.records import frozen

#: reason pattern → what would enable the checks it blocks.
_ENABLE = (
    (
        re.compile(r"no model_config"),
        "give a model_config: -c FILE (JSON, YAML, MindIE-Service config.json) or --set KEY=VALUE",
    ),
    (re.compile(r"no device to plan for|--target-device"), "give --target-device NAME (see npu-preflight devices)"),
    (re.compile(r"--static"), "run without --static, on the deployment host"),
    (re.compile(r"only with --deep"), "add --deep"),
    (re.compile(r"blocked by errors found earlier"), "fix the errors above first"),
    (re.compile(r"MindIE rule|no MindIE backend_type"), "set backend_type in the model_config (atb for MindIE)"),
    (re.compile(r"--no-init"), "run without --no-init"),
    (re.compile(r"init ran one process"), "set world_size > 1 (and --ranks all)"),
    (re.compile(r"not a MindIE-Service config"), "pass MindIE-Service's config.json as the model_config"),
    (re.compile(r"no safetensors"), "put the safetensors weights in the folder"),
    (re.compile(r"RANK_TABLE_FILE"), "set RANK_TABLE_FILE for a multi-node run"),
    (re.compile(r"ignored for this folder by"), "remove the folder's entry from the policy file"),
    (re.compile(r"deselected by"), "drop --select/--ignore (or the policy file's select/ignore)"),
)


@frozen
class SkipGroup:
    """Checks skipped for one reason, and what would run them."""

    reason: str
    checks: tuple[str, ...]
    enable: str | None


def _group_key(reason: str) -> str:
    first = reason.strip().splitlines()[0] if reason.strip() else "(no reason recorded)"
    return first[:240]


def skip_groups(report: Report) -> list[SkipGroup]:
    """Skipped checks by reason, largest group first."""
    groups: dict[str, list[str]] = {}
    for c in report.checks:
        if c.status is Status.SKIPPED:
            groups.setdefault(_group_key(c.reason or ""), []).append(c.id)
    out = []
    for reason, ids in groups.items():
        enable = next((hint for rx, hint in _ENABLE if rx.search(reason)), None)
        out.append(SkipGroup(reason, tuple(ids), enable))
    return sorted(out, key=lambda g: (-len(g.checks), g.reason))


def init_status(report: Report) -> str:
    """``ran: ok`` / ``not run: blocked by CFG004`` / ``not requested (--static)``."""
    if report.init:
        return f"ran: {report.init.get('outcome')}"
    opts = report.options or {}
    if opts.get("static"):
        return "not requested (--static)"
    if opts.get("no_init"):
        return "not requested (--no-init)"
    init001 = next((c for c in report.checks if c.id == "INIT001"), None)
    if init001 is None:
        return "not selected (--select/--ignore)"
    if init001.status is Status.SKIPPED and init001.reason:
        return f"not run: {init001.reason.strip().splitlines()[0]}"
    return "not run"


def coverage(report: Report) -> dict[str, Any]:
    """The JSON form (report.json ``summary.coverage``)."""
    counts = report.status_counts()
    return {
        "total": len(report.checks),
        "ran": counts["passed"] + counts["failed"],
        "skipped": counts["skipped"],
        "errored": counts["errored"],
        "skipped_groups": [
            {"reason": g.reason, "checks": list(g.checks), "enable": g.enable} for g in skip_groups(report)
        ],
        "init": init_status(report),
    }


def coverage_lines(report: Report, indent: str = "  ") -> list[str]:
    """The coverage section as plain lines (text and Markdown use them)."""
    cov = coverage(report)
    lines = [f"COVERAGE: {cov['ran']} of {cov['total']} checks ran, {cov['skipped']} skipped, init {cov['init']}"]
    for g in cov["skipped_groups"]:
        checks = g["checks"]
        ids = ", ".join(checks[:8]) + (f" … {len(checks) - 8} more" if len(checks) > 8 else "")
        lines.append(f"{indent}{len(checks)} skipped: {g['reason']} ({ids})")
        if g["enable"]:
            lines.append(f"{indent}  → {g['enable']}")
    return lines


def run_settings(report: Report) -> list[tuple[str, str]]:
    """The model_config and options the run used, as (label, value) rows."""
    import json

    rows: list[tuple[str, str]] = []
    mc: Mapping[str, Any] | None = report.model_config
    rows.append(("model_config", "none given" if mc is None else json.dumps(dict(mc), sort_keys=True, default=str)))
    opts = {k: v for k, v in (report.options or {}).items() if v not in (None, False, "", [], {})}
    rows.append(("options", json.dumps(opts, sort_keys=True, default=str)))
    return rows
