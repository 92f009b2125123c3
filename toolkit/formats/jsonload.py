"""A bounded, strict JSON loader for untrusted files (config.json, tokenizer.json, headers, indexes).

The stdlib parser is fast and correct, but on hostile input it can raise RecursionError (deep
nesting), ValueError for over-long integers, accept NaN/Infinity, guess UTF-16/32 encodings, and
silently keep the last of duplicate keys. This wrapper turns each of those into one error type,
:class:`JsonLoadError`, and reports duplicate keys instead of hiding them.
"""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from npu_preflight.formats.files import FileIdentity, FileReadError, read_regular_identified

DEFAULT_MAX_BYTES = 100 * 1024 * 1024
DEFAULT_MAX_DEPTH = 64
#: Documents above this size skip the exact depth pre-scan (it costs as much as the parse on a
#: 6 MB tokenizer.json); the C parser's own recursion guard still bounds them, raising RecursionError
#: at the interpreter's limit, which is reported as "too-deep".
PRESCAN_LIMIT = 1024 * 1024


class JsonLoadError(Exception):
    """The bytes are not an acceptable JSON document; ``kind`` says why."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass
class Loaded:
    """A parsed document and the duplicate keys seen while parsing it (JSON path, key)."""

    value: Any
    duplicates: list[str] = field(default_factory=list)
    #: (key, first value, later value) for duplicates whose values differ
    conflicts: list[tuple[str, Any, Any]] = field(default_factory=list)


def _reject_constant(name: str) -> Any:
    raise JsonLoadError("invalid", f"non-standard JSON constant {name}")


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def _depth_exceeds(text: str, max_depth: int) -> bool:
    """True when brackets nest deeper than ``max_depth`` outside strings.

    Written by hand because the stdlib parser only stops at the interpreter's recursion limit,
    which is both too deep for us and raised as RecursionError. String bodies are removed with
    one regex pass and the remaining brackets summed, so it stays linear on large tokenizer files.
    """
    if text.count("[") + text.count("{") <= max_depth:
        return False
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    depth = 0
    for ch in brackets.encode("ascii"):
        depth += _STEP[ch]
        if depth > max_depth:
            return True
    return False


def loads(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    track_duplicates: bool = True,
) -> Loaded:
    """Parse ``data`` as UTF-8 JSON within the given bounds; raise :class:`JsonLoadError` otherwise."""
    return parse_text(_decode(data, max_bytes), max_depth=max_depth, track_duplicates=track_duplicates)


def _decode(data: bytes, max_bytes: int) -> str:
    if len(data) > max_bytes:
        raise JsonLoadError("too-large", f"{len(data):,} bytes exceeds the {max_bytes:,}-byte limit")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonLoadError("not-utf8", f"not UTF-8 (byte {exc.start})") from None


def pair_count(value: Any) -> int:
    """Key/value pairs held by every object in a parsed document (iterative: no recursion limit)."""
    n = 0
    stack = [value]
    while stack:
        v = stack.pop()
        if type(v) is dict:
            n += len(v)
            stack.extend(x for x in v.values() if type(x) in (dict, list))
        elif type(v) is list:
            stack.extend(x for x in v if type(x) in (dict, list))
    return n


def parse_text(text: str, *, max_depth: int = DEFAULT_MAX_DEPTH, track_duplicates: bool = True) -> Loaded:
    """Like :func:`loads`, for text already decoded from UTF-8."""
    if text.startswith("\ufeff"):
        raise JsonLoadError("invalid", "starts with a byte-order mark")
    if len(text) <= PRESCAN_LIMIT and _depth_exceeds(text, max_depth):
        raise JsonLoadError("too-deep", f"nested deeper than {max_depth} levels")
    duplicates: list[str] = []
    conflicts: list[tuple[str, Any, Any]] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = dict(pairs)
        if len(out) == len(pairs):  # the common case: no key repeats, built in C
            return out
        out = {}
        for k, v in pairs:
            if k in out:
                duplicates.append(k)
                if out[k] != v:
                    conflicts.append((k, out[k], v))
            out[k] = v
        return out

    try:
        with paused_gc():
            value = json.loads(
                text,
                parse_constant=_reject_constant,
                object_pairs_hook=pairs_hook if track_duplicates else None,
            )
    except JsonLoadError:
        raise
    except RecursionError:
        raise JsonLoadError("too-deep", "nested too deeply to parse") from None
    except ValueError as exc:  # JSONDecodeError and the int-digits limit both derive from it
        raise JsonLoadError("invalid", str(exc)) from None
    return Loaded(value, duplicates, conflicts)


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector for a burst of allocation that forms no cycles.

    A parse allocates one object after another; with the collector on, each generation-0 pass
    walks the growing survivors again (a 100,000-tensor header took n^1.2 time). Parsed JSON and
    the records built from it hold no cycles, so nothing is lost by collecting afterwards."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def load_file(
    path: Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    track_duplicates: bool = True,
) -> Loaded:
    """Read and parse a regular file; OS errors, FIFOs and devices, and oversize files become
    :class:`JsonLoadError` too."""
    # The bytes are a temporary: freed once decoded, so they are not held through the parse
    # (6 MB of a 150k-token tokenizer.json).
    return parse_text(
        _decode(read_regular(path, max_bytes), max_bytes), max_depth=max_depth, track_duplicates=track_duplicates
    )


def read_regular(path: Path, max_bytes: int) -> bytes:
    """A regular file's bytes within ``max_bytes``; anything else raises :class:`JsonLoadError`."""
    return read_identified(path, max_bytes)[0]


def read_identified(path: Path, max_bytes: int) -> tuple[bytes, FileIdentity]:
    """:func:`read_regular`, and the identity of the file read (:func:`~npu_preflight.formats.files.identity`)."""
    try:
        return read_regular_identified(path, max_bytes)
    except FileReadError as exc:
        raise JsonLoadError(exc.kind, exc.message) from None
