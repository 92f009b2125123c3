"""JUnit XML: one testcase per check; failures, errors and skips carry messages (Jenkins junit-10.xsd)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from npu_preflight.model import Report, Severity, Status
from npu_preflight.reports.options import RenderOptions


def render(report: Report, opts: RenderOptions = RenderOptions()) -> str:
    """The report as a JUnit ``<testsuites>`` document. A check fails the suite only when its worst
    finding reaches ``--fail-on`` (warnings under ``--fail-on error`` are output, not failures, so
    a passing run is not UNSTABLE in Jenkins)."""
    counts = dict(report.status_counts())
    worst_of: dict[str, Severity] = {}
    for f in report.findings:
        if f.check_id not in worst_of or f.severity.rank > worst_of[f.check_id].rank:
            worst_of[f.check_id] = f.severity
    failing = {
        c.id
        for c in report.checks
        if c.status is Status.FAILED and worst_of.get(c.id, Severity.ERROR).rank >= report.fail_on.rank
    }
    counts["failed"] = len(failing)
    suites = ET.Element(
        "testsuites",
        name="npu-preflight",
        tests=str(len(report.checks)),
        failures=str(counts["failed"]),
        errors=str(counts["errored"]),
        time=f"{report.duration_s:.3f}",
    )
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=f"npu-preflight {report.weights_dir}",
        tests=str(len(report.checks)),
        failures=str(counts["failed"]),
        errors=str(counts["errored"]),
        skipped=str(counts["skipped"]),
        time=f"{report.duration_s:.3f}",
        timestamp=report.created_at[:19],
    )
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="verdict", value=report.verdict)
    ET.SubElement(props, "property", name="fail_on", value=report.fail_on.value)
    ET.SubElement(props, "property", name="run_id", value=report.run_id)
    by_check: dict[str, list[str]] = {}
    worst: dict[str, Severity] = {}
    for f in report.findings:
        where = f.location.describe()
        by_check.setdefault(f.check_id, []).append(
            f"[{f.severity.value}] {f.message}"
            + (f"\n  at: {where}" if where else "")
            + (f"\n  fix: {f.remediation}" if f.remediation else "")
        )
        if f.check_id not in worst or f.severity.rank > worst[f.check_id].rank:
            worst[f.check_id] = f.severity
    for c in report.checks:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"npu_preflight.{c.phase}",
            name=f"{c.id} {c.title}",
            time=f"{c.duration_s:.3f}",
        )
        lines = by_check.get(c.id, [])
        if c.status is Status.FAILED and c.id in failing:
            first = lines[0].split("\n")[0] if lines else c.title
            el = ET.SubElement(case, "failure", message=first[:1000], type=worst.get(c.id, Severity.WARNING).value)
            el.text = "\n".join(lines)
        elif c.status is Status.ERRORED:
            el = ET.SubElement(case, "error", message="internal error in the check", type="internal-error")
            el.text = c.reason or ""
        elif c.status is Status.SKIPPED:
            ET.SubElement(case, "skipped", message=c.reason or "skipped")
        elif lines:
            out = ET.SubElement(case, "system-out")
            out.text = "\n".join(lines)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
