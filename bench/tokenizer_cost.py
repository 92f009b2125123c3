"""Where a 150k-token tokenizer.json's time goes in a fresh process (issue 17, goal 2): each line is
a fresh interpreter that imports the package's tokenizer reader first (as a check run has), then
times importing msgspec, reading the file, the UTF-8 check, the decode of the keys the checks use,
and the checks over the ids (``tokenizer_info``); one more line repeats the decode in the same
process. ``raw-ids`` times the alternative that was tried and dropped: leaving the vocabulary
undecoded and taking its ids from the raw bytes.

Not part of ``make bench`` (a few seconds): ``python -m bench.tokenizer_cost [ROUNDS]``."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

from bench.common import OUT, PY, REPO, env
from tests.factory import build_sparse_llama, write_large_tokenizer

CODE = r"""
import gc, json, sys, time
from npu_preflight.formats import tokenizer
from npu_preflight.formats.jsonload import paused_gc
path, mode = sys.argv[1], sys.argv[2]
t = {}
c = time.perf_counter()
import msgspec
t["import msgspec"] = time.perf_counter() - c
c = time.perf_counter()
raw = open(path, "rb").read()
t["read"] = time.perf_counter() - c
c = time.perf_counter()
raw.isascii() or raw.decode("utf-8")
t["UTF-8 check"] = time.perf_counter() - c
if mode == "decode":
    c = time.perf_counter()
    from typing import Any
    # the decoder tokenizer._read_needed builds (its UTF-8 check is timed above, apart)
    model = msgspec.defstruct("M", [("type", Any, None), ("vocab", Any, None)])
    dec = msgspec.json.Decoder(msgspec.defstruct("N", [("model", model | None, None), ("added_tokens", Any, None)]))
    with paused_gc():
        got = dec.decode(raw)
    t["decode (fresh process)"] = time.perf_counter() - c
    c = time.perf_counter()
    tokenizer.tokenizer_info({"model": {"type": got.model.type, "vocab": got.model.vocab}, "added_tokens": got.added_tokens})
    t["checks over the ids"] = time.perf_counter() - c
    del got
    c = time.perf_counter()
    with paused_gc():
        dec.decode(raw)
    t["decode again (same process)"] = time.perf_counter() - c
else:
    import re
    from typing import Annotated, Any
    c = time.perf_counter()
    model = msgspec.defstruct("M", [("type", Any, None), ("vocab", msgspec.Raw, None)])
    dec = msgspec.json.Decoder(msgspec.defstruct("N", [("model", model | None, None), ("added_tokens", Any, None)]))
    vocab = bytes(dec.decode(raw).model.vocab)
    t["decode, vocabulary left raw"] = time.perf_counter() - c
    c = time.perf_counter()
    plain = vocab.replace(b"\\\\", b"__").replace(b'\\"', b"__")  # no quote left inside a string
    ids_text = re.sub(rb'"[^"]*"', b"", plain).replace(b":", b"").replace(b"{", b"[").replace(b"}", b"]")
    ids = msgspec.json.decode(ids_text, type=list[Annotated[int, msgspec.Meta(ge=0)]])
    assert len(ids) == plain.count(b'"') // 2
    max(ids)
    t["ids from the raw bytes"] = time.perf_counter() - c
print(json.dumps(t))
"""


def main(rounds: int = 5) -> None:
    folder = OUT / "llama70b-sparse-tokenizer"
    if not (folder / "tokenizer.json").exists():
        build_sparse_llama(folder, vocab=150_528)
        write_large_tokenizer(folder)
    path = folder / "tokenizer.json"
    print(f"{path.stat().st_size / 1e6:.1f} MB tokenizer.json, fresh interpreters, median of {rounds}")
    for mode in ("decode", "raw-ids"):
        runs = []
        for _ in range(rounds):
            out = subprocess.run(
                [PY, "-c", CODE, str(path), mode], capture_output=True, env=env(), cwd=REPO, check=True
            )
            runs.append(json.loads(out.stdout.decode().strip().splitlines()[-1]))
        print(f"  {mode}:")
        for key in runs[0]:
            print(f"    {key}: {statistics.median(r[key] for r in runs) * 1e3:.1f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
