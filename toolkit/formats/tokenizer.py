"""tokenizer.json, tokenizer_config.json and generation_config.json read as JSON (no tokenizer library)."""

from __future__ import annotations

from dataclasses import field
from pathlib import Path
from typing import Any

from npu_preflight.formats.jsonload import PRESCAN_LIMIT, JsonLoadError, load_file, loads, paused_gc, read_regular
from npu_preflight.records import frozen

MAX_TOKENIZER_BYTES = 512 * 1024 * 1024


class TokenizerFormatError(Exception):
    """tokenizer.json is not a usable tokenizer description."""


@frozen
class TokenizerInfo:
    """The vocabulary a tokenizer.json defines."""

    model_type: str | None
    token_to_id: dict[str, int]
    max_id: int
    added: dict[str, int] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Number of ids the tokenizer can emit (max id + 1)."""
        return self.max_id + 1


def read_tokenizer_json(path: Path) -> TokenizerInfo:
    """Parse tokenizer.json; raise :class:`TokenizerFormatError` naming what is wrong."""
    try:
        raw = read_regular(path, MAX_TOKENIZER_BYTES)
        doc = _read_needed(raw)
        if doc is None:
            doc = loads(raw, max_bytes=MAX_TOKENIZER_BYTES, max_depth=64, track_duplicates=False).value
    except JsonLoadError as exc:
        raise TokenizerFormatError(exc.message) from None
    del raw
    return tokenizer_info(doc)


_DECODER: Any = None


def _read_needed(raw: bytes, min_bytes: int = PRESCAN_LIMIT) -> dict[str, Any] | None:
    """Only what the checks read — ``model.type``, ``model.vocab``, ``added_tokens`` — decoded by
    msgspec, which skips ``merges`` (half of a BPE file) and everything else without building it:
    a 150k-token file in about 0.04 s against 0.11 s for ``json.loads`` of all of it. The values it
    returns are what ``json.loads`` gives for those keys. None hands the file to the general parser,
    which names any fault: a file up to ``PRESCAN_LIMIT`` (cheap either way, and where that parser
    enforces its depth bound), msgspec not installed, or anything msgspec declines (bad bytes, an
    unexpected type, NaN, nesting past the recursion limit, bytes that are not UTF-8)."""
    global _DECODER
    if len(raw) <= min_bytes:
        return None
    # msgspec checks UTF-8 only in the strings it decodes; what it skips (merges, say) is unchecked,
    # and a tokenizer.json with bad bytes anywhere fails the generator's read (tokenizers reads it
    # into a Rust String). Checked here for the whole file: 10 ms for 6 MB, nothing for ASCII.
    if not raw.isascii():
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:
        import msgspec
    except ImportError:
        return None
    if _DECODER is None:
        model = msgspec.defstruct("Model", [("type", Any, None), ("vocab", Any, None)])
        _DECODER = msgspec.json.Decoder(
            msgspec.defstruct("Needed", [("model", model | None, None), ("added_tokens", Any, None)])
        )
    try:
        with paused_gc():
            got = _DECODER.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return None
    model = got.model
    return {
        "model": None if model is None else {"type": model.type, "vocab": model.vocab},
        "added_tokens": got.added_tokens,
    }


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
    if isinstance(vocab, dict):
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
    if not token_to_id and not added:
        raise TokenizerFormatError("the vocabulary is empty")
    max_id = max(max(token_to_id.values(), default=-1), max(added.values(), default=-1))
    if added:
        # added tokens win over the vocabulary, as in tokenizers; the vocabulary dict is updated in
        # place (``doc`` is this module's own parse, read once): a copy of 150k entries is 2-3 ms
        token_to_id.update(added)
    return TokenizerInfo(model.get("type") if isinstance(model.get("type"), str) else None, token_to_id, max_id, added)


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
