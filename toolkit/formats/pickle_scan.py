"""Static scan of everything a loader could unpickle — by simulating the unpickler, never running it.

Every pickle stream is decoded opcode by opcode while a small stack machine mirrors the real
unpickler's stack, mark stack and memo. So the targets of ``GLOBAL``, ``INST``, ``STACK_GLOBAL``,
``REDUCE``, ``OBJ``, ``NEWOBJ`` and ``BUILD`` are exactly what ``pickle.load`` would resolve and
call: decoy strings pushed and popped before ``STACK_GLOBAL``, memo indices that drift, protocol-0
``INST`` streams without a ``PROTO`` header — none of them change the answer. Every resolved global
must be on an allowlist (what a tensor checkpoint needs); calling anything that is not a named
global, or mutating a global, is unsafe too. A stream that cannot be decoded to its ``STOP`` cannot
be shown safe.

Why not ``pickletools.genops``: it reads every opcode argument into memory, so a 64 MiB
``BINBYTES8`` (or a 4 GiB one) would be materialised just to reach a payload placed after it. The
decoder here uses the stdlib's own opcode table (``pickletools.code2op``) but skips long arguments
by seeking. Sources are memory maps or streaming decompressors, so memory stays bounded whatever
the file size.

Containers: ``torch.save`` zips (every ``*.pkl`` member is a stream a loader opens; other members
that look like pickles are scanned too; members are read from their local headers, so tampered
flags and CRCs hide nothing, and members missing from the central directory are found by walking
the local headers), legacy raw torch files (magic number, protocol, sys_info, data and storage-key
pickles back to back), plain pickles, ``.npy`` object arrays (a pickle after the header), ``.npz``
archives, and the legacy tar format.
"""

from __future__ import annotations

import _compat_pickle
import ast
import io
import mmap
import os
import pickletools
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from npu_preflight.formats.files import FileReadError, open_regular
from npu_preflight.formats.pickle_sniff import NPY_MAGIC, ZIP_MAGICS, looks_like_pickle
from npu_preflight.records import frozen

#: Arguments longer than this are skipped by seeking, never read.
MAX_INLINE_ARG = 1 << 20
MAX_LINE = 1 << 16
MAX_OPS = 20_000_000
MAX_ITEMS = 4_000_000  # values alive on the stacks and in the memo
MAX_INFLATE = 1 << 30  # decompressed bytes per zip member
MAX_MEMBERS = 100_000
MAX_DEPTH = 3
MAX_TRAILING_STREAMS = 64
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
#: torch.load of a legacy (non-zip) file reads these five pickles, then raw storage bytes.
LEGACY_STREAMS = ("magic number", "protocol version", "sys_info", "data", "storage keys")

#: Globals a tensor checkpoint needs (module, name).
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
        ("torch.storage", "UntypedStorage"),
        ("torch.storage", "TypedStorage"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "slice"),
        ("builtins", "complex"),
        ("builtins", "bytes"),
        ("builtins", "bytearray"),
        ("_codecs", "encode"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
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
    if module == "torch" and (name in _TORCH_DTYPES or (name.endswith("Storage") and name.isidentifier())):
        return True
    return module in ("numpy", "numpy.dtypes") and name.endswith("DType") and name.isidentifier()


class ScanError(Exception):
    """A stream that cannot be decoded as the unpickler would (the message says where and why)."""


# -- sources: bounded readers over a memory map or a streaming decompressor -----------------------


class Source(Protocol):
    """What the decoder reads from."""

    def read(self, n: int) -> bytes: ...
    def readline(self, limit: int) -> bytes: ...
    def skip(self, n: int) -> int: ...
    def tell(self) -> int: ...


class ViewSource:
    """A window ``[start, end)`` of a buffer (a memory map: reads copy only what is asked for)."""

    def __init__(self, buf: Any, start: int = 0, end: int | None = None) -> None:
        self.buf = buf
        self.start = start
        self.pos = start
        self.end = len(buf) if end is None else min(end, len(buf))

    def read(self, n: int) -> bytes:
        stop = min(self.pos + n, self.end)
        data = bytes(self.buf[self.pos : stop])
        self.pos = stop
        return data

    def readline(self, limit: int) -> bytes:
        stop = min(self.pos + limit, self.end)
        if isinstance(self.buf, mmap.mmap):
            nl = self.buf.find(b"\n", self.pos, stop)
        else:
            nl = bytes(self.buf[self.pos : stop]).find(b"\n")
            nl = -1 if nl < 0 else self.pos + nl
        stop = stop if nl < 0 else nl + 1
        data = bytes(self.buf[self.pos : stop])
        self.pos = stop
        return data

    def skip(self, n: int) -> int:
        stop = min(self.pos + n, self.end)
        moved = stop - self.pos
        self.pos = stop
        return moved

    def tell(self) -> int:
        return self.pos - self.start


class InflateSource:
    """A raw-deflate member decompressed as it is read, never more than ``cap`` bytes in all."""

    def __init__(self, buf: Any, start: int, size: int, cap: int = MAX_INFLATE) -> None:
        self.src = ViewSource(buf, start, start + size)
        self.z = zlib.decompressobj(-15)
        self.pending = b""
        self.pos = 0
        self.cap = cap
        self.eof = False

    def _fill(self, want: int) -> None:
        while len(self.pending) < want and not self.eof:
            chunk = self.src.read(1 << 16)
            try:
                out = self.z.decompress(chunk, max(want - len(self.pending), 1 << 16)) if chunk else self.z.flush()
                while self.z.unconsumed_tail and len(self.pending) + len(out) < want:
                    out += self.z.decompress(self.z.unconsumed_tail, 1 << 16)
            except zlib.error as exc:
                raise ScanError(f"deflate data is corrupt ({exc})") from None
            if not chunk and not out:
                self.eof = True
            self.pending += out
            if self.pos + len(self.pending) > self.cap:
                raise ScanError(f"decompresses to more than {self.cap:,} bytes")

    def read(self, n: int) -> bytes:
        self._fill(n)
        data, self.pending = self.pending[:n], self.pending[n:]
        self.pos += len(data)
        return data

    def readline(self, limit: int) -> bytes:
        out = b""
        while len(out) < limit:
            self._fill(1)
            if not self.pending:
                break
            nl = self.pending.find(b"\n", 0, limit - len(out))
            take = len(self.pending) if nl < 0 else nl + 1
            take = min(take, limit - len(out))
            out += self.pending[:take]
            self.pending = self.pending[take:]
            self.pos += take
            if out.endswith(b"\n"):
                break
        return out

    def skip(self, n: int) -> int:
        moved = 0
        while moved < n:
            got = len(self.read(min(n - moved, 1 << 20)))
            if not got:
                break
            moved += got
        return moved

    def tell(self) -> int:
        return self.pos


# -- the simulated unpickler ----------------------------------------------------------------------


@frozen
class Str:
    """A str on the stack (None when too long to have been read)."""

    value: str | None


@frozen
class Global:
    """A global the unpickler resolved (imported)."""

    module: str
    name: str

    def __str__(self) -> str:
        return f"{self.module}.{self.name}"


@frozen
class Made:
    """An object made by calling ``target`` (a Global, or None for other values)."""

    target: Global | None


class _Other:
    """Any other value (numbers, bytes, containers, None)."""


OTHER = _Other()
MARK = object()


@dataclass
class PickleReport:
    """What the simulation found in one stream."""

    member: str
    globals: list[tuple[str, str]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)  # unsafe call or mutation patterns
    error: str | None = None  # why the stream could not be decoded to STOP
    required: bool = True  # a loader unpickles this stream, so a decoding failure matters
    end: int = 0
    value: Any = None  # the stream's result (for the legacy magic number)

    @property
    def unsafe(self) -> list[tuple[str, str]]:
        """Globals outside the allowlist, deduplicated, in order of appearance."""
        return list(dict.fromkeys(g for g in self.globals if not is_safe_global(*g)))

    @property
    def safe(self) -> bool:
        """Decoded to STOP with nothing but allowed globals and calls."""
        return self.error is None and not self.unsafe and not self.calls


_STRING_OPS = frozenset(
    {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"}
)
_NUMBER = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"}


def _read_arg(src: Source, op: pickletools.OpcodeInfo) -> Any:
    """One opcode argument, decoded with the stdlib's own reader; long ones are skipped."""
    arg = op.arg
    if arg is None:
        return None
    n = arg.n
    if n >= 0:
        raw = src.read(n)
        if len(raw) < n:
            raise ScanError(f"{op.name}: the stream ends inside its argument")
        return arg.reader(io.BytesIO(raw))
    if n == pickletools.UP_TO_NEWLINE:
        raw = b""
        for _ in range(2 if arg.name == "stringnl_noescape_pair" else 1):  # GLOBAL/INST: module and name lines
            line = src.readline(MAX_LINE)
            if not line.endswith(b"\n"):
                raise ScanError(f"{op.name}: no newline within {MAX_LINE:,} bytes")
            raw += line
        try:
            return arg.reader(io.BytesIO(raw))
        except ValueError as exc:
            raise ScanError(f"{op.name}: {exc}") from None
    width = {
        pickletools.TAKEN_FROM_ARGUMENT1: 1,
        pickletools.TAKEN_FROM_ARGUMENT4: 4,
        pickletools.TAKEN_FROM_ARGUMENT4U: 4,
        pickletools.TAKEN_FROM_ARGUMENT8U: 8,
    }[n]
    prefix = src.read(width)
    if len(prefix) < width:
        raise ScanError(f"{op.name}: the stream ends inside its length")
    fmt = {1: "<B", 4: "<I" if n == pickletools.TAKEN_FROM_ARGUMENT4U else "<i", 8: "<Q"}[width]
    (length,) = struct.unpack(fmt, prefix)
    if length < 0:
        raise ScanError(f"{op.name}: negative length {length}")
    if length > MAX_INLINE_ARG:
        if src.skip(length) < length:
            raise ScanError(f"{op.name}: the stream ends inside its {length:,}-byte argument")
        return None  # too long to matter as a name; the opcode still has its stack effect
    data = src.read(length)
    if len(data) < length:
        raise ScanError(f"{op.name}: the stream ends inside its {length:,}-byte argument")
    try:
        return arg.reader(io.BytesIO(prefix + data))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ScanError(f"{op.name}: {exc}") from None


class _Machine:
    """The stack, mark stack and memo of one unpickler, with symbolic values."""

    def __init__(self, rep: PickleReport) -> None:
        self.rep = rep
        self.proto = 0  # a stream without PROTO is protocol 0 to the unpickler
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.items = 0

    def push(self, v: Any) -> None:
        self.items += 1
        if self.items > MAX_ITEMS:
            raise ScanError(f"more than {MAX_ITEMS:,} values: too large to analyse")
        self.stack.append(v)

    def pop(self) -> Any:
        if not self.stack:
            raise ScanError("stack underflow")
        self.items -= 1
        return self.stack.pop()

    def pop_mark(self) -> list[Any]:
        if not self.metastack:
            raise ScanError("no MARK to pop to")
        items = self.stack
        self.items -= len(items)
        self.stack = self.metastack.pop()
        return items

    def top(self) -> Any:
        if not self.stack:
            raise ScanError("stack underflow")
        return self.stack[-1]

    def resolve(self, module: Any, name: Any, how: str) -> Global:
        if not isinstance(module, str) or not isinstance(name, str):
            raise ScanError(f"{how} needs two strings")
        if self.proto < 3:
            # The unpickler (pickle.py and _pickle.c alike, fix_imports=True) renames Python 2
            # modules before importing: __builtin__ -> builtins, copy_reg -> copyreg, ...
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        g = Global(module, name)
        self.rep.globals.append((module, name))
        return g

    def call(self, target: Any, how: str) -> Made:
        if isinstance(target, Global):
            return Made(target)
        self.rep.calls.append(f"{how} calls a value that is not a named global ({_describe(target)})")
        return Made(None)

    def mutate(self, target: Any, how: str) -> None:
        if isinstance(target, Global):
            self.rep.calls.append(f"{how} modifies the global {target} itself")

    def step(self, name: str, arg: Any) -> bool:
        """Apply one opcode; True at STOP."""
        if name == "STOP":
            self.rep.value = self.pop()
            return True
        if name == "PROTO":
            if not isinstance(arg, int) or not 0 <= arg <= 5:
                raise ScanError(f"unsupported pickle protocol {arg}")
            self.proto = arg
            return False
        if name in ("FRAME", "READONLY_BUFFER"):
            return False
        if name == "MARK":
            self.metastack.append(self.stack)
            self.stack = []
            return False
        if name == "POP":
            if self.stack:
                self.pop()
            else:
                self.pop_mark()
            return False
        if name == "POP_MARK":
            self.pop_mark()
            return False
        if name == "DUP":
            self.push(self.top())
            return False
        if name in _STRING_OPS:
            self.push(Str(arg if isinstance(arg, str) else (arg.decode("latin-1") if isinstance(arg, bytes) else None)))
            return False
        if name in _NUMBER:
            self.push(arg if isinstance(arg, int) else OTHER)
            return False
        if name in ("GLOBAL", "INST"):
            module, _, attr = str(arg).partition(" ")
            g = self.resolve(module, attr, name)
            if name == "GLOBAL":
                self.push(g)
            else:
                self.pop_mark()
                self.push(self.call(g, "INST"))
            return False
        if name == "STACK_GLOBAL":
            attr, module = self.pop(), self.pop()
            self.push(
                self.resolve(
                    module.value if isinstance(module, Str) else module,
                    attr.value if isinstance(attr, Str) else attr,
                    "STACK_GLOBAL",
                )
            )
            return False
        if name in ("EXT1", "EXT2", "EXT4"):
            self.rep.calls.append(f"{name} {arg}: a copyreg extension code, which cannot be resolved statically")
            self.rep.globals.append(("copyreg extension", str(arg)))
            self.push(OTHER)
            return False
        if name == "REDUCE":
            args = self.pop()
            func = self.pop()
            del args
            self.push(self.call(func, "REDUCE"))
            return False
        if name == "OBJ":
            items = self.pop_mark()
            if not items:
                raise ScanError("OBJ without a class")
            self.push(self.call(items[0], "OBJ"))
            return False
        if name == "NEWOBJ":
            self.pop()
            self.push(self.call(self.pop(), "NEWOBJ"))
            return False
        if name == "NEWOBJ_EX":
            self.pop()
            self.pop()
            self.push(self.call(self.pop(), "NEWOBJ_EX"))
            return False
        if name == "BUILD":
            self.pop()
            self.mutate(self.top(), "BUILD")
            return False
        if name in ("PERSID", "BINPERSID"):
            if name == "BINPERSID":
                self.pop()
            self.push(Made(None))  # the loader's persistent_load (torch: storages)
            return False
        if name in ("APPEND", "SETITEM"):
            self.pop()
            if name == "SETITEM":
                self.pop()
            self.mutate(self.top(), name)
            return False
        if name in ("APPENDS", "SETITEMS", "ADDITEMS"):
            self.pop_mark()
            self.mutate(self.top(), name)
            return False
        if name in ("TUPLE", "LIST", "DICT", "FROZENSET"):
            self.pop_mark()
            self.push(OTHER)
            return False
        if name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            for _ in range(int(name[-1])):
                self.pop()
            self.push(OTHER)
            return False
        if name in ("PUT", "BINPUT", "LONG_BINPUT"):
            if not isinstance(arg, int) or arg < 0:
                raise ScanError(f"{name} with a bad memo index")
            self.memo[arg] = self.top()
            self.items += 1
            return False
        if name == "MEMOIZE":
            self.memo[len(self.memo)] = self.top()
            self.items += 1
            return False
        if name in ("GET", "BINGET", "LONG_BINGET"):
            if arg not in self.memo:
                raise ScanError(f"{name} {arg}: no such memo entry")
            self.push(self.memo[arg])
            return False
        if name == "NEXT_BUFFER":
            self.push(OTHER)
            return False
        # Every remaining opcode pushes one plain value (None, bools, floats, bytes, empty containers).
        self.push(OTHER)
        return False


def _describe(v: Any) -> str:
    if isinstance(v, Made):
        return f"the result of calling {v.target}" if v.target else "the result of another call"
    if isinstance(v, Str):
        return "a string"
    return "a plain value"


def decode_stream(src: Source, member: str, required: bool = True) -> PickleReport:
    """Decode one pickle stream from ``src``'s position to its STOP, simulating the unpickler."""
    rep = PickleReport(member, required=required)
    m = _Machine(rep)
    start = src.tell()
    code2op: dict[str, pickletools.OpcodeInfo] = pickletools.code2op  # type: ignore[attr-defined]  # not in typeshed
    try:
        for _ in range(MAX_OPS):
            code = src.read(1)
            if not code:
                raise ScanError("the stream ends before STOP")
            op = code2op.get(code.decode("latin-1"))
            if op is None:
                raise ScanError(f"unknown opcode {code!r} at byte {src.tell() - 1 - start:,}")
            arg = _read_arg(src, op)
            if m.step(op.name, arg):
                rep.end = src.tell()
                return rep
        raise ScanError(f"more than {MAX_OPS:,} opcodes: too long to analyse")
    except ScanError as exc:
        rep.error = str(exc)
    except (struct.error, ValueError, OverflowError, UnicodeDecodeError) as exc:
        rep.error = f"{type(exc).__name__}: {exc}"
    rep.end = src.tell()
    return rep


# -- containers -----------------------------------------------------------------------------------


@dataclass
class ScanResult:
    """Every pickle stream found in one file, and structural oddities of the container."""

    kind: str  # zip | pickle | npy | npz | tar | none
    pickles: list[PickleReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def safe(self) -> bool:
        """Every stream a loader would unpickle was shown safe."""
        return all(p.safe or (not p.required and not p.unsafe and not p.calls) for p in self.pickles)


def _raw(buf: Any, name: str, start: int, end: int, required: bool, res: ScanResult) -> None:
    """One or more pickles back to back from ``start`` (a raw or legacy torch file)."""
    src = ViewSource(buf, start, end)
    first = decode_stream(src, name, required)
    res.pickles.append(first)
    if first.error:
        return
    if first.value == LEGACY_MAGIC:
        for label in LEGACY_STREAMS[1:]:
            rep = decode_stream(src, f"{name} ({label} pickle)", True)
            res.pickles.append(rep)
            if rep.error:
                return
        return  # the rest is raw storage bytes
    # pickle.load stops at the first STOP; loaders that read on (joblib, repeated load) see the rest.
    for n in range(MAX_TRAILING_STREAMS):
        pos = src.pos
        if pos >= src.end:
            return
        rep = decode_stream(src, f"{name}@{pos - start}", required=False)
        if rep.unsafe or rep.calls or rep.error is None:
            res.pickles.append(rep)
        if rep.error is not None:
            res.notes.append(
                f"{name}: {src.end - pos:,} bytes after the pickle's STOP are not a complete pickle "
                "(pickle.load ignores them; other loaders may not)"
            )
            return
        if n == MAX_TRAILING_STREAMS - 1:
            res.notes.append(f"{name}: more than {MAX_TRAILING_STREAMS} pickles back to back; the rest not scanned")


def _npy(src_buf: Any, name: str, start: int, end: int, res: ScanResult) -> None:
    """A .npy: an object array's data is a pickle (numpy.load(allow_pickle=True) unpickles it)."""
    head = bytes(src_buf[start : min(end, start + 12)])
    if len(head) < 10:
        res.notes.append(f"{name}: truncated .npy header")
        return
    major = head[6]
    if major == 1:
        (hlen,) = struct.unpack("<H", head[8:10])
        hstart = start + 10
    else:
        if len(head) < 12:
            res.notes.append(f"{name}: truncated .npy header")
            return
        (hlen,) = struct.unpack("<I", head[8:12])
        hstart = start + 12
    if hlen > MAX_LINE or hstart + hlen > end:
        res.notes.append(f"{name}: .npy header of {hlen:,} bytes is invalid")
        return
    text = bytes(src_buf[hstart : hstart + hlen]).decode("latin-1")
    try:
        header = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        res.notes.append(f"{name}: .npy header is not a Python literal")
        return
    descr = header.get("descr") if isinstance(header, dict) else None
    if "O" in repr(descr):
        _raw(src_buf, f"{name} (object array)", hstart + hlen, end, True, res)


def _zip_members(buf: Any, fileobj: Any, res: ScanResult) -> list[tuple[str, int, int, int, int]]:
    """(name, flags, method, data start, compressed size) from the central directory, then any
    member only the local headers show."""
    import zipfile  # imported here: most folders hold no archive to open

    out: list[tuple[str, int, int, int, int]] = []
    seen_offsets: dict[int, int] = {}  # local header offset -> compressed size (central directory)
    try:
        with zipfile.ZipFile(fileobj) as zf:
            infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            res.notes.append(f"{len(infos):,} members; only the first {MAX_MEMBERS:,} scanned")
        for info in infos[:MAX_MEMBERS]:
            loc = _local(buf, info.header_offset)
            if loc is None:
                res.notes.append(f"{info.filename}: the central directory points at no local header")
                continue
            _, flags, method, _, start = loc
            if info.flag_bits & 0x1:
                res.notes.append(f"{info.filename}: marked encrypted (torch ignores the flag)")
            seen_offsets[info.header_offset] = info.compress_size
            out.append((info.filename, flags, info.compress_type, start, info.compress_size))
    # zipfile raises a wide range of exceptions on hostile archives (BadZipFile, ValueError,
    # struct.error, OSError, EOFError, NotImplementedError, OverflowError, ...); any of them means
    # the directory cannot be trusted, and the local headers are walked instead.
    except Exception as exc:  # noqa: BLE001
        res.notes.append(f"zip directory unreadable ({type(exc).__name__}); scanned local headers instead")
    pos = buf.find(b"PK\x03\x04")
    walked = 0
    while pos != -1 and walked < MAX_MEMBERS:
        walked += 1
        loc = _local(buf, pos)
        if loc is None:
            break
        name, flags, method, csize, start = loc
        if pos in seen_offsets:
            csize = seen_offsets[pos]  # a data-descriptor member's local header says 0
        else:
            if out:
                res.notes.append(f"{name}: present in the file but not in the zip directory")
            out.append((name, flags, method, start, csize))
        pos = buf.find(b"PK\x03\x04", start + csize)
    return out


def _local(buf: Any, off: int) -> tuple[str, int, int, int, int] | None:
    """(name, flags, method, compressed size, data start) of the local header at ``off``."""
    head = bytes(buf[off : off + 30])
    if len(head) < 30 or head[:4] != b"PK\x03\x04":
        return None
    flags, method, _, _, _, csize, _, nlen, xlen = struct.unpack("<HHHHIIIHH", head[6:30])
    name = bytes(buf[off + 30 : off + 30 + nlen]).decode("utf-8", "replace")
    return name, flags, method, csize, off + 30 + nlen + xlen


def _zip(buf: Any, name: str, fileobj: Any, depth: int, res: ScanResult) -> None:
    import zipfile  # imported here: most folders hold no archive to open

    for member, _flags, method, start, csize in _zip_members(buf, fileobj, res):
        label = f"{name}:{member}"
        if method not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            res.notes.append(f"{member}: compression method {method} not understood")
            continue
        end = start + csize
        if method == zipfile.ZIP_STORED:
            head = bytes(buf[start : min(end, start + 64)])
        else:
            try:
                head = InflateSource(buf, start, csize).read(64)
            except ScanError as exc:
                res.notes.append(f"{member}: {exc}")
                continue
        is_pkl = member.endswith(".pkl")
        if head[:4] == b"PK\x03\x04" and not is_pkl:
            if depth >= MAX_DEPTH:
                res.notes.append(f"{member}: archives nested deeper than {MAX_DEPTH} levels not scanned")
                continue
            inner = _materialise(buf, method, start, csize, res, member)
            if inner is not None:
                nested = ScanResult("zip")
                _zip(inner, label, _ViewFile(inner), depth + 1, nested)
                res.pickles.extend(nested.pickles)
                res.notes.extend(nested.notes)
                res.notes.append(f"{member}: a nested archive")
            continue
        if head[:6] == NPY_MAGIC and not is_pkl:
            inner = _materialise(buf, method, start, csize, res, member, cap=MAX_INLINE_ARG)
            if inner is not None:
                _npy(inner, label, 0, len(inner), res)
            continue
        if not is_pkl and not looks_like_pickle(head):
            continue
        src: Source = ViewSource(buf, start, end) if method == zipfile.ZIP_STORED else InflateSource(buf, start, csize)
        rep = decode_stream(src, label, required=is_pkl)
        if is_pkl or rep.unsafe or rep.calls or rep.error is None:
            res.pickles.append(rep)
            if not is_pkl:
                res.notes.append(f"{member}: a pickle under a non-.pkl name")


def _materialise(
    buf: Any, method: int, start: int, csize: int, res: ScanResult, member: str, cap: int = 256 << 20
) -> Any:
    import zipfile  # imported here: most folders hold no archive to open

    if method == zipfile.ZIP_STORED:
        if csize > cap:
            res.notes.append(f"{member}: {csize:,} bytes; nested content larger than {cap:,} bytes not scanned")
            return None
        return bytes(buf[start : start + csize])
    try:
        src = InflateSource(buf, start, csize, cap)
        data = src.read(cap + 1)
    except ScanError as exc:
        res.notes.append(f"{member}: {exc}")
        return None
    if len(data) > cap:
        res.notes.append(f"{member}: more than {cap:,} bytes decompressed; not scanned")
        return None
    return data


class _ViewFile(io.RawIOBase):
    """A seekable read-only file over a buffer, without copying it (for zipfile)."""

    def __init__(self, buf: Any) -> None:
        self.view = memoryview(buf)
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), len(self.view) - self.pos)
        b[:n] = self.view[self.pos : self.pos + n]
        self.pos += n
        return n

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: len(self.view)}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos


def _tar(buf: Any, name: str, res: ScanResult) -> None:
    """torch's legacy tar format: members 'sys_info', 'pickle', 'storages', 'tensors' are pickles."""
    import tarfile  # imported here: most folders hold no archive to open

    try:
        with tarfile.open(fileobj=_ViewFile(buf), mode="r:") as tf:
            for i, info in enumerate(tf):
                if i >= MAX_MEMBERS:
                    res.notes.append(f"more than {MAX_MEMBERS:,} tar members; the rest not scanned")
                    break
                if not info.isfile():
                    continue
                start = info.offset_data
                end = start + info.size
                head = bytes(buf[start : min(end, start + 64)])
                required = info.name in ("pickle", "sys_info", "storages", "tensors")
                if required or looks_like_pickle(head):
                    _raw(buf, f"{name}:{info.name}", start, end, required, res)
    # tarfile, like zipfile, raises many exception types on hostile archives.
    except Exception as exc:  # noqa: BLE001
        res.notes.append(f"tar archive unreadable ({type(exc).__name__}: {exc})")


def scan_buffer(buf: Any, name: str, *, required: bool, fileobj: Any = None) -> ScanResult:
    """Scan a whole file's bytes: a zip, a tar, a .npy, a raw pickle, or none of these."""
    head = bytes(buf[:512])
    if head[:4] in ZIP_MAGICS:
        res = ScanResult("npz" if name.endswith(".npz") else "zip")
        _zip(buf, name, fileobj if fileobj is not None else _ViewFile(buf), 0, res)
        return res
    if head[:6] == NPY_MAGIC:
        res = ScanResult("npy")
        _npy(buf, name, 0, len(buf), res)
        return res
    if len(buf) > 262 and bytes(buf[257:262]) == b"ustar":
        res = ScanResult("tar")
        _tar(buf, name, res)
        if looks_like_pickle(head[:64]):  # pickle.load reads from byte 0 whatever torch.load does
            _raw(buf, name, 0, len(buf), False, res)
        return res
    if required or looks_like_pickle(head[:64]):
        res = ScanResult("pickle")
        _raw(buf, name, 0, len(buf), required, res)
        if not required and not any(p.unsafe or p.calls or p.error is None for p in res.pickles):
            return ScanResult("none")
        return res
    return ScanResult("none")


def scan_file(path: Path, name: str, *, required: bool = True) -> ScanResult:
    """Scan one regular file through a read-only memory map (multi-GB checkpoints are never read
    whole; stored zip members are decoded in place)."""
    with open_regular(path) as fd:
        size = os.fstat(fd).st_size
        if size == 0:
            return ScanResult("none")
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mm:
            return scan_buffer(mm, name, required=required)


def scan_candidates(files: Iterable[tuple[Path, str, bool]]) -> dict[str, ScanResult]:
    """Scan each (path, name, named-as-a-pickle) file :func:`pickle_sniff.select` chose; a file that
    cannot be read is a note (SEC001 reports it)."""
    out: dict[str, ScanResult] = {}
    for path, rel, named in files:
        try:
            res = scan_file(path, rel, required=named)
        except (FileReadError, OSError, ValueError) as exc:
            res = ScanResult("none", notes=[f"unreadable: {getattr(exc, 'message', None) or exc}"])
        if res.kind != "none" or res.notes:
            out[rel] = res
    return out


def iter_unsafe(res: ScanResult) -> Iterator[tuple[PickleReport, str]]:
    """(stream, why) for every reason a stream cannot be shown safe."""
    for rep in res.pickles:
        for mod, name in rep.unsafe:
            yield rep, f"imports {mod}.{name}"
        for call in dict.fromkeys(rep.calls):
            yield rep, call
