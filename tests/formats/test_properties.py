"""Properties of every parser of untrusted bytes: whatever the input, each returns a value or raises
its own error type — never anything else — and the pickle scanner resolves exactly the globals the
real unpickler would."""

from __future__ import annotations

import _compat_pickle
import collections
import datetime
import decimal
import fractions
import io
import json
import pickle
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from npu_preflight.formats import pickle_scan
from npu_preflight.formats.index import IndexFormatError, read_index
from npu_preflight.formats.lfs import parse_pointer
from npu_preflight.formats.pickle_scan import ScanResult, ViewSource, decode_stream, scan_buffer
from npu_preflight.formats.tokenizer import TokenizerFormatError, read_json_object, read_tokenizer_json
from npu_preflight.mconfig import INTEGER_KEYS, ModelConfig, coerce, known_keys, schema
from tests.props import prop

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)


def _write(tmp: Path, data: bytes) -> Path:
    p = tmp / "f.json"
    p.write_bytes(data)
    return p


# -- the shard index ---------------------------------------------------------------------------


@prop(400)
@given(st.binary(max_size=300))
def test_index_bytes(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    p = _write(tmp_path_factory.mktemp("i"), data)
    try:
        read_index(p)
    except IndexFormatError:
        pass


index_docs = st.fixed_dictionaries(
    {},
    optional={
        "metadata": st.one_of(json_values, st.fixed_dictionaries({"total_size": json_values})),
        "weight_map": st.one_of(json_values, st.dictionaries(st.text(max_size=20), json_values, max_size=5)),
    },
)


@prop(400)
@given(index_docs, st.sampled_from(["", "1e400", "-1", "1.5e10", "NaN"]))
def test_index_documents(tmp_path_factory: pytest.TempPathFactory, doc: dict[str, Any], total: str) -> None:
    text = json.dumps(doc)
    if total and isinstance(doc.get("metadata"), dict):
        text = text.replace('"total_size": ', f'"total_size": {total}, "x": ', 1)
    p = _write(tmp_path_factory.mktemp("i"), text.encode())
    try:
        idx = read_index(p)
    except IndexFormatError:
        return
    assert all(isinstance(k, str) and isinstance(v, str) and v for k, v in idx.weight_map.items())
    assert idx.total_size is None or (isinstance(idx.total_size, int) and idx.total_size >= 0)


# -- tokenizer files ---------------------------------------------------------------------------

#: Tokens: any text, and text made of the characters a vocabulary read as a JSON array changes
tokens = st.text(max_size=8) | st.text(alphabet=st.sampled_from('ab{}[]:,"\\é\u0120'), max_size=5)
ids = st.integers(min_value=0, max_value=10**6)
#: Object vocabularies: all ids (the tuples path), or one other JSON value among them
vocab_objects = st.dictionaries(tokens, ids, max_size=8) | st.tuples(
    st.dictionaries(tokens, ids, max_size=8), tokens, json_scalars
).map(lambda t: {**t[0], t[1]: t[2]})
tokenizer_docs = st.fixed_dictionaries(
    {},
    optional={
        "model": st.one_of(
            json_values,
            st.fixed_dictionaries(
                {"vocab": st.one_of(json_values, vocab_objects, vocab_objects.map(lambda v: {**v, "bad": -1}))},
                optional={"type": json_values, "merges": json_values, "dropout": json_values},
            ),
        ),
        "added_tokens": st.one_of(
            json_values,
            st.lists(st.fixed_dictionaries({}, optional={"content": json_values, "id": json_values}), max_size=4),
        ),
        "normalizer": json_values,
    },
)


@prop(400)
@given(st.one_of(tokenizer_docs.map(lambda d: json.dumps(d).encode()), st.binary(max_size=200)))
def test_tokenizer_json(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    p = _write(tmp_path_factory.mktemp("t"), data)
    try:
        info = read_tokenizer_json(p)
    except TokenizerFormatError:
        return
    assert all(type(i) is int and i >= 0 for i in info.token_to_id.values())  # bool is not an id
    assert info.size == info.max_id + 1 and info.max_id == max(info.token_to_id.values())


#: Bytes the general parser and msgspec might read differently.
TWISTS = {
    "none": lambda t: t,
    "model twice": lambda t: t.replace("{", '{"model": {"vocab": {"x": 1}}, ', 1),
    "model twice, first not an object": lambda t: t.replace("{", '{"model": 7, ', 1),
    "vocab twice": lambda t: t.replace('"vocab": ', '"vocab": [], "vocab": ', 1),
    "NaN": lambda t: t.replace("{", '{"z": NaN, ', 1),
    "lone surrogate": lambda t: t.replace("{", '{"model": {"vocab": {"\\ud800": 1}}, ', 1),
    "huge int": lambda t: t.replace("{", '{"added_tokens": [{"id": 1' + "0" * 30 + "}], ", 1),
    "many digits": lambda t: t.replace("{", '{"added_tokens": ' + "9" * 5000 + ", ", 1),
    "exponent": lambda t: t.replace("{", '{"model": {"vocab": {"a": 1e2}, "type": 1E400}, ', 1),
    "BOM": lambda t: "\ufeff" + t,
    # bytes that are not UTF-8 inside a key msgspec skips: the generator's read_to_string fails
    "not UTF-8 where skipped": lambda t: t.replace("{", '{"merges": ["a \udcff"], ', 1),
    "trailing": lambda t: t + " x",
    # an object vocabulary with a token twice (the later id wins), written alike or with an escape;
    # the first copy holds the largest id, which the tokenizer then never emits
    "token twice": lambda t: t.replace('"vocab": {', '"vocab": {"top": 99999, "a": 5, "top": 3, ', 1),
    "token twice, escaped": lambda t: t.replace('"vocab": {', '"vocab": {"{x": 99999, "\\u007bx": 1, ', 1),
    "token twice, one escaped": lambda t: t.replace('"vocab": {', '"vocab": {"dup": 99999, "\\u0064up": 7, ', 1),
    "brackets": lambda t: t.replace('"vocab": {', '"vocab": {"[x": 99999, "{x": 4, ":": 5, ",": 6, ', 1),
}


#: Texts looked up in every vocabulary the properties read, besides its own tokens.
PROBES = ("", "a", "x", "dup", "top", "{x", "[x", ":", ",", "<|special_0|>", "\u0120the")


def _outcome(doc: Any) -> Any:
    """What the checks can see of a parsed tokenizer.json: the error, or the info's fields, its
    whole vocabulary and the answer to every lookup."""
    from npu_preflight.formats.tokenizer import tokenizer_info

    try:
        info = tokenizer_info(doc)
    except TokenizerFormatError as exc:
        return ("error", str(exc))
    whole = dict(info.token_to_id.items())
    lookups = {t: info.token_to_id.get(t) for t in (*whole, *PROBES)}
    assert lookups == {t: whole.get(t) for t in lookups}
    assert all((t in info.token_to_id) == (t in whole) for t in lookups)
    return (info.model_type, info.max_id, info.added, whole, len(info.token_to_id), lookups)


def _fast_read_matches_general(raw: bytes) -> None:
    """msgspec's read of the keys the checks use equals the general parser's, key by key and type
    by type (``True`` is not ``1``), or it declines and the general parser decides; and the
    tokenizer the checks see from it — error, largest id, lookups — is the general parser's."""
    from npu_preflight.formats.jsonload import JsonLoadError, loads
    from npu_preflight.formats.tokenizer import _Pairs, _read_needed

    fast = _read_needed(raw, min_bytes=0)
    if fast is None:
        return
    try:
        ref = loads(raw, max_depth=64, track_duplicates=False).value
    except JsonLoadError as exc:
        raise AssertionError(f"msgspec read what the general parser rejects ({exc.message})") from None
    assert isinstance(ref, dict)
    model = ref.get("model")
    want = {
        "model": {"type": model.get("type"), "vocab": model.get("vocab")} if isinstance(model, dict) else model,
        "added_tokens": ref.get("added_tokens"),
    }
    vocab = fast["model"]["vocab"] if isinstance(fast["model"], dict) else None
    plain = {**fast, "model": {**fast["model"], "vocab": vocab.exact()}} if isinstance(vocab, _Pairs) else fast
    assert json.dumps(plain, sort_keys=True) == json.dumps(want, sort_keys=True)
    fresh = _read_needed(raw, min_bytes=0)  # tokenizer_info consumes its doc
    assert _outcome(fresh) == _outcome(loads(raw, max_depth=64, track_duplicates=False).value)


@prop(500)
@given(tokenizer_docs, st.sampled_from(sorted(TWISTS)), st.booleans())
def test_tokenizer_fast_read_gives_what_json_gives(doc: dict[str, Any], twist: str, ascii_only: bool) -> None:
    _fast_read_matches_general(TWISTS[twist](json.dumps(doc, ensure_ascii=ascii_only)).encode("utf-8", "surrogatepass"))


@pytest.mark.parametrize("twist", sorted(TWISTS))
def test_tokenizer_fast_read_with_each_twist(twist: str) -> None:
    """Each twist on a document it applies to, whatever the generated ones happened to hit."""
    doc = {"model": {"type": "BPE", "vocab": {"b": 2, "c": 0, "é": 1}}, "added_tokens": [{"id": 1, "content": "c"}]}
    for ascii_only in (True, False):
        _fast_read_matches_general(
            TWISTS[twist](json.dumps(doc, ensure_ascii=ascii_only)).encode("utf-8", "surrogatepass")
        )


def _escaped(text: str) -> str:
    """``text`` as a JSON string with every character written as an escape (UTF-16 units)."""
    units = text.encode("utf-16-be")
    return '"' + "".join(f"\\u{int.from_bytes(units[i : i + 2]):04x}" for i in range(0, len(units), 2)) + '"'


@prop(400)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "top", "{", "[", ":", ",", "a:b", "é", "[x]", "{x}"]) | tokens,
            ids | ids | json_scalars,
            st.sampled_from(["plain", "ascii", "escaped"]),
        ),
        max_size=10,
    ),
    st.lists(st.tuples(tokens, ids), max_size=3),
)
def test_object_vocabulary_with_repeats_and_escapes(
    entries: list[tuple[str, Any, str]], added: list[tuple[str, int]]
) -> None:
    """An object vocabulary written by hand: tokens repeated (the later wins), written plainly, as
    ASCII escapes or as escapes throughout, values mostly ids. The tuples' answers are the dict's."""
    written = {"plain": lambda k: json.dumps(k, ensure_ascii=False), "ascii": json.dumps, "escaped": _escaped}
    body = ", ".join(f"{written[how](k)}: {json.dumps(v)}" for k, v, how in entries)
    extra = json.dumps([{"id": i, "content": c} for c, i in added])
    text = '{"model": {"type": "BPE", "vocab": {' + body + '}}, "added_tokens": ' + extra + "}"
    _fast_read_matches_general(text.encode("utf-8", "surrogatepass"))


@prop(300)
@given(st.binary(max_size=300))
def test_tokenizer_fast_read_of_any_bytes(data: bytes) -> None:
    _fast_read_matches_general(data)
    _fast_read_matches_general(b'{"model": {"vocab": {"a": 1}}, "x": ' + data + b"}")


def test_tokenizer_fast_read_takes_large_files_only(tmp_path: Path) -> None:
    from npu_preflight.formats import tokenizer

    small = json.dumps({"model": {"vocab": {"a": 0}}}).encode()
    assert tokenizer._read_needed(small) is None  # the general parser and its depth bound
    big = json.dumps({"model": {"vocab": {f"t{i}": i for i in range(120_000)}, "merges": ["a b"] * 10}}).encode()
    got = tokenizer._read_needed(big)
    assert got is not None and len(got["model"]["vocab"].ids) == 120_000 and "merges" not in got["model"]
    p = _write(tmp_path, big)
    assert read_tokenizer_json(p).size == 120_000


def test_the_file_bytes_are_freed_before_the_vocabulary_is_read(tmp_path: Path) -> None:
    """Given its only reference, the fast path frees the file's bytes before it builds the
    vocabulary: the peak of the read is lower by about the file's size than with the bytes kept."""
    import tracemalloc

    from npu_preflight.formats import tokenizer

    doc = {"model": {"vocab": {f"t{i}": i for i in range(120_000)}, "merges": ["a b"] * 200_000}}
    p = _write(tmp_path, json.dumps(doc).encode())
    size = p.stat().st_size
    peaks = {}
    for how in ("kept", "owned"):
        tracemalloc.start()
        raw = p.read_bytes()
        if how == "owned":
            owned = [raw]
            del raw
            assert tokenizer._read_needed(owned) is not None and owned == []
        else:
            assert tokenizer._read_needed(raw) is not None
        peaks[how] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        raw = b""
    assert peaks["kept"] - peaks["owned"] > 0.8 * size, (peaks, size)


def test_a_fast_path_that_declines_after_freeing_reads_the_file_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the vocabulary's read fails after the file's bytes were freed, the file is read again for
    the general parser, which gives its own answer; a file that changed in between is refused."""
    from npu_preflight.formats import tokenizer
    from npu_preflight.formats.jsonload import loads

    text = json.dumps({"model": {"type": "BPE", "vocab": {f"t{i}": i for i in range(120_000)}}})
    p = _write(tmp_path, text.encode())
    want = tokenizer.tokenizer_info(loads(text.encode(), track_duplicates=False).value)

    def fails(raw: bytes) -> Any:
        raise RecursionError

    monkeypatch.setattr(tokenizer._Pairs, "read", staticmethod(fails))
    got = read_tokenizer_json(p)
    assert isinstance(got.token_to_id, dict)  # the general parser's dict
    assert (got.max_id, got.model_type, got.token_to_id) == (want.max_id, want.model_type, want.token_to_id)

    def changes(raw: bytes) -> Any:
        p.write_text(text.replace('"t0": 0', '"t0": 70'))  # another size: seen whatever the clock
        raise RecursionError

    monkeypatch.setattr(tokenizer._Pairs, "read", staticmethod(changes))
    with pytest.raises(TokenizerFormatError, match="changed while it was being read"):
        read_tokenizer_json(p)


def test_large_vocabulary_read_as_tuples_answers_as_the_dict() -> None:
    """A real-size vocabulary with the tokens the tuples cannot answer alone — brackets, colons,
    escapes, a token twice — reads, looks up and sizes as ``json.loads`` has it."""
    from npu_preflight.formats import tokenizer
    from npu_preflight.formats.jsonload import loads

    vocab = {f"t{i}": i for i in range(120_000)}
    vocab.update({"{": 120_000, "[": 120_001, ":": 120_002, ",": 120_003, "a:b": 120_004, "\u0120x": 120_005})
    added = [{"id": 120_010, "content": "[PAD]"}, {"id": 3, "content": "t7"}]
    text = json.dumps({"model": {"type": "BPE", "vocab": vocab}, "added_tokens": added})
    # the same token twice, the second an escape of the first, holding the largest id first
    text = text.replace('"vocab": {', '"vocab": {"dup": 999999, "\\u0064up": 9, ', 1)
    raw = text.encode()
    fast = tokenizer.tokenizer_info(tokenizer._read_needed(raw))
    ref = tokenizer.tokenizer_info(loads(raw, track_duplicates=False).value)
    assert not isinstance(fast.token_to_id, dict) and isinstance(ref.token_to_id, dict)  # the tuples, and the dict
    assert (
        (fast.max_id, fast.added, fast.model_type)
        == (ref.max_id, ref.added, ref.model_type)
        == (120_010, ref.added, "BPE")
    )
    probes = ["dup", "{", "[", ":", ",", "a:b", "\u0120x", "[PAD]", "t7", "t0", "t119999", "missing", "[x"]
    assert [fast.token_to_id.get(t) for t in probes] == [ref.token_to_id.get(t) for t in probes]
    assert fast.token_to_id.get("dup") == 9 and fast.token_to_id["t7"] == 3
    assert dict(fast.token_to_id.items()) == ref.token_to_id and len(fast.token_to_id) == len(ref.token_to_id)
    # a tuple of strs and ints: the collector stops tracking them, and no later collection walks them
    import gc

    pairs = tokenizer._read_needed(raw)["model"]["vocab"]
    gc.collect()
    assert not gc.is_tracked(pairs.flat)


def test_large_tokenizer_with_bad_bytes_where_msgspec_skips_is_refused(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 in ``merges`` (which msgspec skips unchecked) fail the read, as they
    fail the generator's; the message names the byte."""
    good = json.dumps({"model": {"vocab": {f"t{i}": i for i in range(120_000)}, "merges": ["a b"]}}).encode()
    bad = good.replace(b'"a b"', b'"a \xff"')
    assert b"\xff" in bad and len(bad) > 1024 * 1024
    assert read_tokenizer_json(_write(tmp_path, good)).size == 120_000
    with pytest.raises(TokenizerFormatError, match=r"not UTF-8 \(byte \d+\)"):
        read_tokenizer_json(_write(tmp_path, bad))


def test_tokenizer_without_msgspec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from npu_preflight.formats import tokenizer

    big = json.dumps({"model": {"vocab": {f"t{i}": i for i in range(120_000)}}, "added_tokens": []}).encode()
    p = _write(tmp_path, big)
    monkeypatch.setitem(sys.modules, "msgspec", None)  # ``import msgspec`` now raises ImportError
    assert tokenizer._read_needed(big) is None
    assert read_tokenizer_json(p).size == 120_000


@prop(300)
@given(st.one_of(json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=200)))
def test_small_json_objects(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    p = _write(tmp_path_factory.mktemp("o"), data)
    try:
        assert isinstance(read_json_object(p), dict)
    except TokenizerFormatError:
        pass


# -- Git LFS pointers ----------------------------------------------------------------------------


@prop(500)
@given(st.binary(max_size=1100))
def test_lfs_pointer_bytes(data: bytes) -> None:
    res = parse_pointer(data)
    assert res is None or (res.oid is None or len(res.oid) == 64)


@prop(300)
@given(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64), st.integers(0, 2**63), st.text(max_size=40))
def test_lfs_pointer_round_trip(oid: str, size: int, junk: str) -> None:
    text = f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n{junk}"
    data = text.encode("utf-8", "surrogatepass")
    assume(len(data) <= 1024)
    res = parse_pointer(data)
    assert res is not None and res.oid == oid and res.size == size


# -- the pickle scanner ----------------------------------------------------------------------------


@prop(1500)
@given(st.binary(max_size=400), st.booleans())
def test_scanner_any_bytes(data: bytes, required: bool) -> None:
    res = scan_buffer(data, "f", required=required)
    assert isinstance(res, ScanResult)


class _Stub:
    """Stands in for every class and function the stream names: accepts any call or mutation."""

    def __init__(self, *a: Any, **k: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass

    def add(self, value: Any) -> None:
        pass


class _Recorder(pickle._Unpickler):  # the pure-Python unpickler: same rules as _pickle, exposes proto
    """The real unpickler, recording every module and name it would import (after its own
    Python 2 renaming) and returning a harmless stand-in."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.seen: list[tuple[str, str]] = []

    def find_class(self, module: str, name: str) -> Any:
        if self.proto < 3 and self.fix_imports:  # what pickle.Unpickler.find_class does first
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        self.seen.append((module, name))
        return _Stub

    def persistent_load(self, pid: Any) -> Any:
        return None


def _real_globals(data: bytes) -> list[tuple[str, str]]:
    r = _Recorder(data)
    r.load()
    return r.seen


objects = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        st.text(max_size=10),
        st.binary(max_size=10),
        st.builds(fractions.Fraction, st.integers(), st.integers(1, 100)),
        st.builds(decimal.Decimal, st.integers()),
        st.dates(),
        st.builds(datetime.timedelta, st.integers(-1000, 1000)),
    ),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.frozensets(st.integers(), max_size=3)
        | st.sets(st.integers(), max_size=3)
        | st.dictionaries(st.text(max_size=5), inner, max_size=4).map(collections.OrderedDict)
        | st.dictionaries(st.integers(), inner, max_size=4)
    ),
    max_leaves=20,
)


@prop(600)
@given(objects, st.integers(0, 5))
def test_scanner_resolves_exactly_the_globals_the_unpickler_does(obj: Any, protocol: int) -> None:
    data = pickle.dumps(obj, protocol=protocol)
    rep = decode_stream(ViewSource(data), "x")
    assert rep.error is None and rep.end == len(data)
    assert [tuple(g) for g in rep.globals] == _real_globals(data)


@pytest.mark.parametrize("payload", ["decoy_pops", "memo_drift", "proto0_inst"])
def test_scanner_matches_the_unpickler_on_the_hostile_payloads(payload: str, tmp_path: Path) -> None:
    from tests import test_hostile

    data = getattr(test_hostile, payload)(tmp_path / "never")
    rep = decode_stream(ViewSource(data), "x")
    real = _real_globals(data)
    assert [tuple(g) for g in rep.globals] == real and real[0][1] == "system"
    assert rep.unsafe


@prop(800)
@given(objects, st.integers(2, 5), st.data())
def test_scanner_on_mutated_pickles(obj: Any, protocol: int, data: st.DataObject) -> None:
    raw = bytearray(pickle.dumps(obj, protocol=protocol))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    res = scan_buffer(bytes(raw), "f", required=True)
    assert isinstance(res, ScanResult)


plain_data = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10), st.binary(max_size=10)),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.frozensets(st.integers(), max_size=3)
        | st.sets(st.integers(), max_size=3)
        | st.dictionaries(st.text(max_size=5), inner, max_size=4).map(collections.OrderedDict)
        | st.dictionaries(st.integers(), inner, max_size=4)
    ),
    max_leaves=20,
)


@prop(200)
@given(plain_data)
def test_plain_data_pickles_are_safe(obj: Any) -> None:
    for protocol in (2, 4):
        res = scan_buffer(pickle.dumps(obj, protocol=protocol), "f", required=True)
        assert res.safe, [(p.unsafe, p.calls, p.error) for p in res.pickles]


def test_huge_arguments_are_skipped_not_read() -> None:
    n = 200 * 1024 * 1024
    data = b"\x80\x04\x8e" + struct.pack("<Q", n)  # BINBYTES8 claiming 200 MiB, then nothing
    rep = decode_stream(ViewSource(data), "x")
    assert rep.error is not None and "ends inside" in rep.error
    assert pickle_scan.MAX_INLINE_ARG < n


# -- model_config coercion ---------------------------------------------------------------------------

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.text(max_size=12),
    st.text(alphabet="0123456789-_ ①²٣", max_size=8),
    st.floats(),
    st.lists(st.integers(), max_size=3),
)


@prop(600)
@given(st.dictionaries(st.sampled_from([*known_keys(), "x", "_private"]), values, max_size=14))
def test_model_config_coercion(raw: dict[str, Any]) -> None:
    c = coerce(raw)
    assert set(c) == set(raw)
    mc = ModelConfig.from_mapping(raw)
    props = schema()["properties"]
    for key in INTEGER_KEYS:
        v = mc.integer(key)
        lo, hi = props[key]["minimum"], props[key]["maximum"]  # every integer key is bounded both ways
        assert v is None or (isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi)
    assert mc.block_size >= 1 and (mc.world_size is None or 1 <= mc.world_size <= 1048576)
    json.dumps(mc.for_generator(), default=str)
