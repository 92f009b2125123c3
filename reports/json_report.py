"""The JSON report (schemas/report.schema.json)."""

from __future__ import annotations

import json

from npu_preflight.model import Report
from npu_preflight.reports.options import RenderOptions


def render(report: Report, opts: RenderOptions = RenderOptions()) -> str:
    """The report as indented JSON, keys in contract order."""
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False, default=str) + "\n"
