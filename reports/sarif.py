"""SARIF 2.1.0 for code scanning (GitHub, GitLab, Azure DevOps): one rule per check with its
explain text, one result per finding, repo-relative locations with the key's line where the
finding names a JSON or YAML key. Validated against the official schema in the tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from npu_preflight.doctext import for_markdown, for_terminal
from npu_preflight.locate import place, workspace_root
from npu_preflight.model import Report, Severity
from npu_preflight.reports.options import RenderOptions

_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def render(report: Report, opts: RenderOptions = RenderOptions()) -> str:
    """The SARIF log (one run)."""
    root = workspace_root()
    rules_meta = opts.rules or {}
    ids = sorted({c.id for c in report.checks} | {f.check_id for f in report.findings})
    index = {cid: n for n, cid in enumerate(ids)}
    rules = []
    for cid in ids:
        meta = rules_meta.get(cid, {})
        title = str(meta.get("title") or next((c.title for c in report.checks if c.id == cid), cid))
        doc = str((opts.docs or {}).get(cid, title))
        rule: dict[str, Any] = {
            "id": cid,
            "name": cid,
            "shortDescription": {"text": title},
            "fullDescription": {"text": for_terminal(doc.split("\n\n")[0])},
            "help": {"text": for_terminal(doc), "markdown": for_markdown(doc)},
            "defaultConfiguration": {"level": _LEVEL.get(Severity(meta["severity"]), "warning")}
            if meta.get("severity")
            else {},
            "properties": {k: meta[k] for k in ("backend", "source") if meta.get(k)},
        }
        if not rule["defaultConfiguration"]:
            del rule["defaultConfiguration"]
        rules.append(rule)
    results = []
    for f in report.findings:
        res: dict[str, Any] = {
            "ruleId": f.check_id,
            "ruleIndex": index[f.check_id],
            "level": _LEVEL[f.severity],
            "message": {"text": f.message + (f"\nFix: {f.remediation}" if f.remediation else "")},
        }
        loc = _location(f, report, root)
        if loc:
            res["locations"] = [loc]
        res["partialFingerprints"] = {"npuPreflight/v1": f"{f.check_id}:{f.location.describe()}:{f.message[:200]}"}
        results.append(res)
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "npu-preflight",
                "version": report.tool_version,
                "informationUri": "https://npu-preflight.invalid/",
                "rules": rules,
            }
        },
        "originalUriBaseIds": {"SRCROOT": {"uri": root.as_uri() + "/"}},
        "invocations": [
            {
                "executionSuccessful": report.verdict != "error",
                "properties": {"verdict": report.verdict, "fail_on": report.fail_on.value, "run_id": report.run_id},
            }
        ],
        "results": results,
    }
    return json.dumps({"$schema": SCHEMA, "version": "2.1.0", "runs": [run]}, indent=2, allow_nan=False) + "\n"


def _location(f: Any, report: Report, root: Path) -> dict[str, Any] | None:
    p = place(f, report, root)
    logical = f.location.tensor or f.location.key or f.location.env
    out: dict[str, Any] = {}
    if p is not None:
        art: dict[str, Any] = (
            {"uri": p.relative, "uriBaseId": "SRCROOT"}
            if p.relative is not None
            else {"uri": p.path.resolve().as_uri()}
        )
        phys: dict[str, Any] = {"artifactLocation": art}
        if p.line:
            phys["region"] = {"startLine": p.line}
        out["physicalLocation"] = phys
    if logical:
        out["logicalLocations"] = [{"name": str(logical)[:500], "kind": "member"}]
    return out or None
