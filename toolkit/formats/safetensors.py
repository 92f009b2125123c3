"""A strict reader of safetensors headers that never touches tensor bytes.

Written by hand rather than with the ``safetensors`` library because (a) the static phase must
neither load torch nor map whole files, (b) the library accepts files its own specification rejects
(duplicate keys, unknown fields, null metadata) and we must report those, and (c) it stops at the
first fault while an operator wants every broken tensor named with its byte offsets.

Rules follow the reference reader (huggingface/safetensors ``src/tensor.rs``); the error ``kind``
strings reuse its names so a user can search for them.
"""

from __future__ import annotations

import os
import struct
from dataclasses import field
from operator import attrgetter
from pathlib import Path
from typing import Any

from npu_preflight.formats.files import FileReadError, open_regular, read_fd
from npu_preflight.formats.jsonload import JsonLoadError, Loaded, pair_count, parse_text, paused_gc
from npu_preflight.records import frozen

MAX_HEADER_BYTES = 100_000_000
U64_MAX = 2**64 - 1

DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}

#: safetensors dtype → the name config.json's torch_dtype uses, for the float types that matter.
TORCH_NAME = {
    "F16": "float16",
    "BF16": "bfloat16",
    "F32": "float32",
    "F64": "float64",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
}

FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})
KNOWN_FORMATS = frozenset({"pt", "tf", "flax", "mlx"})
_BY_SPAN = attrgetter("begin", "end")
_TENSOR_FIELDS = frozenset({"dtype", "shape", "data_offsets"})


class SafetensorsError(Exception):
    """The header cannot be read at all; ``kind`` is the reference reader's error name."""

    def __init__(self, kind: str, message: str, tensor: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.tensor = tensor


@frozen
class TensorInfo:
    """One tensor's header entry; offsets are relative to the start of the byte buffer."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def numel(self) -> int:
        """Number of elements."""
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        """Size in bytes as declared by dtype and shape."""
        return self.numel * DTYPE_BITS[self.dtype] // 8


@frozen
class Problem:
    """A fault found in a header that did parse: a layout error or a leniency the library allows."""

    kind: str
    message: str
    tensor: str | None = None


@frozen
class Header:
    """A parsed header: tensors in file order, metadata, and what was odd about it."""

    header_len: int
    file_size: int
    tensors: dict[str, TensorInfo]
    metadata: dict[str, Any] | None
    has_metadata_key: bool
    anomalies: tuple[Problem, ...] = field(default=())

    @property
    def data_start(self) -> int:
        """Absolute file offset of the byte buffer."""
        return 8 + self.header_len

    def layout_problems(self) -> list[Problem]:
        """Offsets, sizes and coverage, as the reference reader validates them (never raises)."""
        out: list[Problem] = []
        expected = 0
        for t in sorted(self.tensors.values(), key=_BY_SPAN):
            if t.begin != expected or t.end < t.begin:
                if t.end < t.begin:
                    why = f"ends at byte {t.end:,} before it begins at {t.begin:,}"
                elif t.begin > expected:
                    why = f"begins at byte {t.begin:,} but the previous tensor ends at {expected:,} (a gap)"
                else:
                    why = f"begins at byte {t.begin:,}, inside the previous tensor which ends at {expected:,}"
                out.append(Problem("InvalidOffset", f"tensor {t.name} {why}", t.name))
            bits = DTYPE_BITS[t.dtype]
            numel = 1
            for d in t.shape:  # inline TensorInfo.numel: this loop runs once per tensor (300k+)
                numel *= d
            if numel * bits > U64_MAX:
                out.append(
                    Problem(
                        "ValidationOverflow",
                        f"tensor {t.name}: shape {list(t.shape)} × {bits} bits overflows 64 bits",
                        t.name,
                    )
                )
            elif (numel * bits) % 8:
                out.append(
                    Problem(
                        "MisalignedSlice",
                        f"tensor {t.name}: {numel} × {bits}-bit {t.dtype} is not a whole number of bytes",
                        t.name,
                    )
                )
            elif t.end - t.begin != numel * bits // 8:
                out.append(
                    Problem(
                        "TensorInvalidInfo",
                        f"tensor {t.name}: {t.dtype} {list(t.shape)} needs {numel * bits // 8:,} bytes "
                        f"but its offsets [{t.begin:,}, {t.end:,}] span {t.end - t.begin:,}",
                        t.name,
                    )
                )
            expected = max(expected, t.end)
        buffer = self.file_size - self.data_start
        if expected != buffer:
            if expected > buffer:
                last = max(self.tensors.values(), key=lambda t: t.end)
                msg = (
                    f"tensor {last.name} ends at byte {self.data_start + last.end:,} but the file "
                    f"holds {self.file_size:,} (truncated by {expected - buffer:,} bytes)"
                )
                out.append(Problem("MetadataIncompleteBuffer", msg, last.name))
            else:
                msg = (
                    f"the tensors cover {expected:,} bytes of data but the file carries {buffer:,} "
                    f"({buffer - expected:,} trailing bytes)"
                )
                out.append(Problem("MetadataIncompleteBuffer", msg))
        return out


def _nonneg_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def parse_header_bytes(prefix: bytes, file_size: int) -> Header:
    """Parse a header from the file's first bytes (at least 8 + N of them) and its total size."""
    with paused_gc():  # the JSON parse and the records built from it form no cycles
        return _parse_header_bytes(prefix, file_size)


def _parse_header_bytes(prefix: bytes, file_size: int) -> Header:
    if file_size < 8 or len(prefix) < 8:
        raise SafetensorsError("HeaderTooSmall", f"file is {file_size} bytes; a header needs at least 8")
    (n,) = struct.unpack("<Q", prefix[:8])
    if n > MAX_HEADER_BYTES:
        raise SafetensorsError(
            "HeaderTooLarge",
            f"header length field says {n:,} bytes (limit {MAX_HEADER_BYTES:,}); first bytes {prefix[:8]!r}",
        )
    if 8 + n > file_size:
        raise SafetensorsError(
            "InvalidHeaderLength",
            f"header length field says {n:,} bytes but the file holds only {file_size:,}",
        )
    raw = prefix[8 : 8 + n]
    if len(raw) < n:
        raise SafetensorsError("InvalidHeaderLength", f"could read only {len(raw):,} of {n:,} header bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SafetensorsError("InvalidHeader", f"header is not UTF-8 (byte {8 + exc.start})") from None
    # Parsed without the duplicate-key hook (one Python call per object, 20% of the parse at 100k
    # tensors); :func:`_duplicate_free` then proves from a count that no key repeated, and only a
    # header it cannot clear is parsed again with the hook. The value is the same either way: both
    # keep the last of repeated keys.
    doc = _load(text, track_duplicates=False).value
    if not isinstance(doc, dict):
        raise SafetensorsError("InvalidHeaderDeserialization", f"header is a JSON {type(doc).__name__}, not an object")
    tensors, metadata, has_meta, found, slow = _entries(doc)
    if _duplicate_free(text, doc, metadata, len(tensors) - len(slow), slow):
        anomalies = []
    else:
        anomalies = _duplicate_problems(_load(text, track_duplicates=True), doc)
    if n % 8:
        anomalies.append(Problem("UnalignedHeader", f"header length {n} is not a multiple of 8"))
    anomalies += found
    return Header(n, file_size, tensors, metadata, has_meta, tuple(anomalies))


def _load(text: str, *, track_duplicates: bool) -> Loaded:
    try:
        return parse_text(text, max_depth=8, track_duplicates=track_duplicates)
    except JsonLoadError as exc:
        raise SafetensorsError("InvalidHeaderDeserialization", f"header JSON: {exc.message}") from None


def _duplicate_free(
    text: str, doc: dict[str, Any], metadata: dict[str, Any] | None, fast: int, slow: list[Any]
) -> bool:
    """True when no object of the header repeated a key. Outside strings, every key/value pair has
    exactly one ``:``; ``:`` inside strings only adds to the text's count. So when the text holds
    no more ``:`` than the parsed objects hold pairs, no pair was dropped, i.e. no key repeated.
    ``fast`` entries took the fast path: three pairs each and nothing nested; the ``slow`` ones are
    counted in full."""
    pairs = len(doc) + 3 * fast + (len(metadata) if metadata else 0) + sum(pair_count(e) for e in slow)
    return pairs == text.count(":")


def _duplicate_problems(loaded: Loaded, doc: dict[str, Any]) -> list[Problem]:
    """Problems for keys that appear more than once (the hook parse saw them)."""

    def _span(e: Any) -> Any:
        return tuple(str(e.get(f)) for f in ("dtype", "shape", "data_offsets")) if isinstance(e, dict) else None

    # A conflict is two entries that would load different bytes (an extra unknown field is not one).
    conflicts = [(k, a, b) for k, a, b in loaded.conflicts if _span(a) is not None and _span(a) != _span(b)]
    conflicting = {k for k, _, _ in conflicts}
    anomalies: list[Problem] = [
        Problem("DuplicateKey", f"key {k!r} appears more than once (the last one wins)", k or None)
        for k in dict.fromkeys(loaded.duplicates)
        if k not in conflicting
    ]
    for k, first, last in conflicts:
        if isinstance(last, dict) and k in doc and k != "__metadata__":
            anomalies.append(
                Problem(
                    "DuplicateKeyConflict",
                    f"tensor {k!r} is listed twice with different entries — first {_entry(first)}, then "
                    f"{_entry(last)}: the safetensors library loads the last, a first-wins reader the first",
                    k or None,
                )
            )
    return anomalies


def _entries(
    doc: dict[str, Any],
) -> tuple[dict[str, TensorInfo], dict[str, Any] | None, bool, list[Problem], list[Any]]:
    """The tensors, the metadata, whether ``__metadata__`` is present, the problems found in the
    entries, and the entries that took the checked path."""
    anomalies: list[Problem] = []
    metadata: dict[str, Any] | None = None
    has_meta = "__metadata__" in doc
    tensors: dict[str, TensorInfo] = {}
    slow: list[Any] = []
    for name, entry in doc.items():
        if name == "__metadata__":
            if entry is None:
                anomalies.append(Problem("NullMetadata", '"__metadata__" is null'))
                continue
            if not isinstance(entry, dict):
                raise SafetensorsError("InvalidHeaderDeserialization", '"__metadata__" must be an object of strings')
            for mk, mv in entry.items():
                if not isinstance(mv, str):
                    raise SafetensorsError(
                        "InvalidHeaderDeserialization",
                        f'"__metadata__" value for {mk!r} is a {type(mv).__name__}, not a string',
                    )
            metadata = entry
            fmt = entry.get("format")
            if fmt is not None and fmt not in KNOWN_FORMATS:
                anomalies.append(
                    Problem("UnknownFormat", f'"__metadata__.format" is {fmt!r}, not one of pt/tf/flax/mlx')
                )
            continue
        info = _tensor_fast(name, entry)
        if info is None:
            info = _tensor_checked(name, entry, anomalies)
            slow.append(entry)
        tensors[name] = info
    return tensors, metadata, has_meta, anomalies, slow


def _entry(e: dict[str, Any]) -> str:
    """A header entry in words: dtype, shape and byte range."""
    offs = e.get("data_offsets")
    span = (
        f"bytes [{offs[0]:,}, {offs[1]:,})"
        if isinstance(offs, list)
        and len(offs) == 2
        and all(isinstance(o, int) and not isinstance(o, bool) and 0 <= o <= U64_MAX for o in offs)
        else f"data_offsets {str(offs)[:40]}"
    )
    return f"{str(e.get('dtype'))[:12]} {str(e.get('shape'))[:60]} at {span}"


def _tensor(name: str, entry: Any, anomalies: list[Problem]) -> TensorInfo:
    """One tensor entry: the fast path when it applies, else every check with its error."""
    return _tensor_fast(name, entry) or _tensor_checked(name, entry, anomalies)


def _tensor_fast(name: str, entry: Any) -> TensorInfo | None:
    # Fast path for the entry every real file holds: exactly the three fields, a known dtype and
    # in-range ints (``type() is int`` also rules out bool). At 100k+ tensors per header the generic
    # checks below cost 2.5x the JSON parse; anything unusual falls through to them for its error.
    if type(entry) is dict and len(entry) == 3 and name:
        dtype = entry.get("dtype")
        shape = entry.get("shape")
        offs = entry.get("data_offsets")
        if type(dtype) is str and dtype in DTYPE_BITS and type(shape) is list and type(offs) is list and len(offs) == 2:
            begin, end = offs
            if type(begin) is int and type(end) is int and 0 <= begin <= U64_MAX and 0 <= end <= U64_MAX:
                for d in shape:
                    if type(d) is not int or not 0 <= d <= U64_MAX:
                        break
                else:
                    return TensorInfo(name, dtype, tuple(shape), begin, end)
    return None


def _tensor_checked(name: str, entry: Any, anomalies: list[Problem]) -> TensorInfo:
    def bad(why: str) -> SafetensorsError:
        return SafetensorsError("InvalidHeaderDeserialization", f"tensor {name!r}: {why}", name)

    if not isinstance(entry, dict):
        raise bad(f"entry is a JSON {type(entry).__name__}, not an object")
    missing = _TENSOR_FIELDS - entry.keys()
    if missing:
        raise bad(f"missing field {', '.join(sorted(missing))}")
    extra = entry.keys() - _TENSOR_FIELDS
    if extra:
        anomalies.append(Problem("UnknownField", f"tensor {name!r} has unknown field(s) {sorted(extra)}", name))
    if name == "":
        anomalies.append(Problem("EmptyName", "a tensor has an empty name", None))
    dtype = entry["dtype"]
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise bad(f"unknown dtype {dtype!r}")
    shape = entry["shape"]
    if not isinstance(shape, list) or not all(_nonneg_int(d) for d in shape):
        raise bad(f"shape {shape!r} is not a list of non-negative integers")
    offs = entry["data_offsets"]
    if not isinstance(offs, list) or len(offs) != 2 or not all(_nonneg_int(o) for o in offs):
        raise bad(f"data_offsets {offs!r} is not exactly two non-negative integers")
    if any(d > U64_MAX for d in shape) or any(o > U64_MAX for o in offs):
        raise bad("a shape or offset value does not fit in 64 bits")
    return TensorInfo(name, dtype, tuple(shape), offs[0], offs[1])


def read_header(path: Path) -> Header:
    """Read only the header of a regular safetensors file (8 + N bytes), whatever its size."""
    try:
        with open_regular(path) as fd:
            size = os.fstat(fd).st_size
            head = read_fd(fd, 8)
            if len(head) == 8:
                (n,) = struct.unpack("<Q", head)
                if n <= MAX_HEADER_BYTES and 8 + n <= size:
                    head += read_fd(fd, n, 8)
    except FileReadError as exc:
        raise SafetensorsError("Unreadable", exc.message) from None
    except OSError as exc:
        raise SafetensorsError("Unreadable", exc.strerror or str(exc)) from None
    return parse_header_bytes(head, size)
