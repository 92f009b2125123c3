"""The sandboxed generator init (DESIGN.md §4): request in, result out, progress events, limits.

The parent stays small: it writes a request, starts ``child.py`` under the deployment's
interpreter in its own session with RLIMIT_AS and no core dumps, polls, kills the whole process
group on timeout, and classifies whatever is left. It never raises for anything the child does.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from npu_preflight.generators import GENERATORS_DIR
from npu_preflight.model import DeviceChoice, DeviceKind
from npu_preflight.proc import ProcOutcome, run_isolated, tail
from npu_preflight.sandbox.classify import Classified, classify

if TYPE_CHECKING:
    from npu_preflight.probe import ProbeResult

CHILD = Path(__file__).with_name("child.py")
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
    result: dict[str, Any] | None
    events: list[dict[str, Any]] = field(default_factory=list)
    stderr_tail: str = ""
    memory_limit: int | None = None
    timeout: float = 0.0

    @property
    def last_stage(self) -> str | None:
        """The last stage the child reported (how far a killed child got)."""
        stages = [e.get("stage") for e in self.events if e.get("stage") not in (None, "done")]
        return stages[-1] if stages else None

    @property
    def peak_bytes(self) -> int | None:
        """Peak memory the generator reported, else the child's peak RSS."""
        data = (self.result or {}).get("data") or {}
        if isinstance(data.get("peak_bytes"), int):
            return int(data["peak_bytes"])
        return self.proc.peak_rss_bytes if self.proc else None

    @property
    def peak_source(self) -> str | None:
        """Where :attr:`peak_bytes` comes from."""
        data = (self.result or {}).get("data") or {}
        if isinstance(data.get("peak_bytes"), int):
            return str(data.get("peak_source"))
        return "peak RSS of the init process (wait4)" if self.proc and self.proc.peak_rss_bytes else None

    def stages(self) -> list[dict[str, Any]]:
        """Stage durations (from the result, else rebuilt from the events)."""
        if self.result and self.result.get("stages"):
            return [s for s in self.result["stages"] if s.get("stage") != "start"]
        out: list[dict[str, Any]] = []
        prev: dict[str, Any] | None = None
        for e in self.events:
            if prev is not None and e.get("stage") != prev.get("stage"):
                out.append({"stage": prev["stage"], "duration_s": round(e["t"] - prev["t"], 4)})
                prev = e
            elif prev is None:
                prev = e
        if prev is not None and self.proc is not None:
            out.append({"stage": prev["stage"], "duration_s": None})
        return out

    def to_dict(self) -> dict[str, Any]:
        """The report's ``init`` section."""
        err = (self.result or {}).get("error")
        return {
            "generator": self.generator,
            "device": self.device,
            "outcome": self.classified.outcome,
            "summary": self.classified.summary,
            "requested_bytes": self.classified.requested_bytes,
            "library": self.classified.library,
            "stage": (self.result or {}).get("stage") or (self.last_stage if self.classified.outcome != "ok" else None),
            "duration_s": round(self.proc.duration_s, 3) if self.proc else 0.0,
            "stages": self.stages(),
            "peak_bytes": self.peak_bytes,
            "peak_source": self.peak_source,
            "returncode": self.proc.returncode if self.proc else None,
            "signal": self.proc.signal_name if self.proc else None,
            "timed_out": self.proc.timed_out if self.proc else False,
            "memory_limit": self.memory_limit,
            "timeout_s": self.timeout,
            "error": {k: err.get(k) for k in ("type", "message")} if isinstance(err, dict) else None,
            "stderr_tail": self.stderr_tail[-3000:],
            "data": {k: v for k, v in ((self.result or {}).get("data") or {}).items() if k != "sampler"},
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


def run_init(req: InitRequest) -> InitOutcome:
    """Run the init in the sandbox and classify the outcome."""
    gen, device = req.generator, req.device
    python = req.python or sys.executable
    with tempfile.TemporaryDirectory(prefix="preflight-init-") as tmp:
        t = Path(tmp)
        reqf, res, ev = t / "request.json", t / "result.json", t / "events.jsonl"
        reqf.write_text(json.dumps(req.child_request(), default=str), encoding="utf-8")
        ev.touch()
        env = dict(req.env)
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        seen = [0]
        on_event = req.on_event

        def poll() -> None:
            if on_event is None:
                return
            try:
                with open(ev, encoding="utf-8") as fh:
                    fh.seek(seen[0])
                    chunk = fh.read()
                    seen[0] = fh.tell()
            except OSError:
                return
            for line in chunk.splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    on_event(event)

        try:
            proc = run_isolated(
                [python, str(CHILD), str(reqf), str(res), str(ev)],
                env=env,
                timeout=req.timeout,
                stdout_path=t / "stdout",
                stderr_path=t / "stderr",
                memory_limit=req.memory_limit,
                on_poll=poll,
            )
        except OSError as exc:
            c = Classified("error", f"cannot start {python}: {exc.strerror or exc}")
            return InitOutcome(c, gen, device, None, None, memory_limit=req.memory_limit, timeout=req.timeout)
        result = None
        try:
            result = json.loads(res.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            result = None
        events = []
        for line in ev.read_text(encoding="utf-8", errors="replace").splitlines()[-2000:]:
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        err_tail = tail(t / "stderr", 12000)
        out_tail = tail(t / "stdout", 2000)
    c = classify(
        result,
        returncode=proc.returncode,
        sig=proc.signal,
        timed_out=proc.timed_out,
        stderr=err_tail + "\n" + out_tail,
        memory_limit=req.memory_limit,
        peak_rss=proc.peak_rss_bytes,
    )
    return InitOutcome(c, gen, device, proc, result, events, err_tail, req.memory_limit, req.timeout)
