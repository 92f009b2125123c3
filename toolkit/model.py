"""The data model every layer shares: findings, check specs, results and the report.

All types are frozen dataclasses; change them with :func:`dataclasses.replace`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import field
from typing import TYPE_CHECKING, Any, Literal, get_args

from npu_preflight.records import frozen

if TYPE_CHECKING:
    from npu_preflight.context import Context

#: 2: the verdict gains ``error`` (a check could not run, so the folder is not vouched for).
SCHEMA_VERSION = 2

Verdict = Literal["ready", "not_ready", "error"]
#: The facts a check may name in ``requires=`` (each is a fact of :class:`~npu_preflight.context.Context`).
FactName = Literal[
    "listing",
    "safetensors_files",
    "pickle_files",
    "config_load",
    "config",
    "text_config",
    "effective_config",
    "headers",
    "index_load",
    "index",
    "loaded_files",
    "tensors",
    "architecture",
    "tokenizer_load",
    "tokenizer",
    "vocab_file",
    "chat_renders",
    "mc",
    "world_size",
    "probe",
    "target",
    "plan",
    "init_outcome",
    "deep_scan",
    "rank_table",
    "pickle_scans",
    "quantization",
]
FACT_NAMES: frozenset[str] = frozenset(get_args(FactName))
DeviceKind = Literal["npu", "cuda", "cpu"]
#: Whose behaviour a check's rule describes: every loader (``any``), MindIE (its ATB model code,
#: validation and environment), transformers, a tensor-parallel runtime, the tool's own plan or
#: sandbox (``preflight``), or the host (torch, CANN, files).
RuleBackend = Literal["any", "mindie", "transformers", "tensor-parallel", "preflight", "host"]
RULE_BACKENDS: frozenset[str] = frozenset(get_args(RuleBackend))
DeviceChoice = Literal["auto", "npu", "cuda", "cpu"]


class Severity(str, enum.Enum):
    """How bad a finding is: an error blocks the deployment, a warning is likely wrong."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        """Ordering key: error > warning > info."""
        return {"error": 2, "warning": 1, "info": 0}[self.value]


class Phase(str, enum.Enum):
    """The phases of a run, in the order they execute (DESIGN.md §3)."""

    STATIC = "static"
    ENVIRONMENT = "environment"
    PLAN = "plan"
    INIT = "init"
    DEEP = "deep"


PHASE_ORDER = (Phase.STATIC, Phase.ENVIRONMENT, Phase.PLAN, Phase.INIT, Phase.DEEP)


class Status(str, enum.Enum):
    """What became of one check."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    ERRORED = "errored"


@frozen
class Location:
    """Where a finding points: a file (relative to the weights folder), a tensor, a key, an env var."""

    file: str | None = None
    tensor: str | None = None
    key: str | None = None
    env: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        """The JSON form, every key present."""
        return {"file": self.file, "tensor": self.tensor, "key": self.key, "env": self.env}

    def describe(self) -> str:
        """A short human form such as ``model.safetensors [lm_head.weight]``."""
        parts: list[str] = []
        if self.file:
            parts.append(self.file)
        if self.tensor:
            parts.append(f"[{self.tensor}]")
        if self.key:
            # "config.json config.json:torch_dtype" says the file twice: the key names it already
            key = self.key
            if self.file and key.startswith(self.file + ":") and not self.tensor:
                parts[-1:] = []
            parts.append(key)
        if self.env:
            parts.append(f"${self.env}")
        return " ".join(parts)


@frozen
class Hit:
    """What a check yields; the runner turns it into a :class:`Finding` with the check's id."""

    message: str
    remediation: str = ""
    location: Location = field(default_factory=Location)
    details: Mapping[str, Any] = field(default_factory=dict)
    severity: Severity | None = None


@frozen
class Finding:
    """One problem (or note) found by a check."""

    check_id: str
    severity: Severity
    message: str
    location: Location = field(default_factory=Location)
    remediation: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of DESIGN.md §6."""
        return {
            "check_id": self.check_id,
            "severity": self.severity.value,
            "message": self.message,
            "location": self.location.to_dict(),
            "remediation": self.remediation,
            "details": dict(self.details),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        """Inverse of :meth:`to_dict`."""
        from npu_preflight.safetext import json_safe, safe_text

        loc = data.get("location") or {}
        return cls(
            check_id=str(data["check_id"]),
            severity=Severity(data["severity"]),
            message=safe_text(str(data["message"])),
            location=Location(
                **{
                    k: None if loc.get(k) is None else safe_text(str(loc[k]), 500)
                    for k in ("file", "tensor", "key", "env")
                }
            ),
            remediation=safe_text(str(data.get("remediation") or "")),
            details=json_safe(dict(data.get("details") or {})),
        )


CheckFunc = Callable[["Context"], Iterable[Hit]]


@frozen
class CheckSpec:
    """A registered check: its stable id, title, default severity, phase and documentation."""

    id: str
    title: str
    severity: Severity
    phase: Phase
    requires: tuple[FactName, ...]
    doc: str
    func: CheckFunc = field(compare=False, repr=False)
    backend: RuleBackend = "any"
    source: str = ""


@frozen
class CheckResult:
    """The outcome of running one check."""

    spec: CheckSpec
    status: Status
    findings: tuple[Finding, ...] = ()
    reason: str | None = None
    duration_s: float = 0.0


@frozen
class CheckRecord:
    """A check as stored in a report (no function attached): what renderers of stored reports use."""

    id: str
    title: str
    phase: str
    status: Status
    duration_s: float
    reason: str | None

    @classmethod
    def from_result(cls, r: CheckResult) -> CheckRecord:
        """Drop the function, keep what the report holds."""
        return cls(r.spec.id, r.spec.title, r.spec.phase.value, r.status, r.duration_s, r.reason)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of one entry of ``checks``."""
        return {
            "id": self.id,
            "title": self.title,
            "phase": self.phase,
            "status": self.status.value,
            "duration_s": round(self.duration_s, 6),
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CheckRecord:
        """Inverse of :meth:`to_dict`."""
        from npu_preflight.safetext import MAX_MULTILINE, safe_text

        reason = d.get("reason")
        return cls(
            str(d["id"]),
            safe_text(str(d["title"])),
            str(d["phase"]),
            Status(d["status"]),
            float(d.get("duration_s") or 0.0),
            None if reason is None else safe_text(str(reason), MAX_MULTILINE, multiline=True),
        )


@frozen
class Report:
    """Everything the renderers need; serialises to the JSON contract (schemas/report.schema.json)."""

    tool_version: str
    created_at: str
    duration_s: float
    weights_dir: str
    model_config: Mapping[str, Any] | None
    options: Mapping[str, Any]
    fail_on: Severity
    checks: tuple[CheckRecord, ...]
    findings: tuple[Finding, ...]
    environment: Mapping[str, Any] | None = None
    memory: Mapping[str, Any] | None = None
    init: Mapping[str, Any] | None = None
    integrity: Mapping[str, Any] | None = None
    #: Report sections that could not be built (section name → why); each lowers the verdict to error.
    section_errors: Mapping[str, str] = field(default_factory=dict)
    #: Ctrl-C or SIGTERM stopped the run: some checks did not run (verdict error).
    interrupted: bool = False
    #: Unique per run: every file of one report set carries it (two runs never mix their files).
    run_id: str = ""
    #: A report merged from node reports: one entry per node (``npu-preflight merge``).
    cluster: Mapping[str, Any] | None = None

    @property
    def errored(self) -> tuple[CheckRecord, ...]:
        """Checks that raised: the tool could not vouch for what they cover."""
        return tuple(c for c in self.checks if c.status is Status.ERRORED)

    @property
    def trusted(self) -> bool:
        """Every check ran to a result, every section was built and the run was not interrupted."""
        return not self.errored and not self.section_errors and not self.interrupted

    @property
    def ready(self) -> bool:
        """True when the run is trusted and no finding reaches the ``fail_on`` threshold."""
        return self.trusted and not any(f.severity.rank >= self.fail_on.rank for f in self.findings)

    @property
    def verdict(self) -> Verdict:
        """``error`` when a check errored (or a section failed), else ``ready`` or ``not_ready``."""
        if not self.trusted:
            return "error"
        return "ready" if self.ready else "not_ready"

    @property
    def verdict_label(self) -> str:
        """The verdict as people read it."""
        return {"ready": "READY", "not_ready": "NOT READY", "error": "ERROR"}[self.verdict]

    def count(self, severity: Severity) -> int:
        """Number of findings of one severity."""
        return sum(1 for f in self.findings if f.severity is severity)

    def coverage(self) -> dict[str, Any]:
        """What ran, what was skipped and why, what would enable it (``summary.coverage``)."""
        from npu_preflight.coverage import coverage

        return coverage(self)

    def status_counts(self) -> dict[str, int]:
        """Checks per status."""
        counts = {s.value: 0 for s in Status}
        for c in self.checks:
            counts[c.status.value] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract of DESIGN.md §6."""
        return {
            "schema_version": SCHEMA_VERSION,
            "tool": {"name": "npu-preflight", "version": self.tool_version, "run_id": self.run_id},
            "created_at": self.created_at,
            "duration_s": round(self.duration_s, 6),
            "target": {
                "weights_dir": self.weights_dir,
                "model_config": dict(self.model_config) if self.model_config is not None else None,
                "options": dict(self.options),
            },
            "verdict": self.verdict,
            "fail_on": self.fail_on.value,
            "summary": {
                "errors": self.count(Severity.ERROR),
                "warnings": self.count(Severity.WARNING),
                "infos": self.count(Severity.INFO),
                "checks": self.status_counts(),
                "interrupted": self.interrupted,
                "coverage": self.coverage(),
            },
            "checks": [c.to_dict() for c in self.checks],
            "findings": [f.to_dict() for f in self.findings],
            "environment": self._section("environment", self.environment),
            "memory": self._section("memory", self.memory),
            "init": self._section("init", self.init),
            "integrity": self._section("integrity", self.integrity),
            **({"cluster": dict(self.cluster)} if self.cluster is not None else {}),
        }

    def _section(self, name: str, value: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if name in self.section_errors:
            return {"error": self.section_errors[name]}
        return dict(value) if value is not None else None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Report:
        """Rebuild a report from its JSON form (``render`` and ``diff`` use this)."""
        target = d.get("target") or {}
        from npu_preflight.safetext import MAX_SECTION_LIST, json_safe, safe_text

        sections = {
            k: json_safe(d.get(k), items=MAX_SECTION_LIST) for k in ("environment", "memory", "init", "integrity")
        }
        errors = {k: str(v["error"]) for k, v in sections.items() if isinstance(v, Mapping) and set(v) == {"error"}}
        return cls(
            tool_version=str((d.get("tool") or {}).get("version", "?")),
            created_at=str(d.get("created_at", "")),
            duration_s=float(d.get("duration_s") or 0.0),
            weights_dir=safe_text(str(target.get("weights_dir", "")), 4096),
            model_config=json_safe(target.get("model_config")),
            options=json_safe(target.get("options") or {}),
            fail_on=Severity(d.get("fail_on", "error")),
            checks=tuple(CheckRecord.from_dict(c) for c in d.get("checks") or ()),
            findings=tuple(Finding.from_dict(f) for f in d.get("findings") or ()),
            environment=None if "environment" in errors else sections["environment"],
            memory=None if "memory" in errors else sections["memory"],
            init=None if "init" in errors else sections["init"],
            integrity=None if "integrity" in errors else sections["integrity"],
            section_errors=errors,
            interrupted=bool((d.get("summary") or {}).get("interrupted")),
            run_id=str((d.get("tool") or {}).get("run_id") or ""),
            cluster=json_safe(d["cluster"]) if isinstance(d.get("cluster"), Mapping) else None,
        )
