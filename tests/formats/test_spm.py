"""sentencepiece and tiktoken vocabularies read without their libraries: bounded on any bytes, and
the same id count as the sentencepiece library on real trained models."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from npu_preflight.formats.spm import VocabFile, VocabFormatError, parse_sentencepiece, parse_tiktoken, parse_vocab
from tests.props import prop


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[int, bytes]:
    import sentencepiece as spm

    d = tmp_path_factory.mktemp("spm")
    corpus = d / "c.txt"
    corpus.write_text("\n".join(f"the quick brown fox {i} jumps over {i * 13} lazy dogs and cats" for i in range(400)))
    out = {}
    for size, kind in ((100, "bpe"), (150, "unigram"), (220, "bpe")):
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=str(d / f"m{size}"), vocab_size=size, model_type=kind, minloglevel=2
        )
        out[size] = (d / f"m{size}.model").read_bytes()
    return out


def test_counts_match_the_sentencepiece_library(trained: dict[int, bytes]) -> None:
    import sentencepiece as spm

    for size, data in trained.items():
        proc = spm.SentencePieceProcessor(model_proto=data)
        v = parse_vocab(data)
        assert v.kind == "sentencepiece" and v.size == proc.get_piece_size() == size
        assert v.sample[-1] == proc.id_to_piece(size - 1)


@prop(200)
@given(st.data())
def test_truncated_or_flipped_models_fail_cleanly(trained: dict[int, bytes], data: st.DataObject) -> None:
    raw = bytearray(trained[100])
    cut = data.draw(st.integers(0, len(raw)))
    raw = raw[:cut]
    for _ in range(data.draw(st.integers(0, 4))):
        if raw:
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] = data.draw(st.integers(0, 255))
    try:
        v = parse_vocab(bytes(raw))
    except VocabFormatError:
        return
    assert isinstance(v, VocabFile) and v.size >= 1


@prop(400)
@given(st.binary(max_size=400))
def test_any_bytes(data: bytes) -> None:
    for parse in (parse_vocab, parse_sentencepiece, parse_tiktoken):
        try:
            parse(data)
        except VocabFormatError:
            pass


def test_hostile_lengths_are_bounded() -> None:
    # field 1, length-delimited, claiming 2**60 bytes
    with pytest.raises(VocabFormatError, match="claims"):
        parse_sentencepiece(b"\x0a" + b"\xff" * 8 + b"\x0f")
    with pytest.raises(VocabFormatError, match="varint"):
        parse_sentencepiece(b"\x0a" + b"\xff" * 11)
    with pytest.raises(VocabFormatError, match="wire type"):
        parse_sentencepiece(b"\x0b")  # group start


@prop(100)
@given(st.lists(st.binary(min_size=1, max_size=8), min_size=1, max_size=50, unique=True))
def test_tiktoken_ids_are_ranks(tokens: list[bytes]) -> None:
    text = "\n".join(f"{base64.b64encode(t).decode()} {i}" for i, t in enumerate(tokens)).encode()
    v = parse_tiktoken(text)
    assert v.kind == "tiktoken" and v.size == len(tokens)


def test_read_vocab_refuses_a_fifo(tmp_path: Path) -> None:
    import os

    from npu_preflight.formats.spm import read_vocab

    fifo = tmp_path / "tokenizer.model"
    os.mkfifo(fifo)
    with pytest.raises(VocabFormatError):
        read_vocab(fifo)
