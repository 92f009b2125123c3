"""Renderers: pure functions of a :class:`~npu_preflight.model.Report`, chosen from one dict. They
return text and write nothing; the app does the I/O."""

from __future__ import annotations

from collections.abc import Callable

from npu_preflight.model import Report
from npu_preflight.reports import github, html, json_report, junit, markdown, sarif, text
from npu_preflight.reports.options import RenderOptions

Renderer = Callable[[Report, RenderOptions], str]

RENDERERS: dict[str, Renderer] = {
    "text": text.render,
    "json": json_report.render,
    "html": html.render,
    "junit": junit.render,
    "markdown": markdown.render,
    "github": github.render,
    "sarif": sarif.render,
}

__all__ = ["RENDERERS", "RenderOptions", "Renderer"]
