"""Reading a large tokenizer.json on the other core while the program starts.

A 150k-token tokenizer.json takes about as long to parse as everything else a static check does
(importing the CLI included), and the parse needs nothing the rest of the run computes. So
:func:`start`, called by the program before it imports the CLI, forks a child that reads the
folder's tokenizer.json (and tokenizer_config.json, for the special tokens the checks look up) and
writes a small summary to a pipe: the model type, the largest id, the added tokens, and the id of
each special token (:func:`~npu_preflight.formats.tokenizer.summarize`). When the run asks for the
tokenizer, :func:`claim` takes the summary, but only for the file the run itself would read:
same device, inode, size, and modification and change times, compared when it is claimed. Anything
else — another file, a child that died, was stopped or wrote something that is not a summary — and
the run reads tokenizer.json itself, as it does when nothing was started. A lookup the summary does
not answer (a special token that was not in the child's tokenizer_config.json) and the whole
vocabulary (a check listing tokens beyond the embedding) are read by the run itself, then.

:func:`start` guesses the folder from the command line before click parses it: the arguments
after ``check`` that are not options, of which exactly one must name a folder with a regular
tokenizer.json over 1 MiB (a guess that is wrong costs the other core's time, never a result).
It starts nothing with one usable CPU, or with ``NPU_PREFLIGHT_READAHEAD=0``.

It runs before anything else of the program: until it decides to fork, it imports only standard
modules the CLI imports anyway.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from npu_preflight.formats.tokenizer import TokenizerInfo

#: The switch: ``0`` starts no read-ahead.
ENV_VAR = "NPU_PREFLIGHT_READAHEAD"
#: Smaller files are read by the run itself (the fork would cost more than it saves).
MIN_BYTES = 1024 * 1024
#: The most a summary may take on the pipe (the added tokens are the only part that grows).
MAX_SUMMARY = 64 * 1024 * 1024
#: How long :func:`claim` waits for a child, beyond the time a parse of the file takes at 5 MB/s:
#: a child that is stopped or stuck must not stop the run.
WAIT_S = 30.0
WAIT_BYTES_PER_S = 5_000_000


class _Child:
    """The forked reader: its pid, the read end of its pipe, and the size of the file it reads."""

    def __init__(self, pid: int, fd: int, size: int) -> None:
        self.pid, self.fd, self.size = pid, fd, size

    def finish(self) -> None:
        """Close the pipe, kill the child if it still runs, and reap it."""
        try:
            os.close(self.fd)
        except OSError:
            pass
        try:
            os.kill(self.pid, signal.SIGKILL)  # nothing of the child's is worth waiting for now
        except ProcessLookupError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


_child: _Child | None = None


def folder_of(argv: Sequence[str]) -> tuple[str, int] | None:
    """The folder :func:`start` would read ahead for, and its tokenizer.json's size, or None."""
    try:
        at = list(argv).index("check")
    except ValueError:
        return None
    import stat

    found: dict[str, int] = {}
    for arg in argv[at + 1 :]:
        if not arg or arg.startswith("-") or arg in found:
            continue
        try:
            st = os.stat(os.path.join(arg, "tokenizer.json"))
        except (OSError, ValueError):
            continue
        if stat.S_ISREG(st.st_mode) and st.st_size > MIN_BYTES:
            found[arg] = st.st_size
    return next(iter(found.items())) if len(found) == 1 else None


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def start(argv: Sequence[str]) -> bool:
    """Fork the reader for the folder ``argv`` names (the program's arguments, without its name),
    if there is one to read; whether a child was started."""
    global _child
    if _child is not None or os.environ.get(ENV_VAR, "1") == "0" or _cpus() < 2:
        return False
    target = folder_of(argv)
    if target is None:
        return False
    folder, size = target
    # What both processes need, imported once before the fork: the child inherits it.
    from npu_preflight.formats import tokenizer  # noqa: F401

    r, w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        return False
    if pid == 0:  # the child: read, write the summary, exit without the parent's clean-up
        code = 1
        try:
            os.close(r)
            data = child_result(Path(folder))
            while data:
                data = data[os.write(w, data) :]
            code = 0
        except BaseException:  # noqa: BLE001 - nothing may escape a forked child; the parent reads itself
            pass
        finally:
            os._exit(code)
    os.close(w)
    _child = _Child(pid, r, size)
    import atexit

    atexit.register(discard)
    return True


def child_result(folder: Path) -> bytes:
    """What the child writes: its summary of ``folder``'s tokenizer.json as JSON, with the identity
    of the file it read; nothing when it could not read one (the run then reads it and reports)."""
    import json

    from npu_preflight.formats.tokenizer import (
        TokenizerFormatError,
        read_json_object,
        read_tokenizer_identified,
        special_token_texts,
        summarize,
    )

    try:
        info, seen = read_tokenizer_identified(folder / "tokenizer.json")
    except TokenizerFormatError:
        return b""
    try:
        texts = [t for t in special_token_texts(read_json_object(folder / "tokenizer_config.json")).values() if t]
    except TokenizerFormatError:
        texts = []
    data = json.dumps({"identity": list(seen), "summary": summarize(info, texts)}).encode()
    return data if len(data) <= MAX_SUMMARY else b""


def claim(path: Path) -> TokenizerInfo | None:
    """The read-ahead's tokenizer, if one was started and it read the file now at ``path``; else
    None (the caller reads the file). The child is reaped either way."""
    global _child
    child, _child = _child, None
    if child is None:
        return None
    try:
        data = _receive(child)
    finally:
        child.finish()
    if data is None:
        return None
    return _accept(data, path)


def _receive(child: _Child) -> bytes | None:
    """Everything the child wrote, or None if it wrote too much or is not done in time."""
    import select
    import time

    deadline = time.monotonic() + WAIT_S + child.size / WAIT_BYTES_PER_S
    chunks: list[bytes] = []
    size = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([child.fd], [], [], left)[0]:
            return None
        chunk = os.read(child.fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_SUMMARY:
            return None
        chunks.append(chunk)


def _accept(data: bytes, path: Path) -> TokenizerInfo | None:
    """The summary in ``data`` if it is one and describes the file now at ``path``."""
    import json

    from npu_preflight.formats.files import identity
    from npu_preflight.formats.tokenizer import from_summary

    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):  # bytes that are not UTF-8 or JSON, nesting too deep
        return None
    if not isinstance(doc, dict) or set(doc) != {"identity", "summary"}:
        return None
    seen = doc["identity"]
    if not isinstance(seen, list) or len(seen) != 5 or not all(type(v) is int for v in seen):
        return None
    try:
        now = identity(os.stat(path))
    except (OSError, ValueError):
        return None
    if tuple(seen) != now:
        return None
    return from_summary(doc["summary"], lambda: _read_again(path, now))


def _read_again(path: Path, expected: tuple[int, int, int, int, int]) -> TokenizerInfo:
    """The whole tokenizer, read by the run, which must find the file the child read."""
    from npu_preflight.formats.tokenizer import TokenizerFormatError, read_tokenizer_identified

    info, seen = read_tokenizer_identified(path)
    if seen != expected:
        raise TokenizerFormatError("tokenizer.json changed while it was being checked: run the check again")
    return info


def discard() -> None:
    """Kill and reap a child nobody claimed (at exit: a run that never asked for the tokenizer)."""
    global _child
    child, _child = _child, None
    if child is not None:
        child.finish()
