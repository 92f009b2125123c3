"""Renderers: pure functions of a :class:`~npu_preflight.model.Report`, chosen from one dict. They
return text and write nothing; the app does the I/O."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping

from npu_preflight.model import Report
from npu_preflight.reports.options import RenderOptions

Renderer = Callable[[Report, RenderOptions], str]

_MODULES = {
    "text": "text",
    "json": "json_report",
    "html": "html",
    "junit": "junit",
    "markdown": "markdown",
    "github": "github",
    "sarif": "sarif",
}


class _Renderers(Mapping[str, Renderer]):
    """Format name → render function, each module imported on first use (a run that prints text
    and writes no files never imports Jinja2, ElementTree or the SARIF locator)."""

    def __getitem__(self, name: str) -> Renderer:
        module = importlib.import_module(f"npu_preflight.reports.{_MODULES[name]}")
        render: Renderer = module.render
        return render

    def __iter__(self) -> Iterator[str]:
        return iter(_MODULES)

    def __len__(self) -> int:
        return len(_MODULES)


RENDERERS: Mapping[str, Renderer] = _Renderers()

__all__ = ["RENDERERS", "RenderOptions", "Renderer"]
