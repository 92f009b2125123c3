"""The device to plan for: a catalog entry (``--target-device``) or the probed device."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from npu_preflight.errors import Unavailable
from npu_preflight.model import DeviceChoice, DeviceKind
from npu_preflight.records import frozen

if TYPE_CHECKING:
    from npu_preflight.probe import ProbeResult

GIB = 1024**3
NO_BF16_SOCS = frozenset(range(100, 105)) | frozenset(range(200, 206))


@frozen
class DeviceSpec:
    """One device: its kind, memory, bf16 support and where the figures come from."""

    name: str
    kind: DeviceKind
    total_bytes: int
    free_bytes: int | None
    bf16: bool | None
    source: str
    soc_version: int | None = None
    index: int | None = None
    fp8: bool | None = None  # runs FP8 weights natively (None: unknown)

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
            "fp8": self.fp8,
        }


def catalog() -> list[dict[str, Any]]:
    """The device catalog (schemas/devices.json)."""
    from npu_preflight.schemas import load

    return list(load("devices.json")["devices"])


def _norm(s: str) -> str:
    return s.lower().replace(" ", "").replace("_", "-").removeprefix("ascend").removeprefix("nvidia")


def find_device(name: str) -> DeviceSpec | None:
    """A catalog device by name or alias (case- and punctuation-insensitive)."""
    want = _norm(name)
    for d in catalog():
        if want in {_norm(n) for n in [d["name"], *d.get("aliases", [])]}:
            fp8 = d.get("fp8")
            return DeviceSpec(
                d["name"],
                d["kind"],
                int(d["memory_gib"] * GIB),
                None,
                bool(d["bf16"]),
                f"catalog: {d['source']}",
                fp8=fp8 if isinstance(fp8, bool) else None,
            )
    return None


def npu_bf16(soc: int | None) -> bool | None:
    """bf16 support from the SoC version (None when unknown)."""
    if soc is None:
        return None
    return soc not in NO_BF16_SOCS


def resolve_target(
    *,
    target_device: str | None,
    probe: ProbeResult | None,
    probe_unavailable: str | None,
    device: DeviceChoice,
    npu_device_id: int | None,
    memory_limit: int | None,
) -> DeviceSpec:
    """``target_device`` (a catalog name) if given, else the probed device for ``device`` (auto: NPU,
    CUDA, CPU). Raises Unavailable naming why there is no device to plan for."""
    if target_device:
        spec = find_device(target_device)
        if spec is None:
            raise Unavailable(f"--target-device {target_device!r} is not in the catalog")
        return spec
    if probe is None:
        raise Unavailable(f"no device to plan for: {probe_unavailable or 'no probe ran'}; give --target-device NAME")
    if probe.failure:
        raise Unavailable(f"no device to plan for: the probe failed ({probe.failure}; see ENV010)")
    dev_id = npu_device_id if npu_device_id is not None and npu_device_id >= 0 else 0
    kinds: list[DeviceKind] = [device] if device != "auto" else ["npu", "cuda", "cpu"]
    for kind in kinds:
        if kind == "npu" and probe.npu_devices:
            devs = probe.npu_devices
            d = devs[dev_id] if dev_id < len(devs) else devs[0]
            soc = probe.soc_version
            return DeviceSpec(
                str(d.get("name") or "NPU"),
                "npu",
                _int(d.get("total_bytes")),
                _opt_int(d.get("free_bytes")),
                npu_bf16(soc),
                "probe: torch.npu.mem_get_info",
                soc,
                _opt_int(d.get("index")),
                fp8=False,
            )
        if kind == "cuda" and probe.cuda_devices:
            d = probe.cuda_devices[0]
            bf16 = d.get("bf16")
            return DeviceSpec(
                str(d.get("name") or "CUDA"),
                "cuda",
                _int(d.get("total_bytes")),
                _opt_int(d.get("free_bytes")),
                bf16 if isinstance(bf16, bool) else None,
                "probe: torch.cuda.mem_get_info",
                None,
                _opt_int(d.get("index")),
                fp8=_cuda_fp8(d.get("capability")),
            )
        if kind == "cpu":
            host = probe.host
            total = _int(host.get("memtotal_bytes"))
            free = _opt_int(host.get("memavailable_bytes"))
            cap = _opt_int(host.get("cgroup_memory_limit_bytes"))
            if cap and cap < total:
                total = cap
                free = min(free or cap, cap)
            if memory_limit is not None and memory_limit < total:
                total = memory_limit
                free = min(free or total, total)
            return DeviceSpec(
                "CPU (host memory)", "cpu", total, free, True, "probe: /proc/meminfo", None, None, fp8=False
            )
    raise Unavailable(f"--device {device}: no such device was found by the probe (see ENV015)")


def _cuda_fp8(capability: Any) -> bool | None:
    """FP8 tensor cores from the compute capability "major.minor" (8.9 and above), None when unknown."""
    if not isinstance(capability, str):
        return None
    try:
        major, minor = (int(p) for p in capability.split(".", 1))
    except ValueError:
        return None
    return (major, minor) >= (8, 9)


def _opt_int(v: Any) -> int | None:
    return int(v) if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def _int(v: Any) -> int:
    return _opt_int(v) or 0
