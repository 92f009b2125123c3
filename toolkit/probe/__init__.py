"""Running the environment probe (``probe_script.py``) and reading what it found."""

from __future__ import annotations

import re
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any, Literal

from npu_preflight.proc import ProcOutcome, Supervised, tail
from npu_preflight.records import frozen

SCRIPT = Path(__file__).with_name("probe_script.py")


ImportFailureKind = Literal["cann-missing", "autoload-failure", "abi-mismatch", "torch-missing", "other"]


@frozen
class ImportFailure:
    """A classified import failure: what kind, the missing library, the explanation and the fix."""

    kind: ImportFailureKind
    message: str
    library: str | None
    explanation: str
    fix: str


_LIB = re.compile(r"(lib[\w.+-]+\.so(?:\.[\d.]+)?)")


def classify_import_error(text: str) -> ImportFailure:
    """Explain why ``import torch`` / ``import torch_npu`` failed, from the exception text."""
    lib_match = _LIB.search(text)
    lib = lib_match.group(1) if lib_match else None
    ascend_lib = lib is not None and any(k in lib for k in ("hccl", "ascend", "acl", "atb", "opapi", "ge_", "npu"))
    first = text.strip().splitlines()[0] if text.strip() else text
    if "No module named 'torch'" in text or 'No module named "torch"' in text:
        return ImportFailure(
            "torch-missing",
            first,
            None,
            "torch is not installed in this interpreter.",
            "pip install torch (the version your torch_npu or CUDA needs), or pass --python.",
        )
    if "Failed to load the backend extension" in text:
        cause = f" (underlying: {lib} cannot be loaded)" if lib else ""
        return ImportFailure(
            "autoload-failure",
            first,
            lib,
            "torch >= 2.5 auto-loads installed device backends; torch_npu is installed but cannot load"
            + cause
            + ", so even 'import torch' fails — and transformers with it.",
            "Install CANN and 'source /usr/local/Ascend/ascend-toolkit/set_env.sh' (the fix); "
            "TORCH_DEVICE_BACKEND_AUTOLOAD=0 only hides the error until the NPU is used.",
        )
    if "undefined symbol" in text:
        return ImportFailure(
            "abi-mismatch",
            first,
            lib,
            "a compiled extension was built against another version of torch, CANN or ATB (undefined symbol).",
            "Install torch_npu (and ATB/MindIE) built for exactly this torch and CANN version.",
        )
    if lib and ("cannot open shared object file" in text or ascend_lib):
        return ImportFailure(
            "cann-missing",
            first,
            lib,
            f"{lib} is part of CANN: CANN is not installed, or its environment is not sourced.",
            "source /usr/local/Ascend/ascend-toolkit/set_env.sh (install CANN first if it is missing).",
        )
    return ImportFailure("other", first, lib, "the import raised an unexpected error.", "See the message.")


@frozen
class ProbeResult:
    """What the probe saw, or why it saw nothing."""

    data: Mapping[str, Any]
    outcome: ProcOutcome | None
    stderr_tail: str = ""
    failure: str | None = None  # why the probe itself produced no result
    python: str = field(default_factory=lambda: sys.executable)
    in_init: bool = False  # it ran in the sandboxed init's own process, before the init

    def error(self, step: str) -> Mapping[str, Any] | None:
        """The recorded exception of a probe step."""
        errs = self.data.get("errors") or {}
        value = errs.get(step)
        return value if isinstance(value, Mapping) else None

    def import_failure(self, step: str) -> ImportFailure | None:
        """A classified import failure of ``torch`` or ``torch_npu``."""
        err = self.error(step)
        if err is None:
            return None
        return classify_import_error(f"{err.get('type')}: {err.get('message')}\n{err.get('traceback', '')}")

    @property
    def packages(self) -> Mapping[str, str]:
        """Installed distributions and their versions."""
        return self.data.get("packages") or {}

    @property
    def soc_version(self) -> int | None:
        """The NPU's SoC version, when torch_npu reported one."""
        npu = self.data.get("npu")
        v = npu.get("soc_version") if isinstance(npu, Mapping) else None
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    @property
    def npu_count(self) -> int | None:
        """torch.npu.device_count(), when torch_npu loaded."""
        npu = self.data.get("npu")
        return int(npu["count"]) if isinstance(npu, Mapping) and isinstance(npu.get("count"), int) else None

    @property
    def npu_devices(self) -> list[Mapping[str, Any]]:
        """NPU devices with name and memory."""
        npu = self.data.get("npu")
        return list(npu.get("devices") or []) if isinstance(npu, Mapping) else []

    @property
    def cuda_devices(self) -> list[Mapping[str, Any]]:
        """CUDA devices with name and memory."""
        cuda = self.data.get("cuda")
        return list(cuda.get("devices") or []) if isinstance(cuda, Mapping) else []

    @property
    def host(self) -> Mapping[str, Any]:
        """Host RAM, CPUs, /dev/shm."""
        return self.data.get("host") or {}

    def to_dict(self) -> dict[str, Any]:
        """The report's ``environment`` section."""
        out = {k: v for k, v in self.data.items() if k != "errors"}
        errors = {}
        for step, err in (self.data.get("errors") or {}).items():
            entry = {"type": err.get("type"), "message": err.get("message")}
            if step in ("torch", "torch_npu"):
                f = self.import_failure(step)
                if f is not None:
                    entry.update(kind=f.kind, library=f.library, explanation=f.explanation, fix=f.fix)
            errors[step] = entry
        out["errors"] = errors
        out["probe"] = {
            "python": self.python,
            "failure": self.failure,
            "returncode": self.outcome.returncode if self.outcome else None,
            "signal": self.outcome.signal_name if self.outcome else None,
            "duration_s": round(self.outcome.duration_s, 3) if self.outcome else None,
            "in_init_process": self.in_init,
        }
        return out


def run_probe(
    python: str | None, env: Mapping[str, str], timeout: float, tokenizer_json: Path | None = None
) -> ProbeResult:
    """Run the probe under ``python`` (default: this interpreter) with the user's environment,
    contained like the init; never raises for anything the child does (Ctrl-C propagates once the
    probe's tree is gone)."""
    python = python or sys.executable
    with tempfile.TemporaryDirectory(prefix="preflight-probe-") as tmp:
        t = Path(tmp)
        out = t / "probe.json"
        cmd = [python, str(SCRIPT), str(out), str(tokenizer_json or "")]
        child_env = dict(env)
        child_env.setdefault("HF_HUB_OFFLINE", "1")
        child_env.setdefault("TRANSFORMERS_OFFLINE", "1")
        outcome = Supervised(cmd, env=child_env, timeout=timeout, workdir=t).wait()
        err_tail = tail(t / "stderr", 4000)
        if outcome.interrupted:
            raise KeyboardInterrupt
        if outcome.supervisor_failure:
            return ProbeResult({}, outcome, err_tail, outcome.supervisor_failure, python)
        if outcome.timed_out:
            return ProbeResult({}, outcome, err_tail, f"timed out after {timeout:.0f}s", python)
        if outcome.signal is not None:
            return ProbeResult({}, outcome, err_tail, f"crashed with {outcome.signal_name}", python)
        if outcome.returncode == 127 and "cannot start the child" in err_tail:
            return ProbeResult(
                {}, outcome, err_tail, f"cannot start {python}: {err_tail.strip().splitlines()[-1]}", python
            )
        data, why = read_probe_result(out)
        if data is None:
            return ProbeResult({}, outcome, err_tail, f"exited {outcome.returncode} {why}", python)
        return ProbeResult(data, outcome, err_tail, None, python)


MAX_PROBE_BYTES = 4 * 1024 * 1024


def read_probe_result(path: Path) -> tuple[dict[str, Any] | None, str]:
    """The probe's JSON, validated to the shape the checks read (a child can write anything)."""
    from npu_preflight.formats.jsonload import JsonLoadError, load_file

    try:
        doc = load_file(path, max_bytes=MAX_PROBE_BYTES, max_depth=16).value
    except JsonLoadError as exc:
        return None, f"without a usable result ({exc.message})"
    if not isinstance(doc, dict):
        return None, f"with a result that is a JSON {type(doc).__name__}, not an object"
    clean: dict[str, Any] = {}
    for key, value in doc.items():
        if key in ("host", "packages", "cann", "torch", "transformers", "cuda", "npu", "tokenizer", "errors", "steps"):
            if value is not None and not isinstance(value, dict):
                return None, f"with a malformed result ({key!r} is a JSON {type(value).__name__})"
        clean[key] = value
    packages = clean.get("packages") or {}
    clean["packages"] = {str(k): str(v) for k, v in packages.items() if isinstance(v, (str, int, float))}
    errors = clean.get("errors") or {}
    clean["errors"] = {str(k): v for k, v in errors.items() if isinstance(v, dict)}
    for kind in ("cuda", "npu"):
        sec = clean.get(kind)
        if isinstance(sec, dict):
            devs = sec.get("devices")
            sec["devices"] = [d for d in devs if isinstance(d, dict)] if isinstance(devs, list) else []
    return clean, ""
