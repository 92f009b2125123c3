"""Parsing the environment variables MindIE and torch_npu read (FACTS.md §1, §2)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
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


def parse_visible_devices(value: str) -> VisibleDevices:
    """Parse a comma-separated device list; never raises."""
    ids: list[int] = []
    problems: list[str] = []
    for raw in value.split(","):
        item = raw.strip()
        if not item:
            problems.append("not an integer: an empty item")
            continue
        try:
            n = int(item)
        except ValueError:
            problems.append(f"not an integer: {item!r}")
            continue
        if n < 0:
            problems.append(f"negative id {n}")
            continue
        ids.append(n)
    dups = sorted({i for i in ids if ids.count(i) > 1})
    if dups:
        problems.append(f"duplicate id(s) {', '.join(map(str, dups))}")
    if ids != sorted(ids) and not dups:
        problems.append(f"not ascending: {','.join(map(str, ids))}")
    return VisibleDevices(tuple(ids), tuple(problems))


def parse_float(value: str) -> float | None:
    """A float, or None when the text is not one."""
    try:
        return float(value)
    except ValueError:
        return None
