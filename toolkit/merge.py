"""Fold the reports of a multi-node run (one per node, same job) into one cluster report.

The verdict is the worst: findings are the union (a finding every node gave appears once, with the
nodes that gave it), a check's status is its worst on any node, the ranks of every node sit side by
side in ``init.ranks``, and ``cluster.nodes`` says which report each node's part came from.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from npu_preflight.errors import UsageError
from npu_preflight.model import CheckRecord, Finding, Report, Status

_WORST = {Status.ERRORED: 3, Status.FAILED: 2, Status.PASSED: 1, Status.SKIPPED: 0}


def _node_rank(report: Report, default: int) -> int:
    init = report.init or {}
    v = init.get("node_rank")
    return v if isinstance(v, int) and not isinstance(v, bool) else default


def merge(reports: Sequence[Report], names: Sequence[str]) -> Report:
    """One report for the cluster; raises UsageError naming the culprit when the reports are not
    the nodes of one job (different world_size or nnodes, a node given twice)."""
    if len(reports) < 2:
        raise UsageError("merge needs the reports of at least two nodes")
    shapes = {((r.init or {}).get("world_size"), (r.init or {}).get("nnodes")) for r in reports}
    if len(shapes) > 1:
        raise UsageError(f"the reports are not one job: (world_size, nnodes) differ: {sorted(shapes, key=str)}")
    ranks_of = [_node_rank(r, i) for i, r in enumerate(reports)]
    seen: dict[int, str] = {}
    for name, nr in zip(names, ranks_of, strict=True):
        if nr in seen:
            raise UsageError(f"{name} and {seen[nr]} are both node {nr}")
        seen[nr] = name
    order = sorted(range(len(reports)), key=lambda i: ranks_of[i])
    checks: dict[str, CheckRecord] = {}
    for i in order:
        for c in reports[i].checks:
            prev = checks.get(c.id)
            if prev is None or _WORST[c.status] > _WORST[prev.status]:
                checks[c.id] = c
    findings: dict[tuple[Any, ...], tuple[Finding, list[int]]] = {}
    for i in order:
        for f in reports[i].findings:
            key = (f.check_id, f.severity, f.message, f.location)
            if key in findings:
                findings[key][1].append(ranks_of[i])
            else:
                findings[key] = (f, [ranks_of[i]])
    merged_findings = tuple(replace(f, details={**f.details, "nodes": nodes}) for f, nodes in findings.values())
    section_errors: dict[str, str] = {}
    for i in order:
        for k, v in reports[i].section_errors.items():
            section_errors.setdefault(k, f"node {ranks_of[i]}: {v}")
    base = reports[order[0]]
    return Report(
        tool_version=base.tool_version,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        duration_s=max(r.duration_s for r in reports),
        weights_dir=base.weights_dir,
        model_config=base.model_config,
        options=base.options,
        fail_on=max((r.fail_on for r in reports), key=lambda s: -s.rank),
        checks=tuple(checks[k] for k in checks),
        findings=merged_findings,
        environment=_environment(reports, order, ranks_of),
        memory=base.memory,
        init=_init(reports, order, ranks_of),
        integrity=base.integrity,
        section_errors=section_errors,
        interrupted=any(r.interrupted for r in reports),
        run_id=uuid.uuid4().hex,
        cluster={
            "nodes": [
                {
                    "node_rank": ranks_of[i],
                    "report": names[i],
                    "verdict": reports[i].verdict,
                    "run_id": reports[i].run_id,
                    "ranks": [
                        r.get("rank") for r in (reports[i].init or {}).get("ranks") or [] if isinstance(r, Mapping)
                    ],
                }
                for i in order
            ]
        },
    )


def _environment(reports: Sequence[Report], order: list[int], ranks_of: list[int]) -> dict[str, Any] | None:
    base = reports[order[0]].environment
    if base is None:
        return None
    return {**base, "nodes": [{"node_rank": ranks_of[i], **dict(reports[i].environment or {})} for i in order]}


def _init(reports: Sequence[Report], order: list[int], ranks_of: list[int]) -> dict[str, Any] | None:
    inits = [(ranks_of[i], reports[i].init) for i in order if reports[i].init]
    if not inits:
        return None
    ranks = sorted(
        (r for _, init in inits for r in (init or {}).get("ranks") or [] if isinstance(r, Mapping)),
        key=lambda r: r.get("rank", 0) if isinstance(r.get("rank"), int) else 0,
    )
    failing = [(nr, init) for nr, init in inits if (init or {}).get("outcome") != "ok"]
    first = failing[0] if failing else inits[0]
    init0 = dict(first[1] or {})
    summary = (
        f"node {first[0]}: {init0.get('summary')}"
        if failing
        else f"all {len(ranks)} rank(s) on {len(inits)} node(s) initialised and passed the collective"
    )
    return {**init0, "summary": summary, "ranks": ranks, "node_rank": None, "nodes": [nr for nr, _ in inits]}
