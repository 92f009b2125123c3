"""Comparing two reports: findings added, removed and changed, and whether NEW is worse."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from npu_preflight.model import Finding, Report, Severity


def _key(f: Finding) -> tuple[str, str | None, str | None, str | None, str | None]:
    loc = f.location
    return (f.check_id, loc.file, loc.tensor, loc.key, loc.env)


@dataclass
class Diff:
    """What changed between two reports."""

    old: Report
    new: Report
    added: list[Finding] = field(default_factory=list)
    removed: list[Finding] = field(default_factory=list)
    changed: list[tuple[Finding, Finding]] = field(default_factory=list)

    @property
    def worse(self) -> bool:
        """NEW is worse: the verdict went to not_ready, an error appeared, or a finding got more severe."""
        if self.old.ready and not self.new.ready:
            return True
        if any(f.severity is Severity.ERROR for f in self.added):
            return True
        return any(b.severity.rank > a.severity.rank for a, b in self.changed)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "verdict": {"old": self.old.verdict, "new": self.new.verdict},
            "worse": self.worse,
            "added": [f.to_dict() for f in self.added],
            "removed": [f.to_dict() for f in self.removed],
            "changed": [{"old": a.to_dict(), "new": b.to_dict()} for a, b in self.changed],
        }


def compare(old: Report, new: Report) -> Diff:
    """Match findings by check id and location; a match with another message or severity is 'changed'."""
    old_by: dict[Any, list[Finding]] = {}
    for f in old.findings:
        old_by.setdefault(_key(f), []).append(f)
    d = Diff(old, new)
    for f in new.findings:
        bucket = old_by.get(_key(f))
        if not bucket:
            d.added.append(f)
            continue
        same = next((o for o in bucket if o.message == f.message and o.severity is f.severity), None)
        if same is not None:
            bucket.remove(same)
        else:
            d.changed.append((bucket.pop(0), f))
    d.removed = [f for bucket in old_by.values() for f in bucket]
    return d


def render_text(d: Diff) -> str:
    """Human summary."""
    out = [f"verdict: {d.old.verdict} → {d.new.verdict}" + ("  (worse)" if d.worse else "")]
    for title, items in (("added", d.added), ("removed", d.removed)):
        if items:
            out.append(f"{title} ({len(items)}):")
            out += [
                f"  {'+' if title == 'added' else '-'} {f.severity.value:<7} {f.check_id}  {f.message}" for f in items
            ]
    if d.changed:
        out.append(f"changed ({len(d.changed)}):")
        for a, b in d.changed:
            out.append(f"  ~ {b.check_id}  {a.severity.value} → {b.severity.value}: {b.message}")
    if not (d.added or d.removed or d.changed):
        out.append("no finding changed")
    return "\n".join(out) + "\n"


def render_json(d: Diff) -> str:
    """JSON form."""
    return json.dumps(d.to_dict(), indent=2) + "\n"
