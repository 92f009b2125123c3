"""safe_text: every unsafe character escaped, whichever path the string takes (printable ASCII
returns as it is, anything else goes through the character-set regex)."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from npu_preflight.safetext import _UNSAFE, _UNSAFE_NL, _escape, safe_text
from tests.props import prop

ANY_CHAR = st.characters(blacklist_categories=())  # surrogates, controls and bidi overrides too
TEXT = st.one_of(st.text(ANY_CHAR, max_size=60), st.text(st.characters(max_codepoint=0x7F), max_size=60))


@prop(400)
@given(TEXT, st.booleans())
def test_safe_text_escapes_exactly_the_unsafe_characters(value: str, multiline: bool) -> None:
    want = re.sub(_UNSAFE, _escape, value.replace("\r\n", "\n")) if multiline else re.sub(_UNSAFE_NL, _escape, value)
    got = safe_text(value, limit=10_000, multiline=multiline)
    assert got == want
    assert not re.search(_UNSAFE if multiline else _UNSAFE_NL, got)
    got.encode("utf-8")  # no lone surrogate is left


def test_printable_ascii_is_returned_as_it_is() -> None:
    s = "".join(chr(c) for c in range(0x20, 0x7F))
    assert safe_text(s) is s
    assert safe_text("a\x7fb") == "a\\x7fb" and safe_text("tab\there") == "tab\\x09here"
    assert safe_text("tab\there", multiline=True) == "tab\there"
