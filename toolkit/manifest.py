"""sha256 manifests of a weight folder, and verification against a manifest, Git LFS pointers, or
Hugging Face download metadata (``.cache/huggingface/download/<file>.metadata``)."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from npu_preflight.formats.files import FileReadError, open_regular, read_fd, read_regular
from npu_preflight.formats.jsonload import JsonLoadError, load_file
from npu_preflight.formats.lfs import read_pointer
from npu_preflight.records import frozen

if TYPE_CHECKING:
    from npu_preflight.deep import DeepScan

MANIFEST_VERSION = 1
MAX_POINTER_FILES = 100_000
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX40 = re.compile(r"^[0-9a-f]{40}$")


class ManifestError(Exception):
    """The manifest cannot be read."""


@frozen
class Expected:
    """What a file should be: its size and sha256 (or git blob sha1), and where that claim comes from."""

    size: int | None
    sha256: str | None
    git_sha1: str | None
    source: str


@frozen
class Mismatch:
    """A file that is not what the reference says."""

    path: str
    kind: str  # missing | extra | size | sha256 | git-sha1
    message: str


def to_manifest(scan: DeepScan, weights_dir: Path) -> dict[str, Any]:
    """A manifest document from a scan."""
    return {
        "manifest_version": MANIFEST_VERSION,
        "tool": "npu-preflight",
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "weights_dir": str(weights_dir),
        "files": [{"path": f.rel, "size": f.size, "sha256": f.sha256} for f in sorted(scan.files, key=lambda f: f.rel)],
    }


def read_manifest(path: Path) -> dict[str, Expected]:
    """A manifest file, or a directory of Git LFS pointer files (a clone made without LFS)."""
    if path.is_dir():
        out: dict[str, Expected] = {}
        for i, p in enumerate(sorted(path.rglob("*"))):
            if i >= MAX_POINTER_FILES:
                raise ManifestError(f"{path} holds more than {MAX_POINTER_FILES:,} files; not a folder of LFS pointers")
            if p.is_file() and ".git" not in p.parts:
                ptr = read_pointer(p)
                if ptr is not None:
                    out[str(p.relative_to(path))] = Expected(ptr.size, ptr.oid, None, f"LFS pointer {p}")
        if not out:
            raise ManifestError(f"{path} holds no Git LFS pointer files")
        return out
    try:
        doc = load_file(path, max_bytes=64 * 1024 * 1024, max_depth=8).value
    except JsonLoadError as exc:
        raise ManifestError(f"{path}: {exc.message}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), list):
        raise ManifestError(f"{path}: not a manifest (no 'files' list)")
    out = {}
    for item in doc["files"]:
        if not (isinstance(item, dict) and isinstance(item.get("path"), str)):
            raise ManifestError(f"{path}: a 'files' entry has no path")
        sha = item.get("sha256")
        if sha is not None and not (isinstance(sha, str) and _HEX64.match(sha)):
            raise ManifestError(f"{path}: {item['path']}: sha256 {sha!r} is not 64 hex digits")
        size = item.get("size")
        out[item["path"]] = Expected(size if isinstance(size, int) else None, sha, None, f"manifest {path.name}")
    return out


def hf_download_metadata(weights_dir: Path) -> dict[str, Expected]:
    """Expected hashes recorded by ``huggingface-cli download --local-dir`` (commit, etag, time)."""
    base = weights_dir / ".cache" / "huggingface" / "download"
    out: dict[str, Expected] = {}
    if not base.is_dir():
        return out
    for meta in base.rglob("*.metadata"):
        try:  # regular files only: a FIFO here must not hang verify
            lines = read_regular(meta, 64 * 1024).decode("utf-8", "replace").splitlines()
        except FileReadError:
            continue
        if len(lines) < 2:
            continue
        etag = lines[1].strip().strip('"')
        rel = str(meta.relative_to(base))[: -len(".metadata")]
        if _HEX64.match(etag):
            out[rel] = Expected(None, etag, None, "Hugging Face download metadata (LFS sha256)")
        elif _HEX40.match(etag):
            out[rel] = Expected(None, None, etag, "Hugging Face download metadata (git blob sha1)")
    return out


def git_blob_sha1(path: Path) -> str:
    """The git object id of a file (for small files Hugging Face tracks in git, not LFS)."""
    h = hashlib.sha1(usedforsecurity=False)
    with open_regular(path) as fd:
        size = os.fstat(fd).st_size
        h.update(b"blob %d\x00" % size)
        offset = 0
        while chunk := read_fd(fd, 1 << 20, offset):
            h.update(chunk)
            offset += len(chunk)
    return h.hexdigest()


def compare(scan: DeepScan, expected: dict[str, Expected], weights_dir: Path, *, complete: bool) -> list[Mismatch]:
    """Files that differ from ``expected``; with ``complete``, files the reference does not list too."""
    actual = {f.rel: f for f in scan.files}
    out: list[Mismatch] = []
    for rel, exp in sorted(expected.items()):
        f = actual.get(rel)
        if f is None:
            out.append(Mismatch(rel, "missing", f"{rel} is listed by the {exp.source} but missing"))
            continue
        if exp.size is not None and f.size != exp.size:
            out.append(Mismatch(rel, "size", f"{rel} is {f.size:,} bytes; the {exp.source} says {exp.size:,}"))
        elif exp.sha256 is not None and f.sha256 != exp.sha256:
            out.append(
                Mismatch(
                    rel, "sha256", f"{rel} sha256 {f.sha256[:16]}… differs from the {exp.source} ({exp.sha256[:16]}…)"
                )
            )
        elif exp.git_sha1 is not None and f.size < 50 * 1024 * 1024:
            got = git_blob_sha1(weights_dir / rel)
            if got != exp.git_sha1:
                out.append(
                    Mismatch(
                        rel,
                        "git-sha1",
                        f"{rel} git blob {got[:12]}… differs from the {exp.source} ({exp.git_sha1[:12]}…)",
                    )
                )
    if complete:
        for rel in sorted(set(actual) - set(expected)):
            out.append(Mismatch(rel, "extra", f"{rel} is not in the manifest"))
    return out


def write_manifest(doc: dict[str, Any]) -> str:
    """Manifest text."""
    return json.dumps(doc, indent=2) + "\n"
