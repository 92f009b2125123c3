"""The environment probe: a stdlib-only script run as a subprocess (``python probe_script.py OUT.json
[TOKENIZER_JSON]``), possibly under another interpreter (``--python``).

It imports torch, torch_npu and tokenizers *here*, never in the tool's process, and writes what it
found — versions, devices, memory, CANN, and every import failure with its text — to OUT.json.
Each step is guarded so one failure never hides the others.
"""

import glob
import json
import os
import platform
import sys
import time
import traceback

RESULT = {"ok": True, "steps": {}, "errors": {}}


def step(name):
    """Record a step's duration and turn any exception into an entry of ``errors``."""

    def deco(func):
        def run(*args):
            t0 = time.time()
            try:
                value = func(*args)
                RESULT["steps"][name] = round(time.time() - t0, 3)
                return value
            except BaseException as exc:  # noqa: BLE001 - the probe reports, never raises
                RESULT["errors"][name] = {
                    "type": type(exc).__name__,
                    "message": str(exc)[:4000],
                    "traceback": traceback.format_exc()[-6000:],
                }
                return None

        return run

    return deco


def read_text(path, limit=65536):
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read(limit)
    except OSError:
        return None


def version_info(path):
    """``Version=8.0.0`` style files (CANN, driver)."""
    text = read_text(path)
    if not text:
        return None
    for line in text.splitlines():
        for key in ("Version=", "version=", "Innerversion="):
            if line.startswith(key):
                return line.split("=", 1)[1].strip()
    return text.strip().splitlines()[0][:100] if text.strip() else None


@step("host")
def host():
    info = {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "pid": os.getpid(),
    }
    try:
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    mem = read_text("/proc/meminfo") or ""
    for line in mem.splitlines():
        key, _, rest = line.partition(":")
        if key in ("MemTotal", "MemAvailable"):
            info[key.lower() + "_bytes"] = int(rest.split()[0]) * 1024
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        text = read_text(path)
        if text and text.strip().isdigit() and int(text.strip()) < 2**60:
            info["cgroup_memory_limit_bytes"] = int(text.strip())
            break
    try:
        st = os.statvfs("/dev/shm")
        info["shm_bytes"] = st.f_frsize * st.f_blocks
    except OSError:
        pass
    return info


@step("packages")
def packages():
    from importlib import metadata

    out = {}
    for dist in (
        "torch",
        "torch_npu",
        "torch-npu",
        "transformers",
        "tokenizers",
        "safetensors",
        "numpy",
        "mindie_llm",
        "mindie-llm",
        "atb_llm",
        "accelerate",
    ):
        try:
            out[dist.replace("-", "_")] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


@step("cann")
def cann():
    home = os.environ.get("ASCEND_HOME_PATH") or os.environ.get("ASCEND_TOOLKIT_HOME")
    candidates = [home] if home else []
    candidates.append("/usr/local/Ascend/ascend-toolkit/latest")
    info = {"home": home, "devices": sorted(glob.glob("/dev/davinci[0-9]*"))}
    for base in candidates:
        if not base:
            continue
        for rel in (
            "version.info",
            "compiler/version.info",
            "runtime/version.info",
            "x86_64-linux/ascend_toolkit_install.info",
            "aarch64-linux/ascend_toolkit_install.info",
        ):
            v = version_info(os.path.join(base, rel))
            if v:
                info["toolkit_version"] = v
                info["toolkit_path"] = base
                break
        if "toolkit_version" in info:
            break
    info["driver_version"] = version_info("/usr/local/Ascend/driver/version.info")
    info["ld_library_path"] = os.environ.get("LD_LIBRARY_PATH", "")
    return info


@step("atb_models")
def atb_models():
    """MindIE's atb_llm model folders, found without importing atb_llm (its import needs CANN)."""
    import importlib.util

    spec = importlib.util.find_spec("atb_llm")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    if not roots and os.environ.get("ATB_SPEED_HOME_PATH"):
        roots = [os.path.join(os.environ["ATB_SPEED_HOME_PATH"], "atb_llm")]
    for root in roots:
        models = os.path.join(root, "models")
        if os.path.isdir(models):
            names = sorted(
                n
                for n in os.listdir(models)
                if n != "base" and not n.startswith("_") and os.path.isdir(os.path.join(models, n))
            )
            return {"path": models, "models": names}
    return None


def mem_info(mod, index):
    free, total = mod.mem_get_info(index)
    return {"free_bytes": int(free), "total_bytes": int(total)}


@step("torch")
def probe_torch():
    import torch

    info = {"version": torch.__version__, "cuda_build": getattr(torch.version, "cuda", None)}
    info["bf16_cpu"] = True
    return torch, info


def rss_bytes():
    text = read_text("/proc/self/status") or ""
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


@step("transformers")
def probe_transformers():
    import transformers

    return {"version": transformers.__version__}


@step("cuda")
def probe_cuda(torch):
    devices = []
    if not torch.cuda.is_available():
        return {"available": False, "devices": devices}
    for i in range(torch.cuda.device_count()):
        d = {"index": i, "name": torch.cuda.get_device_name(i)}
        cap = torch.cuda.get_device_capability(i)
        d["capability"] = f"{cap[0]}.{cap[1]}"
        d["bf16"] = cap[0] >= 8
        try:
            d.update(mem_info(torch.cuda, i))
        except Exception as exc:  # noqa: BLE001
            d["memory_error"] = str(exc)
        devices.append(d)
    return {"available": True, "devices": devices}


@step("torch_npu")
def probe_npu(torch):
    import torch_npu

    npu = torch.npu
    info = {"version": getattr(torch_npu, "__version__", None), "devices": []}
    count = npu.device_count()
    info["count"] = count
    soc = None
    for getter in ("get_soc_version",):
        fn = getattr(torch_npu.npu, getter, None) or getattr(npu, getter, None)
        if fn is not None:
            try:
                soc = int(fn())
            except Exception:  # noqa: BLE001
                soc = None
    info["soc_version"] = soc
    for i in range(count):
        d = {"index": i}
        try:
            d["name"] = npu.get_device_name(i)
        except Exception as exc:  # noqa: BLE001
            d["name_error"] = str(exc)
        try:
            d.update(mem_info(npu, i))
        except Exception as exc:  # noqa: BLE001
            d["memory_error"] = str(exc)
        info["devices"].append(d)
    return info


@step("tokenizers")
def probe_tokenizer(path):
    import tokenizers

    tokenizers.Tokenizer.from_file(path)
    return {"version": tokenizers.__version__, "loaded": path}


def main():
    probe(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else None)


def probe(out_path, tokenizer_path=None):
    """Run every step and write the result to ``out_path`` (also what the sandboxed init child
    calls when it probes in its own process before its init)."""
    RESULT["host"] = host()
    RESULT["packages"] = packages() or {}
    RESULT["cann"] = cann()
    RESULT["atb_models"] = atb_models()
    pair = probe_torch()
    if pair is not None:
        torch, RESULT["torch"] = pair
        if "transformers" in RESULT["packages"]:
            RESULT["transformers"] = probe_transformers()
        if RESULT["host"] is not None:
            RESULT["host"]["runtime_rss_bytes"] = rss_bytes()
        RESULT["cuda"] = probe_cuda(torch)
        if "torch_npu" in RESULT["packages"] or os.environ.get("PREFLIGHT_PROBE_NPU") == "1":
            RESULT["npu"] = probe_npu(torch)
    if tokenizer_path and "tokenizers" in RESULT["packages"]:
        RESULT["tokenizer"] = probe_tokenizer(tokenizer_path)
    tmp = out_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(RESULT, fh, default=str)
    os.replace(tmp, out_path)


if __name__ == "__main__":
    main()
