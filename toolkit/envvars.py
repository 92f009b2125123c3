"""Parsing the environment variables MindIE and torch_npu read (FACTS.md §1, §2)."""

from __future__ import annotations

from collections import Counter
from dataclasses import field

from npu_preflight.records import frozen


@frozen
class VisibleDevices:
    """``ASCEND_RT_VISIBLE_DEVICES`` parsed: the ids, and what is wrong with the value."""

    ids: tuple[int, ...]
    problems: tuple[str, ...] = field(default=())

    @property
    def effective_count(self) -> int:
        """How many devices torch_npu will see (0 when it rejects the list as a whole)."""
        if any(p.startswith(("not an integer", "negative")) for p in self.problems):
            return 0
        if any(p.startswith("not ascending") for p in self.problems):
            return 0  # torch_npu returns 0 devices for a non-ascending list (from source, unverified)
        return len(self.ids)


def _small_int(text: str) -> int | None:
    """A device id: at most 12 characters that int() accepts."""
    if len(text) > 12:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def parse_visible_devices(value: str) -> VisibleDevices:
    """Parse a comma-separated device list; never raises."""
    ids: list[int] = []
    problems: list[str] = []
    empty = 0
    for raw in value.split(","):
        item = raw.strip()
        if not item:
            empty += 1
            continue
        n = _small_int(item)
        if n is None:
            problems.append(f"not an integer: {item[:20]!r}")
            continue
        if n < 0:
            problems.append(f"negative id {n}")
            continue
        ids.append(n)
    if empty:
        problems.insert(0, f"not an integer: {empty} empty item(s)")
    dups = sorted(i for i, n in Counter(ids).items() if n > 1)
    if dups:
        problems.append(f"duplicate id(s) {', '.join(map(str, dups[:10]))}{' …' if len(dups) > 10 else ''}")
    if ids != sorted(ids) and not dups:
        shown = ",".join(map(str, ids[:16])) + (",…" if len(ids) > 16 else "")
        problems.append(f"not ascending: {shown}")
    return VisibleDevices(tuple(ids), tuple(problems))


def parse_float(value: str) -> float | None:
    """A float, or None when the text is not one."""
    try:
        return float(value)
    except ValueError:
        return None
