"""Making untrusted strings and values safe to print and to serialise.

Names come from the weights folder (file names that are not UTF-8, tensor names such as
``"\\ud800"``), messages quote them, and every report format must survive them: UTF-8 cannot encode
a lone surrogate, XML 1.0 forbids most control characters, and a terminal obeys escape sequences (an
OSC sequence in a file name would retitle the window). So every string that enters a report is
escaped once, here: lone surrogates as ``\\xNN`` (the undecodable byte a file name held) or
``\\udNNN``, control and bidi-override characters as ``\\xNN``/``\\uNNNN``. Values are made strict-JSON
safe: no NaN or Infinity, no integer beyond 64 bits (kept as a string), bounded sizes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from functools import cache
from typing import Any

#: C0/C1 controls (tab and newline handled by the caller), lone surrogates, bidi overrides and
#: isolates (Trojan-source), line/paragraph separators, BOM.
_UNSAFE = "[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]"
_UNSAFE_NL = "[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]"


@cache
def _unsafe(multiline: bool) -> re.Pattern[str]:
    # compiled on the first string that needs it: the two character sets take 1.2 ms to compile,
    # and most runs print only printable ASCII (issue 17)
    return re.compile(_UNSAFE if multiline else _UNSAFE_NL)


INT64 = 2**63 - 1
MAX_TEXT = 2000
MAX_MULTILINE = 20_000
MAX_LIST = 50
MAX_SECTION_LIST = 100_000
MAX_KEYS = 100
MAX_DEPTH = 8


def _escape(m: re.Match[str]) -> str:
    ch = m.group(0)
    o = ord(ch)
    if 0xDC80 <= o <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{o - 0xDC00:02x}"
    if o <= 0xFF:
        return f"\\x{o:02x}"
    return f"\\u{o:04x}"


def safe_text(value: str, limit: int = MAX_TEXT, *, multiline: bool = False) -> str:
    """``value`` with unsafe characters escaped and at most ``limit`` characters (``…`` marks a cut).
    ``multiline`` keeps newlines and tabs (tracebacks, stderr tails)."""
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    if value.isascii() and value.isprintable():  # no control character: nothing to escape
        return value
    if multiline:
        return _unsafe(True).sub(_escape, value.replace("\r\n", "\n"))
    return _unsafe(False).sub(_escape, value)


#: Keys whose string values keep their newlines (multi-line evidence).
MULTILINE_KEYS = ("stderr_tail", "traceback", "reason", "stdout_tail")


def json_safe(value: Any, depth: int = 0, limit: int = MAX_TEXT, key: str = "", items: int = MAX_LIST) -> Any:
    """A JSON-able copy of ``value``: strings escaped and capped, floats finite (else a string),
    integers beyond 64 bits as strings, lists (``items``) and dicts bounded (``…`` entries mark cuts)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -INT64 - 1 <= value <= INT64 else _big(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        if key.endswith(MULTILINE_KEYS):
            return safe_text(value, MAX_MULTILINE, multiline=True)
        return safe_text(value, limit)
    if depth >= MAX_DEPTH:
        return "…"
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for i, (k, v) in enumerate(value.items()):
            if i >= MAX_KEYS:
                out["…"] = f"{len(value) - MAX_KEYS} more keys"
                break
            out[safe_text(str(k), 200)] = json_safe(v, depth + 1, limit, str(k), items)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        seq = list(value) if not isinstance(value, (set, frozenset)) else sorted(value, key=repr)
        shown = [json_safe(v, depth + 1, limit, key, items) for v in seq[:items]]
        if len(seq) > items:
            shown.append(f"… {len(seq) - items} more")
        return shown
    return safe_text(str(value), limit)


def _big(n: int) -> str:
    """An integer too large for JSON consumers, as text (shortened when huge)."""
    digits = str(abs(n)) if n.bit_length() < 14_000 else None
    if digits is None:
        return f"{'-' if n < 0 else ''}an integer of about {int(n.bit_length() * 0.30103):,} digits"
    sign = "-" if n < 0 else ""
    return sign + (digits if len(digits) <= 40 else f"{digits[:20]}…({len(digits)} digits)")


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr`` for messages, escaped and shortened."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return _big(value)
    try:
        text = repr(value)
    except (ValueError, RecursionError):
        text = f"<{type(value).__name__}>"
    return safe_text(text, limit)
