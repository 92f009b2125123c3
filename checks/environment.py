"""ENV: the environment variables MindIE and torch_npu read, CANN markers, rank tables, and the
probe's findings (torch / torch_npu / CANN import failures, versions, devices)."""

from __future__ import annotations

import glob
import ipaddress
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from toolkit.context import Context
from toolkit.envvars import parse_float, parse_visible_devices
from toolkit.formats.jsonload import JsonLoadError, load_file
from toolkit.mconfig import coerce
from toolkit.model import Hit, Location, Severity
from toolkit.registry import check


@check("ENV001", "ASCEND_RT_VISIBLE_DEVICES is a valid device list", Severity.ERROR)
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
    for p in parsed.problems:
        yield Hit(
            f"ASCEND_RT_VISIBLE_DEVICES={raw!r}: {p}",
            "Use ascending, distinct, comma-separated physical device ids, e.g. 0,1,2,3.",
            Location(env="ASCEND_RT_VISIBLE_DEVICES"),
            {"value": raw},
        )


@check("ENV002", "NPU_MEMORY_FRACTION is in (0, 1]", Severity.ERROR)
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


@check("ENV003", "RESERVED_MEMORY_GB is in [0, 64)", Severity.ERROR)
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


@check("ENV004", "RANK, LOCAL_RANK and WORLD_SIZE agree with model_config", Severity.ERROR)
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
    mc = coerce(ctx.model_config)
    for env_name, key in (("RANK", "rank"), ("LOCAL_RANK", "local_rank"), ("WORLD_SIZE", "world_size")):
        ev, mv = values[env_name], mc.get(key)
        if ev is not None and ev >= 0 and isinstance(mv, int) and ev != mv:
            yield Hit(
                f"{env_name}={ev} in the environment but model_config {key} is {mv}",
                f"Make {env_name} and model_config.{key} agree.",
                Location(env=env_name, key=f"model_config.{key}"),
                {"env": ev, "model_config": mv},
            )


def rank_table(ctx: Context) -> tuple[dict[str, Any] | None, str | None]:
    """The parsed rank table, or (None, why) — (None, None) when RANK_TABLE_FILE is unset."""
    raw = ctx.env.get("RANK_TABLE_FILE")
    if not raw:
        return None, None
    try:
        doc = load_file(Path(raw), max_bytes=10 * 1024 * 1024, max_depth=16).value
    except JsonLoadError as exc:
        return None, f"RANK_TABLE_FILE {raw!r} cannot be used: {exc.message}"
    if not isinstance(doc, dict) or not isinstance(doc.get("server_list"), list):
        return None, f"RANK_TABLE_FILE {raw!r} has no server_list"
    return doc, None


def rank_table_servers(ctx: Context) -> int | None:
    """Number of servers the rank table lists; None when there is no usable table."""
    doc, _ = rank_table(ctx)
    return len(doc["server_list"]) if doc else None


@check("ENV005", "multi-rank set-up: rank table and master address", Severity.ERROR)
def multi_rank(ctx: Context) -> Iterator[Hit]:
    """Multi-device runs read ``RANK_TABLE_FILE`` (servers, devices, ``device_ip``, ``rank_id``) and
    ``MASTER_IP``/``MASTER_PORT``. A table that does not parse, an invalid ``device_ip``, duplicate
    rank ids, or a rank count different from world_size fail as HCCL timeouts minutes later.

    Bad: a rank table whose ``device_ip`` is ``"192.168.1"``.
    Good: every device with a valid ``device_ip`` and a unique ``rank_id``; ranks = world_size.
    Fix: regenerate the rank table (hccn_tool gives the device IPs).
    """
    doc, why = rank_table(ctx)
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
        ws = coerce(ctx.model_config or {}).get("world_size")
        if isinstance(ws, int) and ranks and len(ranks) != ws:
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


@check("ENV006", "CANN environment is sourced on Ascend hosts", Severity.WARNING)
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


@check("ENV007", "torch backend auto-loading is not silently disabled", Severity.INFO)
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


@check("ENV008", "no deprecated MindIE log variables", Severity.INFO)
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
