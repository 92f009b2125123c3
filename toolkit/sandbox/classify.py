"""Turning how the init ended into one outcome with its evidence (DESIGN.md §4).

The exit decides, not the child's word: a result file counts only when the child exited 0 after
writing it; a child that wrote ``{"outcome": "ok"}`` and then died of a signal crashed.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Mapping
from typing import Any, Literal

from npu_preflight.probe import classify_import_error
from npu_preflight.proc import ProcOutcome
from npu_preflight.records import frozen

Outcome = Literal[
    "ok",
    "oom-device",
    "oom-host",
    "timeout",
    "import-error",
    "unsupported-dtype",
    "crash",
    "error",
    "unavailable",
    "interrupted",
    "stopped",  # one rank of several, stopped by the launcher after another failed
]

_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4, "KB": 1000, "MB": 1000**2, "GB": 1000**3}
DEVICE_OOM = re.compile(r"(NPU|CUDA|XPU|MPS) out of memory\. Tried to allocate ([\d.]{1,12}) ?([KMGT]i?B|B)")
CPU_ALLOC = re.compile(
    r"DefaultCPUAllocator: (?:can't allocate memory|not enough memory): you tried to allocate (\d{1,20}) bytes"
)
MMAP = re.compile(r"unable to mmap (\d{1,20}) bytes from file <?([^>:\n]{0,500})>?: Cannot allocate memory \(12\)")
DTYPE = re.compile(r"unsupported type: ?(\S{0,40})|`torch_dtype` is only supported for type")
ACCELERATE = re.compile(r"requires `?accelerate`?")
OOM_HINTS = ("Cannot allocate memory", "std::bad_alloc", "MemoryError", "out of memory")


@frozen
class Classified:
    """An outcome and its one-line summary, with what was asked for and which library was missing."""

    outcome: Outcome
    summary: str
    requested_bytes: int | None = None
    library: str | None = None
    device: str | None = None


def parse_size(number: str, unit: str) -> int:
    """``20.00`` ``MiB`` → bytes."""
    return int(float(number) * _UNITS.get(unit, 1))


def classify_text(text: str) -> Classified | None:
    """Recognise an OOM, a dtype refusal or a missing library in an error message or stderr."""
    m = DEVICE_OOM.search(text)
    if m:
        size = parse_size(m.group(2), m.group(3))
        return Classified(
            "oom-device",
            f"{m.group(1)} out of memory (tried to allocate {m.group(2)} {m.group(3)})",
            size,
            device=m.group(1).lower(),
        )
    m = CPU_ALLOC.search(text)
    if m:
        return Classified(
            "oom-host", f"host out of memory (tried to allocate {int(m.group(1)):,} bytes)", int(m.group(1))
        )
    m = MMAP.search(text)
    if m:
        return Classified(
            "oom-host",
            f"host out of memory mapping {m.group(2) or 'a weight file'} ({int(m.group(1)):,} bytes)",
            int(m.group(1)),
        )
    m = DTYPE.search(text)
    if m:
        return Classified("unsupported-dtype", "the dtype was refused: " + m.group(0))
    return None


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def from_result(result: Mapping[str, Any]) -> Classified:
    """The outcome a (trusted) result file describes."""
    if result.get("outcome") == "ok":
        return Classified("ok", "the generator initialised and ran a forward pass")
    err = result.get("error") or {}
    etype, msg = str(err.get("type")), str(err.get("message"))
    text = f"{etype}: {msg}\n{err.get('traceback', '')}"
    if etype == "MindieUnavailable":
        return Classified("unavailable", msg)
    if ACCELERATE.search(text):  # transformers' tensor-parallel loading needs accelerate
        return Classified("import-error", f"{etype}: {msg}", library="accelerate")
    found = classify_text(text)
    if found is not None:
        return found
    if etype == "MemoryError":
        return Classified("oom-host", "host out of memory (MemoryError)")
    if etype in ("ImportError", "ModuleNotFoundError") or "cannot open shared object file" in text:
        f = classify_import_error(text)
        missing = err.get("missing_module")
        return Classified("import-error", f"{etype}: {msg}", library=f.library or (str(missing) if missing else None))
    if "Failed to load the backend extension" in text:
        f = classify_import_error(text)
        return Classified("import-error", f"{etype}: {msg}", library=f.library)
    return Classified("error", f"{etype}: {msg}")


def classify(
    result: Mapping[str, Any] | None,
    proc: ProcOutcome,
    *,
    stderr: str,
    memory_limit: int | None,
    wrote_result: bool = False,
) -> Classified:
    """One outcome from how the process ended, checked against what it wrote. ``result`` is the
    child's result only when it exited 0 (the only exit after which it is believed);
    ``wrote_result`` says whether a result file existed at all (evidence for a crash summary)."""
    if proc.interrupted:
        return Classified("interrupted", f"the run was interrupted ({proc.interrupted}); the init was killed")
    if proc.supervisor_failure:
        return Classified("error", proc.supervisor_failure)
    if proc.timed_out:
        return Classified("timeout", "the init did not finish within the time limit; its process tree was killed")
    if proc.memory_killed:
        peak = f" (the tree reached {proc.peak_tree_bytes:,} bytes)" if proc.peak_tree_bytes else ""
        return Classified(
            "oom-host",
            f"the init's process tree exceeded --memory-limit and was killed{peak}",
            requested_bytes=proc.peak_tree_bytes,
        )
    if proc.oom_kills:
        return Classified(
            "oom-host",
            f"the cgroup's OOM killer killed {proc.oom_kills} process(es) of the init's tree (over --memory-limit)",
            requested_bytes=proc.peak_tree_bytes,
        )
    if proc.returncode == 0:
        if result is not None:
            return from_result(result)
        return Classified("error", "the init process exited 0 without writing a valid result")
    found = classify_text(stderr)
    if found is not None:
        return found
    written = " after writing a result" if wrote_result else ""
    if proc.signal is not None:
        name = _signal_name(proc.signal)
        if proc.signal == signal.SIGKILL and proc.oom_kills:
            return Classified("oom-host", f"killed by {name}: the cgroup's OOM killer (over --memory-limit)")
        near_cap = (
            memory_limit is not None and proc.peak_rss_bytes is not None and proc.peak_rss_bytes >= 0.5 * memory_limit
        )
        if proc.signal == signal.SIGKILL and (near_cap or any(h in stderr for h in OOM_HINTS)):
            return Classified("oom-host", f"killed by {name} near the memory cap (the kernel's OOM killer or the cap)")
        if proc.signal == signal.SIGKILL and memory_limit is None:
            return Classified("oom-host", f"killed by {name} (usually the kernel's OOM killer)")
        return Classified("crash", f"the init process died with {name}{written}")
    if any(h in stderr for h in ("std::bad_alloc", "MemoryError")):
        return Classified("oom-host", "host out of memory")
    return Classified("error", f"the init process exited with status {proc.returncode}{written} and no usable result")
