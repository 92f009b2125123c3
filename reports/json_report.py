"""The JSON report (schemas/report.schema.json)."""

from __future__ import annotations

import json

from npu_preflight.model import Report
from npu_preflight.reports.options import RenderOptions


def render(report: Report, opts: RenderOptions = RenderOptions()) -> str:
    """The report as indented JSON, keys in contract order."""
    # allow_nan=False: strict JSON. Every value went through safetext.json_safe, so a NaN here is a bug.
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
