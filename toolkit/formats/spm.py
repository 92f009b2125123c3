"""Vocabulary files that are not tokenizer.json, read without their libraries.

* **sentencepiece** ``tokenizer.model`` (ChatGLM3, Baichuan2, InternLM2, Llama 2): a protobuf
  ``ModelProto`` whose repeated field 1 holds one ``SentencePiece`` message per id. Only the
  wire format is walked, by hand: the sentencepiece and protobuf libraries are not dependencies, and
  this reader must be bounded on hostile bytes (a length prefix larger than the file, varints of
  any length, groups) where a general decoder is not.
* **tiktoken** files (GLM-4's ``tokenizer.model``, Qwen's ``qwen.tiktoken``): one
  ``<base64 token> <rank>`` per line; the ids are the ranks.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from npu_preflight.formats.files import FileReadError, read_regular
from npu_preflight.records import frozen

MAX_VOCAB_FILE_BYTES = 256 * 1024 * 1024
MAX_PIECES = 10_000_000


class VocabFormatError(Exception):
    """The file is neither a sentencepiece model nor a tiktoken vocabulary."""


@frozen
class VocabFile:
    """How many ids a vocabulary file defines."""

    kind: str  # sentencepiece | tiktoken
    size: int  # ids 0 … size-1
    sample: tuple[str, ...] = ()  # the last few pieces, for messages


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """A protobuf varint at ``pos``: (value, next position). At most 10 bytes (64 bits)."""
    value = shift = 0
    for i in range(10):
        if pos + i >= len(data):
            raise VocabFormatError(f"truncated varint at byte {pos}")
        b = data[pos + i]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos + i + 1
        shift += 7
    raise VocabFormatError(f"varint longer than 10 bytes at byte {pos}")


def _fields(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """The fields of one message: (field number, wire type, value or offset, length)."""
    out: list[tuple[int, int, int, int]] = []
    pos = start
    while pos < end:
        key, pos = _varint(data, pos)
        num, wire = key >> 3, key & 7
        if num == 0:
            raise VocabFormatError(f"field number 0 at byte {pos}")
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((num, wire, value, 0))
        elif wire == 1:
            pos += 8
            out.append((num, wire, pos - 8, 8))
        elif wire == 5:
            pos += 4
            out.append((num, wire, pos - 4, 4))
        elif wire == 2:
            length, pos = _varint(data, pos)
            if length > end - pos:
                raise VocabFormatError(f"field {num} claims {length:,} bytes with {end - pos:,} left")
            out.append((num, wire, pos, length))
            pos += length
        else:
            raise VocabFormatError(f"wire type {wire} (groups are not used by sentencepiece) at byte {pos}")
        if pos > end:
            raise VocabFormatError("a field runs past the end of its message")
        if len(out) > MAX_PIECES + 16:
            raise VocabFormatError(f"more than {MAX_PIECES:,} fields")
    return out


def parse_sentencepiece(data: bytes) -> VocabFile:
    """Count the pieces of a serialized sentencepiece ``ModelProto``."""
    pieces: list[tuple[int, int]] = []
    for num, wire, off, length in _fields(data, 0, len(data)):
        if num == 1:
            if wire != 2:
                raise VocabFormatError("field 1 (pieces) is not a message")
            pieces.append((off, length))
    if not pieces:
        raise VocabFormatError("no pieces (field 1) in the model")
    sample: list[str] = []
    for off, length in pieces[-3:]:
        text = None
        for num, wire, poff, plen in _fields(data, off, off + length):
            if num == 1 and wire == 2:
                text = data[poff : poff + plen].decode("utf-8", "replace")
        if text is None:
            raise VocabFormatError("a piece has no text (field 1)")
        sample.append(text)
    return VocabFile("sentencepiece", len(pieces), tuple(sample))


def parse_tiktoken(data: bytes) -> VocabFile:
    """Count the ids of a tiktoken vocabulary (``<base64> <rank>`` per line)."""
    best = -1
    lines = 0
    last: list[str] = []
    for raw in data.splitlines():
        if not raw.strip():
            continue
        parts = raw.split()
        if len(parts) != 2 or not parts[1].isdigit() or len(parts[1]) > 12:
            raise VocabFormatError(f"line {lines + 1} is not '<base64 token> <rank>'")
        try:
            token = base64.b64decode(parts[0], validate=True)
        except (binascii.Error, ValueError):
            raise VocabFormatError(f"line {lines + 1}: the token is not base64") from None
        best = max(best, int(parts[1]))
        lines += 1
        if lines > MAX_PIECES:
            raise VocabFormatError(f"more than {MAX_PIECES:,} lines")
        if len(last) == 3:
            last.pop(0)
        last.append(token.decode("utf-8", "replace"))
    if best < 0:
        raise VocabFormatError("no tokens")
    return VocabFile("tiktoken", best + 1, tuple(last))


def parse_vocab(data: bytes) -> VocabFile:
    """A sentencepiece model or a tiktoken file, whichever the bytes are."""
    head = data[:64].lstrip()
    if head[:1] == b"\x0a":  # field 1, length-delimited: a ModelProto's first piece
        return parse_sentencepiece(data)
    try:
        return parse_tiktoken(data)
    except VocabFormatError:
        return parse_sentencepiece(data)


def read_vocab(path: Path) -> VocabFile:
    """Read and parse a vocabulary file; :class:`VocabFormatError` names what is wrong."""
    try:
        data = read_regular(path, MAX_VOCAB_FILE_BYTES)
    except FileReadError as exc:
        raise VocabFormatError(exc.message) from None
    return parse_vocab(data)
