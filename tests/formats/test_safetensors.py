"""The safetensors header reader: every rule of the reference reader, fuzzed and differential."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npu_preflight.formats.safetensors import DTYPE_BITS, Header, SafetensorsError, parse_header_bytes, read_header
from tests.props import prop


def make_file(header: dict[str, Any], data_len: int | None = None, *, pad: bool = True, extra: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    if pad:
        raw += b" " * (-len(raw) % 8)
    if data_len is None:
        data_len = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    return struct.pack("<Q", len(raw)) + raw + b"\0" * data_len + extra


def parse(blob: bytes) -> Header:
    return parse_header_bytes(blob, len(blob))


def kinds(h: Header) -> list[str]:
    return [p.kind for p in h.layout_problems()]


GOOD = {
    "__metadata__": {"format": "pt"},
    "a": {"dtype": "F16", "shape": [2, 3], "data_offsets": [0, 12]},
    "b": {"dtype": "BF16", "shape": [4], "data_offsets": [12, 20]},
}


def test_good_file_parses_clean() -> None:
    h = parse(make_file(GOOD))
    assert list(h.tensors) == ["a", "b"]
    assert h.tensors["a"].nbytes == 12
    assert kinds(h) == [] and h.anomalies == ()


@pytest.mark.parametrize(
    ("blob", "kind"),
    [
        (b"\x01\x02", "HeaderTooSmall"),
        (struct.pack("<Q", 2**63) + b"{}", "HeaderTooLarge"),
        (struct.pack("<Q", 100_000_001) + b"{}", "HeaderTooLarge"),
        (struct.pack("<Q", 64) + b"{}", "InvalidHeaderLength"),
        (struct.pack("<Q", 2) + b"\xff\xfe", "InvalidHeader"),
        (struct.pack("<Q", 2) + b"[]", "InvalidHeaderDeserialization"),
        (struct.pack("<Q", 3) + b"{x}", "InvalidHeaderDeserialization"),
    ],
)
def test_header_level_errors(blob: bytes, kind: str) -> None:
    with pytest.raises(SafetensorsError) as ei:
        parse(blob)
    assert ei.value.kind == kind


@pytest.mark.parametrize(
    "entry",
    [
        {"dtype": "F17", "shape": [1], "data_offsets": [0, 2]},
        {"dtype": "F16", "shape": [-1], "data_offsets": [0, 2]},
        {"dtype": "F16", "shape": [1.0], "data_offsets": [0, 2]},
        {"dtype": "F16", "shape": [1], "data_offsets": [0, 2, 4]},
        {"dtype": "F16", "shape": [1], "data_offsets": [-2, 0]},
        {"dtype": "F16", "shape": [1], "data_offsets": [0.0, 2]},
        {"dtype": "F16", "shape": [1]},
        {"dtype": "F16", "shape": [True], "data_offsets": [0, 2]},
        {"dtype": "F16", "shape": [2**64], "data_offsets": [0, 2]},
        {"dtype": "F16", "shape": [1], "data_offsets": [0, 2**64]},
        {"dtype": ["F16"], "shape": [1], "data_offsets": [0, 2]},
    ],
)
def test_bad_entries_are_deserialization_errors(entry: dict[str, Any]) -> None:
    with pytest.raises(SafetensorsError) as ei:
        parse(make_file({"t": entry}, 2))
    assert ei.value.kind == "InvalidHeaderDeserialization"
    assert ei.value.tensor == "t"


def test_non_string_metadata_value_is_an_error() -> None:
    with pytest.raises(SafetensorsError):
        parse(make_file({"__metadata__": {"format": 1}, **{k: v for k, v in GOOD.items() if k != "__metadata__"}}))


def test_gap_is_invalid_offset_naming_the_tensor() -> None:
    hdr = {
        "a": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]},
        "b": {"dtype": "F16", "shape": [2], "data_offsets": [8, 12]},
    }
    h = parse(make_file(hdr))
    problems = h.layout_problems()
    assert problems[0].kind == "InvalidOffset" and problems[0].tensor == "b"
    assert "gap" in problems[0].message


def test_span_mismatch_is_tensor_invalid_info() -> None:
    h = parse(make_file({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}))
    assert kinds(h) == ["TensorInvalidInfo"]


def test_truncation_is_metadata_incomplete_buffer_with_byte_counts() -> None:
    blob = make_file(GOOD)[:-4]
    h = parse(blob)
    p = h.layout_problems()
    assert [x.kind for x in p] == ["MetadataIncompleteBuffer"]
    assert "truncated by 4 bytes" in p[0].message and p[0].tensor == "b"


def test_trailing_bytes_are_metadata_incomplete_buffer() -> None:
    h = parse(make_file(GOOD, extra=b"junk"))
    assert kinds(h) == ["MetadataIncompleteBuffer"]


def test_sub_byte_dtype_misaligned() -> None:
    h = parse(make_file({"a": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}))
    assert kinds(h) == ["MisalignedSlice"]


def test_overflow() -> None:
    h = parse(make_file({"a": {"dtype": "F64", "shape": [2**40, 2**40], "data_offsets": [0, 0]}}, 0))
    assert "ValidationOverflow" in kinds(h)


def test_leniencies_are_anomalies() -> None:
    raw = (
        b'{"__metadata__": null, "a": {"dtype": "F16", "shape": [1], "data_offsets": [0, 2], "x": 1},'
        b' "": {"dtype": "F16", "shape": [1], "data_offsets": [2, 4]},'
        b' "a": {"dtype": "F16", "shape": [1], "data_offsets": [0, 2]}}'
    )
    blob = struct.pack("<Q", len(raw)) + raw + b"\0" * 4
    h = parse(blob)
    found = {a.kind for a in h.anomalies}
    assert {"NullMetadata", "EmptyName", "DuplicateKey", "UnalignedHeader"} <= found


def test_unknown_format() -> None:
    h = parse(make_file({**GOOD, "__metadata__": {"format": "pytorch"}}))
    assert [a.kind for a in h.anomalies] == ["UnknownFormat"]


@prop(3000)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_raise_safetensorserror(blob: bytes) -> None:
    try:
        h = parse(blob)
    except SafetensorsError:
        return
    h.layout_problems()


@prop(2000)
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=2**64 - 1))
def test_arbitrary_length_prefix(body: bytes, n: int) -> None:
    blob = struct.pack("<Q", n) + body
    try:
        parse(blob).layout_problems()
    except SafetensorsError:
        pass


dtypes = st.sampled_from(sorted(DTYPE_BITS))
tensor_lists = st.lists(
    st.tuples(st.text(min_size=1, max_size=6), dtypes, st.lists(st.integers(0, 5), max_size=3)),
    max_size=5,
    unique_by=lambda t: t[0],
)


def _layout(tensors: list[tuple[str, str, list[int]]]) -> dict[str, Any]:
    hdr: dict[str, Any] = {}
    off = 0
    for name, dt, shape in tensors:
        n = int(np.prod(shape)) if shape else 1
        nbytes = n * DTYPE_BITS[dt] // 8
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + nbytes]}
        off += nbytes
    return hdr


@prop(300)
@given(tensor_lists, st.integers(-3, 3), st.sampled_from(["none", "truncate", "shift", "resize"]))
def test_agrees_with_the_safetensors_library(
    tmp_path: Path, tensors: list[tuple[str, str, list[int]]], delta: int, mutation: str
) -> None:
    """Where our reader says a file is clean, the library opens it, and vice versa."""
    from safetensors import safe_open

    tensors = [t for t in tensors if (int(np.prod(t[2])) if t[2] else 1) * DTYPE_BITS[t[1]] % 8 == 0]
    hdr = _layout(tensors)
    blob = make_file(hdr) if hdr else make_file({}, 0)
    if mutation == "truncate" and delta > 0:
        blob = blob[:-delta]
    elif mutation == "resize":
        blob = blob + b"\0" * max(delta, 0)
    elif mutation == "shift" and hdr:
        first = next(iter(hdr))
        hdr[first]["data_offsets"][1] += delta
        blob = make_file(hdr, sum(v["data_offsets"][1] - v["data_offsets"][0] for v in hdr.values()))
    p = tmp_path / "x.safetensors"
    p.write_bytes(blob)
    try:
        h = read_header(p)
        ours_ok = not h.layout_problems()
    except SafetensorsError:
        ours_ok = False
    try:
        with safe_open(str(p), framework="numpy"):
            pass
        lib_ok = True
    except Exception:  # noqa: BLE001 - the library raises several types
        lib_ok = False
    assert ours_ok == lib_ok, (hdr, mutation, delta)


_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**65), 2**65),
    st.floats(allow_nan=False),
    st.sampled_from(["F16", "BF16", "F8_E4M3", "F17", ""]),
)
_entries = st.one_of(
    _values,
    st.lists(_values, max_size=3),
    st.dictionaries(
        st.sampled_from(["dtype", "shape", "data_offsets", "extra"]),
        st.one_of(_values, st.lists(st.one_of(st.integers(-2, 2**65), st.booleans(), st.floats()), max_size=4)),
        max_size=4,
    ),
)


@prop(500)
@given(st.text(max_size=3), _entries)
def test_fast_path_agrees_with_the_checked_path(name: str, entry: Any) -> None:
    """The per-tensor fast path returns exactly what the full checks would, and falls through for
    anything they would flag (an error, an anomaly)."""
    from npu_preflight.formats.safetensors import _tensor, _tensor_checked

    def outcome(fn: Any) -> Any:
        anomalies: list[Any] = []
        try:
            return fn(name, entry, anomalies), anomalies
        except SafetensorsError as exc:
            return (exc.kind, str(exc), exc.tensor), anomalies

    assert outcome(_tensor) == outcome(_tensor_checked)


_keys = st.sampled_from(["a", "b", "a:b", "__metadata__", "", "x"])
_fields = st.sampled_from(['"dtype": "F16"', '"shape": [1]', '"data_offsets": [0, 2]', '"x": {"y": 1, "y": 2}'])
_meta_values = st.sampled_from(['"pt"', '"12:00"', '"a"'])


@st.composite
def _raw_headers(draw: Any) -> bytes:
    """Header text with keys that may repeat at any level, and ``:`` that may sit inside strings."""
    parts = []
    for key in draw(st.lists(_keys, max_size=5)):
        if key == "__metadata__":
            meta = ", ".join(f'"{k}": {draw(_meta_values)}' for k in draw(st.lists(_keys, max_size=3)))
            parts.append(f'"__metadata__": {{{meta}}}')
        else:
            body = draw(st.lists(_fields, min_size=3, max_size=5))
            base = ['"dtype": "F16"', '"shape": [1]', '"data_offsets": [0, 2]']
            parts.append(f'"{key}": {{{", ".join(base + body[3:] if draw(st.booleans()) else body)}}}')
    return ("{" + ", ".join(parts) + "}").encode()


@prop(1500)
@given(_raw_headers())
def test_duplicate_keys_are_found_whatever_the_path(raw: bytes) -> None:
    """The header is parsed without the duplicate-key hook and cleared by counting ``:``; every
    header with a repeated key at any level still gets its DuplicateKey problem, exactly as a
    parse with the hook reports it, and headers without one never do."""
    from npu_preflight.formats.jsonload import loads

    blob = struct.pack("<Q", len(raw)) + raw + b"\0" * 64
    try:
        h = parse(blob)
    except SafetensorsError:
        return
    repeated = bool(loads(raw).duplicates)
    flagged = any(a.kind in ("DuplicateKey", "DuplicateKeyConflict") for a in h.anomalies)
    assert flagged == repeated


def test_colons_inside_strings_are_not_taken_for_duplicates() -> None:
    h = parse(make_file({**GOOD, "__metadata__": {"format": "pt", "date": "2024-01-01T12:00:00"}, "c:d": GOOD["a"]}))
    assert [a.kind for a in h.anomalies] == []
    raw = json.dumps({**GOOD, "c:d": GOOD["a"]}).replace('"b": {', '"b": {"dtype": "F32", ', 1).encode()
    h = parse(struct.pack("<Q", len(raw)) + raw + b"\0" * 32)
    assert [a.kind for a in h.anomalies if a.kind.startswith("Duplicate")] == ["DuplicateKey"]


@pytest.mark.parametrize(
    "header",
    [GOOD, {**GOOD, "c": {"dtype": "F16", "shape": [1], "data_offsets": [20, 22], "extra": {"k": [1, {"j": 2}]}}}],
)
def test_a_header_without_repeats_is_parsed_once(header: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The count clears it: no second parse with the duplicate-key hook (the slow path)."""
    from npu_preflight.formats import safetensors

    calls: list[bool] = []
    real = safetensors.parse_text

    def counting(text: str, **kw: Any) -> Any:
        calls.append(kw["track_duplicates"])
        return real(text, **kw)

    monkeypatch.setattr(safetensors, "parse_text", counting)
    parse(make_file(header))
    assert calls == [False]
