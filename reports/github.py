"""GitHub Actions workflow commands: one ``::error``/``::warning``/``::notice`` line per finding."""

from __future__ import annotations

import os

from npu_preflight.model import Report, Severity
from npu_preflight.reports.options import RenderOptions
from npu_preflight.reports.text import plural

_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def _data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _prop(s: str) -> str:
    return _data(s).replace(":", "%3A").replace(",", "%2C")


def render(report: Report, opts: RenderOptions = RenderOptions()) -> str:
    """Annotation lines with ``file=`` relative to the workspace (so they attach to the repository's
    files) and ``line=`` where the finding names a JSON/YAML key; model_config findings point into
    the model_config file."""
    from npu_preflight.locate import place, workspace_root

    root = workspace_root()
    lines = []
    for c in report.errored:
        last = (c.reason or "").strip().splitlines()[-1:] or [""]
        lines.append(f"::error title={_prop(c.id + ' errored')}::{_data(c.title + ': ' + last[0])}")
    for f in report.findings:
        props = [f"title={_prop(f.check_id)}"]
        p = place(f, report, root)
        if p is not None:
            if p.line:
                props.insert(0, f"line={p.line}")
            props.insert(0, f"file={_prop(p.relative if p.relative is not None else os.fspath(p.path))}")
        text = f.message + (f" — fix: {f.remediation}" if f.remediation else "")
        lines.append(f"::{_LEVEL[f.severity]} {','.join(props)}::{_data(text)}")
    verdict = report.verdict_label
    lines.append(
        f"::notice title=npu-preflight::{verdict}: {plural(report.count(Severity.ERROR), 'error')}, "
        f"{plural(report.count(Severity.WARNING), 'warning')}"
    )
    return "\n".join(lines) + "\n"
