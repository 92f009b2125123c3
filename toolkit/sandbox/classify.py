"""Turning what the init child left behind into one outcome with its evidence (DESIGN.md §4)."""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass
from typing import Any, Literal

from npu_preflight.probe import classify_import_error

_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4, "KB": 1000, "MB": 1000**2, "GB": 1000**3}
DEVICE_OOM = re.compile(r"(NPU|CUDA|XPU|MPS) out of memory\. Tried to allocate ([\d.]+) ?([KMGT]i?B|B)")
CPU_ALLOC = re.compile(
    r"DefaultCPUAllocator: (?:can't allocate memory|not enough memory): you tried to allocate (\d+) bytes"
)
MMAP = re.compile(r"unable to mmap (\d+) bytes from file <?([^>:]*)>?: Cannot allocate memory \(12\)")
DTYPE = re.compile(r"unsupported type: ?(\S*)|`torch_dtype` is only supported for type")
OOM_HINTS = ("Cannot allocate memory", "std::bad_alloc", "MemoryError", "out of memory")


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
    "tampered",
]


@dataclass(frozen=True)
class Classified:
    """An outcome: ``ok``, ``oom-device``, ``oom-host``, ``timeout``, ``import-error``,
    ``unsupported-dtype``, ``crash``, ``error`` or ``unavailable``."""

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
    if DTYPE.search(text):
        return Classified("unsupported-dtype", "the dtype was refused: " + DTYPE.search(text).group(0))  # type: ignore[union-attr]
    return None


def classify(
    result: dict[str, Any] | None,
    *,
    returncode: int | None,
    sig: int | None,
    timed_out: bool,
    stderr: str,
    memory_limit: int | None,
    peak_rss: int | None,
) -> Classified:
    """One outcome from the result file (if any), the exit status and the stderr tail."""
    if timed_out:
        return Classified("timeout", "the init did not finish within the time limit")
    if result is not None:
        if result.get("outcome") == "ok":
            return Classified("ok", "the generator initialised and ran a forward pass")
        err = result.get("error") or {}
        etype, msg = str(err.get("type")), str(err.get("message"))
        text = f"{etype}: {msg}\n{err.get('traceback', '')}"
        if etype == "MindieUnavailable":
            return Classified("unavailable", msg)
        found = classify_text(text)
        if found is not None:
            return found
        if etype == "MemoryError":
            return Classified("oom-host", "host out of memory (MemoryError)")
        if etype in ("ImportError", "ModuleNotFoundError") or "cannot open shared object file" in text:
            f = classify_import_error(text)
            missing = err.get("missing_module")
            return Classified("import-error", f"{etype}: {msg}", library=f.library or missing)
        if "Failed to load the backend extension" in text:
            f = classify_import_error(text)
            return Classified("import-error", f"{etype}: {msg}", library=f.library)
        return Classified("error", f"{etype}: {msg}")
    found = classify_text(stderr)
    if found is not None:
        return found
    if sig is not None:
        name = signal.Signals(sig).name if sig in signal.valid_signals() else f"signal {sig}"
        near_cap = memory_limit is not None and peak_rss is not None and peak_rss >= 0.5 * memory_limit
        if sig == signal.SIGKILL and (near_cap or any(h in stderr for h in OOM_HINTS)):
            return Classified("oom-host", f"killed by {name} near the memory cap (the kernel's OOM killer or the cap)")
        if sig == signal.SIGKILL and memory_limit is None:
            return Classified("oom-host", f"killed by {name} (usually the kernel's OOM killer)")
        return Classified("crash", f"the init process died with {name}")
    if any(h in stderr for h in ("std::bad_alloc", "MemoryError")):
        return Classified("oom-host", "host out of memory")
    return Classified("error", f"the init process exited with status {returncode} and no result")
