"""Git LFS pointer files: the small text stubs left when weights were cloned without ``git lfs``."""

from __future__ import annotations

import re
from pathlib import Path

from npu_preflight.formats.files import FileReadError, read_head
from npu_preflight.records import frozen

MAX_POINTER_BYTES = 1024
_SPEC = b"version https://git-lfs.github.com/spec/"
_OID = re.compile(r"^oid sha256:([0-9a-f]{64})$", re.M)
_SIZE = re.compile(r"^size (\d+)$", re.M)


@frozen
class LfsPointer:
    """A parsed pointer: the sha256 of the real file and its size (either may be unknown)."""

    oid: str | None
    size: int | None


def parse_pointer(data: bytes) -> LfsPointer | None:
    """Return the pointer if ``data`` is an LFS pointer file, else None. Never raises."""
    if len(data) > MAX_POINTER_BYTES or not data.startswith(_SPEC):
        return None
    text = data.decode("utf-8", "replace")
    oid = _OID.search(text)
    size = _SIZE.search(text)
    return LfsPointer(oid.group(1) if oid else None, int(size.group(1)) if size else None)


def read_pointer(path: Path) -> LfsPointer | None:
    """Read a regular file as a pointer if it is small enough to be one; anything else gives None."""
    try:
        data, size = read_head(path, MAX_POINTER_BYTES + 1)
    except FileReadError:
        return None
    return parse_pointer(data) if size <= MAX_POINTER_BYTES else None
