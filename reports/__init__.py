"""Renderers: pure functions of a :class:`~toolkit.model.Report`, chosen from one dict."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from reports import github, html, json_report, junit, markdown, text
from toolkit.model import Report

Renderer = Callable[[Report], str]

RENDERERS: dict[str, Renderer] = {
    "text": text.render,
    "json": json_report.render,
    "html": html.render,
    "junit": junit.render,
    "markdown": markdown.render,
    "github": github.render,
}


def write_atomic(path: Path, content: str) -> None:
    """Write ``content`` to ``path`` through a temporary file and a rename, so no reader ever sees
    half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(content)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a report is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
