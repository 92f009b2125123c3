"""Which files of a folder the pickle scanner must look at: named like something a loader unpickles,
or starting with the bytes of a zip, a ``.npy`` or a pickle.

Kept apart from :mod:`pickle_scan` so that a folder without a single candidate (every safetensors-only
folder) never imports the scanner and its opcode tables: the static check runs on every CI change and
that import was a measurable part of its time.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from npu_preflight.formats.files import FileReadError, open_regular

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".dill", ".npy", ".npz", ".tar")
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


def looks_like_pickle(head: bytes) -> bool:
    """Bytes a loader could be unpickling: ``PROTO 0-5``, or a protocol 0/1 opening (``(``, ``}``,
    ``]``, a GLOBAL line, ``N`` …). Used only for files and members that are not pickles by name."""
    if len(head) >= 2 and head[0] == 0x80 and head[1] <= 5:
        return True
    if head[:1] == b"c":
        line = head[1:64].split(b"\n", 1)
        return len(line) == 2 and line[0].replace(b"_", b"").replace(b".", b"").isalnum()
    return head[:2] in (b"(d", b"(l", b"}q", b"]q", b"(c", b"(i", b"(S", b"(V", b"(I", b"N0", b"(t", b"}(", b"](")


def is_candidate(rel: str) -> bool:
    """Named like something a loader unpickles (``pytorch_model.bin``, ``*.pt``, ``*.npy`` …)."""
    return rel.lower().endswith(PICKLE_SUFFIXES)


def sniff(path: Path) -> bool:
    """A file not named like a pickle whose first bytes are a zip, a .npy or a pickle."""
    try:
        with open_regular(path) as fd:
            head = os.pread(fd, 64, 0)
    except FileReadError:
        return False
    return head[:4] in ZIP_MAGICS or head[:6] == NPY_MAGIC or looks_like_pickle(head)


def select(files: Iterable[tuple[Path, str, bool]]) -> list[tuple[Path, str, bool]]:
    """The (path, name, named-as-a-pickle) files to scan: named ones always, others when they sniff as
    one; safetensors files never (their own parser reads them)."""
    return [(p, rel, named) for p, rel, named in files if not rel.endswith(".safetensors") and (named or sniff(p))]
