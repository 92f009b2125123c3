"""Byte sizes: human formatting and parsing of ``8GiB``-style arguments."""

from __future__ import annotations

import re

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*(\d{1,20}(?:\.\d{1,9})?)\s*([a-zA-Z]{0,3})\s*$")
#: Largest size accepted (16 EiB is what a 64-bit address space holds).
MAX_SIZE = 2**64


def fmt_bytes(n: float | int | None) -> str:
    """``1536`` → ``1.5 KiB``; binary units, three significant figures (integers of any size)."""
    if n is None:
        return "?"
    if isinstance(n, int) and abs(n) >= 1024**5:
        return f"{'-' if n < 0 else ''}{abs(n) // 1024**4:,} TiB"
    value = float(n)
    sign = "-" if value < 0 else ""
    value = abs(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            if unit == "B":
                return f"{sign}{int(value)} B"
            return f"{sign}{value:.3g} {unit}" if value < 100 else f"{sign}{value:.0f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def parse_size(text: str) -> int:
    """``8GiB``, ``512MB``, ``1000000`` → bytes; raises ValueError naming the bad text."""
    m = _SIZE.match(text) if len(text) <= 64 else None
    if not m or m.group(2).lower() not in _UNITS:
        shown = text if len(text) <= 40 else text[:39] + "…"
        raise ValueError(f"{shown!r} is not a size (examples: 8GiB, 512MiB, 2000000000)")
    whole, _, frac = m.group(1).partition(".")
    unit = _UNITS[m.group(2).lower()]
    value = int(whole) * unit + (int(frac) * unit // 10 ** len(frac) if frac else 0)
    if value > MAX_SIZE:
        raise ValueError(f"{text.strip()!r} is larger than any machine's memory (at most 16EiB)")
    if value <= 0:
        raise ValueError(f"{text.strip()!r} is not a positive size")
    return value
