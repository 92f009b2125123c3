"""The bounded JSON loader: arbitrary bytes in, only JsonLoadError out."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from npu_preflight.formats.jsonload import JsonLoadError, loads
from tests.props import prop

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)


@prop(3000)
@given(st.binary(max_size=256))
def test_arbitrary_bytes_raise_only_jsonloaderror(data: bytes) -> None:
    try:
        loads(data)
    except JsonLoadError as exc:
        assert exc.kind in {"invalid", "not-utf8", "too-deep", "too-large"}


@prop(1000)
@given(st.text(alphabet='[]{}",:0123456789 \\abtrue', max_size=200))
def test_structural_noise_raises_only_jsonloaderror(text: str) -> None:
    try:
        loads(text.encode())
    except JsonLoadError:
        pass


@prop(500)
@given(json_values)
def test_valid_documents_round_trip(value: object) -> None:
    assert loads(json.dumps(value).encode(), max_depth=100).value == value


def test_deep_nesting_is_an_error_not_recursionerror() -> None:
    doc = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(JsonLoadError) as ei:
        loads(doc)
    assert ei.value.kind == "too-deep"


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    doc = json.dumps({"s": "[" * 500 + '\\"' + "{" * 500}).encode()
    assert loads(doc, max_depth=3).value["s"].startswith("[[[")


def test_duplicates_are_reported() -> None:
    assert loads(b'{"a": 1, "a": 2}').duplicates == ["a"]


@pytest.mark.parametrize("doc", [b"NaN", b'{"x": Infinity}', b"-Infinity"])
def test_non_standard_constants_rejected(doc: bytes) -> None:
    with pytest.raises(JsonLoadError):
        loads(doc)


def test_size_limit() -> None:
    with pytest.raises(JsonLoadError) as ei:
        loads(b"[" + b"1," * 100 + b"1]", max_bytes=50)
    assert ei.value.kind == "too-large"


def test_huge_integer_is_an_error() -> None:
    with pytest.raises(JsonLoadError):
        loads(b"1" * 10_000)


def test_utf16_is_not_guessed() -> None:
    with pytest.raises(JsonLoadError) as ei:
        loads('{"a": 1}'.encode("utf-16"))
    assert ei.value.kind == "not-utf8"


def test_deep_nesting_beyond_the_prescan_size_is_still_an_error() -> None:
    doc = b"[" * 700_000 + b"]" * 700_000  # 1.4 MB: above PRESCAN_LIMIT, the parser's guard decides
    with pytest.raises(JsonLoadError) as ei:
        loads(doc, track_duplicates=False)
    assert ei.value.kind == "too-deep"
    with pytest.raises(JsonLoadError):
        loads(doc)
