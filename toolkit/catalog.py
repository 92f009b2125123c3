"""The device to plan for: a catalog entry (``--target-device``) or the probed device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from toolkit.errors import Unavailable

if TYPE_CHECKING:
    from toolkit.context import Context

GIB = 1024**3
NO_BF16_SOCS = frozenset(range(100, 105)) | frozenset(range(200, 206))


@dataclass(frozen=True)
class DeviceSpec:
    """One device: its kind, memory, bf16 support and where the figures come from."""

    name: str
    kind: str  # npu | cuda | cpu
    total_bytes: int
    free_bytes: int | None
    bf16: bool | None
    source: str
    soc_version: int | None = None
    index: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the report."""
        return {
            "name": self.name,
            "kind": self.kind,
            "total_bytes": self.total_bytes,
            "free_bytes": self.free_bytes,
            "bf16": self.bf16,
            "source": self.source,
            "soc_version": self.soc_version,
            "index": self.index,
        }


def catalog() -> list[dict[str, Any]]:
    """The device catalog (schemas/devices.json)."""
    from schemas import load

    return list(load("devices.json")["devices"])


def _norm(s: str) -> str:
    return s.lower().replace(" ", "").replace("_", "-").removeprefix("ascend").removeprefix("nvidia")


def find_device(name: str) -> DeviceSpec | None:
    """A catalog device by name or alias (case- and punctuation-insensitive)."""
    want = _norm(name)
    for d in catalog():
        if want in {_norm(n) for n in [d["name"], *d.get("aliases", [])]}:
            return DeviceSpec(
                d["name"], d["kind"], int(d["memory_gib"] * GIB), None, bool(d["bf16"]), f"catalog: {d['source']}"
            )
    return None


def npu_bf16(soc: int | None) -> bool | None:
    """bf16 support from the SoC version (None when unknown)."""
    if soc is None:
        return None
    return soc not in NO_BF16_SOCS


def resolve_target(ctx: Context) -> DeviceSpec:
    """``--target-device`` if given, else the probed device for ``--device`` (auto: NPU, CUDA, CPU)."""
    opts = ctx.options
    if opts.target_device:
        spec = find_device(opts.target_device)
        if spec is None:
            raise Unavailable(f"--target-device {opts.target_device!r} is not in the catalog")
        return spec
    reason = ctx.availability("probe")
    if reason is not None:
        raise Unavailable(f"no device to plan for: {reason}; give --target-device NAME")
    probe = ctx.probe
    if probe.failure:
        raise Unavailable(f"no device to plan for: the probe failed ({probe.failure}; see ENV010)")
    mc = ctx.model_config or {}
    raw_id = mc.get("npu_device_id")
    dev_id: int = raw_id if isinstance(raw_id, int) and raw_id >= 0 else 0
    kinds = [opts.device] if opts.device != "auto" else ["npu", "cuda", "cpu"]
    for kind in kinds:
        if kind == "npu" and probe.npu_devices:
            devs = probe.npu_devices
            d = devs[dev_id] if dev_id < len(devs) else devs[0]
            soc = (probe.data.get("npu") or {}).get("soc_version")
            return DeviceSpec(
                str(d.get("name") or "NPU"),
                "npu",
                int(d.get("total_bytes") or 0),
                d.get("free_bytes"),
                npu_bf16(soc),
                "probe: torch.npu.mem_get_info",
                soc,
                d.get("index"),
            )
        if kind == "cuda" and probe.cuda_devices:
            d = probe.cuda_devices[0]
            return DeviceSpec(
                str(d.get("name") or "CUDA"),
                "cuda",
                int(d.get("total_bytes") or 0),
                d.get("free_bytes"),
                d.get("bf16"),
                "probe: torch.cuda.mem_get_info",
                None,
                d.get("index"),
            )
        if kind == "cpu":
            host = probe.host
            total = int(host.get("memtotal_bytes") or 0)
            free = host.get("memavailable_bytes")
            cap = host.get("cgroup_memory_limit_bytes")
            if cap and cap < total:
                total = int(cap)
                free = min(int(free or cap), int(cap))
            if opts.memory_limit is not None and opts.memory_limit < total:
                total = opts.memory_limit
                free = min(int(free or total), total)
            return DeviceSpec("CPU (host memory)", "cpu", total, free, True, "probe: /proc/meminfo", None, None)
    raise Unavailable(f"--device {opts.device}: no such device was found by the probe (see ENV015)")
