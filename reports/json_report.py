"""The JSON report (schemas/report.schema.json)."""

from __future__ import annotations

import json

from toolkit.model import Report


def render(report: Report) -> str:
    """The report as indented JSON, keys in contract order."""
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False, default=str) + "\n"
