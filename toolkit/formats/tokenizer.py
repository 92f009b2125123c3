"""tokenizer.json, tokenizer_config.json and generation_config.json read as JSON (no tokenizer library)."""

from __future__ import annotations

import codecs
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from dataclasses import field
from itertools import islice
from pathlib import Path
from typing import Annotated, Any, cast

from npu_preflight.formats.files import FileIdentity
from npu_preflight.formats.jsonload import PRESCAN_LIMIT, JsonLoadError, load_file, loads, paused_gc, read_identified
from npu_preflight.records import frozen

MAX_TOKENIZER_BYTES = 512 * 1024 * 1024
#: The special tokens of tokenizer_config.json the checks look up in the vocabulary
SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "pad_token", "unk_token")


class TokenizerFormatError(Exception):
    """tokenizer.json is not a usable tokenizer description."""


@frozen
class TokenizerInfo:
    """The vocabulary a tokenizer.json defines."""

    model_type: str | None
    #: token → id: ``model.vocab`` with ``added_tokens`` over it (added tokens win, as in tokenizers)
    token_to_id: Mapping[str, int]
    max_id: int
    added: dict[str, int] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Number of ids the tokenizer can emit (max id + 1)."""
        return self.max_id + 1


def read_tokenizer_json(path: Path) -> TokenizerInfo:
    """Parse tokenizer.json; raise :class:`TokenizerFormatError` naming what is wrong."""
    return read_tokenizer_identified(path)[0]


def read_tokenizer_identified(path: Path) -> tuple[TokenizerInfo, FileIdentity]:
    """:func:`read_tokenizer_json`, and the identity of the file it read."""
    try:
        raw, seen = read_identified(path, MAX_TOKENIZER_BYTES)
        owned = [raw]
        del raw  # _read_needed frees the file's bytes once it has what it needs of them
        doc = _read_needed(owned)
        if doc is None:
            raw = owned[0] if owned else _read_again(path, seen)
            doc = loads(raw, max_bytes=MAX_TOKENIZER_BYTES, max_depth=64, track_duplicates=False).value
            del raw
    except JsonLoadError as exc:
        raise TokenizerFormatError(exc.message) from None
    return tokenizer_info(doc), seen


def _read_again(path: Path, seen: FileIdentity) -> bytes:
    """The bytes of the file read before, for the general parser, when the fast path declined after
    freeing them; the file must not have changed in between."""
    raw, now = read_identified(path, MAX_TOKENIZER_BYTES)
    if now != seen:
        raise TokenizerFormatError("tokenizer.json changed while it was being read: run the check again")
    return raw


_DECODER: Any = None
_FLAT_DECODER: Any = None
#: ``{`` ``}`` ``:`` → ``[`` ``]`` ``,``: a JSON object becomes the array of its keys and values
_OBJECT_AS_ARRAY = bytes.maketrans(b"{}:", b"[],")
#: The characters that translation may have changed in a key (or that an escape may have written)
_AMBIGUOUS = frozenset("{}:[],")
_UTF8_CHUNK = 32 * 1024


def _is_utf8(raw: bytes) -> bool:
    """Whether ``raw`` is UTF-8. Decoded 32 KiB at a time, so that no 12 MB string is built for a
    6 MB file: the pages such a string touches cost more than the decode (8 ms against 13 ms)."""
    if raw.isascii():
        return True
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for at in range(0, len(raw), _UTF8_CHUNK):
            decoder.decode(raw[at : at + _UTF8_CHUNK])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _read_needed(raw: bytes | list[bytes], min_bytes: int = PRESCAN_LIMIT) -> dict[str, Any] | None:
    """Only what the checks read — ``model.type``, ``model.vocab``, ``added_tokens`` — decoded by
    msgspec, which skips ``merges`` (half of a BPE file) and everything else without building it.
    The values it returns are what ``json.loads`` gives for those keys, except that an object
    vocabulary whose values are all non-negative ints comes back as :class:`_Pairs` (its keys and
    ids, not a dict; see there). None hands the file to the general parser, which names any fault:
    a file up to ``PRESCAN_LIMIT`` (cheap either way, and where that parser enforces its depth
    bound), msgspec not installed, or anything msgspec declines (bad bytes, an unexpected type,
    NaN, nesting past the recursion limit, bytes that are not UTF-8).

    ``raw`` given as a one-item list is the caller's only reference to the file's bytes: they are
    taken out of it, and freed, as soon as the vocabulary's own bytes are copied, before the
    vocabulary is read (6 MB less at the peak for a 150k-token file). A None after that leaves the
    list empty: the caller reads the file again."""
    global _DECODER
    owned = raw if isinstance(raw, list) else None
    data = raw[0] if isinstance(raw, list) else raw
    del raw
    if len(data) <= min_bytes:
        return None
    # msgspec checks UTF-8 only in the strings it decodes; what it skips (merges, say) is unchecked,
    # and a tokenizer.json with bad bytes anywhere fails the generator's read (tokenizers reads it
    # into a Rust String). Checked here for the whole file.
    if not _is_utf8(data):
        return None
    try:
        import msgspec
    except ImportError:
        return None
    if _DECODER is None:
        model = msgspec.defstruct("Model", [("type", Any, None), ("vocab", msgspec.Raw, None)])
        _DECODER = msgspec.json.Decoder(
            msgspec.defstruct("Needed", [("model", model | None, None), ("added_tokens", Any, None)])
        )
    try:
        with paused_gc():
            got = _DECODER.decode(data)
            model, added = got.model, got.added_tokens
            has_model = model is not None
            model_type = model.type if has_model else None
            span = bytes(model.vocab) if has_model and model.vocab is not None else None  # syntax checked
            del got, model, data  # the Raw span held the file's bytes
            if owned is not None:
                owned.clear()
            vocab = None if span is None else _Pairs.read(span)
    except (msgspec.DecodeError, RecursionError):
        return None
    return {
        "model": {"type": model_type, "vocab": vocab} if has_model else None,
        "added_tokens": added,
    }


class _Pairs:
    """An object vocabulary as one tuple of its keys and ids in file order (key, id, key, id, …),
    read without building the dict: msgspec decodes the object's bytes with ``{}:`` translated to
    ``[],`` — a JSON array of keys and values, 15 ms for 150k entries against 44 ms for the dict
    (its key cache and inserts). The checks need the largest id and a few lookups, which the tuple
    answers exactly; anything more decodes the dict from the kept bytes (:meth:`exact`). The tuple
    is not split into keys and ids: each slice would touch every object twice (in and out), and
    the ids are ints where the keys are strs, so a key never equals an id in ``count`` or ``index``.

    The translation changes keys: a literal ``{``, ``}`` or ``:`` in a key reads back as ``[``,
    ``]`` or ``,``. A key that reads back with none of ``{}:[],`` is therefore exactly the file's
    key (any such character, literal or escaped, would still show), and a file key free of them
    reads back unchanged; answers are taken from the tuple only for such keys."""

    __slots__ = ("_exact", "flat", "raw", "top")

    def __init__(self, flat: tuple[str | int, ...], top: int, raw: bytes) -> None:
        self.flat, self.top, self.raw = flat, top, raw
        self._exact: dict[str, int] | None = None

    @property
    def ids(self) -> tuple[int, ...]:
        """The ids in file order (a copy)."""
        return self.flat[1::2]  # type: ignore[return-value]

    @classmethod
    def read(cls, raw: bytes) -> Any:
        """``raw`` (one JSON value) as :class:`_Pairs` when it is an object whose values are all
        non-negative ints, else decoded as it is."""
        import msgspec

        global _FLAT_DECODER
        if raw[:1] == b"{":
            if _FLAT_DECODER is None:
                # keys, and ids that are ints ≥ 0 (msgspec's int is never a bool or a float); a
                # tuple, not a list: the collector stops tracking a tuple of strs and ints the first
                # time it sees one, where it would walk a list's 300k items in every collection
                _FLAT_DECODER = msgspec.json.Decoder(tuple[str | Annotated[int, msgspec.Meta(ge=0)], ...])
            try:
                flat = _FLAT_DECODER.decode(raw.translate(_OBJECT_AS_ARRAY))
                # the values: a str among ints fails the first comparison with one; all strs
                # compare, and their largest is no int
                top = max(islice(flat, 1, None, 2), default=-1)
            except (msgspec.ValidationError, TypeError):
                pass  # a value that is not an id: the general rules below
            else:
                if type(top) is int:
                    return cls(flat, top, raw)
        return msgspec.json.decode(raw)

    def exact(self) -> dict[str, int]:
        """The vocabulary as ``json.loads`` reads it (later duplicates win), decoded once."""
        if self._exact is None:
            import msgspec

            with paused_gc():
                self._exact = msgspec.json.decode(self.raw)
        return self._exact

    def lookup(self, text: str) -> int | None:
        """The id of ``text`` (the last entry for it, as in a dict)."""
        if _AMBIGUOUS.isdisjoint(text):
            count = self.flat.count(text)  # exact for such text (class docstring)
            if count == 0:
                return None
            if count == 1:
                return cast(int, self.flat[self.flat.index(text) + 1])
        return self.exact().get(text)

    def max_id(self) -> int:
        """The largest id an entry keeps once later duplicates have overwritten earlier ones."""
        if not self.flat or self.flat[-1] == self.top:  # the last entry, which nothing overwrites
            return self.top
        key = cast(str, self.flat[self.flat.index(self.top) - 1])  # the first entry holding it
        if _AMBIGUOUS.isdisjoint(key) and self.flat.count(key) == 1:  # that entry survives
            return self.top
        return max(self.exact().values())


class _LazyVocabulary(Mapping[str, int]):
    """token → id answering lookups without the whole vocabulary (:meth:`_find`), which iterating,
    ``len`` or the views build once (:meth:`_build`)."""

    __slots__ = ("_whole",)

    def __init__(self) -> None:
        self._whole: Mapping[str, int] | None = None

    def _find(self, key: str) -> int | None:
        raise NotImplementedError

    def _build(self) -> Mapping[str, int]:
        raise NotImplementedError

    def _all(self) -> Mapping[str, int]:
        if self._whole is None:
            self._whole = self._build()
        return self._whole

    def get(self, key: Any, default: Any = None) -> Any:
        found = self._find(key) if isinstance(key, str) else None
        return default if found is None else found

    def __getitem__(self, key: str) -> int:
        found = self.get(key)
        if found is None:
            raise KeyError(key)
        return int(found)

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    # the views of the whole mapping: Mapping's own would look every key up, one at a time
    def keys(self) -> KeysView[str]:
        return self._all().keys()

    def values(self) -> ValuesView[int]:
        return self._all().values()

    def items(self) -> ItemsView[str, int]:
        return self._all().items()

    def __len__(self) -> int:
        return len(self._all())


class _Vocabulary(_LazyVocabulary):
    """token → id over :class:`_Pairs` and the added tokens (which win): lookups come from the
    tuples; iterating, ``len`` or ``items`` decode the dict once (:meth:`_Pairs.exact`)."""

    __slots__ = ("_added", "_pairs")

    def __init__(self, pairs: _Pairs, added: dict[str, int]) -> None:
        super().__init__()
        self._pairs, self._added = pairs, added

    def _find(self, key: str) -> int | None:
        found = self._added.get(key)
        return self._pairs.lookup(key) if found is None else found

    def _build(self) -> dict[str, int]:
        return {**self._pairs.exact(), **self._added}

    def __repr__(self) -> str:
        return f"<vocabulary of {len(self._pairs.flat) // 2:,} entries and {len(self._added):,} added>"


def tokenizer_info(doc: Any) -> TokenizerInfo:
    """The vocabulary of a parsed tokenizer.json; raise :class:`TokenizerFormatError` naming what is
    wrong. ``doc`` is consumed: its vocabulary becomes the result's ``token_to_id``."""
    if not isinstance(doc, dict):
        raise TokenizerFormatError("top level is not an object")
    model = doc.get("model")
    if not isinstance(model, dict):
        raise TokenizerFormatError('"model" is missing or not an object')
    vocab = model.get("vocab")
    token_to_id: dict[str, int] = {}
    pairs: _Pairs | None = None
    if isinstance(vocab, _Pairs):
        pairs = vocab
    elif isinstance(vocab, dict):
        # Every id a non-negative int is the rule for real files; checked in C (``type`` rules out
        # bool) so a 150k vocabulary is not walked in Python twice. Anything else takes the loop.
        values = vocab.values()
        if set(map(type, values)) <= {int} and min(values, default=0) >= 0:
            token_to_id = vocab
        else:
            token_to_id = {
                tok: idx
                for tok, idx in vocab.items()
                if isinstance(idx, int) and not isinstance(idx, bool) and idx >= 0
            }
    elif isinstance(vocab, list):  # Unigram: [[piece, score], ...]; the id is the position
        for i, item in enumerate(vocab):
            if isinstance(item, list) and item and isinstance(item[0], str):
                token_to_id[item[0]] = i
    else:
        raise TokenizerFormatError('"model.vocab" is missing')
    added: dict[str, int] = {}
    raw_added = doc.get("added_tokens")
    if raw_added is not None and not isinstance(raw_added, list):
        raise TokenizerFormatError(f'"added_tokens" is a JSON {type(raw_added).__name__}, not a list')
    for item in raw_added or []:
        if not isinstance(item, dict) or not isinstance(item.get("content"), str):
            continue
        idx = item.get("id")
        if type(idx) is int and idx >= 0:  # not a bool, not negative
            added[item["content"]] = idx
    model_type = model.get("type") if isinstance(model.get("type"), str) else None
    top_added = max(added.values(), default=-1)
    if pairs is not None:
        if not pairs.flat and not added:
            raise TokenizerFormatError("the vocabulary is empty")
        return TokenizerInfo(model_type, _Vocabulary(pairs, added), max(pairs.max_id(), top_added), added)
    if not token_to_id and not added:
        raise TokenizerFormatError("the vocabulary is empty")
    max_id = max(max(token_to_id.values(), default=-1), top_added)
    if added:
        # added tokens win over the vocabulary, as in tokenizers; the vocabulary dict is updated in
        # place (``doc`` is this module's own parse, read once): a copy of 150k entries is 2-3 ms
        token_to_id.update(added)
    return TokenizerInfo(model_type, token_to_id, max_id, added)


def summarize(info: TokenizerInfo, texts: Iterable[str]) -> dict[str, Any]:
    """What the checks read of ``info`` when they look up ``texts`` only, as plain JSON values: the
    model type, the largest id, the added tokens, and the id of each text (None: not in the
    vocabulary). :func:`from_summary` reads it back."""
    return {
        "model_type": info.model_type,
        "max_id": info.max_id,
        "added": dict(info.added),
        "answers": {text: info.token_to_id.get(text) for text in texts},
    }


def _is_id(value: Any, least: int = 0) -> bool:
    return type(value) is int and value >= least  # not a bool


def from_summary(doc: Any, whole: Callable[[], TokenizerInfo]) -> TokenizerInfo | None:
    """The :class:`TokenizerInfo` that :func:`summarize` described, or None when ``doc`` is not
    such a summary (every field is checked: it crossed a process boundary). Lookups of the
    summarized texts come from it; any other lookup, and iterating, take ``whole()`` (once)."""
    if not isinstance(doc, dict) or set(doc) != {"model_type", "max_id", "added", "answers"}:
        return None
    model_type, max_id, added, answers = doc["model_type"], doc["max_id"], doc["added"], doc["answers"]
    if not (model_type is None or isinstance(model_type, str)) or not _is_id(max_id, -1):
        return None
    if not isinstance(added, dict) or not all(isinstance(k, str) and _is_id(v) for k, v in added.items()):
        return None
    if not isinstance(answers, dict) or not all(
        isinstance(k, str) and (v is None or _is_id(v)) for k, v in answers.items()
    ):
        return None
    if max(added.values(), default=-1) > max_id or any(v is not None and v > max_id for v in answers.values()):
        return None
    return TokenizerInfo(model_type, _Answered(answers, whole), max_id, added)


class _Answered(_LazyVocabulary):
    """token → id from the answers of a summary (:func:`from_summary`); anything else from the whole
    tokenizer, read once when first needed."""

    __slots__ = ("_answers", "_reader")

    def __init__(self, answers: dict[str, int | None], reader: Callable[[], TokenizerInfo]) -> None:
        super().__init__()
        self._answers, self._reader = answers, reader

    def _find(self, key: str) -> int | None:
        if key in self._answers:
            return self._answers[key]
        return self._all().get(key)

    def _build(self) -> Mapping[str, int]:
        return self._reader().token_to_id

    def __repr__(self) -> str:
        return f"<vocabulary answering {len(self._answers)} lookups; the rest from tokenizer.json>"


def special_token_texts(tokenizer_config: Mapping[str, Any]) -> dict[str, str | None]:
    """The special tokens tokenizer_config.json names (:data:`SPECIAL_TOKEN_KEYS`), as text."""
    return {key: token_text(tokenizer_config.get(key)) for key in SPECIAL_TOKEN_KEYS}


def read_json_object(path: Path, max_bytes: int = 50 * 1024 * 1024) -> dict[str, Any]:
    """A small JSON object file (tokenizer_config.json, generation_config.json)."""
    try:
        doc = load_file(path, max_bytes=max_bytes, max_depth=32).value
    except JsonLoadError as exc:
        raise TokenizerFormatError(exc.message) from None
    if not isinstance(doc, dict):
        raise TokenizerFormatError("top level is not a JSON object")
    return doc


def token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or ``{"content": ...}``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return str(value["content"])
    return None
