"""What a renderer may be told besides the report."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field

from npu_preflight.records import frozen


@frozen
class RenderOptions:
    """Colour (terminal), the explain text of every check (HTML, SARIF), the terminal width."""

    color: bool = False
    docs: Mapping[str, str] = field(default_factory=dict)
    width: int | None = None
    #: Per check: title, severity, backend, source (SARIF's rules).
    rules: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
