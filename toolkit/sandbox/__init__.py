"""The sandboxed generator init (DESIGN.md §4): request in, result out, progress events, containment.

The tool writes a request, fingerprints the weights folder, and runs ``child.py`` under the
deployment's interpreter through the sandbox supervisor (``supervisor.py``; see ``npu_preflight.proc``),
which contains the whole process tree and reports how the child ended. The outcome comes from that
exit, checked against the child's result file (read with a byte cap and validated); the folder is
fingerprinted again afterwards and any change is reported. Nothing the child does raises here;
Ctrl-C kills the tree and still yields an outcome (``interrupted``).
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from npu_preflight.errors import Interrupted
from npu_preflight.fingerprint import changes, fingerprint
from npu_preflight.formats.jsonload import JsonLoadError, load_file
from npu_preflight.generators import GENERATORS_DIR
from npu_preflight.model import DeviceChoice, DeviceKind
from npu_preflight.proc import Containment, ProcOutcome, run_supervised, tail
from npu_preflight.sandbox.classify import Classified, classify

if TYPE_CHECKING:
    from npu_preflight.probe import ProbeResult

CHILD = Path(__file__).with_name("child.py")
MAX_RESULT_BYTES = 4 * 1024 * 1024
EventFn = Callable[[Mapping[str, Any]], None]


@dataclass(frozen=True)
class InitRequest:
    """Everything the sandboxed init needs, as plain values."""

    weights_dir: Path
    model_config: Mapping[str, Any]
    device: DeviceKind
    dtype: str
    generator: str = "transformers"
    python: str | None = None
    timeout: float = 600.0
    memory_limit: int | None = None
    trust_remote_code: bool = False
    kv: Mapping[str, int] | None = None
    weights_bytes: int = 0
    env: Mapping[str, str] = field(default_factory=dict)
    extra_sys_path: tuple[str, ...] = ()
    on_event: EventFn | None = None
    containment: Containment = "auto"

    def child_request(self) -> dict[str, Any]:
        """The JSON the child reads."""
        return {
            "weights_dir": str(self.weights_dir),
            "model_config": dict(self.model_config),
            "device": self.device,
            "dtype": self.dtype,
            "generator": self.generator,
            "generators_dir": str(GENERATORS_DIR),
            "extra_sys_path": list(self.extra_sys_path),
            "trust_remote_code": self.trust_remote_code,
            "kv": dict(self.kv) if self.kv else None,
            "weights_bytes": self.weights_bytes,
        }


@dataclass(frozen=True)
class InitOutcome:
    """What the sandboxed init did."""

    classified: Classified
    generator: str
    device: str
    proc: ProcOutcome | None
    result: Mapping[str, Any] | None
    events: tuple[Mapping[str, Any], ...] = ()
    stderr_tail: str = ""
    memory_limit: int | None = None
    timeout: float = 0.0
    weights_changes: tuple[str, ...] = ()
    result_problem: str | None = None

    @property
    def last_stage(self) -> str | None:
        """The last stage the child reported (how far a killed child got)."""
        stages = [e.get("stage") for e in self.events if e.get("stage") not in (None, "done")]
        return str(stages[-1]) if stages else None

    @property
    def stage(self) -> str | None:
        """Where it failed: the result's stage for a handled error, else the last event's."""
        if self.classified.outcome == "ok":
            return None
        s = (self.result or {}).get("stage")
        return str(s) if isinstance(s, str) else self.last_stage

    @property
    def _data(self) -> Mapping[str, Any]:
        d = (self.result or {}).get("data")
        return d if isinstance(d, Mapping) else {}

    @property
    def peak_bytes(self) -> int | None:
        """Peak memory the generator reported (after a clean exit), else the tree's or the child's peak."""
        v = self._data.get("peak_bytes")
        if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
            return v
        if self.proc is None:
            return None
        return self.proc.peak_tree_bytes or self.proc.peak_rss_bytes

    @property
    def peak_source(self) -> str | None:
        """Where :attr:`peak_bytes` comes from."""
        v = self._data.get("peak_bytes")
        if isinstance(v, int) and not isinstance(v, bool):
            return str(self._data.get("peak_source") or "the generator")
        if self.proc is None:
            return None
        if self.proc.peak_tree_bytes:
            return "peak memory of the init's whole process tree (sandbox)"
        return "peak RSS of the init process (wait4)" if self.proc.peak_rss_bytes else None

    def stages(self) -> list[dict[str, Any]]:
        """Stage durations: from the result of a clean exit, else rebuilt from the events (the
        stage that never finished has no duration)."""
        rs = (self.result or {}).get("stages")
        if isinstance(rs, list) and rs:
            return [dict(s) for s in rs if isinstance(s, Mapping) and s.get("stage") != "start"]
        out: list[dict[str, Any]] = []
        prev: Mapping[str, Any] | None = None
        for e in self.events:
            t = e.get("t")
            if prev is None:
                prev = e
                continue
            if e.get("stage") != prev.get("stage"):
                pt = prev.get("t")
                dur = round(t - pt, 4) if isinstance(t, (int, float)) and isinstance(pt, (int, float)) else None
                out.append({"stage": str(prev.get("stage")), "duration_s": dur})
                prev = e
        if prev is not None and prev.get("stage") != "done":
            out.append({"stage": str(prev.get("stage")), "duration_s": None})
        return [s for s in out if s["stage"] not in ("done", "start")]

    def to_dict(self) -> dict[str, Any]:
        """The report's ``init`` section."""
        err = (self.result or {}).get("error")
        p = self.proc
        return {
            "generator": self.generator,
            "device": self.device,
            "outcome": self.classified.outcome,
            "summary": self.classified.summary,
            "requested_bytes": self.classified.requested_bytes,
            "library": self.classified.library,
            "stage": self.stage,
            "duration_s": round(p.duration_s, 3) if p else None,
            "stages": self.stages(),
            "peak_bytes": self.peak_bytes,
            "peak_source": self.peak_source,
            "returncode": p.returncode if p else None,
            "signal": p.signal_name if p else None,
            "timed_out": p.timed_out if p else False,
            "memory_limit": self.memory_limit,
            "timeout_s": self.timeout,
            "error": {k: err.get(k) for k in ("type", "message")} if isinstance(err, Mapping) else None,
            "stderr_tail": self.stderr_tail[-3000:],
            "data": {k: v for k, v in self._data.items() if k != "sampler"},
            "containment": dict(p.containment) if p else {},
            "peak_tree_bytes": p.peak_tree_bytes if p else None,
            "survivors_killed": p.survivors_killed if p else 0,
            "weights_changes": list(self.weights_changes),
            "result_problem": self.result_problem,
        }


def choose_device(option: DeviceChoice, probe: ProbeResult | None) -> DeviceKind:
    """The device the init runs on: ``--device``, or for ``auto`` what the probe found."""
    if option != "auto":
        return option
    if probe is not None and not probe.failure:
        if probe.npu_devices:
            return "npu"
        if probe.cuda_devices:
            return "cuda"
    return "cpu"


def read_result(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The child's result, validated to the shape it must have (a child can write anything)."""
    try:
        doc = load_file(path, max_bytes=MAX_RESULT_BYTES, max_depth=32).value
    except JsonLoadError as exc:
        return None, None if exc.kind == "unreadable" else f"the result file is unusable ({exc.message})"
    if not isinstance(doc, dict):
        return None, f"the result is a JSON {type(doc).__name__}, not an object"
    if doc.get("outcome") not in ("ok", "error"):
        return None, "the result's outcome is neither ok nor error"
    stage = doc.get("stage")
    if stage is not None and not isinstance(stage, str):
        return None, "the result's stage is not a string"
    err = doc.get("error")
    if err is not None and not (isinstance(err, dict) and all(isinstance(v, (str, type(None))) for v in err.values())):
        return None, "the result's error is not an object of strings"
    stages = doc.get("stages")
    if stages is not None and not (
        isinstance(stages, list)
        and all(
            isinstance(s, dict)
            and isinstance(s.get("stage"), str)
            and (s.get("duration_s") is None or isinstance(s.get("duration_s"), (int, float)))
            for s in stages
        )
    ):
        return None, "the result's stages are malformed"
    data = doc.get("data")
    if data is not None and not isinstance(data, dict):
        return None, "the result's data is not an object"
    if doc["outcome"] == "error" and not isinstance(err, dict):
        return None, "an error result without an error"
    return doc, None


def run_init(req: InitRequest) -> InitOutcome:
    """Run the init contained and classify the outcome. Ctrl-C kills the tree and raises
    :class:`~npu_preflight.errors.Interrupted` carrying the (``interrupted``) outcome."""
    gen, device = req.generator, req.device
    python = req.python or sys.executable
    before = fingerprint(req.weights_dir)
    with tempfile.TemporaryDirectory(prefix="preflight-init-") as tmp:
        t = Path(tmp)
        reqf, res = t / "request.json", t / "result.json"
        reqf.write_text(json.dumps(req.child_request(), default=str), encoding="utf-8")
        env = dict(req.env)
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        proc = run_supervised(
            [python, str(CHILD), str(reqf), str(res)],
            env=env,
            timeout=req.timeout,
            workdir=t,
            memory_limit=req.memory_limit,
            weights_dir=req.weights_dir,
            containment=req.containment,
            on_event=req.on_event,
        )
        result, problem = read_result(res)
        err_tail = tail(t / "stderr", 12000)
        out_tail = tail(t / "stdout", 2000)
    changed = tuple(changes(before, fingerprint(req.weights_dir)))
    trusted = result if proc.returncode == 0 else None
    c = classify(
        trusted,
        proc,
        stderr=err_tail + "\n" + out_tail,
        memory_limit=req.memory_limit,
        wrote_result=result is not None or problem is not None,
    )
    outcome = InitOutcome(
        c,
        gen,
        device,
        proc,
        trusted,
        proc.events,
        err_tail,
        req.memory_limit,
        req.timeout,
        changed,
        problem if proc.returncode == 0 else None,
    )
    if c.outcome == "interrupted":
        raise Interrupted(outcome)
    return outcome
