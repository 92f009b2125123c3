"""GitHub Actions workflow commands: one ``::error``/``::warning``/``::notice`` line per finding."""

from __future__ import annotations

import os

from npu_preflight.model import Report, Severity
from npu_preflight.reports.options import RenderOptions

_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def _data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _prop(s: str) -> str:
    return _data(s).replace(":", "%3A").replace(",", "%2C")


def render(report: Report, opts: RenderOptions = RenderOptions()) -> str:
    """Annotation lines; ``file=`` is the weights folder joined with the finding's file."""
    lines = []
    for c in report.errored:
        last = (c.reason or "").strip().splitlines()[-1:] or [""]
        lines.append(f"::error title={_prop(c.id + ' errored')}::{_data(c.title + ': ' + last[0])}")
    for f in report.findings:
        props = [f"title={_prop(f.check_id)}"]
        if f.location.file:
            props.insert(0, f"file={_prop(os.path.join(report.weights_dir, f.location.file))}")
        text = f.message + (f" — fix: {f.remediation}" if f.remediation else "")
        lines.append(f"::{_LEVEL[f.severity]} {','.join(props)}::{_data(text)}")
    verdict = report.verdict_label
    lines.append(
        f"::notice title=npu-preflight::{verdict}: {report.count(Severity.ERROR)} errors, "
        f"{report.count(Severity.WARNING)} warnings"
    )
    return "\n".join(lines) + "\n"
