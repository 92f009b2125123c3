"""Deep integrity: every byte read once — sha256 of each file and, in the same pass, NaN/±Inf,
all-zero and fp16-overflow statistics of every tensor. Files are read in parallel threads (hashlib
and numpy release the GIL), in fixed chunks, so memory stays bounded whatever the shard size.

The float scan is written for speed rather than with ``np.isnan``/``np.abs``: IEEE floats order
like integers by magnitude bits, so the largest |x| of a chunk is ``max(int view)`` for the
positives and ``max(uint view) − sign bit`` for the negatives — two SIMD reductions and no
temporary arrays. NaN/Inf show up as a magnitude at or above the all-ones exponent, so an exact
count (a slower pass) runs only on chunks that contain them.
"""

from __future__ import annotations

import errno
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from npu_preflight.formats.files import FileReadError, open_regular
from npu_preflight.formats.safetensors import Header, TensorInfo
from npu_preflight.records import frozen

#: Bytes per read. 1 MiB measured best both ways: the buffer stays in the CPU cache between the
#: read, the hash and the scan (warm: +15% over 16 MiB), and reads no larger than the kernel's
#: read-ahead window keep it streaming from disk (cold: +40%). See bench/RESULTS.md.
CHUNK = 1024 * 1024
#: How far ahead of the read position the kernel is asked to fetch (``POSIX_FADV_WILLNEED``), and in
#: what steps. The kernel's own read-ahead (128 KiB on a virtio disk) leaves the hash waiting on the
#: disk at every step; an explicit window lets the disk work while the CPU hashes (cold cache: 0.6 ->
#: 1.1 GB/s in bench/deep_bench.py). Page cache only: the process's memory does not grow.
PREFETCH_AHEAD = 8 * CHUNK
PREFETCH_STEP = 4 * CHUNK
_WILLNEED = getattr(os, "POSIX_FADV_WILLNEED", None)
#: The advice is a system call per ``PREFETCH_STEP`` that walks the page cache: 2-3% of a warm
#: scan, for nothing. So a file is first read with ``RWF_NOWAIT``, which returns only what the
#: page cache holds; the advice starts at the first byte that had to come from the disk, and stays
#: on for the rest of that file. Where the flag does not exist, every read is advised as before.
_PREADV = hasattr(os, "preadv")
_NOWAIT = getattr(os, "RWF_NOWAIT", None) if _PREADV else None


@frozen
class FloatKind:
    """How to read one float dtype through integer views."""

    signed: Any
    unsigned: Any
    sign: int
    special: int  # magnitude bits at and above which the value is Inf or NaN
    inf: int | None  # magnitude bits of Inf (None: the format has no Inf)
    to_float: Callable[[int], float]


@cache
def _np() -> Any:
    """numpy, imported on the first tensor decoded: hashing (manifest, verify) needs none, and numpy
    is an optional dependency (``pip install 'npu-preflight[deep]'``)."""
    try:
        import numpy
    except ModuleNotFoundError as exc:  # pragma: no cover - exercised in the no-numpy venv test
        raise ModuleNotFoundError(
            "--deep decodes tensors with numpy, which is not installed: pip install 'npu-preflight[deep]'"
        ) from exc
    return numpy


def _bits_to_f16(b: int) -> float:
    np = _np()
    return float(np.array([b], np.uint16).view(np.float16)[0])


def _bits_to_bf16(b: int) -> float:
    np = _np()
    return float(np.array([b << 16], np.uint32).view(np.float32)[0])


def _bits_to_f32(b: int) -> float:
    np = _np()
    return float(np.array([b], np.uint32).view(np.float32)[0])


def _bits_to_f64(b: int) -> float:
    np = _np()
    return float(np.array([b], np.uint64).view(np.float64)[0])


def _f8_e4m3(b: int) -> float:
    e, m = (b >> 3) & 0xF, b & 0x7
    if e == 0:
        return m / 8 * 2.0**-6
    return (1 + m / 8) * 2.0 ** (e - 7)


def _f8_e5m2(b: int) -> float:
    e, m = (b >> 2) & 0x1F, b & 0x3
    if e == 0:
        return m / 4 * 2.0**-14
    return (1 + m / 4) * 2.0 ** (e - 15)


#: The float dtypes decoded, their integer views and special values.
FLOAT_KINDS = ("F16", "BF16", "F32", "F64", "F8_E4M3", "F8_E5M2")
INTEGER_DTYPES = ("BOOL", "U8", "I8", "I16", "U16", "I32", "U32", "I64", "U64")
COMPLEX = {"C64": "F32"}


@cache
def floats() -> dict[str, FloatKind]:
    """How each float dtype is read (numpy imported here, on first use)."""
    np = _np()
    return {
        "F16": FloatKind(np.int16, np.uint16, 0x8000, 0x7C00, 0x7C00, _bits_to_f16),
        "BF16": FloatKind(np.int16, np.uint16, 0x8000, 0x7F80, 0x7F80, _bits_to_bf16),
        "F32": FloatKind(np.int32, np.uint32, 0x80000000, 0x7F800000, 0x7F800000, _bits_to_f32),
        "F64": FloatKind(np.int64, np.uint64, 0x8000000000000000, 0x7FF0000000000000, 0x7FF0000000000000, _bits_to_f64),
        "F8_E4M3": FloatKind(np.int8, np.uint8, 0x80, 0x7F, None, _f8_e4m3),
        "F8_E5M2": FloatKind(np.int8, np.uint8, 0x80, 0x7C, 0x7C, _f8_e5m2),
    }


@cache
def integers() -> dict[str, Any]:
    """The integer dtypes' numpy types (numpy imported here, on first use)."""
    np = _np()
    return {
        "BOOL": np.uint8,
        "U8": np.uint8,
        "I8": np.int8,
        "I16": np.int16,
        "U16": np.uint16,
        "I32": np.int32,
        "U32": np.uint32,
        "I64": np.int64,
        "U64": np.uint64,
    }


#: Sub-byte and exotic formats whose values are not decoded (reported as not scanned).
NOT_SCANNED = ("F4", "F6_E2M3", "F6_E3M2", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ")


@dataclass
class TensorStats:
    """Running statistics of one tensor."""

    name: str
    dtype: str
    numel: int
    scanned: bool = True
    max_bits: int = 0
    nan: int = 0
    inf: int = 0
    nonzero: bool = False
    pending: bytes = b""

    def feed(self, data: memoryview) -> None:
        """Consume the next bytes of this tensor (any split; a partial element waits for the rest)."""
        if not self.scanned:
            return
        np = _np()
        kind = floats().get(COMPLEX.get(self.dtype, self.dtype))
        itemsize = np.dtype(kind.unsigned).itemsize if kind else np.dtype(integers()[self.dtype]).itemsize
        if self.pending:
            need = itemsize - len(self.pending)
            head = self.pending + bytes(data[:need])
            data = data[need:]
            self.pending = b""
            if len(head) < itemsize:
                self.pending = head
                return
            self._scan(head, kind, itemsize)
        usable = len(data) - len(data) % itemsize
        if usable:
            self._scan(data[:usable], kind, itemsize)
        if usable < len(data):
            self.pending = bytes(data[usable:])

    def _scan(self, buf: bytes | memoryview, kind: FloatKind | None, itemsize: int) -> None:
        np = _np()
        if kind is None:
            arr = np.frombuffer(buf, dtype=integers()[self.dtype])
            if not self.nonzero and arr.size and arr.any():
                self.nonzero = True
            return
        s = np.frombuffer(buf, dtype=kind.signed)
        u = np.frombuffer(buf, dtype=kind.unsigned)
        pos = int(s.max())
        neg = int(u.max()) - kind.sign
        m = max(pos if pos > 0 else 0, neg if neg > 0 else 0)
        if m:
            self.nonzero = True
        if m >= kind.special:
            mag = u & np.array(kind.sign - 1, dtype=kind.unsigned)
            if kind.inf is not None:
                inf = int(np.count_nonzero(mag == kind.inf))
                self.inf += inf
                self.nan += int(np.count_nonzero(mag > kind.inf))
            else:
                self.nan += int(np.count_nonzero(mag >= kind.special))
            finite = mag[mag < kind.special]
            m = int(finite.max()) if finite.size else 0
        self.max_bits = max(self.max_bits, m)

    @property
    def kind(self) -> FloatKind | None:
        """The float reading, None for integers and unscanned formats."""
        return floats().get(COMPLEX.get(self.dtype, self.dtype)) if self.dtype in (*FLOAT_KINDS, *COMPLEX) else None

    @property
    def max_abs(self) -> float | None:
        """Largest finite |x| (None for integer tensors)."""
        k = self.kind
        return k.to_float(self.max_bits) if k and self.scanned else None

    def to_dict(self) -> dict[str, Any]:
        """Small per-tensor statistics for findings and the report."""
        return {
            "tensor": self.name,
            "dtype": self.dtype,
            "numel": self.numel,
            "scanned": self.scanned,
            "max_abs": self.max_abs,
            "nan": self.nan,
            "inf": self.inf,
            "all_zero": self.scanned and not self.nonzero,
        }


@dataclass
class FileScan:
    """One file: size, sha256, and its tensors' statistics."""

    rel: str
    size: int
    sha256: str
    tensors: list[TensorStats] = field(default_factory=list)
    error: str | None = None


@dataclass
class DeepScan:
    """The whole folder."""

    files: list[FileScan]
    duration_s: float
    workers: int
    interrupted: bool = False

    @property
    def bytes_read(self) -> int:
        """Total bytes hashed."""
        return sum(f.size for f in self.files)

    def tensors(self) -> Iterable[tuple[str, TensorStats]]:
        """(file, stats) for every tensor."""
        for f in self.files:
            for t in f.tensors:
                yield f.rel, t

    def to_dict(self) -> dict[str, Any]:
        """The report's ``integrity`` section."""
        gbps = self.bytes_read / self.duration_s / 1e9 if self.duration_s else None
        not_scanned = sorted({t.dtype for _, t in self.tensors() if not t.scanned})
        return {
            "files": [{"path": f.rel, "size": f.size, "sha256": f.sha256, "error": f.error} for f in self.files],
            "bytes": self.bytes_read,
            "duration_s": round(self.duration_s, 3),
            "throughput_gb_s": round(gbps, 3) if gbps else None,
            "workers": self.workers,
            "tensors": sum(1 for _ in self.tensors()),
            "not_scanned_dtypes": not_scanned,
            "interrupted": self.interrupted,
        }


ProgressFn = Callable[[int, int], None]  # (bytes just read, files just finished)


def scan_file(
    path: Path, rel: str, header: Header | None, stop: threading.Event, progress: ProgressFn | None = None
) -> FileScan:
    """Hash a file and, when it is safetensors, scan its tensors in the same single read."""
    h = hashlib.sha256()
    stats: list[tuple[int, int, TensorStats]] = []
    if header is not None:
        for t in sorted(header.tensors.values(), key=lambda t: t.begin):
            st = _stats_for(t)
            stats.append((header.data_start + t.begin, header.data_start + t.end, st))
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    pos = 0
    first = 0  # first tensor that may still overlap
    size = 0
    try:
        with open_regular(path) as fd:
            size = os.fstat(fd).st_size
            advised = 0
            cold = _NOWAIT is None  # no way to ask the page cache: advise every read
            while not stop.is_set():
                n = 0 if cold else _cached(fd, view, pos)
                if n is None:  # the file system does not take RWF_NOWAIT
                    cold, n = True, 0
                if not cold and n < CHUNK and pos + n < size:
                    # the page cache lacks the next byte: this file is read from the disk, and
                    # advised from that byte on
                    cold, advised = True, pos + n
                if cold and _WILLNEED is not None and advised < min(pos + PREFETCH_AHEAD, size):
                    advised = _prefetch(fd, advised, pos + PREFETCH_AHEAD + PREFETCH_STEP)
                while n < CHUNK:  # the rest of the chunk, waiting for the disk if need be
                    got = _read_at(fd, view[n:], pos + n)
                    if not got:
                        break
                    n += got
                if not n:
                    break
                chunk = view[:n]
                h.update(chunk)
                end = pos + n
                i = first
                while i < len(stats) and stats[i][0] < end:
                    b, e, st = stats[i]
                    if e > pos:
                        lo, hi = max(b, pos) - pos, min(e, end) - pos
                        if hi > lo:
                            st.feed(chunk[lo:hi])
                    if e <= end and i == first:
                        first += 1
                    i += 1
                pos = end
                if progress is not None:
                    progress(n, 0)
    except FileReadError as exc:
        return FileScan(rel, size, "", [s for _, _, s in stats], error=exc.message)
    except OSError as exc:
        return FileScan(rel, size, "", [s for _, _, s in stats], error=exc.strerror or str(exc))
    finally:
        view.release()
    if progress is not None:
        progress(0, 1)
    return FileScan(rel, size, h.hexdigest(), [s for _, _, s in stats])


def _cached(fd: int, view: memoryview, pos: int) -> int | None:
    """Bytes read at ``pos`` from the page cache alone (``RWF_NOWAIT``: never waits for the disk;
    fewer than asked when a page is missing), or None when the file system does not take the flag."""
    try:
        return os.preadv(fd, [view], pos, _NOWAIT)  # type: ignore[arg-type]
    except BlockingIOError:  # nothing at pos is cached
        return 0
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            return None
        raise


def _read_at(fd: int, view: memoryview, pos: int) -> int:
    """Read at ``pos`` into ``view``, waiting for the disk if need be (``pread`` and a copy where
    ``os.preadv`` does not exist)."""
    if _PREADV:
        return os.preadv(fd, [view], pos)
    data = os.pread(fd, len(view), pos)
    view[: len(data)] = data
    return len(data)


def _prefetch(fd: int, start: int, end: int) -> int:
    """Ask the kernel to start reading ``[start, end)`` now; returns where the next request begins.
    Advice only: a file system that refuses it is read as before."""
    try:
        os.posix_fadvise(fd, start, end - start, _WILLNEED)  # type: ignore[arg-type]
    except OSError:
        return 1 << 62  # never ask again for this file
    return end


def _stats_for(t: TensorInfo) -> TensorStats:
    scanned = t.dtype in FLOAT_KINDS or t.dtype in COMPLEX or t.dtype in INTEGER_DTYPES
    return TensorStats(t.name, t.dtype, t.numel, scanned=scanned)


def scan_paths(
    items: Sequence[tuple[Path, str, Header | None]],
    workers: int | None = None,
    progress: ProgressFn | None = None,
    stop: threading.Event | None = None,
) -> DeepScan:
    """Scan files in parallel; a set ``stop`` event (Ctrl-C) ends every worker at its next chunk."""
    stop = stop or threading.Event()
    workers = max(1, min(workers or os.cpu_count() or 1, len(items) or 1, 16))
    if any(h is not None for _, _, h in items):
        _np()  # import numpy before the clock starts: a fixed cost, not throughput
    start = time.perf_counter()
    # largest first, so one big shard does not finish last alone
    order = sorted(items, key=lambda it: -_size(it[0]))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deep") as pool:
        futures = [pool.submit(scan_file, p, rel, h, stop, progress) for p, rel, h in order]
        try:
            results = [f.result() for f in futures]
        except KeyboardInterrupt:
            stop.set()
            for f in futures:
                f.cancel()
            raise
    by_rel = {r.rel: r for r in results}
    files = [by_rel[rel] for _, rel, _ in items]
    return DeepScan(files, time.perf_counter() - start, workers, interrupted=stop.is_set())


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0
