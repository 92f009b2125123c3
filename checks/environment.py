"""ENV: the environment variables MindIE and torch_npu read, CANN markers, rank tables, and the
probe's findings (torch / torch_npu / CANN import failures, versions, devices)."""

from __future__ import annotations

import glob
import ipaddress
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from npu_preflight.context import Context
from npu_preflight.envvars import parse_float, parse_visible_devices
from npu_preflight.errors import Unavailable
from npu_preflight.model import Hit, Location, Phase, Severity
from npu_preflight.registry import check
from npu_preflight.safetext import short_repr

if TYPE_CHECKING:
    from npu_preflight.probe import ProbeResult


@check(
    "ENV001",
    "ASCEND_RT_VISIBLE_DEVICES is a valid device list",
    Severity.ERROR,
    backend="host",
    source="torch_npu device visibility (ASCEND_RT_VISIBLE_DEVICES, FACTS.md §2)",
)
def visible_devices(ctx: Context) -> Iterator[Hit]:
    """torch_npu reads ``ASCEND_RT_VISIBLE_DEVICES`` as ascending, comma-separated, non-negative,
    distinct integers. Otherwise it sees fewer devices than meant — zero for a non-ascending list
    (from torch_npu source, unverified) — and ``set_device`` fails after a minute of retries.

    Bad: ``ASCEND_RT_VISIBLE_DEVICES=3,1`` or ``0,,1`` or ``npu0``.
    Good: ``ASCEND_RT_VISIBLE_DEVICES=0,1,2,3``.
    Fix: list physical ids ascending, comma-separated.
    """
    raw = ctx.env.get("ASCEND_RT_VISIBLE_DEVICES")
    if raw is None:
        return
    parsed = parse_visible_devices(raw)
    shown = short_repr(raw, 60)
    for p in parsed.problems:
        yield Hit(
            f"ASCEND_RT_VISIBLE_DEVICES={shown}: {p}",
            "Use ascending, distinct, comma-separated physical device ids, e.g. 0,1,2,3.",
            Location(env="ASCEND_RT_VISIBLE_DEVICES"),
            {"value": raw},
        )


@check(
    "ENV002",
    "NPU_MEMORY_FRACTION is in (0, 1]",
    Severity.ERROR,
    backend="mindie",
    source="mindie_llm/utils/env.py and atb_llm/utils/env.py NPU_MEMORY_FRACTION",
)
def memory_fraction(ctx: Context) -> Iterator[Hit]:
    """MindIE sizes the KV cache from ``total × NPU_MEMORY_FRACTION − memory in use``; a value outside
    (0, 1] is refused (default 0.8 in mindie_llm, 1.0 in atb_llm).

    Bad: ``NPU_MEMORY_FRACTION=95``.
    Good: ``NPU_MEMORY_FRACTION=0.95``.
    Fix: give a fraction between 0 (exclusive) and 1.
    """
    raw = ctx.env.get("NPU_MEMORY_FRACTION")
    if raw is None:
        return
    v = parse_float(raw)
    if v is None or not 0 < v <= 1:
        yield Hit(
            f"NPU_MEMORY_FRACTION={raw!r} is not a number in (0, 1]",
            "Set a fraction such as 0.8 (the mindie_llm default).",
            Location(env="NPU_MEMORY_FRACTION"),
        )


@check(
    "ENV003",
    "RESERVED_MEMORY_GB is in [0, 64)",
    Severity.ERROR,
    backend="mindie",
    source="atb_llm/utils/env.py RESERVED_MEMORY_GB",
)
def reserved_memory(ctx: Context) -> Iterator[Hit]:
    """atb_llm keeps ``RESERVED_MEMORY_GB`` of device memory free; it must be a number in [0, 64).

    Bad: ``RESERVED_MEMORY_GB=-1`` or ``RESERVED_MEMORY_GB=3GB``.
    Good: ``RESERVED_MEMORY_GB=3``.
    Fix: give a plain number of GB below 64.
    """
    raw = ctx.env.get("RESERVED_MEMORY_GB")
    if raw is None:
        return
    v = parse_float(raw)
    if v is None or not 0 <= v < 64:
        yield Hit(
            f"RESERVED_MEMORY_GB={raw!r} is not a number in [0, 64)",
            "Set a plain number of GB, e.g. 3.",
            Location(env="RESERVED_MEMORY_GB"),
        )


def _env_int(ctx: Context, name: str) -> int | None:
    raw = ctx.env.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return -1


@check(
    "ENV004",
    "RANK, LOCAL_RANK and WORLD_SIZE agree with model_config",
    Severity.ERROR,
    backend="mindie",
    source="atb_llm/utils/env.py and dist.py (RANK, LOCAL_RANK, WORLD_SIZE)",
)
def rank_env(ctx: Context) -> Iterator[Hit]:
    """Launchers export ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; atb_llm reads them for the
    communication group. They must be integers with ranks below WORLD_SIZE, and agree with the
    model_config's ``rank``/``local_rank``/``world_size``, or ranks join the wrong group and hang.

    Bad: ``WORLD_SIZE=4`` exported while model_config says ``world_size`` 2.
    Good: both say 2.
    Fix: export what the model_config says (or the other way round).
    """
    values = {n: _env_int(ctx, n) for n in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    for name, v in values.items():
        if v == -1:
            yield Hit(
                f"{name}={ctx.env[name]!r} is not an integer", f"Export {name} as an integer.", Location(env=name)
            )
    ws = values["WORLD_SIZE"]
    if ws is not None and ws > 0:
        for name in ("RANK", "LOCAL_RANK"):
            v = values[name]
            if v is not None and v >= 0 and v >= ws:
                yield Hit(
                    f"{name}={v} is not below WORLD_SIZE={ws}", f"Export {name} in 0…{ws - 1}.", Location(env=name)
                )
    if ctx.model_config is None:
        return
    mc = ctx.model_config
    for env_name, key in (("RANK", "rank"), ("LOCAL_RANK", "local_rank"), ("WORLD_SIZE", "world_size")):
        ev, mv = values[env_name], mc.get(key)
        if ev is not None and ev >= 0 and isinstance(mv, int) and ev != mv:
            yield Hit(
                f"{env_name}={ev} in the environment but model_config {key} is {mv}",
                f"Make {env_name} and model_config.{key} agree.",
                Location(env=env_name, key=f"model_config.{key}"),
                {"env": ev, "model_config": mv},
            )


def rank_table_servers(ctx: Context) -> int | None:
    """Number of servers the rank table lists; None when there is no usable table."""
    if ctx.availability("rank_table") is not None:
        return None
    doc = ctx.rank_table
    return len(doc["server_list"]) if doc else None


@check(
    "ENV005",
    "multi-rank set-up: rank table and master address",
    Severity.ERROR,
    backend="mindie",
    source="atb_llm/utils/dist.py (RANK_TABLE_FILE, MASTER_IP, MASTER_PORT)",
)
def multi_rank(ctx: Context) -> Iterator[Hit]:
    """Multi-device runs read ``RANK_TABLE_FILE`` (servers, devices, ``device_ip``, ``rank_id``) and
    ``MASTER_IP``/``MASTER_PORT``. A table that does not parse, an invalid ``device_ip``, duplicate
    rank ids, or a rank count different from world_size fail as HCCL timeouts minutes later.

    Bad: a rank table whose ``device_ip`` is ``"192.168.1"``.
    Good: every device with a valid ``device_ip`` and a unique ``rank_id``; ranks = world_size.
    Fix: regenerate the rank table (hccn_tool gives the device IPs).
    """
    why = ctx.availability("rank_table")
    doc = ctx.rank_table if why is None else None
    if why:
        yield Hit(why, "Point RANK_TABLE_FILE at a valid rank table JSON.", Location(env="RANK_TABLE_FILE"))
    if doc:
        ranks: list[str] = []
        for s, server in enumerate(doc["server_list"]):
            devices = server.get("device") if isinstance(server, dict) else None
            if not isinstance(devices, list):
                yield Hit(
                    f"rank table server_list[{s}] has no device list",
                    "Regenerate the rank table.",
                    Location(env="RANK_TABLE_FILE", key=f"server_list[{s}]"),
                )
                continue
            for d, dev in enumerate(devices):
                if not isinstance(dev, dict):
                    continue
                ip = dev.get("device_ip")
                if ip is not None:
                    try:
                        ipaddress.ip_address(str(ip))
                    except ValueError:
                        yield Hit(
                            f"rank table server_list[{s}].device[{d}].device_ip {ip!r} is not an IP address",
                            "Fill in the device IP (hccn_tool -i N -ip -g).",
                            Location(env="RANK_TABLE_FILE", key=f"server_list[{s}].device[{d}].device_ip"),
                        )
                if "rank_id" in dev:
                    ranks.append(str(dev["rank_id"]))
        dups = sorted({r for r in ranks if ranks.count(r) > 1})
        if dups:
            yield Hit(
                f"rank table repeats rank_id(s) {', '.join(dups)}",
                "Give every device a unique rank_id.",
                Location(env="RANK_TABLE_FILE"),
            )
        ws = ctx.model_config.world_size if ctx.model_config is not None else None
        if ws is not None and ranks and len(ranks) != ws:
            yield Hit(
                f"rank table lists {len(ranks)} rank(s) but world_size is {ws}",
                "Make the rank table and world_size agree.",
                Location(env="RANK_TABLE_FILE", key="model_config.world_size"),
            )
    port = ctx.env.get("MASTER_PORT")
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        yield Hit(
            f"MASTER_PORT={port!r} is not a port number", "Export a port in 1…65535.", Location(env="MASTER_PORT")
        )
    ip = ctx.env.get("MASTER_IP") or ctx.env.get("MASTER_ADDR")
    if ip:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            if not all(part.isalnum() or "-" in part for part in ip.split(".")):
                yield Hit(
                    f"MASTER_IP={ip!r} is neither an IP address nor a host name",
                    "Export the master's address.",
                    Location(env="MASTER_IP"),
                )


def ascend_install_present() -> bool:
    """Whether this host looks like an Ascend host (driver, devices or a CANN tree)."""
    return bool(glob.glob("/dev/davinci[0-9]*")) or os.path.isdir("/usr/local/Ascend")


@check(
    "ENV006",
    "CANN environment is sourced on Ascend hosts",
    Severity.WARNING,
    backend="host",
    source="CANN set_env.sh; torch_npu import errors (FACTS.md §2)",
)
def cann_sourced(ctx: Context) -> Iterator[Hit]:
    """CANN's ``set_env.sh`` exports ``ASCEND_HOME_PATH``/``ASCEND_TOOLKIT_HOME``, ``ASCEND_OPP_PATH``
    and library paths. Without it ``import torch_npu`` fails (``libhccl.so: cannot open shared object
    file``) and, since torch 2.5 auto-loads backends, so does ``import torch``.

    Bad: an Ascend host (``/dev/davinci0``) with ``ASCEND_HOME_PATH`` unset.
    Good: ``source /usr/local/Ascend/ascend-toolkit/set_env.sh`` in the service's environment.
    Fix: source set_env.sh (and the ATB/MindIE ones) before starting.
    """
    wants_npu = ctx.options.device == "npu" or (ctx.options.device == "auto" and ascend_install_present())
    if not wants_npu:
        return
    if not (ctx.env.get("ASCEND_HOME_PATH") or ctx.env.get("ASCEND_TOOLKIT_HOME")):
        yield Hit(
            "CANN's environment is not set (ASCEND_HOME_PATH and ASCEND_TOOLKIT_HOME are unset)",
            "source /usr/local/Ascend/ascend-toolkit/set_env.sh (then the nnal/atb and mindie set_env.sh).",
            Location(env="ASCEND_HOME_PATH"),
            severity=Severity.ERROR if ctx.options.device == "npu" else Severity.WARNING,
        )


@check(
    "ENV007",
    "torch backend auto-loading is not silently disabled",
    Severity.INFO,
    backend="host",
    source="torch ≥ 2.5 device-backend auto-loading (TORCH_DEVICE_BACKEND_AUTOLOAD)",
)
def autoload_disabled(ctx: Context) -> Iterator[Hit]:
    """``TORCH_DEVICE_BACKEND_AUTOLOAD=0`` stops torch ≥ 2.5 from importing torch_npu on ``import
    torch``. It is a stopgap that makes a broken CANN install import cleanly — the failure then
    comes later, when the NPU is first used.

    Bad: ``TORCH_DEVICE_BACKEND_AUTOLOAD=0`` exported to hide "Failed to load the backend extension".
    Good: CANN installed and sourced, the variable unset.
    Fix: fix the CANN install, then unset the variable.
    """
    if ctx.env.get("TORCH_DEVICE_BACKEND_AUTOLOAD") == "0":
        yield Hit(
            "TORCH_DEVICE_BACKEND_AUTOLOAD=0: torch_npu is not loaded with torch, which can hide a broken CANN install",
            "Fix the CANN install and unset TORCH_DEVICE_BACKEND_AUTOLOAD.",
            Location(env="TORCH_DEVICE_BACKEND_AUTOLOAD"),
        )


@check(
    "ENV008",
    "no deprecated MindIE log variables",
    Severity.INFO,
    backend="mindie",
    source="mindie_llm/utils/log (MINDIE_LOG_* replaces MINDIE_LLM_*_LOG)",
)
def deprecated_log_vars(ctx: Context) -> Iterator[Hit]:
    """MindIE moved its logging switches to ``MINDIE_LOG_*``; the older ``MINDIE_LLM_LOG_*``-style
    variables are deprecated and may be ignored.

    Bad: ``MINDIE_LLM_LOG_LEVEL=debug``.
    Good: ``MINDIE_LOG_LEVEL=debug``.
    Fix: rename to the MINDIE_LOG_* form.
    """
    for name in sorted(ctx.env):
        if name.startswith("MINDIE_LLM_") and "LOG" in name:
            yield Hit(
                f"{name} is a deprecated MindIE log variable",
                f"Use the MINDIE_LOG_* variables instead of {name}.",
                Location(env=name),
            )


def _probe(ctx: Context) -> ProbeResult:
    probe = ctx.probe
    if probe.failure:
        raise Unavailable(f"the environment probe failed ({probe.failure}; see ENV010)")
    return probe


def _wants_npu(ctx: Context, probe: ProbeResult) -> bool:
    return ctx.options.device == "npu" or (
        ctx.options.device == "auto" and ("torch_npu" in probe.packages or ascend_install_present())
    )


@check(
    "ENV010",
    "the environment probe ran",
    Severity.ERROR,
    phase=Phase.ENVIRONMENT,
    requires=("probe",),
    backend="preflight",
    source="npu_preflight/probe (the probe subprocess)",
)
def probe_ran(ctx: Context) -> Iterator[Hit]:
    """The probe imports torch (and torch_npu) in a subprocess with your environment. If that process
    hangs or dies, the deployment's interpreter cannot even start the generator.

    Bad: the probe killed by SIGSEGV while importing torch_npu.
    Good: the probe reports versions and devices.
    Fix: run the interpreter by hand (``python -c 'import torch'``) and fix what it prints.
    """
    probe = ctx.probe
    if probe.failure:
        yield Hit(
            f"the environment probe under {probe.python} {probe.failure}",
            "Run that interpreter by hand (python -c 'import torch') and fix what it reports.",
            Location(),
            {"stderr_tail": probe.stderr_tail[-2000:]},
        )


@check(
    "ENV011",
    "torch imports",
    Severity.ERROR,
    phase=Phase.ENVIRONMENT,
    requires=("probe",),
    backend="host",
    source="torch import (and its device-backend auto-loading)",
)
def torch_imports(ctx: Context) -> Iterator[Hit]:
    """Every generator starts with ``import torch``. Since torch 2.5 that also loads installed device
    backends, so a torch_npu without CANN breaks it: ``RuntimeError: Failed to load the backend
    extension: torch_npu``.

    Bad: torch-npu installed, CANN not installed or not sourced.
    Good: ``python -c 'import torch'`` succeeds in the service's environment.
    Fix: install and source CANN (``set_env.sh``); TORCH_DEVICE_BACKEND_AUTOLOAD=0 only hides it.
    """
    probe = _probe(ctx)
    f = probe.import_failure("torch")
    if f is not None:
        yield Hit(
            f"import torch fails ({f.kind}): {f.message.rstrip('.')}. {f.explanation}",
            f.fix,
            Location(env="TORCH_DEVICE_BACKEND_AUTOLOAD" if f.kind == "autoload-failure" else None),
            {"kind": f.kind, "library": f.library},
        )


@check(
    "ENV012",
    "torch_npu loads",
    Severity.ERROR,
    phase=Phase.ENVIRONMENT,
    requires=("probe",),
    backend="host",
    source="torch_npu import (CANN libraries on the loader path)",
)
def torch_npu_loads(ctx: Context) -> Iterator[Hit]:
    """MindIE runs on ``torch_npu``; it needs CANN's libraries (``libhccl.so``, ``libascendcl.so``) on
    the loader path and a version built for the installed torch.

    Bad: ``ImportError: libhccl.so: cannot open shared object file``.
    Good: ``import torch_npu`` and ``torch.npu.device_count()`` > 0.
    Fix: ``source /usr/local/Ascend/ascend-toolkit/set_env.sh``; install the matching torch_npu.
    """
    probe = _probe(ctx)
    if not _wants_npu(ctx, probe):
        return
    if "torch_npu" not in probe.packages:
        if ctx.options.device == "npu":
            yield Hit(
                "torch_npu is not installed but --device npu was asked for",
                "pip install torch-npu matching the torch version, with CANN installed.",
                Location(),
            )
        return
    f = probe.import_failure("torch_npu")
    if f is None and probe.import_failure("torch") is not None:
        return  # ENV011 already says why
    if f is not None:
        yield Hit(
            f"import torch_npu fails ({f.kind}): {f.message.rstrip('.')}. {f.explanation}",
            f.fix,
            Location(env="ASCEND_HOME_PATH"),
            {"kind": f.kind, "library": f.library},
        )
    elif probe.npu_count == 0:
        yield Hit(
            "torch_npu loads but sees no NPU (device_count() is 0)",
            "Check the driver (npu-smi info), the /dev/davinci* devices passed to the container, and "
            "ASCEND_RT_VISIBLE_DEVICES.",
            Location(env="ASCEND_RT_VISIBLE_DEVICES"),
        )


def _base_version(v: str) -> str:
    return v.split("+")[0]


@check(
    "ENV013",
    "torch_npu matches the torch version",
    Severity.ERROR,
    phase=Phase.ENVIRONMENT,
    requires=("probe",),
    backend="host",
    source="torch_npu release naming (built for one torch version)",
)
def torch_npu_version(ctx: Context) -> Iterator[Hit]:
    """torch_npu ``X.Y.Z[.postN]`` is built for torch ``X.Y.Z`` exactly; any other pair fails at import
    with undefined symbols or refuses to load.

    Bad: torch 2.6.0 with torch-npu 2.5.1.
    Good: torch 2.5.1 with torch-npu 2.5.1.post1.
    Fix: install the torch-npu release for the installed torch (or the other way round).
    """
    probe = _probe(ctx)
    tv, nv = probe.packages.get("torch"), probe.packages.get("torch_npu")
    if not tv or not nv:
        return
    t = _base_version(tv)
    n = _base_version(nv).split(".post")[0].split("rc")[0]
    if t != n:
        yield Hit(
            f"torch_npu {nv} is built for torch {n}, but torch {tv} is installed",
            f"pip install torch=={n} (or the torch-npu release for torch {t}).",
            Location(),
            {"torch": tv, "torch_npu": nv},
        )


#: torch_npu (major.minor.patch[.postN]) → CANN release it is built for (COMPATIBILITY.en.md).
CANN_MATRIX = {
    "2.1.0.post10": "8.0.0",
    "2.5.1": "8.1.RC1",
    "2.6.0": "8.2.RC1",
    "2.7.1": "8.3.RC1",
    "2.9.0": "8.5.0",
    "2.9.0.post2": "9.0.0",
    "2.12.0": "9.1.0",
}


@check(
    "ENV014",
    "CANN matches torch_npu",
    Severity.WARNING,
    phase=Phase.ENVIRONMENT,
    requires=("probe",),
    backend="host",
    source="torch_npu README version compatibility table (torch_npu ↔ CANN)",
)
def cann_matrix(ctx: Context) -> Iterator[Hit]:
    """Each torch_npu release is built against one CANN release (torch_npu's COMPATIBILITY table);
    other pairs fail with undefined symbols or misbehave.

    Bad: torch-npu 2.5.1 on CANN 8.0.0.
    Good: torch-npu 2.5.1 on CANN 8.1.RC1.
    Fix: install the CANN release the table gives, or the torch_npu built for your CANN.
    """
    probe = _probe(ctx)
    nv = probe.packages.get("torch_npu")
    if not nv:
        return
    cann = (probe.data.get("cann") or {}).get("toolkit_version")
    key = _base_version(nv)
    want = CANN_MATRIX.get(key) or CANN_MATRIX.get(key.split(".post")[0])
    if cann is None:
        if _wants_npu(ctx, probe):
            yield Hit(
                f"torch_npu {nv} is installed but no CANN toolkit was found (no version.info under ASCEND_HOME_PATH "
                "or /usr/local/Ascend)",
                f"Install CANN {want or '(the release for this torch_npu)'} and source its set_env.sh.",
                Location(env="ASCEND_HOME_PATH"),
                {"torch_npu": nv, "cann_expected": want},
            )
        return
    if want is None:
        yield Hit(
            f"torch_npu {nv} is not in the compatibility table this tool knows; CANN is {cann}",
            "Check torch_npu's COMPATIBILITY table for this release.",
            Location(),
            severity=Severity.INFO,
        )
    elif not str(cann).startswith(want):
        yield Hit(
            f"torch_npu {nv} is built for CANN {want}, but CANN {cann} is installed",
            f"Install CANN {want}, or the torch_npu release built for CANN {cann}.",
            Location(env="ASCEND_HOME_PATH"),
            {"torch_npu": nv, "cann": cann, "expected": want},
        )


@check(
    "ENV015",
    "the requested device is present",
    Severity.ERROR,
    phase=Phase.ENVIRONMENT,
    requires=("probe",),
    backend="preflight",
    source="npu_preflight device choice (--device) against the probe",
)
def device_present(ctx: Context) -> Iterator[Hit]:
    """``--device npu`` needs an NPU torch_npu can see, ``--device cuda`` a CUDA device; ``auto``
    picks NPU, then CUDA, then CPU and says which.

    Bad: ``--device cuda`` on a host whose torch is a CPU build.
    Good: ``--device cuda`` with ``torch.cuda.is_available()``.
    Fix: install the right torch build, or pass the device you have.
    """
    probe = _probe(ctx)
    want = ctx.options.device
    if want == "npu" and not probe.npu_devices and probe.import_failure("torch_npu") is None:
        yield Hit(
            "--device npu, but no NPU is visible to torch_npu",
            "Check npu-smi info and ASCEND_RT_VISIBLE_DEVICES.",
            Location(env="ASCEND_RT_VISIBLE_DEVICES"),
        )
    elif want == "cuda" and not probe.cuda_devices and probe.import_failure("torch") is None:
        build = (probe.data.get("torch") or {}).get("cuda_build")
        yield Hit(
            "--device cuda, but torch sees no CUDA device" + ("" if build else " (this torch is a CPU build)"),
            "Install a CUDA build of torch, or check CUDA_VISIBLE_DEVICES and the driver.",
            Location(env="CUDA_VISIBLE_DEVICES"),
        )
    elif want == "auto" and probe.import_failure("torch") is None:
        kind = "NPU" if probe.npu_devices else "CUDA" if probe.cuda_devices else "CPU"
        yield Hit(
            f"--device auto: the init will run on {kind}",
            "Pass --device to choose another.",
            Location(),
            severity=Severity.INFO,
        )


@check(
    "ENV009",
    "the target device supports the load dtype",
    Severity.ERROR,
    phase=Phase.PLAN,
    requires=("config", "target"),
    backend="mindie",
    source="Ascend/MindIE-LLM examples/atb_models/atb_llm/runner/model_runner.py ('This device does not support bfloat16'); torch_npu NpuVariables.h SoC ranges",
)
def dtype_on_device(ctx: Context) -> Iterator[Hit]:
    """Ascend 910A-family (SoC 100–104) and 310P (SoC 200–205) chips have no bfloat16: MindIE fails with
    "This device does not support bfloat16.Please change the data type (i.e. `torch_dtype`) to
    float16". Pre-Ampere NVIDIA GPUs emulate bf16 slowly or not at all.

    Bad: ``"torch_dtype": "bfloat16"`` for an Atlas 300I Duo (310P3).
    Good: ``"torch_dtype": "float16"`` on 310P3 (check the values fit fp16 with ``--deep``).
    Fix: set torch_dtype to float16 (and scan for fp16 overflow with --deep).
    """
    dev = ctx.target
    if ctx.declared_dtype == "bfloat16" and dev.bf16 is False:
        yield Hit(
            f"torch_dtype is bfloat16 but {dev.name} has no bfloat16 support: MindIE fails with 'This device does "
            "not support bfloat16.Please change the data type (i.e. `torch_dtype`) to float16'",
            'Set "torch_dtype": "float16" in config.json and run --deep to check for fp16 overflow.',
            Location(file="config.json", key="config.json:torch_dtype"),
            {"device": dev.name, "soc_version": dev.soc_version},
        )
