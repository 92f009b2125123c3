"""Opening untrusted files without blocking and reading them with a byte cap.

Every reader of the weights folder, the model_config, the rank table and the manifests goes through
here. ``open()`` on a FIFO blocks until a writer appears (forever, in a hostile folder) and a read
of ``/dev/zero`` never ends; so files are opened with ``O_NONBLOCK`` (which makes opening a FIFO
return at once), checked with ``fstat`` to be regular files, and read up to a cap.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_READ = 1 << 20


class FileReadError(Exception):
    """A file that cannot be read as a regular file within its cap; ``kind`` says why."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def file_kind(mode: int) -> str:
    """``FIFO``, ``character device``, ``socket`` … for messages."""
    for test, name in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return name
    return "not a regular file"


@contextmanager
def open_regular(path: Path | str) -> Iterator[int]:
    """A read-only descriptor of ``path`` (symlinks followed), only if it is a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise FileReadError("unreadable", exc.strerror or str(exc)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileReadError("not-regular", f"is {file_kind(st.st_mode)}, not a regular file")
        # Regular files ignore O_NONBLOCK; clear it anyway so later reads behave normally.
        os.set_blocking(fd, True)
        yield fd
    finally:
        os.close(fd)


def read_fd(fd: int, limit: int, offset: int = 0, first: int = _READ) -> bytes:
    """Up to ``limit`` bytes from ``offset`` (fewer at end of file); ``first`` is the size of the
    first read (the file's size when known: one read and no join for the whole file)."""
    chunks: list[bytes] = []
    remaining = limit
    step = max(1, first)
    while remaining > 0:
        b = os.pread(fd, min(remaining, step), offset)
        step = _READ
        if not b:
            break
        chunks.append(b)
        offset += len(b)
        remaining -= len(b)
    return b"".join(chunks)


#: What tells one version of a file from another without reading it: device, inode, size, and the
#: modification and change times in nanoseconds (a write changes the last two, a replacement the inode).
FileIdentity = tuple[int, int, int, int, int]


def identity(st: os.stat_result) -> FileIdentity:
    """The :data:`FileIdentity` of a ``stat`` result."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def read_regular(path: Path | str, max_bytes: int) -> bytes:
    """The whole of a regular file of at most ``max_bytes``; larger files raise ``too-large``."""
    return read_regular_identified(path, max_bytes)[0]


def read_regular_identified(path: Path | str, max_bytes: int) -> tuple[bytes, FileIdentity]:
    """:func:`read_regular`, and the identity of the file read, taken after the read (a write
    during the read shows in it)."""
    with open_regular(path) as fd:
        size = os.fstat(fd).st_size
        if size > max_bytes:
            raise FileReadError("too-large", f"{size:,} bytes exceeds the {max_bytes:,}-byte limit")
        data = read_fd(fd, max_bytes + 1, first=size + 1)
        seen = identity(os.fstat(fd))
    if len(data) > max_bytes:  # the file grew while being read
        raise FileReadError("too-large", f"more than {max_bytes:,} bytes (limit)")
    return data, seen


def read_head(path: Path | str, n: int) -> tuple[bytes, int]:
    """The first ``n`` bytes of a regular file and its size."""
    with open_regular(path) as fd:
        return read_fd(fd, n), os.fstat(fd).st_size
