"""A check's documentation, rendered once for every format.

The docstrings use reStructuredText's double backticks for code (````torch_dtype````). Terminals
get the code without the markup (bold on a tty), HTML gets ``<code>``, Markdown single backticks.
"""

from __future__ import annotations

import html
import re

_CODE = re.compile(r"``(.+?)``", re.DOTALL)


def for_terminal(text: str, color: bool = False) -> str:
    """Plain text: code spans unwrapped (bold when ``color``)."""
    return _CODE.sub(lambda m: f"\x1b[1m{m.group(1)}\x1b[0m" if color else m.group(1), text)


def for_markdown(text: str) -> str:
    """Markdown: code spans in single backticks."""
    return _CODE.sub(lambda m: f"`{m.group(1)}`", text)


def for_html(text: str) -> str:
    """HTML (escaped): code spans as ``<code>``, paragraphs kept as line breaks."""
    out = []
    pos = 0
    for m in _CODE.finditer(text):
        out.append(html.escape(text[pos : m.start()]))
        out.append(f"<code>{html.escape(m.group(1))}</code>")
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)
