"""The sandboxed generator init (DESIGN.md §4): request in, result out, progress events, containment.

The tool writes a request, fingerprints the weights folder, and runs ``child.py`` under the
deployment's interpreter through the sandbox supervisor (``supervisor.py``; see ``npu_preflight.proc``),
which contains the whole process tree and reports how the child ended. The outcome comes from that
exit, checked against the child's result file (read with a byte cap and validated); the folder is
fingerprinted again afterwards and any change is reported. Nothing the child does raises here;
Ctrl-C kills the tree and still yields an outcome (``interrupted``).

With ``world_size`` > 1 the supervised command is torch's own elastic launcher
(``python -m torch.distributed.run``, what ``torchrun`` runs) starting this node's ranks; each rank
writes its result, events and fault file into a directory, and :func:`collect_ranks` turns them,
with the launcher's failure summary, into one outcome per rank: ok, its own classified failure,
stopped by the launcher after another rank failed, killed, or still short of the collective when
the time ran out.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from npu_preflight.errors import Interrupted
from npu_preflight.fingerprint import Mark, changes, fingerprint
from npu_preflight.formats.jsonload import JsonLoadError, load_file
from npu_preflight.generators import GENERATORS_DIR
from npu_preflight.model import DeviceChoice, DeviceKind
from npu_preflight.proc import Containment, ProcOutcome, Supervised, tail
from npu_preflight.records import frozen
from npu_preflight.sandbox.child import INIT_STARTS
from npu_preflight.sandbox.classify import Classified, classify, from_result

if TYPE_CHECKING:
    from npu_preflight.probe import ProbeResult

CHILD = Path(__file__).with_name("child.py")
MAX_RESULT_BYTES = 4 * 1024 * 1024
EventFn = Callable[[Mapping[str, Any]], None]


@frozen
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
    world_size: int = 1  # ranks of the whole job; > 1 launches them with torch.distributed.run
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None  # host:port of the c10d rendezvous (multi-node)
    rdzv_id: str = "npu-preflight"
    visible_devices: tuple[int, ...] = ()
    predicted_peak_bytes: int | None = None  # the plan's per-rank peak, for the per-rank comparison
    note: str | None = None  # why the init runs differently from what world_size asks

    @property
    def multi_rank(self) -> bool:
        """Whether the init runs as several ranks."""
        return self.world_size > 1

    @property
    def local_ranks(self) -> int:
        """Ranks on this node."""
        return max(self.world_size // max(self.nnodes, 1), 1)

    @property
    def dist_backend(self) -> str:
        """The collective backend for the device: hccl on NPU, nccl on CUDA, gloo on CPU."""
        return {"npu": "hccl", "cuda": "nccl"}.get(self.device, "gloo")

    def launch_command(self, python: str, request: Path, results: Path) -> list[str]:
        """``python -m torch.distributed.run …`` starting this node's ranks of the child."""
        cmd = [
            python,
            "-m",
            "torch.distributed.run",
            f"--nnodes={self.nnodes}",
            f"--nproc-per-node={self.local_ranks}",
            "--max-restarts=0",
            "--monitor-interval=0.2",
        ]
        if self.nnodes > 1 or self.rdzv_endpoint:
            cmd += [
                f"--node-rank={self.node_rank}",
                "--rdzv-backend=c10d",
                f"--rdzv-endpoint={self.rdzv_endpoint}",
                f"--rdzv-id={self.rdzv_id}",
            ]
        else:
            cmd.append("--standalone")
        return [*cmd, str(CHILD), str(request), str(results)]

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
            "visible_devices": list(self.visible_devices),
            "dist_backend": self.dist_backend,
        }


@frozen
class RankOutcome:
    """One rank of a multi-rank init: how it ended and what it measured."""

    rank: int
    local_rank: int
    node_rank: int
    classified: Classified
    stage: str | None  # where it failed, or the last stage it reached
    stages: tuple[Mapping[str, Any], ...] = ()
    peak_bytes: int | None = None
    peak_source: str | None = None
    collective_s: float | None = None
    reached_collective: bool = False
    exitcode: int | None = None  # as the launcher reported it (None: not reported)
    evidence: str = ""
    #: the largest resident size the supervisor saw the rank's process with (every 100 ms)
    sampled_rss_bytes: int | None = None

    def to_dict(self, predicted: int | None = None) -> dict[str, Any]:
        """The report's ``init.ranks[]`` entry."""
        err = None
        if self.peak_bytes and predicted:
            err = round((predicted - self.peak_bytes) / self.peak_bytes * 100, 2)
        return {
            "rank": self.rank,
            "local_rank": self.local_rank,
            "node_rank": self.node_rank,
            "outcome": self.classified.outcome,
            "summary": self.classified.summary,
            "stage": self.stage,
            "stages": [dict(s) for s in self.stages],
            "peak_bytes": self.peak_bytes,
            "peak_source": self.peak_source,
            "predicted_peak_bytes": predicted,
            "prediction_error_pct": err,
            "collective_s": self.collective_s,
            "reached_collective": self.reached_collective,
            "exitcode": self.exitcode,
            "evidence": self.evidence[-2000:],
        }


@frozen
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
    ranks: tuple[RankOutcome, ...] = ()
    world_size: int = 1
    nnodes: int = 1
    node_rank: int = 0
    predicted_peak_bytes: int | None = None
    note: str | None = None  # why the init ran differently from what world_size asks
    probe_shared: bool = False  # the environment probe ran in this init's process, before it

    @property
    def failed_ranks(self) -> list[RankOutcome]:
        """Ranks that failed on their own (not those the launcher stopped afterwards)."""
        return [r for r in self.ranks if r.classified.outcome not in ("ok", "stopped")]

    @property
    def missing_at_collective(self) -> list[RankOutcome]:
        """Ranks that never reached the collective while others waited there."""
        if not any(r.reached_collective for r in self.ranks):
            return []
        return [r for r in self.ranks if not r.reached_collective and r.classified.outcome != "ok"]

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
        """Peak memory the generator reported (after a clean exit), else the tree's or the child's
        peak; with several ranks, the largest rank's own peak."""
        rank_peaks = [r.peak_bytes for r in self.ranks if r.peak_bytes is not None]
        if rank_peaks:
            return max(rank_peaks)
        v = self._data.get("peak_bytes")
        if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
            return v
        if self.proc is None:
            return None
        return self.proc.peak_tree_bytes or self.proc.peak_rss_bytes

    @property
    def peak_source(self) -> str | None:
        """Where :attr:`peak_bytes` comes from."""
        rank_peaks = [r for r in self.ranks if r.peak_bytes is not None]
        if rank_peaks:
            top = max(rank_peaks, key=lambda r: r.peak_bytes or 0)
            return f"rank {top.rank}: {top.peak_source or 'the generator'}"
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
            "world_size": self.world_size,
            "nnodes": self.nnodes,
            "node_rank": self.node_rank,
            "launcher": "torch.distributed.run" if self.ranks else None,
            "ranks": [r.to_dict(self.predicted_peak_bytes) for r in self.ranks],
            "note": self.note,
            "probe_in_process": self.probe_shared,
            "pid": pid
            if isinstance(pid := (self.result or {}).get("pid"), int) and not isinstance(pid, bool)
            else None,
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


#: One failed worker in torch.distributed.run's summary (ChildFailedError.format_msg):
#: ``rank      : 1 (local_rank: 1)`` then ``exitcode  : -9 (pid: 123)``.
_AGENT_FAILURE = re.compile(r"rank\s*:\s*(\d{1,7})\s*\(local_rank:\s*(\d{1,7})\)\s*\n\s*exitcode\s*:\s*(-?\d{1,4})")
_ROOT_CAUSE = re.compile(r"Root Cause \(first observed failure\):[^\n]*\n(?:[^\n]*\n){0,4}?\s*rank\s*:\s*(\d{1,7})")
#: Whatever one rank needs at most beyond --memory-limit's per-rank share: the launcher process.
LAUNCHER_BYTES = 768 * 1024 * 1024
MAX_EVENT_BYTES = 1024 * 1024


def agent_failures(stderr: str) -> tuple[dict[int, int], int | None]:
    """Failed ranks and their exit codes from the launcher's summary, and the root-cause rank."""
    fails = {int(m.group(1)): int(m.group(3)) for m in _AGENT_FAILURE.finditer(stderr)}
    m = _ROOT_CAUSE.search(stderr)
    return fails, int(m.group(1)) if m else None


def _read_events(path: Path) -> list[dict[str, Any]]:
    """A rank's events file (capped: the last MAX_EVENT_BYTES), one JSON object per line."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(size - MAX_EVENT_BYTES, 0))
            raw = fh.read(MAX_EVENT_BYTES)
    except OSError:
        return []
    out = []
    for line in raw.splitlines()[-2000:]:
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if isinstance(e, dict) and isinstance(e.get("stage"), str):
            out.append(e)
    return out


def _rank_stages(events: list[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    out: list[dict[str, Any]] = []
    prev: dict[str, Any] | None = None
    for e in events:
        if prev is not None and e["stage"] != prev["stage"]:
            t, pt = e.get("t"), prev.get("t")
            dur = round(t - pt, 4) if isinstance(t, (int, float)) and isinstance(pt, (int, float)) else None
            out.append({"stage": prev["stage"], "duration_s": dur})
        if prev is None or e["stage"] != prev["stage"]:
            prev = e
    if prev is not None and prev["stage"] not in ("done", "stopped"):
        out.append({"stage": prev["stage"], "duration_s": None})
    return tuple(s for s in out if s["stage"] not in ("start", "done", "stopped"))


def _signal_words(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def classify_rank(
    rank: int,
    result: Mapping[str, Any] | None,
    events: list[dict[str, Any]],
    fault: str,
    exitcode: int | None,
    proc: ProcOutcome,
    root: int | None,
) -> Classified:
    """One rank's outcome from what it wrote, checked against how the launcher saw it end."""
    seen = [e["stage"] for e in events]
    last = next((st for st in reversed(seen) if st not in ("done", "stopped")), None)
    fatal = "Fatal Python error" in fault
    if proc.interrupted:
        return Classified("interrupted", f"the run was interrupted ({proc.interrupted})")
    teardown = (-signal.SIGKILL, -signal.SIGTERM, 128 + signal.SIGTERM)
    if root is not None and root != rank and exitcode in teardown and not fatal:
        # the launcher stops the others after the first failure: SIGTERM, then SIGKILL for a rank
        # blocked in a collective (its Python handler cannot run there)
        return Classified("stopped", f"stopped by the launcher after rank {root} failed (at stage {last})")
    if exitcode is not None and exitcode < 0 and exitcode != -signal.SIGTERM:
        name = _signal_words(exitcode)
        if exitcode == -signal.SIGKILL and (proc.oom_kills or proc.memory_killed):
            return Classified("oom-host", f"killed by {name} at stage {last}: the memory cap's OOM killer")
        detail = fault.strip().splitlines()[0][:200] if fatal else ""
        return Classified("crash", f"died with {name} at stage {last}" + (f" ({detail})" if detail else ""))
    if result is not None and result.get("outcome") == "ok" and exitcode in (0, None) and not fatal:
        return from_result(result)
    if "stopped" in seen or exitcode in (128 + signal.SIGTERM, -signal.SIGTERM):
        by = f" after rank {root} failed" if root is not None and root != rank else ""
        return Classified("stopped", f"stopped by the launcher{by} (at stage {last})")
    if result is not None and result.get("outcome") == "error":
        return from_result(result)
    if fatal:
        return Classified("crash", f"crashed at stage {last}: {fault.strip().splitlines()[0][:200]}")
    if proc.timed_out:
        return Classified("timeout", f"still at stage {last} when the time limit ran out")
    if proc.memory_killed or proc.oom_kills:
        return Classified("oom-host", f"killed at stage {last} with the tree over the memory cap")
    return Classified("error", f"ended at stage {last} without a result")


_RANK_FILE = re.compile(r"^(?:events|result|fault)-(\d{1,7})\.(?:jsonl|json|txt)$")


def _ranks_present(results: Path, req: InitRequest, fails: Mapping[int, int]) -> list[int]:
    """The global ranks this node ran. A single node knows them in advance; with c10d rendezvous
    the group assigns node order as agents join (``--node-rank`` is ignored there), so they are
    read from the files the ranks wrote and the launcher's summary."""
    if req.nnodes == 1:
        return list(range(req.local_ranks))
    found = set(fails)
    try:
        for entry in results.iterdir():
            m = _RANK_FILE.match(entry.name)
            if m:
                found.add(int(m.group(1)))
    except OSError:
        pass
    return sorted(found)[: req.local_ranks]


def collect_ranks(results: Path, req: InitRequest, proc: ProcOutcome, stderr: str) -> tuple[RankOutcome, ...]:
    """This node's ranks, each with its outcome, stages, peak and collective time."""
    fails, root = agent_failures(stderr)
    launcher_ok = proc.returncode == 0 and not proc.timed_out and proc.signal is None
    out = []
    for rank in _ranks_present(results, req, fails):
        result, _problem = read_result(results / f"result-{rank}.json")
        events = _read_events(results / f"events-{rank}.jsonl")
        start = next((e for e in events if e.get("stage") == "start"), {})
        lr, gr, pid = start.get("local_rank"), start.get("group_rank"), start.get("pid")
        local: int = lr if isinstance(lr, int) else rank % req.local_ranks
        node: int = gr if isinstance(gr, int) else req.node_rank
        fault = tail(results / f"fault-{rank}.txt", 4000)
        exitcode = fails.get(rank, 0 if launcher_ok else None)
        c = classify_rank(rank, result, events, fault, exitcode, proc, root)
        data = (result or {}).get("data") if isinstance((result or {}).get("data"), Mapping) else {}
        peak = data.get("peak_bytes") if isinstance(data, Mapping) else None
        coll = data.get("collective_s") if isinstance(data, Mapping) else None
        err = (result or {}).get("error") if isinstance((result or {}).get("error"), Mapping) else None
        evidence = ""
        if err:
            evidence = f"{err.get('type')}: {err.get('message')}"
        elif fault.strip():
            evidence = fault.strip()
        seen = [e["stage"] for e in events]
        stage = (result or {}).get("stage") if c.outcome != "ok" else None
        if c.outcome != "ok" and not isinstance(stage, str):
            stage = next((st for st in reversed(seen) if st not in ("done", "stopped")), None)
        out.append(
            RankOutcome(
                rank=rank,
                local_rank=local,
                node_rank=node,
                classified=c,
                stage=stage if isinstance(stage, str) else None,
                stages=_rank_stages(events),
                peak_bytes=peak if isinstance(peak, int) and not isinstance(peak, bool) and peak >= 0 else None,
                peak_source=str(data.get("peak_source"))
                if isinstance(data, Mapping) and data.get("peak_source")
                else None,
                collective_s=float(coll) if isinstance(coll, (int, float)) and not isinstance(coll, bool) else None,
                reached_collective="collective" in seen,
                exitcode=exitcode,
                evidence=evidence,
                sampled_rss_bytes=proc.peak_rss_by_pid.get(pid) if type(pid) is int else None,
            )
        )
    if root is None and (proc.oom_kills or proc.memory_killed):
        out = _blame_the_largest(out)
    return tuple(out)


def _blame_the_largest(ranks: list[RankOutcome]) -> list[RankOutcome]:
    """When the tree went over its memory cap and the launcher named no rank (the OOM killer may
    take the launcher too, or the watchdog the whole tree), every rank reads "killed with the tree
    over the memory cap". The one the supervisor saw holding the most memory is the culprit; the
    others were killed with it and read as stopped."""
    killed = [r for r in ranks if r.classified.outcome == "oom-host" and r.exitcode is None]
    sized = [r for r in killed if r.sampled_rss_bytes]
    if len(killed) < 2 or not sized:
        return ranks
    big = max(sized, key=lambda r: r.sampled_rss_bytes or 0)
    mib = (big.sampled_rss_bytes or 0) / 2**20
    out = []
    for r in ranks:
        if r is big:
            why = f"{r.classified.summary}; it held the most memory of the ranks ({mib:,.0f} MiB)"
            r = replace(r, classified=replace(r.classified, summary=why))
        elif r in killed:
            why = f"killed with the tree at stage {r.stage} after rank {big.rank} took it over the memory cap"
            r = replace(r, classified=Classified("stopped", why))
        out.append(r)
    return out


def overall(ranks: tuple[RankOutcome, ...], proc: ProcOutcome, stderr: str, req: InitRequest) -> Classified:
    """One outcome for the group: ok when every rank is; else the root cause, named by rank."""
    if proc.interrupted:
        return Classified("interrupted", f"the run was interrupted ({proc.interrupted}); every rank was killed")
    if len(ranks) == req.local_ranks and all(r.classified.outcome == "ok" for r in ranks) and proc.returncode == 0:
        slowest = max((r.collective_s or 0.0) for r in ranks)
        return Classified(
            "ok",
            f"all {len(ranks)} rank(s) on this node initialised, ran the forward pass and an all_reduce "
            f"({slowest * 1000:.0f} ms at most)",
        )
    if not any(r.stages for r in ranks):  # the launcher itself failed (no torch, a rendezvous error …)
        c = classify(None, proc, stderr=stderr, memory_limit=req.memory_limit)
        return replace(c, summary=f"the launcher (torch.distributed.run) failed: {c.summary}")
    if proc.timed_out:
        waiting = [r for r in ranks if r.reached_collective]
        missing = [r for r in ranks if not r.reached_collective and r.classified.outcome != "ok"]
        if waiting and missing:
            names = ", ".join(f"rank {r.rank} (at {r.stage})" for r in missing)
            return Classified("timeout", f"the collective never completed: {names} never arrived; the tree was killed")
        return Classified("timeout", "the init did not finish within the time limit; every rank was killed")
    _fails, root = agent_failures(stderr)
    failed = [r for r in ranks if r.classified.outcome not in ("ok", "stopped")]
    pick = next((r for r in failed if r.rank == root), failed[0] if failed else None)
    if pick is None:
        return Classified("error", f"the launcher exited with status {proc.returncode} although no rank failed")
    c = pick.classified
    return replace(c, summary=f"rank {pick.rank}: {c.summary}")


def _child_env(env: Mapping[str, str]) -> dict[str, str]:
    """The init child's environment: the user's, offline, unbuffered."""
    out = dict(env)
    out.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1")
    out.setdefault("TOKENIZERS_PARALLELISM", "false")
    return out


def run_init(req: InitRequest) -> InitOutcome:
    """Run the init contained and classify the outcome. Ctrl-C kills the tree and raises
    :class:`~npu_preflight.errors.Interrupted` carrying the (``interrupted``) outcome."""
    if req.multi_rank:
        return _run_ranks(req)
    python = req.python or sys.executable
    before = fingerprint(req.weights_dir)
    with tempfile.TemporaryDirectory(prefix="preflight-init-") as tmp:
        t = Path(tmp)
        reqf, res = t / "request.json", t / "result.json"
        reqf.write_text(json.dumps(req.child_request(), default=str), encoding="utf-8")
        proc = Supervised(
            [python, str(CHILD), str(reqf), str(res)],
            env=_child_env(req.env),
            timeout=req.timeout,
            workdir=t,
            memory_limit=req.memory_limit,
            weights_dir=req.weights_dir,
            containment=req.containment,
            on_event=req.on_event,
        ).wait()
        return _single_outcome(req, proc, t, before, probe_shared=False)


def _single_outcome(
    req: InitRequest, proc: ProcOutcome, workdir: Path, before: dict[str, Mark], *, probe_shared: bool
) -> InitOutcome:
    """The outcome of a one-process init from how it ended and what it left in ``workdir``."""
    result, problem = read_result(workdir / "result.json")
    err_tail = tail(workdir / "stderr", 12000)
    out_tail = tail(workdir / "stdout", 2000)
    if probe_shared:  # the probe's output before the init is not the init's (its warnings could mislead)
        err_tail, out_tail = _after_probe(err_tail), _after_probe(out_tail)
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
        req.generator,
        req.device,
        proc,
        trusted,
        proc.events,
        err_tail,
        req.memory_limit,
        req.timeout,
        changed,
        problem if proc.returncode == 0 else None,
        predicted_peak_bytes=req.predicted_peak_bytes,
        note=req.note,
        probe_shared=probe_shared,
    )
    if c.outcome == "interrupted":
        raise Interrupted(outcome)
    return outcome


def _after_probe(text: str) -> str:
    """The init's part of an output tail shared with the probe before it (all of it when the tail
    no longer reaches back to the mark)."""
    _probe, mark, rest = text.partition(INIT_STARTS + "\n")
    return rest if mark else text


#: How much longer than the probe's own limit the tool waits for a started child to say it is
#: ready (the supervisor enforces the limit; this only bounds the tool's wait if it did not).
READY_GRACE_S = 15.0


class WarmInit:
    """One process for the environment probe and a one-process init, so torch (and transformers)
    are imported once per run instead of twice.

    It is started when the run begins (``Context.prefetch``), and everything its process is started
    with comes from the options alone: interpreter, environment, memory cap, containment, the
    read-only weights folder. The probe runs first in it, under the probe's time limit, and the
    child then waits (with no limit: the tool decides what happens next). :meth:`run` writes the
    request the plan produced, restarts the clock with the init's limit, and says ``go``.

    It is used only where it gives what separate processes would:

    * its probe counts only if every probe step succeeded. A step that failed here may have failed
      only because of the init's memory cap, so the separate, uncapped probe then runs and is
      believed. A probe that ran out of time is reported as such (running it again would double
      the wait);
    * the request must be for one process with the settings the child was started with.

    Otherwise it is closed (its tree killed and reaped) and the separate probe or init runs."""

    def __init__(
        self,
        *,
        python: str | None,
        env: Mapping[str, str],
        memory_limit: int | None,
        containment: Containment,
        weights_dir: Path,
        tokenizer_json: Path | None,
        probe_timeout: float,
    ) -> None:
        from npu_preflight.probe import SCRIPT

        self.python = python or sys.executable
        self.key = _warm_key(python, env, memory_limit, containment, weights_dir)
        self.probe_timeout = probe_timeout
        self.before = fingerprint(weights_dir)
        self._tmp = tempfile.TemporaryDirectory(prefix="preflight-init-")
        self.dir = Path(self._tmp.name)
        self.on_event: EventFn | None = None
        cmd = [
            self.python,
            str(CHILD),
            "--probe-first",
            str(SCRIPT),
            str(self.dir / "probe.json"),
            str(tokenizer_json or ""),
            str(self.dir / "request.json"),
            str(self.dir / "result.json"),
        ]
        try:
            self.proc = Supervised(
                cmd,
                env=_child_env(env),
                timeout=probe_timeout,
                workdir=self.dir,
                memory_limit=memory_limit,
                weights_dir=weights_dir,
                containment=containment,
                on_event=self._event,
                held=True,
            )
        except BaseException:
            self._tmp.cleanup()
            raise
        self.state = "probing"  # → waiting (probe taken) → done

    def _event(self, ev: Mapping[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(ev)

    def probe(self) -> ProbeResult | None:
        """The probe the child ran, when it can be believed; None (and the child closed) when the
        separate probe must run instead."""
        from npu_preflight.probe import ProbeResult, read_probe_result

        if self.state != "probing":
            return None
        if not self.proc.wait_ready(self.probe_timeout + READY_GRACE_S):
            outcome = self.close()
            if outcome is not None and outcome.timed_out:
                why = f"timed out after {self.probe_timeout:.0f}s"
                return ProbeResult({}, outcome, "", why, self.python, in_init=True)
            return None
        data, _why = read_probe_result(self.dir / "probe.json")
        if data is None or data.get("errors"):
            self.close()
            return None
        self.state = "waiting"
        containment = dict(self.proc.started.get("containment") or {})
        # how long the probe took, by the supervisor: not when this side got round to asking
        took = self.proc.ready_after or 0.0
        outcome = ProcOutcome(None, None, False, took, None, containment=containment)
        return ProbeResult(data, outcome, "", None, self.python, in_init=True)

    def run(self, req: InitRequest) -> InitOutcome | None:
        """The init in the waiting child; None when this child cannot run ``req``, or ended before
        it took it (the caller closes it and runs the init on its own)."""
        if self.state != "waiting" or req.multi_rank or self.key != _warm_key_of(req):
            return None
        self.state = "done"
        try:
            (self.dir / "request.json").write_text(json.dumps(req.child_request(), default=str), encoding="utf-8")
            self.on_event = req.on_event
            self.proc.restart_clock(req.timeout)
            self.proc.tell(b"go\n")
            proc = self.proc.wait()
            if proc.returncode == 0 and not proc.events and not (self.dir / "result.json").exists():
                # It ended on its own while it waited (child.py exits 0 when its stdin closes) and
                # never took the request: nothing of the init ran, so it runs afresh.
                return None
            return _single_outcome(req, proc, self.dir, self.before, probe_shared=True)
        finally:
            self._tmp.cleanup()

    def close(self) -> ProcOutcome | None:
        """Kill and reap the child if it is still there; how it ended (None if already done)."""
        if self.state == "done":
            return None
        self.state = "done"
        try:
            self.proc.terminate()
            return self.proc.wait()
        finally:
            self._tmp.cleanup()


def _warm_key(
    python: str | None, env: Mapping[str, str], memory_limit: int | None, containment: str, weights_dir: Path
) -> tuple[Any, ...]:
    return (python or sys.executable, tuple(sorted(env.items())), memory_limit, containment, str(weights_dir))


def _warm_key_of(req: InitRequest) -> tuple[Any, ...]:
    return _warm_key(req.python, req.env, req.memory_limit, req.containment, req.weights_dir)


def _run_ranks(req: InitRequest) -> InitOutcome:
    """This node's ranks under torch.distributed.run, contained as one tree."""
    python = req.python or sys.executable
    before = fingerprint(req.weights_dir)
    with tempfile.TemporaryDirectory(prefix="preflight-ranks-") as tmp:
        t = Path(tmp)
        reqf, results = t / "request.json", t / "ranks"
        results.mkdir()
        reqf.write_text(json.dumps(req.child_request(), default=str), encoding="utf-8")
        env = _child_env(req.env)
        env.setdefault("OMP_NUM_THREADS", "1")
        for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK"):
            env.pop(k, None)  # the launcher sets them per rank
        cap = req.memory_limit * req.local_ranks + LAUNCHER_BYTES if req.memory_limit else None
        proc = Supervised(
            req.launch_command(python, reqf, results),
            env=env,
            timeout=req.timeout,
            workdir=t,
            memory_limit=cap,
            rlimit_as=None,
            # c10d rendezvous tells nodes apart by hostname and launcher pid: two nodes on one host,
            # each launcher PID 2 of its own PID namespace, would look like one node and hang
            namespaces=req.nnodes == 1,
            weights_dir=req.weights_dir,
            containment=req.containment,
            on_event=req.on_event,
        ).wait()
        err_tail = tail(t / "stderr", 64000)
        ranks = collect_ranks(results, req, proc, err_tail)
    changed = tuple(changes(before, fingerprint(req.weights_dir)))
    c = overall(ranks, proc, err_tail, req)
    outcome = InitOutcome(
        c,
        req.generator,
        req.device,
        proc,
        None,
        proc.events,
        err_tail[-12000:],
        req.memory_limit,
        req.timeout,
        changed,
        None,
        ranks=ranks,
        world_size=req.world_size,
        nnodes=req.nnodes,
        node_rank=req.node_rank,
        predicted_peak_bytes=req.predicted_peak_bytes,
        note=req.note,
    )
    if c.outcome == "interrupted":
        raise Interrupted(outcome)
    return outcome
