"""tokenizer.json as the ``tokenizers`` library writes it, read by the fast path (over 1 MiB) and
held to what that library itself reads from the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from npu_preflight.formats.tokenizer import read_tokenizer_json

tokenizers = pytest.importorskip("tokenizers")

#: Tokens the fast path must not answer from its tuples alone, and ones a JSON writer escapes.
HARD = [
    '"',
    "\\",
    "\n",
    "\t",
    "\u0000",
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "a:b",
    "{x}",
    "[x]",
    "é",
    "\u0120the",
    "\U0001f600",
]


def test_a_vocabulary_written_by_tokenizers_reads_as_tokenizers_reads_it(tmp_path: Path) -> None:
    vocab = {tok: i for i, tok in enumerate(HARD)}
    vocab.update({f"\u0120w{i}": len(HARD) + i for i in range(100_000)})
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=[]))
    tok.add_special_tokens(["<|endoftext|>", "[PAD]", "{"])  # "{" is in the vocabulary: added wins
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    assert path.stat().st_size > 1024 * 1024  # the fast path's size

    info = read_tokenizer_json(path)
    real = tokenizers.Tokenizer.from_file(str(path))
    assert not isinstance(info.token_to_id, dict)  # read as tuples, not as a dict
    for text in [*HARD, "<|endoftext|>", "[PAD]", "\u0120w0", "\u0120w99999", "absent", "[absent]"]:
        assert info.token_to_id.get(text) == real.token_to_id(text), text
    assert info.max_id == max(real.get_vocab().values())
    assert dict(info.token_to_id.items()) == real.get_vocab()
