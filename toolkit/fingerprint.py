"""A fingerprint of the weights folder, taken before and after the sandboxed init: any file added,
removed or changed (size, mtime, inode, mode, link target, and the sha256 of small files) is a
change the init made — the folder must be read-only to it."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from npu_preflight.formats.files import FileReadError, open_regular, read_fd
from npu_preflight.records import frozen

MAX_ENTRIES = 100_000
#: Files up to this size are hashed (configs, tokenizers, indexes — what an init might rewrite)...
HASH_FILE_LIMIT = 16 * 1024 * 1024
#: ...within this total, so a folder of many mid-sized files stays cheap to fingerprint.
HASH_BUDGET = 256 * 1024 * 1024


@frozen
class Mark:
    """What is recorded of one entry."""

    kind: str
    size: int
    mtime_ns: int
    ino: int
    mode: int
    link: str | None = None
    sha256: str | None = None


def _hash(path: Path) -> str | None:
    try:
        with open_regular(path) as fd:
            h = hashlib.sha256()
            offset = 0
            while chunk := read_fd(fd, 1 << 20, offset):
                h.update(chunk)
                offset += len(chunk)
            return h.hexdigest()
    except (FileReadError, OSError):
        return None


def fingerprint(root: Path) -> dict[str, Mark]:
    """Every entry below ``root`` (``.git`` not descended), bounded."""
    out: dict[str, Mark] = {}
    budget = HASH_BUDGET
    stack = [""]
    while stack and len(out) < MAX_ENTRIES:
        rel_dir = stack.pop()
        try:
            with os.scandir(root / rel_dir) as it:
                items = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        for item in items:
            rel = f"{rel_dir}/{item.name}" if rel_dir else item.name
            try:
                st = item.stat(follow_symlinks=False)
            except OSError:
                continue
            link = digest = None
            if stat.S_ISLNK(st.st_mode):
                kind = "link"
                try:
                    link = os.readlink(item.path)
                except OSError:
                    link = None
            elif stat.S_ISDIR(st.st_mode):
                kind = "dir"
                if item.name != ".git":
                    stack.append(rel)
            elif stat.S_ISREG(st.st_mode):
                kind = "file"
                if st.st_size <= HASH_FILE_LIMIT and st.st_size <= budget:
                    budget -= st.st_size
                    digest = _hash(root / rel)
            else:
                kind = "special"
            size = 0 if kind == "dir" else st.st_size
            mtime = 0 if kind == "dir" else st.st_mtime_ns  # a directory's mtime changes with its listing
            out[rel] = Mark(kind, size, mtime, st.st_ino, st.st_mode, link, digest)
            if len(out) >= MAX_ENTRIES:
                break
    return out


def changes(before: dict[str, Mark], after: dict[str, Mark]) -> list[str]:
    """Human-readable differences, one per entry."""
    out = []
    for rel in sorted(after.keys() - before.keys()):
        out.append(f"{rel}: added ({after[rel].kind}, {after[rel].size:,} bytes)")
    for rel in sorted(before.keys() - after.keys()):
        out.append(f"{rel}: removed")
    for rel in sorted(before.keys() & after.keys()):
        a, b = before[rel], after[rel]
        if a == b:
            continue
        what = [
            name
            for name, x, y in (
                ("kind", a.kind, b.kind),
                ("size", a.size, b.size),
                ("content", a.sha256, b.sha256),
                ("mtime", a.mtime_ns, b.mtime_ns),
                ("inode", a.ino, b.ino),
                ("mode", a.mode, b.mode),
                ("link target", a.link, b.link),
            )
            if x != y
        ]
        out.append(
            f"{rel}: {', '.join(what)} changed" + (f" ({a.size:,} → {b.size:,} bytes)" if a.size != b.size else "")
        )
    return out
