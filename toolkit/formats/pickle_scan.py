"""Static scan of pickles (``pytorch_model.bin`` and friends) at opcode level: never unpickled.

Zip members are read from their local headers by hand instead of through ``zipfile.open``, because
``zipfile`` refuses what torch's reader accepts (an "encrypted" flag bit, a wrong CRC) — exactly
the tricks used to hide a payload from scanners. Every member whose bytes look like a pickle is
scanned whatever its name, nested archives are opened (bounded depth), and a pickle that breaks
after its payload still reports the globals seen before the break.
"""

from __future__ import annotations

import io
import mmap
import os
import pickletools
import struct
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

MAX_MEMBER_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 3
MAX_RAW_PICKLES = 8

#: Globals a tensor checkpoint needs (module, name); ``*`` matches any name with that prefix.
SAFE_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("collections", "OrderedDict"),
        ("torch._utils", "_rebuild_tensor"),
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_tensor_v3"),
        ("torch._utils", "_rebuild_parameter"),
        ("torch._utils", "_rebuild_parameter_with_state"),
        ("torch._utils", "_rebuild_qtensor"),
        ("torch._utils", "_rebuild_sparse_tensor"),
        ("torch._utils", "_rebuild_wrapper_subclass"),
        ("torch._utils", "_rebuild_device_tensor_from_numpy"),
        ("torch._utils", "_rebuild_meta_tensor_no_storage"),
        ("torch._tensor", "_rebuild_from_type_v2"),
        ("torch", "Size"),
        ("torch", "device"),
        ("torch", "Tensor"),
        ("torch.nn.parameter", "Parameter"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "slice"),
        ("builtins", "complex"),
    }
)
_TORCH_DTYPES = frozenset(
    {
        "float16",
        "bfloat16",
        "float32",
        "float64",
        "half",
        "float",
        "double",
        "int8",
        "uint8",
        "int16",
        "int32",
        "int64",
        "bool",
        "complex64",
        "complex128",
        "float8_e4m3fn",
        "float8_e5m2",
        "qint8",
        "quint8",
        "qint32",
    }
)


def is_safe_global(module: str, name: str) -> bool:
    """True for globals a plain tensor checkpoint needs; everything else is suspicious."""
    if (module, name) in SAFE_GLOBALS:
        return True
    if module == "torch" and (name.endswith("Storage") or name in _TORCH_DTYPES):
        return True
    return module == "torch.storage" and name in ("UntypedStorage", "TypedStorage")


@dataclass
class PickleReport:
    """What a scan found in one pickle stream."""

    member: str
    globals: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None

    @property
    def unsafe(self) -> list[tuple[str, str]]:
        """Globals outside the allowlist, deduplicated, in order of appearance."""
        return list(dict.fromkeys(g for g in self.globals if not is_safe_global(*g)))


@dataclass
class ScanResult:
    """All pickle streams found in one file, and structural oddities of the container."""

    kind: str  # zip | pickle | none
    pickles: list[PickleReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def looks_like_pickle(head: bytes) -> bool:
    """A protocol 2–5 pickle starts with PROTO n; protocol 0/1 ones with ``(``, ``}``, ``]`` or ``c``
    followed by printable text (a GLOBAL line) — the forms torch and hand-made payloads use."""
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return True
    if head[:1] == b"c":
        line = head[1:64].split(b"\n", 1)
        return len(line) == 2 and line[0].replace(b"_", b"").replace(b".", b"").isalnum()
    return head[:2] in (b"(d", b"(l", b"}q", b"]q", b"(c", b"(i")


def scan_pickle(data: bytes, member: str) -> tuple[PickleReport, int]:
    """Collect GLOBAL/INST/STACK_GLOBAL targets of one pickle; returns the report and bytes consumed."""
    rep = PickleReport(member)
    memo: dict[int, str] = {}
    recent: list[str] = []  # string pushes, for STACK_GLOBAL
    end = 0
    try:
        for op, arg, pos in pickletools.genops(io.BytesIO(data)):
            end = (pos or 0) + 1
            name = op.name
            if name in ("GLOBAL", "INST"):
                mod, _, attr = str(arg).partition(" ")
                rep.globals.append((mod, attr))
            elif name in (
                "SHORT_BINUNICODE",
                "BINUNICODE",
                "BINUNICODE8",
                "UNICODE",
                "STRING",
                "BINSTRING",
                "SHORT_BINSTRING",
            ):
                recent.append(str(arg))
            elif name in ("MEMOIZE",):
                if recent:
                    memo[len(memo)] = recent[-1]
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                if recent and isinstance(arg, int):
                    memo[arg] = recent[-1]
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                if isinstance(arg, int) and arg in memo:
                    recent.append(memo[arg])
            elif name == "STACK_GLOBAL":
                if len(recent) >= 2:
                    rep.globals.append((recent[-2], recent[-1]))
                else:
                    rep.globals.append(("?", "?"))
            if name == "STOP":
                break
    except Exception as exc:  # noqa: BLE001 - pickletools raises ValueError and others on junk
        rep.error = f"{type(exc).__name__}: {exc}"
    return rep, end


def _raw_pickles(data: bytes, member: str) -> list[PickleReport]:
    """A raw (legacy) torch file is several pickles back to back, then storage bytes."""
    out = []
    offset = 0
    for _ in range(MAX_RAW_PICKLES):
        if not looks_like_pickle(data[offset : offset + 64]):
            break
        rep, used = scan_pickle(
            data[offset : offset + MAX_MEMBER_BYTES], member if offset == 0 else f"{member}@{offset}"
        )
        out.append(rep)
        if rep.error or used == 0:
            break
        offset += used
    return out


Buffer = bytes | mmap.mmap


def _local_member(data: Buffer, info: zipfile.ZipInfo) -> bytes | None:
    """A member's bytes from its local header, ignoring encryption flags and CRC (see module doc)."""
    off = info.header_offset
    if data[off : off + 4] != b"PK\x03\x04":
        return None
    name_len, extra_len = struct.unpack("<HH", data[off + 26 : off + 30])
    start = off + 30 + name_len + extra_len
    size = min(info.compress_size, MAX_MEMBER_BYTES)
    raw = data[start : start + size]
    if info.compress_type == zipfile.ZIP_STORED:
        return raw
    if info.compress_type == zipfile.ZIP_DEFLATED:
        try:
            return zlib.decompressobj(-15).decompress(raw, MAX_MEMBER_BYTES)
        except zlib.error:
            return None
    return None


def _walk_local_headers(data: Buffer) -> Iterator[tuple[str, bytes]]:
    """Members found by scanning local headers (when the central directory is missing or lies)."""
    pos = data.find(b"PK\x03\x04")
    seen = 0
    while pos != -1 and seen < 10_000:
        seen += 1
        try:
            _flags, method, _, _, _, csize, _, nlen, xlen = struct.unpack("<HHHHIIIHH", data[pos + 6 : pos + 30])
        except struct.error:
            return
        name = data[pos + 30 : pos + 30 + nlen].decode("utf-8", "replace")
        start = pos + 30 + nlen + xlen
        body = data[start : start + min(csize, MAX_MEMBER_BYTES)] if csize else b""
        if method == zipfile.ZIP_DEFLATED and body:
            try:
                body = zlib.decompressobj(-15).decompress(body, MAX_MEMBER_BYTES)
            except zlib.error:
                body = b""
        yield name, body
        pos = data.find(b"PK\x03\x04", start + max(csize, 0))


def scan_file(path: Path, name: str) -> ScanResult:
    """Scan one file through a read-only memory map (multi-GB checkpoints are not read whole)."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            return ScanResult("none")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return scan_bytes(mm, name, fileobj=fh)


def scan_bytes(data: Buffer, name: str, depth: int = 0, fileobj: BinaryIO | None = None) -> ScanResult:
    """Scan a whole file's bytes (a zip, a raw pickle, or neither)."""
    if data[:4] == b"PK\x03\x04" or (data[:4] == b"PK\x05\x06"):
        res = ScanResult("zip")
        members: list[tuple[str, bytes]] = []
        try:
            source: BinaryIO = fileobj if fileobj is not None else io.BytesIO(bytes(data))
            source.seek(0)
            with zipfile.ZipFile(source) as zf:
                for info in zf.infolist():
                    if info.flag_bits & 0x1:
                        res.notes.append(f"{info.filename}: marked encrypted (torch ignores the flag)")
                    body = _local_member(data, info)
                    if body is not None:
                        members.append((info.filename, body))
        except (zipfile.BadZipFile, ValueError, struct.error, OSError, EOFError) as exc:
            res.notes.append(f"zip directory unreadable ({exc}); scanned local headers instead")
        seen = {n for n, _ in members}
        # Local headers can hide members the central directory does not list.
        for n, body in _walk_local_headers(data):
            if n not in seen:
                if members:
                    res.notes.append(f"{n}: present in the file but not in the zip directory")
                members.append((n, body))
        for member, body in members:
            label = f"{name}:{member}"
            if depth < MAX_DEPTH and body[:4] == b"PK\x03\x04":
                nested = scan_bytes(body, label, depth + 1)
                res.pickles.extend(nested.pickles)
                res.notes.extend(nested.notes)
                res.notes.append(f"{member}: a nested archive")
            elif looks_like_pickle(body[:64]):
                rep, _ = scan_pickle(body, label)
                res.pickles.append(rep)
                if not member.endswith(".pkl"):
                    res.notes.append(f"{member}: a pickle under a non-.pkl name")
        return res
    if looks_like_pickle(data[:64]):
        return ScanResult("pickle", _raw_pickles(bytes(data[:MAX_MEMBER_BYTES]), name))
    return ScanResult("none")


def _sniff(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError:
        return False
    return head[:4] in (b"PK\x03\x04", b"PK\x05\x06") or looks_like_pickle(head)


def scan_candidates(files: Iterable[tuple[Path, str]]) -> dict[str, ScanResult]:
    """Scan every file (path, name) that a loader could unpickle."""
    out: dict[str, ScanResult] = {}
    for path, rel in files:
        if rel.endswith(".safetensors") or not _sniff(path):
            continue
        try:
            out[rel] = scan_file(path, rel)
        except (OSError, ValueError) as exc:
            out[rel] = ScanResult("none", notes=[f"unreadable: {exc}"])
    return out
