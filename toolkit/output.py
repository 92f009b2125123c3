"""Writing report files: each atomically (temporary file + rename), a set under one lock (on the
output folder itself, so nothing is left behind) so two runs with the same ``--out`` never leave a
mix of their files."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Mapping
from pathlib import Path


class OutputError(Exception):
    """The output location cannot take the reports (names the path and why)."""


def write_atomic(path: Path, content: str | bytes) -> None:
    """Write ``content`` to ``path`` through a temporary file and a rename, so no reader ever sees
    half a file."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a report is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def prepare_dir(out: Path) -> None:
    """Create ``out`` if needed; refuse anything that is not a writable directory."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out}: {exc.strerror or exc}") from None
    # Tried, not inferred: root passes os.access() on read-only mounts and /proc.
    try:
        import tempfile

        fd, probe = tempfile.mkstemp(prefix=".npu-preflight-probe.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{out} is not writable ({exc.strerror or exc})") from None


def write_set(out: Path, files: Mapping[str, str | bytes]) -> None:
    """Write every file of one report set into ``out`` while holding the folder's lock."""
    prepare_dir(out)
    try:
        lock_fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise OutputError(f"cannot lock {out}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        for name, content in files.items():
            try:
                write_atomic(out / name, content)
            except OSError as exc:
                raise OutputError(f"cannot write {out / name}: {exc.strerror or exc}") from None
    finally:
        os.close(lock_fd)
